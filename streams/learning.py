"""The learning loop's Kafka side (issue #10; the models themselves are in
``models/``).

- Each batch's labelled examples (``streams.core.decisions``) go to
  ``<app id>-examples`` with its outputs, acknowledged before the journeys
  that labelled them are written (``streams.tables.KafkaSink``); a crash can
  send an example twice, never lose one.
- :class:`TrainerService` runs in every worker; the consumer group
  ``<app id>-trainer`` gives the examples topic's one partition to one of
  them, which learns from the examples in order (``models.trainer.Trainer``)
  and publishes each model's snapshot to ``<app id>-models`` (compacted: the
  newest per target) every ``JOURNEYFLOW_SNAPSHOT_EVERY_EXAMPLES`` examples
  or ``JOURNEYFLOW_SNAPSHOT_INTERVAL_SECONDS``. A snapshot records the offset
  of the last example it learned; a trainer that takes over (a restart, a
  rebalance) resumes from the newest snapshots and reads on from there, so
  an example is learned once even when examples after the last snapshot
  are read again.
- :class:`ModelFeed` runs in every worker: it reads the snapshot topic from
  its start and swaps each newer snapshot into the worker's scorer
  (``models.trainer.ModelScorer``), so a worker started from nothing scores
  with the latest models, and a new snapshot is in use within a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from models.propensity import ModelSpec, SnapshotError, snapshot_header
from models.trainer import ModelScorer, Trainer, decode_example
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("journeyflow.learning")

#: Meta key of a snapshot: offset of the last example it learned.
OFFSET_META = "examples_offset"
#: Examples the trainer remembers to skip a repeat (a crash re-sends a batch's).
SEEN_EXAMPLES = 100_000
#: Examples per target a trainer taking over reads again before its models'
#: offsets, to refill the quality windows (``RollingQuality``'s 10,000).
QUALITY_REPLAY = 10_000


class ModelFeed:
    """Every snapshot on the models topic, newest swapped into ``scorer``."""

    def __init__(
        self, bootstrap: str, topic: str, scorer: ModelScorer, metrics: Metrics | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.scorer = scorer
        self.metrics = metrics
        #: Set once every snapshot there was at start has been read.
        self.caught_up = asyncio.Event()
        #: Target -> the newest snapshot read (a trainer resumes from it).
        self.latest: dict[str, bytes] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False

    async def run(self) -> None:
        """Read snapshots until :meth:`stop` (a broker away is retried)."""
        while not self._stopping:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is briefly away: start over
                log.warning("model snapshots: %s; reading again in 2 s", exc)
                await self._close()
                await asyncio.sleep(2)

    async def _read(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        tp = TopicPartition(self.topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        if end == 0:
            self.caught_up.set()
        while not self._stopping:
            fetched = await consumer.getmany(timeout_ms=1000)
            for records in fetched.values():
                for record in records:
                    if record.value is not None:
                        self.install(record.value)
            if not self.caught_up.is_set() and await consumer.position(tp) >= end:
                self.caught_up.set()

    def install(self, raw: bytes) -> None:
        try:
            header = snapshot_header(raw)
            target = str(header["spec"]["target"])
            if target not in self.scorer.models:
                return
            if self.scorer.install(raw):
                self.latest[target] = raw
                log.info("scoring %s with model version %s", target, header["version"])
                if self.metrics is not None:
                    self.metrics.snapshots.labels(target, "installed").inc()
        except (SnapshotError, KeyError, TypeError, ValueError) as exc:
            log.warning("model snapshots: skipped a record that is not a snapshot (%s)", exc)

    async def stop(self) -> None:
        self._stopping = True
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, service: TrainerService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.service.trainer = None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if not assigned:
            return
        try:
            await self.service.take_over(assigned)
        except Exception as exc:  # aiokafka would swallow it and leave nobody training
            log.warning("trainer: could not take over (%s); starting over", exc)
            self.service.broken = True


class TrainerService:
    """Learns from the examples topic when this worker holds its partition."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        examples_topic: str,
        models_topic: str,
        specs: dict[str, ModelSpec],
        feed: ModelFeed,
        *,
        every_examples: int,
        interval_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.examples_topic = examples_topic
        self.models_topic = models_topic
        self.specs = specs
        self.feed = feed
        self.every_examples = every_examples
        self.interval_s = interval_s
        self.metrics = metrics
        self.clock = clock
        #: The models being trained (None: another worker trains).
        self.trainer: Trainer | None = None
        #: Target -> offset of the last example its newest snapshot learned.
        self.learned_to: dict[str, int] = {}
        self._last_snapshot = clock()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        #: The last take-over failed: start over (new consumer, new take-over).
        self.broken = False
        #: Examples learned lately (a crash re-sends a batch's examples at new offsets).
        self._seen: OrderedDict[tuple[str, str, bool], None] = OrderedDict()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("trainer: %s; starting over in 2 s", exc)
                self.trainer = None
                await self._close()
                await asyncio.sleep(2)

    async def take_over(self, assigned: list[TopicPartition]) -> None:
        """This worker trains now: resume from the newest snapshots, read to
        the end of their topic now (the feed may be behind a snapshot the
        previous trainer published moments ago)."""
        try:
            latest = await read_snapshots(self.bootstrap, self.models_topic, CATCH_UP_WAIT_S)
        except Exception as exc:
            log.warning("trainer: snapshots not read (%s); resuming from those seen", exc)
            latest = dict(self.feed.latest)
        trainer = Trainer(self.specs)
        learned: dict[str, int] = {}
        for target, raw in latest.items():
            if target not in self.specs:
                continue
            try:
                model = trainer.resume(raw)
            except SnapshotError as exc:
                # start anew, but after its version, or the workers would ignore ours
                log.warning("trainer: %s snapshot not loadable (%s); learning anew", target, exc)
                with contextlib.suppress(SnapshotError, KeyError, TypeError, ValueError):
                    trainer.models[target].version = int(snapshot_header(raw)["version"])
                continue
            offset = model.meta.get(OFFSET_META)
            if isinstance(offset, int):
                learned[target] = offset
        self.trainer, self.learned_to = trainer, learned
        self._seen.clear()  # what an earlier trainer here learned is not in these models
        start = min((learned.get(t, -1) for t in self.specs), default=-1) + 1
        # read the examples before them again for the quality windows only
        # (``_learn``: at or below a model's offset it is witnessed, not learned)
        start = max(0, start - QUALITY_REPLAY * len(self.specs)) if learned else start
        consumer = self._consumer
        assert consumer is not None
        for tp in assigned:
            if start:
                consumer.seek(tp, start)
            else:
                await consumer.seek_to_beginning(tp)
        self._last_snapshot = self.clock()
        log.info("training %s from example %d", ", ".join(sorted(self.specs)), start)

    async def _consume(self) -> None:
        producer = self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        consumer.subscribe([self.examples_topic], listener=_Assignment(self))
        await consumer.start()
        while not self._stopping:
            if self.broken:
                self.broken = False
                raise RuntimeError("the take-over failed")
            fetched = await consumer.getmany(timeout_ms=1000, max_records=1000)
            trainer = self.trainer
            if trainer is None:
                continue
            last = -1
            for records in fetched.values():
                for record in records:
                    last = record.offset
                    self._learn(trainer, record.offset, record.value)
            if trainer.unsaved and (
                sum(trainer.unsaved.values()) >= self.every_examples
                or self.clock() - self._last_snapshot >= self.interval_s
            ):
                await self._publish(trainer, last)

    def _learn(self, trainer: Trainer, offset: int, raw: bytes | None) -> None:
        try:
            example = decode_example(raw or b"")
        except (TypeError, ValueError) as exc:
            log.warning("trainer: example at offset %d is not one (%s)", offset, exc)
            return
        key = (example.decision_id, example.target, example.correction)
        if key in self._seen:
            return  # sent again after a worker's crash
        self._seen[key] = None
        if len(self._seen) > SEEN_EXAMPLES:
            self._seen.popitem(last=False)
        if offset <= self.learned_to.get(example.target, -1):
            trainer.witness(example)  # its newest snapshot has it: quality only
            return
        if trainer.learn(example):
            self.learned_to[example.target] = offset
            if self.metrics is not None:
                self.metrics.trainer_examples.labels(example.target).inc()

    async def _publish(self, trainer: Trainer, last_offset: int) -> None:
        assert self._producer is not None
        for target in sorted(t for t, n in trainer.unsaved.items() if n):
            if trainer is not self.trainer:
                return  # revoked meanwhile: the new trainer publishes
            raw = trainer.snapshot(
                target,
                **{OFFSET_META: self.learned_to.get(target, last_offset), "at": time.time()},
            )
            await self._producer.send_and_wait(self.models_topic, raw, key=target.encode())
            if self.metrics is not None:
                self.metrics.snapshots.labels(target, "published").inc()
            log.info("published %s model version %d", target, trainer.models[target].version)
        self._last_snapshot = self.clock()

    async def stop(self) -> None:
        self._stopping = True
        await self._close()

    async def _close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        for client in (consumer, producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.stop()


def header_facts(raw: bytes) -> dict[str, Any]:
    """What ``journeyflow models`` and the gauges show of a snapshot."""
    header = snapshot_header(raw)
    meta = header.get("meta") or {}
    return {
        "target": header["spec"]["target"],
        "kind": header["spec"]["kind"],
        "version": header["version"],
        "examples": header["examples"],
        "positives": header["positives"],
        "ready": header["examples"] >= header["spec"]["min_examples"],
        "min_examples": header["spec"]["min_examples"],
        "snapshot_at": meta.get("at"),
        "quality": meta.get("quality") or {},
    }


#: Longest a worker holds its first batch back waiting for the snapshots
#: (a broker without the models topic yet must not stop it for good).
CATCH_UP_WAIT_S = 30.0


class Learning:
    """A worker's part in the learning loop: its scorer, the snapshot feed,
    the trainer, and their gauges (``streams.app`` attaches it)."""

    def __init__(
        self, settings: Settings, topics: Topics, specs: dict[str, ModelSpec], metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.scorer = ModelScorer(specs)
        self.feed = ModelFeed(settings.bootstrap, topics.models.name, self.scorer, metrics)
        self.trainer = TrainerService(
            settings.bootstrap,
            f"{settings.app_id}-trainer",
            topics.examples.name,
            topics.models.name,
            specs,
            self.feed,
            every_examples=settings.snapshot_every_examples,
            interval_s=settings.snapshot_interval_seconds,
            metrics=metrics,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self.feed.run()),
            asyncio.ensure_future(self.trainer.run()),
        ]

    async def stop(self) -> None:
        await self.trainer.stop()
        await self.feed.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def scoring_ready(self) -> None:
        """Wait (bounded) until the newest snapshots are in use, so a worker
        started from nothing does not decide with untrained models."""
        if self.feed.caught_up.is_set():
            return
        try:
            await asyncio.wait_for(self.feed.caught_up.wait(), CATCH_UP_WAIT_S)
        except TimeoutError:
            log.warning(
                "model snapshots not read after %.0f s: deciding with the models in use",
                CATCH_UP_WAIT_S,
            )
            self.feed.caught_up.set()

    def refresh_gauges(self, now_s: float) -> None:
        m = self.metrics
        for target, model in self.scorer.models.items():
            m.model_version.labels(target).set(model.version)
            m.model_examples.labels(target).set(model.examples)
            m.model_ready.labels(target).set(1 if model.ready else 0)
            raw = self.feed.latest.get(target)
            if raw is None:
                continue
            facts = header_facts(raw)
            if isinstance(facts["snapshot_at"], int | float):
                m.model_snapshot_age.labels(target).set(max(0.0, now_s - facts["snapshot_at"]))
            for name in ("auc", "log_loss", "calibration_error"):
                value = facts["quality"].get(name)
                if value is not None:
                    m.model_quality.labels(target, name).set(value)


async def read_snapshots(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[str, bytes]:
    """The newest snapshot per target on the models topic (read to its end)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        latest: dict[str, bytes] = {}
        deadline = time.monotonic() + timeout_s
        while await consumer.position(tp) < end and time.monotonic() < deadline:
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for record in fetched.get(tp, []):
                if record.key is not None and record.value is not None:
                    latest[record.key.decode()] = record.value
        return latest
    finally:
        await consumer.stop()


_ROW = "{:<8} {:<8} {:>7} {:>8} {:>9}  {:<16} {:>5} {:>8} {:>5}  {}"


def describe_models(facts: list[dict[str, Any]], now_s: float) -> list[str]:
    """``journeyflow models`` as lines of text (quality over the trainer's
    newest window of labelled decisions).

    >>> lines = describe_models([{"target": "convert", "kind": "logistic", "version": 3,
    ...     "examples": 450, "positives": 90, "ready": True, "min_examples": 200,
    ...     "snapshot_at": 100.0, "quality": {"auc": 0.8123, "log_loss": 0.41,
    ...     "calibration_error": 0.03, "window": 450}}], now_s=130.0)
    >>> print("\\n".join(lines))
    target   model    version examples positives  state              auc log_loss   ece  snapshot
    convert  logistic       3      450        90  ready            0.812    0.410 0.030  30 s ago
    """
    lines = [
        _ROW.format(
            "target",
            "model",
            "version",
            "examples",
            "positives",
            "state",
            "auc",
            "log_loss",
            "ece",
            "snapshot",
        )
    ]
    for f in facts:
        q = f["quality"]
        nums = [
            "-" if q.get(name) is None else f"{q[name]:.3f}"
            for name in ("auc", "log_loss", "calibration_error")
        ]
        state = "ready" if f["ready"] else f"learning {f['examples']}/{f['min_examples']}"
        age = "-" if f["snapshot_at"] is None else f"{max(0, now_s - f['snapshot_at']):.0f} s ago"
        lines.append(
            _ROW.format(
                f["target"],
                f["kind"],
                f["version"],
                f["examples"],
                f["positives"],
                state,
                *nums,
                age,
            )
        )
    return lines
