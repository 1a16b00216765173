"""Small synchronous helpers to produce to and read whole topics in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from streams.admin import stop_quietly


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    parts = described[0].get("partitions", []) if described else []
    return [
        TopicPartition(topic, p["partition"]) for p in sorted(parts, key=lambda p: p["partition"])
    ]


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
    """Every record currently in ``topic`` (all partitions, up to the end offsets)."""

    async def go() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tps = await _partitions(bootstrap, topic)
            if not tps:
                return []
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[ConsumerRecord] = []
            remaining = {tp for tp in tps if ends[tp] > 0}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while remaining and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    out.extend(records)
                    if records and records[-1].offset + 1 >= ends[tp]:
                        remaining.discard(tp)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return out
        finally:
            await stop_quietly(consumer)

    return asyncio.run(go())


def count_messages(bootstrap: str, topic: str) -> int:
    """Records ever written to ``topic`` (sum of end offsets; no compaction here)."""

    async def go() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = await _partitions(bootstrap, topic)
            ends = await consumer.end_offsets(tps) if tps else {}
            return sum(ends.values())
        finally:
            await stop_quietly(consumer)

    return asyncio.run(go())
