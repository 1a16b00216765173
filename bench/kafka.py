"""Small async Kafka helpers for the harness: offsets, topic reads, topic creation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.admin import read_records, stop_quietly


@dataclass(frozen=True, slots=True)
class Record:
    """What the harness keeps of a consumed record."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class Offsets:
    """End offsets of topics and committed offsets of consumer groups (one admin
    client and one group-less consumer, reused for every poll)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="jf-bench-offsets")
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="jf-bench-offsets"
        )
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def __aenter__(self) -> Offsets:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()

    async def partitions(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            described = await self.admin.describe_topics([topic])
            parts = described[0].get("partitions", []) if described else []
            tps = sorted(TopicPartition(topic, p["partition"]) for p in parts)
            if not tps:
                return []
            self._partitions[topic] = tps
        return self._partitions[topic]

    async def end_offsets(self, topic: str) -> dict[int, int]:
        tps = await self.partitions(topic)
        if not tps:
            return {}
        ends = await self.consumer.end_offsets(tps)
        return {tp.partition: off for tp, off in ends.items()}

    async def ends(self, topic: str) -> int:
        return sum((await self.end_offsets(topic)).values())

    async def committed(self, group: str) -> dict[str, int]:
        """Sum of committed offsets per topic for ``group`` (no commit: absent)."""
        try:
            offsets = await self.admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            if not exc.retriable:  # e.g. the coordinator is still being elected
                raise
            return {}
        out: dict[str, int] = {}
        for tp, meta in offsets.items():
            if meta is not None and meta.offset >= 0:
                out[tp.topic] = out.get(tp.topic, 0) + meta.offset
        return out


async def create_topics(
    bootstrap: str, names: Iterable[str], partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create topics (those that exist are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="jf-bench-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(name, partitions, 1, topic_configs=dict(config or {}))
            for name in names
            if name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def read_topic(bootstrap: str, topic: str, *, timeout: float = 120.0) -> list[Record]:
    """Every record of ``topic`` up to the end offsets at the time of the call."""
    records = await read_records(bootstrap, topic, timeout)
    return [Record(r.partition, r.offset, r.timestamp, r.key, r.value) for r in records]


async def first_timestamp(bootstrap: str, topic: str, timeout: float = 30.0) -> int | None:
    """The smallest record timestamp among the first record of each partition."""
    async with Offsets(bootstrap) as offsets:
        tps = await offsets.partitions(topic)
        ends = await offsets.consumer.end_offsets(tps)
    tps = [tp for tp in tps if ends[tp] > 0]
    if not tps:
        return None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="jf-bench-reader"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        first: dict[TopicPartition, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(first) < len(tps) and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=50)
            for tp, records in batch.items():
                if records and tp not in first:
                    first[tp] = records[0].timestamp
                    consumer.pause(tp)
        return min(first.values()) if first else None
    finally:
        await stop_quietly(consumer)
