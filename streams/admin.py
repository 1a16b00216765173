"""Broker-side housekeeping: reachability checks and explicit topic creation."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from streams.errors import JourneyflowError
from streams.settings import Settings
from streams.topics import TopicSpec, topics_for


async def _admin(bootstrap: str, timeout: float) -> AIOKafkaAdminClient:
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000)
    )
    try:
        await asyncio.wait_for(client.start(), timeout)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError):
        await client.close()
        raise JourneyflowError(
            f"cannot reach Kafka at {bootstrap}: is the broker running? "
            "(`journeyflow kafka start`, or set JOURNEYFLOW_KAFKA_BOOTSTRAP)"
        ) from None
    return client


async def check_broker(bootstrap: str, timeout: float = 10.0) -> None:
    """Raise JourneyflowError in one line when the broker does not answer."""
    client = await _admin(bootstrap, timeout)
    await client.close()


async def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Create missing topics with the configured partitions; return those created.

    An existing topic with another partition count is an error: the journey
    table is co-partitioned with its input, and growing partitions would send
    customers to the wrong state.
    """
    specs = topics_for(settings).all()
    client = await _admin(settings.bootstrap, timeout)
    try:
        existing = set(await client.list_topics())
        missing = [s for s in specs if s.name not in existing]
        present = [s.name for s in specs if s.name in existing]
        if present:
            described = await client.describe_topics(present)
            wanted = {s.name: s.partition_count(settings) for s in specs}
            for info in described:
                count = len(info.get("partitions", []))
                if count and count != wanted[info["topic"]]:
                    raise JourneyflowError(
                        f"topic {info['topic']} has {count} partitions but "
                        f"journeyflow needs {wanted[info['topic']]} "
                        f"(JOURNEYFLOW_PARTITIONS={settings.partitions}); they must match"
                    )
        if missing:
            # another worker may create them at the same moment
            with contextlib.suppress(TopicAlreadyExistsError):
                await client.create_topics([_new_topic(s, settings) for s in missing])
            await _wait_for_leaders(client, [s.name for s in missing], timeout)
        return [s.name for s in missing]
    finally:
        await client.close()


async def _wait_for_leaders(client: AIOKafkaAdminClient, names: list[str], timeout: float) -> None:
    """New partitions answer only once they have a leader; wait for that, so
    the first clients do not start with a burst of NotLeader retries."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        described = await client.describe_topics(names)
        if all(
            info.get("error_code", 0) == 0
            and info.get("partitions")
            and all(p.get("leader", -1) >= 0 for p in info["partitions"])
            for info in described
        ):
            return
        await asyncio.sleep(0.2)
    raise JourneyflowError(f"topics {', '.join(names)} have no leader after {timeout:.0f}s")


def _new_topic(spec: TopicSpec, settings: Settings) -> NewTopic:
    config = dict(spec.config)
    if settings.min_insync_replicas:
        config["min.insync.replicas"] = str(settings.min_insync_replicas)
    return NewTopic(
        name=spec.name,
        num_partitions=spec.partition_count(settings),
        replication_factor=settings.replication_factor,
        topic_configs=config,
    )


async def stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. aiokafka's stop() right after start() can raise the
    CancelledError of its own internal task; only a cancellation of ours counts."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def topic_partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions (none when it does not exist)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    head = described[0] if described else {}
    found = [] if head.get("error_code") else head.get("partitions") or []
    return [
        TopicPartition(topic, p["partition"]) for p in sorted(found, key=lambda p: p["partition"])
    ]


async def read_records(
    bootstrap: str, topic: str, timeout_s: float = 20.0, *, strict: bool = True
) -> list[ConsumerRecord]:
    """Every record of ``topic`` up to the end offsets it has now, all
    partitions. Past ``timeout_s`` it raises TimeoutError (``strict``) or
    returns what it has read."""
    tps = await topic_partitions(bootstrap, topic)
    if not tps:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[ConsumerRecord] = []
        left = {tp for tp in tps if ends[tp] > 0}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while left and loop.time() < deadline:
            fetched = await consumer.getmany(*left, timeout_ms=500)
            for tp, records in fetched.items():
                out.extend(r for r in records if r.offset < ends[tp])
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
        if left and strict:
            raise TimeoutError(f"{topic}: not read to its end within {timeout_s:.0f} s")
        return out
    finally:
        await stop_quietly(consumer)
