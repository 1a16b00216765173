"""The input low watermark: how far event time may move on a quiet partition.

The rule (documented in the README): every ``JOURNEYFLOW_TICK_INTERVAL_SECONDS``
the group leader reads, for each partition of the touchpoints topic that the
group has not fully consumed, the first record not yet committed: its Kafka
timestamp, or its ``occurred_at`` when that is earlier (an event published
long after it happened: a backfill, a producer catching up, a topic replayed).
The watermark is the smallest of those and the wall clock, minus
``JOURNEYFLOW_IDLE_ADVANCE_DELAY_SECONDS`` (allowed lateness). Ticks carry it
to every partition of the journey table through the re-keyed topic, behind
any events already queued there, so a backlog holds time back instead of
letting reminders fire before the events that would cancel them.

>>> head_time(1_000_000, b'{"occurred_at": "1970-01-01T00:15:00Z"}')
900000
>>> head_time(1_000_000, b'{"occurred_at": "1970-01-01T08:20:00+08:00"}')  # later: the record time
1000000
>>> head_time(1_000_000, b"not json")
1000000
>>> head_time(1_000_000, b'{"occurred_at": "1970-01-01T00:00:00"}')  # no offset: rejected later
1000000
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.admin import stop_quietly


def head_time(timestamp_ms: int, value: bytes | None) -> int:
    """How far a head record lets time move: its Kafka timestamp, or its
    ``occurred_at`` when that is earlier (a record that is not a readable
    event, to be dead-lettered, holds nothing back)."""
    try:
        occurred = datetime.fromisoformat(orjson.loads(value or b"")["occurred_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return timestamp_ms
    if occurred.tzinfo is None:  # rejected at admission (no offset): holds nothing back
        return timestamp_ms
    return min(timestamp_ms, int(occurred.timestamp() * 1000))


class InputWatermark:
    def __init__(self, bootstrap: str, group: str, topic: str, allowed_lateness_ms: int) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topic = topic
        self.allowed_lateness_ms = allowed_lateness_ms
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []

    async def _ensure(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
            await consumer.start()
            described = await admin.describe_topics([self.topic])
            self._partitions = [
                TopicPartition(self.topic, p["partition"])
                for p in described[0].get("partitions", [])
            ]
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_quietly(self._consumer)
        if self._admin is not None:
            await self._admin.close()
        self._admin = self._consumer = None

    async def read(self, now_ms: int) -> int | None:
        """The watermark in epoch ms, or None when a head record could not be read."""
        admin, consumer = await self._ensure()
        tps = self._partitions
        committed = await admin.list_consumer_group_offsets(self.group, partitions=tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        heads: dict[TopicPartition, int] = {}
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
            if offset < ends[tp]:
                heads[tp] = max(offset, starts[tp])
        low = now_ms
        if heads:
            stamps = await self._head_timestamps(consumer, heads)
            if stamps is None:
                return None
            low = min(low, *stamps)
        return low - self.allowed_lateness_ms

    async def _head_timestamps(
        self, consumer: AIOKafkaConsumer, heads: dict[TopicPartition, int]
    ) -> list[int] | None:
        consumer.assign(list(heads))
        for tp, offset in heads.items():
            consumer.seek(tp, offset)
        found: dict[TopicPartition, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while len(found) < len(heads) and loop.time() < deadline:
            batch = await consumer.getmany(*heads, timeout_ms=500, max_records=len(heads) * 4)
            for tp, records in batch.items():
                if records and tp not in found:
                    found[tp] = head_time(records[0].timestamp, records[0].value)
                    consumer.pause(tp)
        consumer.resume(*heads)
        return list(found.values()) if len(found) == len(heads) else None
