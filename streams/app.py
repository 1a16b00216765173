"""The worker: the Faust app assembled around the batch protocol.

Flow: ``touchpoints`` (and ``feedback``) --admit, route--> the internal
topic ``<app>-touchpoints-by-customer`` (admitted events and One-ID
messages keyed by identifier, co-partitioned with the ``aliases``,
``journeys`` and ``timers`` tables) --One-ID, journey step--> tables +
``actions`` / ``alerts`` / ``live-triggers`` / ``merges``, and further One-ID
messages on the internal topic (``streams.core.oneid``). Bad input goes to
``dlq``.

Faust keeps what it is good at here: the app, group membership and its
assignor (the tables' changelog partitions stay matched to the internal
topic), table recovery, the web server, timers and the commit timer. Records
do not go through its per-event stream iteration: the consumer
(``streams.transport``) hands each fetch's records to the batch protocol
(``streams.batch``), which reads and writes the tables through
``streams.tables``. HTTP views are in ``streams.views``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams import zstd
from streams.batch import (
    TABLES,
    TICK_KEY,
    Batch,
    BatchEngine,
    BatchLimits,
    Messages,
    applied_key,
    stage_counts,
    stages_key,
)
from streams.config import ingest_policy, model_specs, oneid_config
from streams.learning import Learning
from streams.metrics import Metrics
from streams.settings import Settings
from streams.tables import FaustTables, KafkaSink
from streams.topics import Topics, topics_for
from streams.transport import Transport
from streams.views import MAX_BODY_BYTES, add_views
from streams.watermark import InputWatermark

log = logging.getLogger("journeyflow")

#: Largest produce batch per partition (aiokafka's default is 16 KiB).
PRODUCER_BATCH_BYTES = 256 * 1024
#: How long a stopping worker waits for its last batch to be sent and written.
FINISH_TIMEOUT_SECONDS = 10.0


@dataclass
class Journeyflow:
    """The running application: the Faust app plus what tests and the CLI need."""

    app: faust.App
    settings: Settings
    topics: Topics
    metrics: Metrics
    tables: FaustTables
    engine: BatchEngine
    #: The learning loop (None with ``JOURNEYFLOW_DECISIONS=false``).
    learning: Learning | None = None


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> Journeyflow:
    """Build the worker for these settings (no I/O until it starts)."""
    zstd.install()  # aiokafka's zstd with kept contexts (streams.zstd)
    metrics = Metrics(registry or CollectorRegistry())
    specs = topics_for(settings)
    datadir = settings.data_dir / f"{settings.app_id}-worker-{settings.web_port}"
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        store="rocksdb://" if settings.store == "rocksdb" else "memory://",
        datadir=str(datadir),
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # a batch queues all its records at once: let them travel in few requests
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        producer_compression_type=None if settings.compression == "none" else settings.compression,
        broker_max_poll_records=settings.batch_max_records,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        web_host=settings.web_host,
        web_enabled=True,
        web_application_options={"client_max_size": MAX_BODY_BYTES},
        table_standby_replicas=0,
        broker_commit_interval=1.0,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
    )
    transport = Transport(app.conf.broker_consumer, app)
    app.transport = transport

    def topic(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )

    # subscribed (and acknowledged) through Faust; their records go to the batch protocol
    keyed = topic(specs.keyed.name)
    for name in (specs.touchpoints.name, specs.feedback.name):
        app.topics.add(topic(name))
    app.topics.add(keyed)
    transport.streams = {
        specs.touchpoints.name: "touchpoints",
        specs.feedback.name: "feedback",
        specs.keyed.name: "keyed",
    }

    options: dict[str, Any] = {}
    if settings.store == "rocksdb":
        options = {
            "driver": "rocksdict",
            "block_cache_size": settings.rocksdb_block_cache_mb * 1024 * 1024,
        }
    # bytes -> bytes tables co-partitioned with the internal topic
    tables = FaustTables(
        {
            name: app.Table(
                name,
                default=None,
                key_type=bytes,
                value_type=bytes,
                partitions=settings.partitions,
                options=dict(options),  # Faust pops keys from it: one copy per table
            )
            for name in TABLES
        },
        rocksdb=settings.store == "rocksdb",
    )

    def applied_position(tp: TP) -> int | None:
        if tp.topic != specs.keyed.name:
            return None
        raw = tables.read("timers", tp.partition, applied_key(tp.partition))
        return int(raw) if raw else None

    transport.applied_position = applied_position
    transport.fetch_max_wait_ms = settings.fetch_max_wait_ms
    transport.fetch_min_bytes = settings.fetch_min_bytes

    def batch_done(batch: Batch) -> None:
        app.consumer.ack_batch(batch.records)
        metrics.record_batch(batch, time.time())

    learning = (
        Learning(settings, specs, model_specs(settings), metrics) if settings.decisions else None
    )
    messages = Messages(settings.decoded_cache)
    engine = BatchEngine(
        oneid_config(settings, learning.scorer if learning else None),
        ingest_policy(settings),
        settings.timer_resolution_seconds * 1000,
        tables,
        KafkaSink(app, specs, tables, batch_done, messages),
        BatchLimits(settings.batch_max_records, settings.batch_max_ms, settings.decoded_cache),
        messages,
    )
    transport.apply = engine.process
    # this worker alone writes the stores of the partitions it applies, between
    # two positionings: what it decoded is kept without reading the store again
    engine.trust()

    def positioned() -> None:
        engine.forget()
        metrics.rebalances.inc()

    transport.positioned = positioned
    transport.restored = metrics.restored_records.inc

    crashing: list[asyncio.Future[None]] = []

    def batch_failed(exc: BaseException) -> None:
        # as when the error ended the fetch loop (the next fetch now raises it too)
        crashing.append(asyncio.ensure_future(app.crash(exc)))

    engine.on_failure = batch_failed

    @app.on_before_shutdown.connect
    async def finish_last_batch(sender: faust.App, **kwargs: Any) -> None:
        """The batch still being sent and written when the worker stops goes
        out whole (a stop need not repeat it at the next start)."""
        try:
            await asyncio.wait_for(engine.drain(), timeout=FINISH_TIMEOUT_SECONDS)
        except Exception as exc:  # its records are not acknowledged: applied again
            log.warning("the last batch was not finished before stopping: %r", exc)

    if learning is not None:
        process = engine.process

        async def apply_when_scoring(records: Any) -> None:
            await learning.scoring_ready()
            await process(records)

        transport.apply = apply_when_scoring

        @app.task
        async def start_learning() -> None:
            learning.start()

        @app.on_before_shutdown.connect
        async def stop_learning(sender: faust.App, **kwargs: Any) -> None:
            await learning.stop()

    if settings.tick_interval_seconds > 0:
        watermark = InputWatermark(
            settings.bootstrap,
            settings.app_id,
            specs.touchpoints.name,
            settings.idle_advance_delay_seconds * 1000,
        )

        @app.on_before_shutdown.connect
        async def stop_watermark(sender: faust.App, **kwargs: Any) -> None:
            await watermark.stop()

        @app.timer(interval=settings.tick_interval_seconds, on_leader=True)
        async def send_ticks() -> None:
            """Carry the input low watermark to every partition (see streams.watermark)."""
            try:
                mark = await watermark.read(int(time.time() * 1000))
            except Exception as exc:  # the broker is briefly away: try at the next tick
                log.warning("could not read the input watermark: %s", exc)
                await watermark.stop()
                return
            if mark is None:
                return
            value = orjson.dumps({"watermark_ms": mark})
            for partition in range(settings.partitions):
                await keyed.send(key=TICK_KEY, value=value, partition=partition)

    def is_ready() -> bool:
        recovery = app.tables.recovery
        return (
            not app.rebalancing
            and not recovery.in_recovery
            and recovery.completed.is_set()
            and bool(app.consumer and app.consumer.assignment() is not None)
        )

    @app.timer(interval=5.0)
    async def refresh_gauges() -> None:
        """Consumer lag per assigned partition (and only those), and readiness."""
        monitor = app.monitor
        ends = getattr(monitor, "tp_end_offsets", None) or {}
        committed = getattr(monitor, "tp_committed_offsets", None) or {}
        assignment = app.consumer.assignment() if app.consumer else set()
        lags = {
            (tp.topic, tp.partition): max(0, ends[tp] - (committed.get(tp) or 0))
            for tp in assignment
            if ends.get(tp) is not None
        }
        keyed = {tp.partition for tp in assignment if tp.topic == specs.keyed.name}
        customers: Counter[str] = Counter()
        for partition in keyed:
            customers.update(stage_counts(tables.read("timers", partition, stages_key(partition))))
        metrics.hold(lags, keyed, customers)
        metrics.ready.set(1 if is_ready() else 0)
        if learning is not None:
            learning.refresh_gauges(time.time())

    add_views(app, settings, metrics, tables, is_ready, specs)
    return Journeyflow(
        app=app,
        settings=settings,
        topics=specs,
        metrics=metrics,
        tables=tables,
        engine=engine,
        learning=learning,
    )
