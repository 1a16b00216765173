"""Small synchronous helpers to produce to and read whole topics in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from streams.admin import read_records, stop_quietly, topic_partitions


def produce(bootstrap: str, topic: str, records: Iterable[tuple]) -> int:
    """Send ``(key, value)`` or ``(key, value, partition)`` records; wait for acks."""

    async def go() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        n = 0
        try:
            futures = []
            for key, value, *partition in records:
                part = partition[0] if partition else None
                futures.append(await producer.send(topic, value, key=key, partition=part))
                n += 1
            for f in futures:
                await f
        finally:
            await producer.stop()
        return n

    return asyncio.run(go())


def read_topic(bootstrap: str, topic: str, timeout: float = 20.0) -> list[ConsumerRecord]:
    """Every record currently in ``topic`` (all partitions, up to the end
    offsets; what was read by ``timeout``)."""
    return asyncio.run(read_records(bootstrap, topic, timeout, strict=False))


def count_messages(bootstrap: str, topic: str) -> int:
    """Records ever written to ``topic`` (sum of end offsets; no compaction here)."""

    async def go() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = await topic_partitions(bootstrap, topic)
            ends = await consumer.end_offsets(tps) if tps else {}
            return sum(ends.values())
        finally:
            await stop_quietly(consumer)

    return asyncio.run(go())
