"""The raw aiokafka baseline: the worker's durable work without Faust.

Run as a subprocess by the harness (``python -m bench.baseline``), with the
same ``JOURNEYFLOW_*`` environment as the worker. One consumer reads the
touchpoints topic (manually assigned, its own consumer group), and per record:

1. ``orjson`` decode + validation + PII hashing: ``streams.core.ingest.admit``
   with ``streams.config.ingest_policy(settings)``; a bad record becomes a dead
   letter, produced to a DLQ topic;
2. ``streams.core.engine.step`` with ``streams.config.core_config(settings)``
   on the customer's state, kept in a ``dict`` as the bytes of
   ``encode_state`` (decoded with ``decode_state`` on every event, as the
   worker's table stores bytes);
3. the new state record is produced to a compacted topic (a tombstone for an
   erased journey), the outputs (stamped ``emitted_at``) to an output topic,
   keyed as the worker keys them.

After each fetched batch it waits for every send to be acknowledged
(``acks=all``) and then commits the batch's offsets: at least once, the same
guarantee as the worker.

What it does not do, by design: the re-keying hop. The worker writes every
admitted event to ``<app id>-touchpoints-by-customer`` and reads it back
(one more produce, fetch, encode and decode per event) so that the journey
table is co-partitioned with its input; here the state is keyed in a local
dict, which only works because one process owns every partition. Nor the
worker's timers table (a per-partition event-time clock and an index of
due reminders, with its own changelog), nor its per-event wait for the
acks of an event's outputs before the state write (here all sends of a
batch are awaited together before the commit: the same at-least-once
guarantee, batched). No metrics, no HTTP server, no RocksDB.

Protocol with the harness: ``READY`` on stdout once the partitions are
assigned; on SIGTERM it finishes the batch in hand, commits, prints one JSON
line of counters and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import encode
from schemas.outputs import Action, Alert, DeadLetter, LiveTrigger
from streams.config import core_config, ingest_policy
from streams.core.engine import step
from streams.core.ingest import RecordMeta, admit
from streams.core.journey import decode_state, encode_state
from streams.core.rules import Output
from streams.settings import load_settings


def _output_key(output: Output) -> bytes:
    if isinstance(output, Action):
        return output.customer_id.encode()
    if isinstance(output, Alert):
        return output.routing_key.encode()
    assert isinstance(output, LiveTrigger)
    return output.live_room_id.encode()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings()
    core = core_config(settings)
    policy = ingest_policy(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=args.group,
        client_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, client_id=args.group, acks="all"
    )
    await consumer.start()
    await producer.start()
    counts: Counter[str] = Counter()
    states: dict[bytes, bytes] = {}
    started = time.monotonic()
    try:
        partitions = sorted(await producer.partitions_for(args.topic))
        consumer.assign([TopicPartition(args.topic, p) for p in partitions])
        print("READY", flush=True)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=args.max_records)
            if not batch:
                continue
            pending = []
            for records in batch.values():
                for rec in records:
                    counts["in"] += 1
                    meta = RecordMeta(rec.topic, rec.partition, rec.offset, rec.timestamp)
                    result = admit(rec.value or b"", meta, policy)
                    if isinstance(result, DeadLetter):
                        counts["dead_lettered"] += 1
                        key = result.event_id.encode() if result.event_id else None
                        pending.append(await producer.send(args.dlq_topic, encode(result), key))
                        continue
                    key = result.customer_id.encode()
                    raw_state = states.get(key)
                    stepped = step(decode_state(raw_state) if raw_state else None, result, core)
                    counts[stepped.outcome] += 1
                    if stepped.state is None:
                        states.pop(key, None)
                        pending.append(await producer.send(args.state_topic, None, key))
                    elif stepped.outcome != "redelivered":  # as the worker: no rewrite
                        states[key] = value = encode_state(stepped.state)
                        pending.append(await producer.send(args.state_topic, value, key))
                    if stepped.outputs:
                        now = datetime.now(UTC)
                        for output in stepped.outputs:
                            stamped = output.model_copy(update={"emitted_at": now})
                            counts[f"output:{stamped.kind}"] += 1
                            pending.append(
                                await producer.send(
                                    args.output_topic, encode(stamped), _output_key(stamped)
                                )
                            )
            await asyncio.gather(*pending)  # durable before the offsets move
            await consumer.commit()
            counts["commits"] += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return {"counts": dict(counts), "seconds": round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--topic", required=True, help="touchpoints topic to read")
    parser.add_argument("--group", required=True, help="consumer group (commits go here)")
    parser.add_argument("--state-topic", required=True, help="compacted topic for states")
    parser.add_argument("--output-topic", required=True, help="topic for actions/alerts/...")
    parser.add_argument("--dlq-topic", required=True, help="topic for dead letters")
    parser.add_argument("--max-records", type=int, default=1000, help="records per fetch")
    stats = asyncio.run(run(parser.parse_args(argv)))
    sys.stdout.write(orjson.dumps(stats).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
