"""The benchmark run: one broker, one input, four measurements.

Sequence (every step prints a progress line on stderr):

1. A private Kafka broker in a temp dir (unless ``--bootstrap``), and three
   fresh namespaces (topic prefix + app id): the worker's, the baseline's and
   the profiled worker's, each with its own copy of the input.
2. ``events`` simulated touchpoints (``streams.simulate``, seeded, its default
   dirty share; event time starts far enough back that no event, closed or
   open loop, is ahead of its produce time; Kafka keys as simulated). So
   event time lies hours behind the wall clock: the worker runs without idle
   ticks (:data:`TICK_INTERVAL_SECONDS`), which would move its clocks to the
   wall clock and make every later event late.
3. CPU ceiling (:mod:`bench.ceiling`), in-process, over the same bytes: the
   worker's batch protocol (``LocalRuntime``, One-ID and codecs included) is
   the headline. Its outcome counts are the expected totals for the
   accounting below.
4. The events are produced (``acks=all``) to the three touchpoints topics.
5. Worker, closed loop: ``python -m streams.cli worker`` starts; the clock runs
   from ``/readyz`` 200 (or its first re-keyed record, if earlier) until the
   app's consumer group has committed the end offsets of ``touchpoints`` and
   of ``<app id>-touchpoints-by-customer``, and the latter holds at least one
   record per admitted input. Faust flushes its producer before it commits,
   so by then every table write and output of those events was sent.
6. Worker, open loop (same process, warm): per level, ``level × the worker's
   throughput`` events/s for ``duration`` s. Each record's Kafka timestamp is
   its scheduled send time (a producer running late counts against latency),
   then the harness waits until the worker has drained.
7. Baseline (:mod:`bench.baseline`) on its copy: closed loop (from its
   ``READY`` until its group committed the end offsets), then the same
   open-loop records at the same absolute rates.
8. Profiled worker on the third copy: closed loop with py-spy attached
   (:mod:`bench.profile`); its throughput is reported apart.
8a. Burst (:mod:`bench.burst`, unless ``--no-burst``): a flash-sale peak
   (Zipf-distributed customers, one hot live room) pre-produced to a fourth
   namespace, then a fresh worker started on it; from its start until every
   input is accounted for (as in 5.), with its peak RSS and its own counters
   (processed + duplicate + erased + dead-lettered = input).
8b. Broker limit (:mod:`bench.brokerperf`): Kafka's own ProducerPerformance
   (acks=all, records of the inputs' mean size) and ConsumerPerformance
   against the same broker, on a topic of its own.
9. Read back: the worker's changelog topics (bytes per event; per open-loop
   event the first journey record of its key whose ``recent`` event ids hold
   it gives its latency: one record covers all of a key's events in a
   batch), output topics (``cause_event_id``, ``emitted_at``); the same from
   the baseline's state and output topics.

Loopback only; every process started here is stopped in a ``finally``, and
the temp dir is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from bench import brokerperf, burst, ceiling
from bench.kafka import Offsets, Record, create_topics, first_timestamp, read_topic
from bench.procs import Proc, git_info, machine, scrape_counters, versions, worker_ready
from bench.profile import PySpy, find_py_spy, summarise
from bench.watch import CpuWatch
from schemas.outputs import DeadLetter
from streams import broker
from streams.admin import ensure_topics
from streams.config import ingest_policy
from streams.core.ingest import RecordMeta, admit
from streams.errors import JourneyflowError
from streams.settings import Settings
from streams.simulate import SimulatedRecord, SimulationConfig, simulate

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Upper bound assumed for open-loop rates when choosing how far back event time starts.
OPEN_RATE_CAP = 10_000.0
POLL = 0.2  # seconds between offset polls
#: The baseline's state topic keeps every record this long (``min.compaction.lag.ms``).
DAY_MS = 24 * 3600 * 1000
BENCH_PII_KEY = "journeyflow-bench-key"
#: The worker's idle ticks are off. They move a partition's clock to the input's low
#: watermark, which is wall-clock time (the Kafka timestamps, or now when nothing is
#: pending); the simulated event time lies hours before it, so after the first tick
#: every event was "late" (JOURNEYFLOW_LATE_AFTER_SECONDS) and decided nothing: no
#: outputs to measure, and less work than the baseline and the ceiling do. Without
#: ticks the clocks move with event time, as in the ceiling (no ticks either).
TICK_INTERVAL_SECONDS = "0"


class BenchError(Exception):
    """The benchmark could not run (the message says why)."""


@dataclass
class BenchConfig:
    events: int = 200_000
    bootstrap: str | None = None
    output: Path | None = None
    levels: tuple[float, ...] = (0.25, 0.5, 0.75)
    #: Open-loop rates in events/s; when given, instead of ``levels``.
    rates: tuple[float, ...] = ()
    seed: int = 7
    duration: float = 20.0
    partitions: int = 8
    customers: int = 2000
    profile: bool = True
    broker_limit: bool = True
    burst: bool = True
    burst_events: int = 200_000
    timeout: float = 600.0
    quick: bool = False
    guarantee: str = "at_least_once"
    #: Worker settings (``streams.settings.Settings`` field -> value) given
    #: with ``--set``: the worker's environment ignores the caller's own.
    worker_settings: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


_t0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _t0:7.1f}s] {message}", file=sys.stderr, flush=True)


class _ExplicitSettings(Settings):
    """Settings from the values given only: the harness's own environment does
    not leak into the in-process ceiling (subprocesses get exactly ``env``)."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **_: Any) -> Any:
        return (init_settings,)


@dataclass
class Namespace:
    """One topic namespace + app id, as settings and as a subprocess environment."""

    bootstrap: str
    prefix: str
    app_id: str
    partitions: int
    guarantee: str = "at_least_once"
    #: Further worker settings (``--set``), over the bench's own.
    extra: dict[str, str] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        return {
            "processing_guarantee": self.guarantee,
            "kafka_bootstrap": self.bootstrap,
            "topic_namespace": self.prefix,
            "app_id": self.app_id,
            "partitions": str(self.partitions),
            "pii_key": BENCH_PII_KEY,
            "pii_key_id": "bench",
            "store": "rocksdb",
            "log_level": "warning",
            "web_bind": "127.0.0.1",
            "web_host": "127.0.0.1",
            "tick_interval_seconds": TICK_INTERVAL_SECONDS,
        } | self.extra

    def settings(self) -> Settings:
        values: dict[str, Any] = dict(self.values())
        values["pii_key"] = SecretStr(values["pii_key"])
        values["partitions"] = int(values["partitions"])
        return _ExplicitSettings(**values)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYFLOW_")}
        env.update({f"JOURNEYFLOW_{k.upper()}": v for k, v in self.values().items()})
        env.update(extra)
        return env

    def topic(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    @property
    def touchpoints(self) -> str:
        return self.topic("touchpoints")

    @property
    def keyed(self) -> str:
        return f"{self.app_id}-touchpoints-by-customer"

    @property
    def journeys_changelog(self) -> str:
        return f"{self.app_id}-journeys-changelog"

    @property
    def outputs(self) -> list[str]:
        return [self.topic("actions"), self.topic("alerts"), self.topic("live-triggers")]


@dataclass
class Target:
    """What a closed or open loop measures: a worker or the baseline."""

    name: str
    proc: Proc
    group: str
    input_topic: str
    #: (inputs so far, admitted so far) -> topic -> minimum end offset total
    expect: Callable[[int, int], dict[str, int]]
    journey_topics: list[str]  # changelog topics (worker) or the state topic (baseline)
    latency_topic: str  # the one whose records carry the journey (recent event ids)
    output_topics: list[str]
    rekeyed_topic: str | None = None  # the worker's internal hop, for a latency split
    send_times: dict[str, int] = field(default_factory=dict)
    split: dict[str, dict[int, int]] = field(default_factory=dict)
    #: On-disk bytes of the journey topics at the split (``Run.disk_bytes``).
    disk_bytes: dict[str, int] | None = None


@dataclass
class Level:
    """The records of one open-loop level (the same for the worker and the baseline)."""

    level: float
    rate: float
    records: list[SimulatedRecord]
    event_ids: list[str | None]
    admitted: int
    ahead_of_now: int


# ----------------------------------------------------------------- statistics


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max/mean (linear interpolation), rounded to 0.1."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    data = sorted(values)

    def q(p: float) -> float:
        k = (len(data) - 1) * p
        lo, hi = math.floor(k), math.ceil(k)
        return data[lo] + (data[hi] - data[lo]) * (k - lo)

    return {
        "count": len(data),
        "p50": round(q(0.50), 1),
        "p95": round(q(0.95), 1),
        "p99": round(q(0.99), 1),
        "max": round(data[-1], 1),
        "mean": round(sum(data) / len(data), 1),
    }


def _rate(n: int, seconds: float | None) -> float | None:
    return round(n / seconds, 1) if seconds and seconds > 0 else None


# ------------------------------------------------------------------- pieces


def event_id_of(record: SimulatedRecord) -> str | None:
    """The event id of a record that will be processed as new (not a resend)."""
    if record.kind not in ("clean", "late"):
        return None
    try:
        value = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    event_id = value.get("event_id") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def admitted_count(records: Sequence[SimulatedRecord], settings: Settings, ts_ms: int) -> int:
    policy = ingest_policy(settings)
    meta = RecordMeta(settings.topic("touchpoints"), 0, 0, ts_ms)
    return sum(not isinstance(admit(r.value, meta, policy), DeadLetter) for r in records)


_LOG_LEVEL = re.compile(r"\[(WARNING|ERROR|CRITICAL)\]|^(Traceback|\w+Error:)")


def log_issues(path: Path) -> dict[str, Any]:
    """Warnings and errors in a process log: counts and a few distinct examples."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    counts: dict[str, int] = {}
    examples: list[str] = []
    seen: set[str] = set()
    for line in lines:
        match = _LOG_LEVEL.search(line)
        if not match:
            continue
        kind = match.group(1) or "traceback"
        counts[kind] = counts.get(kind, 0) + 1
        text = re.sub(r"^\[[^\]]*\] \[\d+\] ", "", line)[:300]
        shape = re.sub(r"\d+", "N", text)[:120]
        if shape not in seen and len(examples) < 8:
            seen.add(shape)
            examples.append(text)
    return {"counts": counts, "examples": examples}


async def produce_all(bootstrap: str, topic: str, records: Sequence[SimulatedRecord]) -> float:
    """Produce every record (acks=all) and wait for all acknowledgements; seconds taken."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, client_id="jf-bench-producer"
    )
    await producer.start()
    started = time.monotonic()
    try:
        futures = []
        for i, r in enumerate(records, 1):
            futures.append(await producer.send(topic, r.value, key=r.key))
            if i % 10_000 == 0:
                say(f"  produced {i}/{len(records)} to {topic}")
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def wait_accounted(
    offsets: Offsets,
    group: str,
    expect: dict[str, int],
    *,
    timeout: float,
    proc: Proc,
    what: str,
    stall: float = 90.0,
) -> float:
    """Wait until ``group`` has committed, on each topic, its end offset, and each
    topic's end offsets add up to at least the expected count. Returns the
    wall-clock time (epoch seconds) at which that was first observed.

    Gives up (BenchError) when the process exits, logs a crashed agent, makes no
    progress for ``stall`` seconds, or runs past ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_report = last_check = last_progress = loop.time()
    best = -1
    while True:
        if not proc.alive():
            raise BenchError(
                f"{what}: the process exited before every input was accounted for:\n"
                f"{proc.log_tail()}"
            )
        committed = await offsets.committed(group)
        total = sum(committed.get(topic, 0) for topic in expect)
        if total >= best + 10:
            best, last_progress = total, loop.time()
        done = True
        progress = []
        for topic, expected in expect.items():
            end = await offsets.ends(topic)
            got = committed.get(topic, 0)
            short = topic.rsplit(".", 1)[-1].rsplit("-", 3)[-1]
            progress.append(f"{short} {got}/{max(end, expected)}")
            if end < expected or got < end:
                done = False
        if done:
            return time.time()
        now = loop.time()
        if now - last_check >= 2.0:
            last_check = now
            crash = proc.crash_line()
            if crash:
                raise BenchError(f"{what}: the worker logged a crash: {crash}")
        if now > deadline:
            raise BenchError(f"{what}: not accounted for within {timeout:.0f}s ({progress})")
        if now - last_progress > stall:
            raise BenchError(
                f"{what}: no progress for {stall:.0f}s ({', '.join(progress)}):\n{proc.log_tail()}"
            )
        if now - last_report >= 5.0:
            say(f"  {what}: committed {', '.join(progress)}")
            last_report = now
        await asyncio.sleep(POLL)


def routed_event_id(value: bytes | None) -> str | None:
    """The event id of an event entering identity resolution (a One-ID
    ``route`` message) on the internal topic; None for anything else (the
    protocol's other messages, idle ticks)."""
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        msg = orjson.loads(value or b"null")
        if msg.get("kind") == "route":
            eid = msg["event"].get("event_id")
            return eid if isinstance(eid, str) else None
    return None


async def rekeyed_stats(ns: Namespace) -> dict[str, Any]:
    """Records on the internal topic: events entering identity resolution, and
    anything else the worker puts there (One-ID messages, idle-tick records),
    and event ids sent more than once."""
    records = await read_topic(ns.bootstrap, ns.keyed)
    ids: dict[str, int] = {}
    other = 0
    for r in records:
        eid = routed_event_id(r.value)
        if isinstance(eid, str):
            ids[eid] = ids.get(eid, 0) + 1
        else:
            other += 1
    return {
        "records": len(records),
        "event_records": len(records) - other,
        "non_event_records": other,
        "distinct_event_ids": len(ids),
        "event_ids_more_than_once": sum(n > 1 for n in ids.values()),
    }


# ------------------------------------------------------------------- analysis


def _event_ids(value: bytes | None) -> frozenset[str] | None:
    """The event ids a journeys table record remembers: a page of a window
    (v8: ``[[ms, event_id, source], ...]``, ``streams.core.window``), a
    journey's ``recent`` (v3-v7: the same entries) or ``recent_event_ids``
    (v1-v2); empty for a tombstone, None when the value is neither."""
    if value is None:
        return frozenset()
    try:
        state = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if isinstance(state, list):
        state = {"recent": state}
    if not isinstance(state, dict):
        return None
    recent = state.get("recent")
    if isinstance(recent, list):
        return frozenset(
            e[1] for e in recent if isinstance(e, list) and len(e) > 1 and isinstance(e[1], str)
        )
    ids = state.get("recent_event_ids")
    if isinstance(ids, list):
        return frozenset(str(e) for e in ids)
    return None


def _parse_time_ms(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


def journey_bytes(
    topic_records: dict[str, list[Record]],
    split: dict[str, dict[int, int]],
    events: int,
    admitted: int,
) -> dict[str, Any]:
    """Key + value bytes written to the journey topics during the closed loop
    (offsets below ``split``), per topic and in total."""
    per_topic: dict[str, Any] = {}
    total = 0
    for topic, records in topic_records.items():
        cut = split.get(topic, {})
        closed = [r for r in records if r.offset < cut.get(r.partition, 0)]
        size = sum(len(r.key or b"") + len(r.value or b"") for r in closed)
        total += size
        per_topic[topic] = {
            "records": len(closed),
            "records_by_offsets": sum(cut.values()),
            "tombstones": sum(r.value is None for r in closed),
            "bytes": size,
            "bytes_per_record": round(size / max(1, len(closed)), 1),
        }
    return {
        "topics": per_topic,
        "bytes": total,
        "bytes_per_input_event": round(total / max(1, events), 1),
        "bytes_per_admitted_event": round(total / max(1, admitted), 1),
        "note": "key + value bytes of the records written during the closed loop; "
        "records == records_by_offsets means no compaction had run",
    }


def first_writes(records: list[Record], split: dict[int, int]) -> dict[str, int]:
    """Event id -> timestamp of the first journey record (at or after ``split``)
    that wrote it.

    A record (a journey's, or a page of its window) writes every event id it
    lists that its key's previous record (in partition, offset order) did
    not hold: with batches,
    one record covers all of a key's events in the batch. Records before
    ``split`` only establish what each key held already. An id first seen
    under several keys (a merge carries the absorbed journey's ids to the
    survivor) keeps its earliest timestamp."""
    return _first_writes(records, split)[1]


def _first_writes(
    records: list[Record], split: dict[int, int]
) -> tuple[dict[str, int], dict[str, int]]:
    """:func:`first_writes` of the records before ``split``, and of those at or
    after it (ids written before ``split`` left out), in one pass."""
    before_split: dict[str, int] = {}
    after_split: dict[str, int] = {}
    held: dict[tuple[int, bytes | None], frozenset[str]] = {}
    empty: frozenset[str] = frozenset()
    # every partition's records before the split first: an id written before it is known
    # when the records after it are read (the order within each partition is kept)
    for r in sorted(
        records, key=lambda r: (r.offset >= split.get(r.partition, 0), r.partition, r.offset)
    ):
        ids = _event_ids(r.value)
        if ids is None:
            continue
        previous = held.get((r.partition, r.key), empty)
        held[r.partition, r.key] = ids
        ts = r.timestamp_ms
        if r.offset < split.get(r.partition, 0):
            for eid in ids - previous:
                known = before_split.get(eid)
                if known is None or ts < known:
                    before_split[eid] = ts
        else:
            for eid in ids - previous:
                known = after_split.get(eid)
                if (known is None or ts < known) and eid not in before_split:
                    after_split[eid] = ts
    return before_split, after_split


def add_latency(
    phases: list[dict[str, Any]],
    levels: list[Level],
    send_times: dict[str, int],
    writes: dict[str, int],
    outputs: list[Record],
    occurred: dict[str, int],
    rekeyed: dict[str, int] | None = None,
) -> None:
    """Journey-write and output latency percentiles (ms) per phase, in place.

    Outputs are split: ``immediate`` ones were decided at their cause's own event
    time (the event itself triggered them); ``deferred`` ones (reminders) fire
    later from the partition clock, so their delay is by design."""
    by_cause: dict[str, list[dict[str, Any]]] = {}
    for r in outputs:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            value = orjson.loads(r.value or b"null")
            cause = value.get("cause_event_id")
            if isinstance(cause, str) and cause in send_times:
                value["_ts"] = r.timestamp_ms
                by_cause.setdefault(cause, []).append(value)
    for phase, level in zip(phases, levels, strict=True):
        ids = [e for e in level.event_ids if e is not None]
        lat = [writes[e] - send_times[e] for e in ids if e in writes and e in send_times]
        immediate: list[float] = []
        deferred: list[float] = []
        by_rule: dict[str, list[float]] = {}
        for e in ids:
            for out in by_cause.get(e, ()):
                emitted = _parse_time_ms(out.get("emitted_at")) or out["_ts"]
                ms = emitted - send_times[e]
                decided = _parse_time_ms(out.get("decided_at"))
                if decided is not None and abs(decided - occurred.get(e, decided)) <= 1:
                    immediate.append(ms)
                else:
                    deferred.append(ms)
                by_rule.setdefault(str(out.get("rule_id")), []).append(ms)
        phase["new_events"] = len(ids)
        phase["latency_ms_to_journey_write"] = percentiles(lat)
        if rekeyed is not None:  # input -> re-keyed record, re-keyed record -> journey write
            hop1 = [rekeyed[e] - send_times[e] for e in ids if e in rekeyed and e in send_times]
            hop2 = [writes[e] - rekeyed[e] for e in ids if e in rekeyed and e in writes]
            phase["latency_ms_input_to_rekeyed_record"] = percentiles(hop1)
            phase["latency_ms_rekeyed_record_to_journey_write"] = percentiles(hop2)
        phase["events_without_journey_write"] = len(ids) - len(lat)
        phase["latency_ms_to_output_immediate"] = percentiles(immediate)
        phase["latency_ms_to_output_deferred"] = percentiles(deferred)
        phase["latency_ms_to_output_by_rule"] = {
            rule: percentiles(v) for rule, v in sorted(by_rule.items())
        }


# ------------------------------------------------------------------- the run


class Run:
    def __init__(self, cfg: BenchConfig) -> None:
        self.cfg = cfg
        self.workdir = Path(tempfile.mkdtemp(prefix="jf-bench-"))
        self.procs: list[Proc] = []
        self.spies: list[PySpy] = []
        self.broker_dir: Path | None = None
        self.broker_pid: int | None = None
        self.notes: list[str] = []
        self.bootstrap = ""
        self.results: dict[str, Any] = {}

    def cleanup(self) -> None:
        for spy in self.spies:
            with contextlib.suppress(Exception):
                spy.stop(timeout=10)
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.stop(timeout=30)
        if self.broker_dir is not None:
            say("stopping the private broker")
            with contextlib.suppress(Exception):
                broker.stop(data_dir=self.broker_dir)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def watch(self, target: Target) -> CpuWatch:
        return CpuWatch({target.name: target.proc.pid, "broker": self.broker_pid}).start()

    # ---------------------------------------------------------------- targets

    async def start_worker(self, ns: Namespace, label: str) -> tuple[Target, int, float, float]:
        """Start a worker; (target, web port, spawn time, ready time)."""
        port = broker.free_port()
        env = ns.env(
            JOURNEYFLOW_WEB_PORT=str(port),
            JOURNEYFLOW_DATA_DIR=str(self.workdir / f"{label}-data"),
        )
        cmd = [sys.executable, "-m", "streams.cli", "worker"]
        proc = Proc(label, cmd, env, self.workdir / f"{label}.log")
        self.procs.append(proc)
        t_spawn = time.time()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 180
        while True:
            if not proc.alive():
                raise BenchError(f"{label} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
            if await asyncio.to_thread(worker_ready, port):
                break
            if loop.time() > deadline:
                raise BenchError(f"{label} not ready within 180s:\n{proc.log_tail()}")
            await asyncio.sleep(0.1)
        t_ready = time.time()
        target = Target(
            name="worker",
            proc=proc,
            group=ns.app_id,
            input_topic=ns.touchpoints,
            expect=lambda events, admitted: {ns.touchpoints: events, ns.keyed: admitted},
            journey_topics=[],  # found after the run (every <app id>-*-changelog)
            latency_topic=ns.journeys_changelog,
            output_topics=ns.outputs,
            rekeyed_topic=ns.keyed,
        )
        return target, port, t_spawn, t_ready

    async def start_baseline(self, ns: Namespace) -> tuple[Target, float]:
        group = f"{ns.app_id}-baseline"
        state_topic = ns.topic("bench-baseline-state")
        output_topic = ns.topic("bench-baseline-outputs")
        dlq_topic = ns.topic("bench-baseline-dlq")
        await create_topics(ns.bootstrap, [output_topic, dlq_topic], ns.partitions)
        # compacted as a changelog is, but not while the run reads it back: the
        # log cleaner removed the first writes of most events once a segment
        # rolled (every event rewrites a whole state), which made the
        # baseline's latencies tens of seconds and its bytes per event tiny
        state_config = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(DAY_MS)}
        await create_topics(ns.bootstrap, [state_topic], ns.partitions, state_config)
        cmd = [sys.executable, "-m", "bench.baseline", "--topic", ns.touchpoints]
        cmd += ["--group", group, "--state-topic", state_topic]
        cmd += ["--output-topic", output_topic, "--dlq-topic", dlq_topic]
        proc = Proc("baseline", cmd, ns.env(), self.workdir / "baseline.log", stdout_pipe=True)
        self.procs.append(proc)
        assert proc.popen.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.popen.stdout.readline), 120)
        except TimeoutError:
            raise BenchError(f"baseline not ready within 120s:\n{proc.log_tail()}") from None
        if line.strip() != b"READY":
            raise BenchError(f"baseline did not start ({line!r}):\n{proc.log_tail()}")
        target = Target(
            name="baseline",
            proc=proc,
            group=group,
            input_topic=ns.touchpoints,
            expect=lambda events, admitted: {ns.touchpoints: events},
            journey_topics=[state_topic],
            latency_topic=state_topic,
            output_topics=[output_topic],
        )
        return target, time.time()

    # ---------------------------------------------------------------- phases

    async def closed_loop(
        self, target: Target, offsets: Offsets, t_ready: float, events: int, admitted: int
    ) -> tuple[dict[str, Any], float]:
        """Wait until ``events`` inputs are accounted for; (result, done time)."""
        watch = self.watch(target)
        t_done = await wait_accounted(
            offsets,
            target.group,
            target.expect(events, admitted),
            timeout=self.cfg.timeout,
            proc=target.proc,
            what=f"{target.proc.name} closed loop",
        )
        cpu = watch.stop()
        elapsed = t_done - t_ready
        return {
            "events": events,
            "seconds": round(elapsed, 3),
            "events_per_s": _rate(events, elapsed),
            "cpu_cores": cpu,
        }, t_done

    async def snapshot(self, target: Target, offsets: Offsets, app_id: str | None) -> None:
        """End offsets of the journey topics: what the closed loop wrote lies below."""
        await asyncio.sleep(2.0)  # any write still in flight from the closed loop lands
        if app_id is not None:
            topics = await offsets.admin.list_topics()
            # <app id>-<table>-changelog; not those of the other namespaces, whose app
            # ids extend this one (<app id>-b-..., <app id>-p-...)
            target.journey_topics = sorted(
                t
                for t in topics
                if t.startswith(f"{app_id}-")
                and t.endswith("-changelog")
                and "-" not in t[len(app_id) + 1 : -len("-changelog")]
            )
        for topic in target.journey_topics:
            target.split[topic] = await offsets.end_offsets(topic)
        target.disk_bytes = self.disk_bytes(target.journey_topics)

    def disk_bytes(self, topics: list[str]) -> dict[str, int] | None:
        """Bytes of the topics' log segments on the private broker's disk (record
        batches as produced, compressed or not; None with an external broker)."""
        if self.broker_dir is None:
            return None
        data = self.broker_dir / "data"
        return {
            t: sum(f.stat().st_size for f in data.glob(f"{t}-*/*.log") if f.is_file())
            for t in topics
        }

    async def open_loop(
        self,
        target: Target,
        offsets: Offsets,
        levels: list[Level],
        events_before: int,
        admitted_before: int,
    ) -> list[dict[str, Any]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=offsets.bootstrap,
            acks="all",
            linger_ms=0,
            client_id="jf-bench-open-loop",
        )
        await producer.start()
        phases: list[dict[str, Any]] = []
        events, admitted = events_before, admitted_before
        try:
            for lv in levels:
                n = len(lv.records)
                say(
                    f"{target.proc.name} open loop: {lv.level:.2f} x max = {lv.rate:.0f} events/s "
                    f"for {self.cfg.duration:.0f}s ({n} events)"
                )
                watch = self.watch(target)
                t0_wall = time.time() + 0.1
                t0 = time.monotonic() + 0.1
                max_lag = 0.0
                futures = []
                i = 0
                while i < n:
                    now = time.monotonic()
                    due = min(n, int((now - t0) * lv.rate) + 1) if now >= t0 else 0
                    if due > i:
                        max_lag = max(max_lag, now - (t0 + i / lv.rate))
                    while i < due:
                        sched_ms = int((t0_wall + i / lv.rate) * 1000)
                        r = lv.records[i]
                        futures.append(
                            await producer.send(
                                target.input_topic, r.value, key=r.key, timestamp_ms=sched_ms
                            )
                        )
                        eid = lv.event_ids[i]
                        if eid is not None and eid not in target.send_times:
                            target.send_times[eid] = sched_ms
                        i += 1
                    if i < n:
                        wait = t0 + i / lv.rate - time.monotonic()
                        await asyncio.sleep(max(0.0, min(0.005, wait)))
                await asyncio.gather(*futures)
                t_sent = time.time()
                events += n
                admitted += lv.admitted
                t_drained = await wait_accounted(
                    offsets,
                    target.group,
                    target.expect(events, admitted),
                    timeout=max(60.0, 6 * self.cfg.duration),
                    proc=target.proc,
                    what=f"{target.proc.name} open loop {lv.level:.2f}",
                )
                phases.append(
                    {
                        "level": lv.level,
                        "target_events_per_s": round(lv.rate, 1),
                        "events": n,
                        "admitted": lv.admitted,
                        "achieved_send_rate": _rate(n, t_sent - t0_wall),
                        "max_producer_lag_ms": round(max_lag * 1000, 1),
                        "events_ahead_of_produce_time": lv.ahead_of_now,
                        "drained_s_after_last_send": round(t_drained - t_sent, 2),
                        "cpu_cores": watch.stop(),
                    }
                )
                await asyncio.sleep(1.5)  # a commit interval between levels
        finally:
            await producer.stop()
        return phases

    async def read_back(
        self,
        target: Target,
        phases: list[dict[str, Any]],
        levels: list[Level],
        occurred: dict[str, int],
        events: int,
        admitted: int,
    ) -> dict[str, Any]:
        bootstrap = self.bootstrap
        records = {t: await read_topic(bootstrap, t) for t in target.journey_topics}
        stats = journey_bytes(records, target.split, events, admitted)
        if target.disk_bytes is not None:
            on_disk = sum(target.disk_bytes.values())
            stats["on_disk"] = {
                "topics": target.disk_bytes,
                "bytes": on_disk,
                "bytes_per_input_event": round(on_disk / max(1, events), 1),
                "note": "log segment bytes on the private broker at the end of the closed "
                "loop: record batches as the producer compressed them, with their headers",
            }
        latency_records = records.get(target.latency_topic, [])
        closed_cut = target.split.get(target.latency_topic, {})
        # when the last closed-loop event was applied: the latest first write of an event
        # (later rewrites, e.g. a reminder fired by a tick, do not count)
        applied, writes = _first_writes(latency_records, closed_cut)
        stats["last_closed_loop_write_ms"] = max(applied.values(), default=None)
        if phases:
            outputs: list[Record] = []
            for topic in target.output_topics:
                outputs.extend(await read_topic(bootstrap, topic))
            rekeyed = None
            if target.rekeyed_topic:
                rekeyed = {}
                for r in await read_topic(bootstrap, target.rekeyed_topic):
                    eid = routed_event_id(r.value)
                    if eid in target.send_times and eid not in rekeyed:
                        rekeyed[eid] = r.timestamp_ms
            add_latency(phases, levels, target.send_times, writes, outputs, occurred, rekeyed)
        return stats


async def profile_run(
    run: Run, ns: Namespace, offsets: Offsets, exe: str, n: int, n_admitted: int
) -> dict[str, Any]:
    """A closed loop of a fresh worker with py-spy attached. A failure here (e.g. the
    worker crashes) is recorded in the results instead of ending the benchmark."""
    tool = (
        "py-spy record --nonblocking --gil --threads --rate 100 "
        "(samples of the thread holding the interpreter lock only: time on the CPU in Python)"
    )
    prof, _, _, p_ready = await run.start_worker(ns, "worker-profiled")
    raw_path = run.workdir / "worker-profile.txt"
    spy = PySpy(exe, prof.proc.pid, raw_path)
    run.spies.append(spy)
    try:
        pc, _ = await run.closed_loop(prof, offsets, p_ready, n, n_admitted)
    except BenchError as exc:
        say(f"  profiled run failed: {exc}")
        spy.stop()
        prof.proc.stop()
        return {"tool": tool, "error": str(exc), "log": log_issues(prof.proc.log_path)}
    if not spy.stop():
        run.notes.append(f"py-spy wrote no samples: {spy.log_tail()}")
    prof.proc.stop()
    summary = summarise(raw_path) if raw_path.exists() else {"samples": 0}
    say(f"  profiled worker: {pc['events_per_s']} events/s")
    return {"tool": tool, "closed_loop_under_profiler": pc, **summary}


#: Outcomes of ``journeyflow_events_total`` that account for an input record once
#: (``redelivered``, a record applied again after a rebalance or crash, is extra).
ACCOUNTING_OUTCOMES = ("processed", "duplicate", "erased", "dead_lettered")
#: The burst's wait grows past the closed loop's timeout by 1 s per this many events.
BURST_EVENTS_PER_TIMEOUT_S = 250


def outcome_counts(counters: dict[str, float]) -> dict[str, int]:
    """``journeyflow_events_total`` by outcome, from :func:`scrape_counters`."""
    out: dict[str, int] = {}
    for name, value in counters.items():
        match = re.fullmatch(r'journeyflow_events_total\{outcome="([^"]+)"\}', name)
        if match:
            out[match.group(1)] = int(value)
    return out


async def burst_run(run: Run, ns: Namespace, offsets: Offsets) -> dict[str, Any]:
    """A flash-sale backlog (:mod:`bench.burst`) pre-produced to ``ns``, then a
    fresh worker started on it: seconds from its start until every input is
    accounted for, its peak RSS, and its own outcome counters against the
    input. A failure (e.g. the worker crashes under the burst) is recorded in
    the results instead of ending the benchmark."""
    cfg = run.cfg
    n = cfg.burst_events
    say(
        f"burst: {n} flash-sale events (Zipf s={burst.ZIPF_EXPONENT} over {cfg.customers} "
        f"customers, {burst.HOT_SHARE:.0%} in live room {burst.HOT_ROOM})"
    )
    # event time ends well before the records are produced (as the closed loop's)
    span = 1.2 * burst.event_time_span(n) + 600
    start = datetime.now(UTC) - timedelta(seconds=span)
    records, shape = await asyncio.to_thread(burst.generate, n, cfg.seed, cfg.customers, start)
    settings = ns.settings()
    now_ms = int(time.time() * 1000)
    admitted = await asyncio.to_thread(admitted_count, records, settings, now_ms)
    shape["admitted"] = admitted
    shape["ahead_of_produce_time"] = sum(r.occurred_at.timestamp() * 1000 > now_ms for r in records)
    result: dict[str, Any] = {
        "what": "a flash-sale backlog (bench/burst.py: streams.simulate records with "
        "Zipf-distributed customers, plus one hot live room's events) produced before a "
        "fresh worker starts (own namespace and app id, empty data folder); timed from "
        "the worker's start until its group committed the end offsets of touchpoints and "
        "of the re-keyed topic, and the latter holds a record per admitted input",
        "input": shape,
    }
    await ensure_topics(settings)
    say(f"  producing {n} burst events to {ns.touchpoints}")
    produce_s = await produce_all(run.bootstrap, ns.touchpoints, records)
    shape["produce_events_per_s"] = _rate(n, produce_s)
    del records  # the worker reads them from Kafka; the harness need not hold them

    say("  starting a fresh worker on the burst")
    try:
        worker, port, t_spawn, t_ready = await run.start_worker(ns, "worker-burst")
    except BenchError as exc:
        say(f"  burst failed: {exc}")
        return {**result, "error": str(exc)}
    rss = burst.RssWatch(worker.proc.pid).start()  # its first sample: at /readyz 200
    cpu = run.watch(worker)
    timeout = max(cfg.timeout, n / BURST_EVENTS_PER_TIMEOUT_S)
    say(f"  worker ready after {t_ready - t_spawn:.1f}s; draining {n} events")
    try:
        t_done = await wait_accounted(
            offsets,
            worker.group,
            worker.expect(n, admitted),
            timeout=timeout,
            proc=worker.proc,
            what="burst",
        )
    except BenchError as exc:
        say(f"  burst failed: {exc}")
        result.update(cpu_cores=cpu.stop(), **await rss.stop())
        if worker.proc.alive():
            result["worker_counters"] = await asyncio.to_thread(scrape_counters, port)
        worker.proc.stop()
        return {**result, "error": str(exc), "log": log_issues(worker.proc.log_path)}
    cpu_cores = cpu.stop()
    memory = await rss.stop()
    # the counters are counted when a batch is done, the offsets committed after it:
    # give a last batch's counts a moment to show
    outcomes: dict[str, int] = {}
    counters: dict[str, float] = {}
    for _ in range(20):
        counters = await asyncio.to_thread(scrape_counters, port)
        outcomes = outcome_counts(counters)
        if sum(outcomes.get(k, 0) for k in ACCOUNTING_OUTCOMES) >= n:
            break
        await asyncio.sleep(0.5)
    first_keyed = await first_timestamp(run.bootstrap, ns.keyed)
    t_first = min(t_ready, first_keyed / 1000) if first_keyed else t_ready
    worker.proc.stop()

    accounted = sum(outcomes.get(k, 0) for k in ACCOUNTING_OUTCOMES)
    batches = counters.get("journeyflow_batch_seconds_count") or 0
    result.update(
        {
            "events": n,
            "admitted": admitted,
            "seconds": round(t_done - t_spawn, 3),
            "events_per_s": _rate(n, t_done - t_spawn),
            "startup_seconds": round(t_ready - t_spawn, 2),
            "drain_seconds": round(t_done - t_first, 3),
            "drain_events_per_s": _rate(n, t_done - t_first),
            "drain_from": "the worker's first re-keyed record"
            if t_first < t_ready
            else "/readyz 200",
            "cpu_cores": cpu_cores,
            **memory,
            "accounting": {
                "input": n,
                **{k: outcomes.get(k, 0) for k in ACCOUNTING_OUTCOMES},
                "redelivered": outcomes.get("redelivered", 0),
                "accounted": accounted,
                "all_accounted": accounted == n,
                "dead_lettered_at_admission_expected": n - admitted,
                "note": "processed + duplicate + erased + dead_lettered from the worker's "
                "journeyflow_events_total, against the records produced; redelivered "
                "(applied again after a rebalance) is not an input of its own",
            },
            "mean_batch_records": round(
                (counters.get("journeyflow_batch_records_sum") or 0) / batches, 1
            )
            if batches
            else None,
            "worker_counters": counters,
            "log": log_issues(worker.proc.log_path),
        }
    )
    if accounted != n:
        run.notes.append(
            f"burst: the worker's counters account for {accounted} of {n} inputs ({outcomes})"
        )
    say(
        f"  burst: {n} events in {result['seconds']}s from the worker's start "
        f"({result['events_per_s']} events/s; drain {result['drain_events_per_s']} events/s), "
        f"peak RSS {memory['peak_rss_mib']} MiB, accounted {accounted}/{n}"
    )
    return result


async def broker_limit(run: Run, ns: Namespace, mean_bytes: float) -> dict[str, Any]:
    """Kafka's own producer and consumer performance tools against the broker
    (:mod:`bench.brokerperf`). A failure is recorded, not raised."""
    records = max(run.cfg.events, brokerperf.MIN_RECORDS)
    size = max(1, round(mean_bytes))
    say(f"broker limit: Kafka's perf tools, {records} records of {size} B, acks=all")
    try:
        out = await brokerperf.measure(
            run.bootstrap,
            ns.topic("bench-broker-limit"),
            ns.partitions,
            size,
            records,
            run.workdir,
            run.broker_pid,
        )
    except (brokerperf.ToolError, JourneyflowError, OSError) as exc:
        say(f"  broker limit failed: {exc}")
        return {"error": str(exc)}
    say(
        f"  broker limit: produce {out['produce']['records_per_s']:.0f} records/s, "
        f"consume {out['consume']['records_per_s']:.0f} records/s"
    )
    return out


async def _run(run: Run) -> dict[str, Any]:
    cfg = run.cfg
    results: dict[str, Any] = {
        "schema": "journeyflow-bench/1",
        "command": " ".join(cfg.command),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(REPO),
        "machine": {**machine(), "loadavg_at_start": os.getloadavg()},
    }
    run.results = results  # what is known so far is saved even if a later phase fails
    if cfg.bootstrap:
        bootstrap = cfg.bootstrap
        kafka_version = "external broker (version not probed)"
    else:
        run.broker_dir = run.workdir / "kafka"
        say(f"starting a private Kafka {broker.KAFKA_VERSION} broker in {run.broker_dir}")
        bootstrap = await asyncio.to_thread(
            broker.start, port=broker.free_port(), data_dir=run.broker_dir, timeout=120
        )
        run.broker_pid = broker.status(data_dir=run.broker_dir).pid
        kafka_version = broker.KAFKA_VERSION
        say(f"broker ready at {bootstrap}")
    run.bootstrap = bootstrap
    results["versions"] = versions(kafka_version)

    tag = uuid.uuid4().hex[:8]
    extra = cfg.worker_settings
    ns = Namespace(
        bootstrap, f"bench{tag}", f"jf-bench-{tag}", cfg.partitions, cfg.guarantee, extra
    )
    ns_base = Namespace(bootstrap, f"bench{tag}b", f"jf-bench-{tag}-b", cfg.partitions)
    ns_prof = Namespace(
        bootstrap, f"bench{tag}p", f"jf-bench-{tag}-p", cfg.partitions, cfg.guarantee, extra
    )
    ns_burst = Namespace(
        bootstrap, f"bench{tag}x", f"jf-bench-{tag}-x", cfg.partitions, cfg.guarantee, extra
    )
    settings = ns.settings()
    n = cfg.events

    # Event time: far enough back that the closed loop and every open-loop level
    # (at up to OPEN_RATE_CAP events/s) lie before the moment they are produced.
    sim_config = SimulationConfig(seed=cfg.seed, customers=cfg.customers, start=datetime.now(UTC))
    open_budget = (sum(cfg.rates) if cfg.rates else sum(cfg.levels) * OPEN_RATE_CAP) * cfg.duration
    span = 1.6 * (n + open_budget) / sim_config.events_per_second + 600
    start = datetime.now(UTC) - timedelta(seconds=span)
    sim_config = SimulationConfig(seed=cfg.seed, customers=cfg.customers, start=start)
    sim: Iterator[SimulatedRecord] = simulate(sim_config)
    say(f"simulating {n} events (seed {cfg.seed}, {cfg.customers} customers)")
    closed = list(itertools.islice(sim, n))
    occurred: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for r in closed:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    results["config"] = {
        "events": n,
        "seed": cfg.seed,
        "customers": cfg.customers,
        "dirty_share": sim_config.dirty_share,
        "simulated_events_per_s_of_event_time": sim_config.events_per_second,
        "event_time_start": start.isoformat(timespec="seconds"),
        "levels": [] if cfg.rates else list(cfg.levels),
        "rates": list(cfg.rates),
        "open_loop_seconds_per_level": cfg.duration,
        "partitions": cfg.partitions,
        "store": "rocksdb",
        "processing_guarantee": cfg.guarantee,
        "worker_settings": dict(cfg.worker_settings),
        "burst_events": cfg.burst_events if cfg.burst else None,
        "worker_tick_interval_seconds": float(TICK_INTERVAL_SECONDS),
        "broker": "private (streams.broker, loopback)" if not cfg.bootstrap else "external",
        "quick": cfg.quick,
        "ignored_environment": sorted(
            k
            for k in os.environ
            if k.startswith("JOURNEYFLOW_") and k != "JOURNEYFLOW_KAFKA_BOOTSTRAP"
        ),
    }
    results["input"] = {
        "events": n,
        "by_kind": dict(sorted(kinds.items())),
        "bytes": sum(len(r.value) for r in closed),
        "mean_value_bytes": round(sum(len(r.value) for r in closed) / max(1, n), 1),
        "keyless": sum(r.key is None for r in closed),
        "ahead_of_produce_time": sum(r.occurred_at > datetime.now(UTC) for r in closed),
    }

    say("CPU ceiling: the batch protocol in process (LocalRuntime), one core, no Kafka")
    now_ms = int(time.time() * 1000)
    ceil = await asyncio.to_thread(ceiling.measure, [(r.value, now_ms) for r in closed], settings)
    results["ceiling"] = ceil
    n_admitted = ceil["admitted"]
    say(
        f"  ceiling: batch protocol {ceil['batch_protocol']['events_per_s']:.0f}/s "
        f"({ceil['batch_protocol']['us_per_event']:.0f} µs/event; "
        f"{ceil['small_batches']['us_per_event']:.0f} in batches of "
        f"{ceil['small_batches']['chunk']}); "
        f"core {ceil['core']['events_per_s']:.0f}/s, "
        f"core+codecs {ceil['core_and_codecs']['events_per_s']:.0f}/s "
        f"(first {ceil['core']['events']} events); {n_admitted} of {n} admitted"
    )

    spaces = [ns, ns_base, *([ns_prof] if cfg.profile else [])]
    for space in spaces:
        await ensure_topics(space.settings())
    for space in spaces:
        say(f"producing {n} events to {space.touchpoints}")
        produce_s = await produce_all(bootstrap, space.touchpoints, closed)
        results["input"].setdefault("produce_events_per_s", _rate(n, produce_s))

    async with Offsets(bootstrap) as offsets:
        # ------------------------------------------------------------ worker
        say("worker: closed loop")
        worker, port, t_spawn, t_ready = await run.start_worker(ns, "worker")
        say(f"  worker ready after {t_ready - t_spawn:.1f}s; processing {n} events")
        wc, _ = await run.closed_loop(worker, offsets, t_ready, n, n_admitted)
        first_keyed = await first_timestamp(bootstrap, ns.keyed)
        if first_keyed and first_keyed / 1000 < t_ready:  # it started before /readyz said so
            wc["seconds"] = round(wc["seconds"] + t_ready - first_keyed / 1000, 3)
            wc["events_per_s"] = _rate(n, wc["seconds"])
            t_ready = first_keyed / 1000
        wc["admitted"] = n_admitted
        wc["startup_seconds"] = round(t_ready - t_spawn, 2)
        wc["worker_counters"] = await asyncio.to_thread(scrape_counters, port)
        wc["rekeyed_topic"] = await rekeyed_stats(ns)
        say(f"  worker: {wc['events_per_s']} events/s ({wc['seconds']}s)")
        results["worker"] = {"closed_loop": wc}
        await run.snapshot(worker, offsets, ns.app_id)

        levels: list[Level] = []
        throughput = wc["events_per_s"] or 0.0
        wanted = (
            [(r / throughput if throughput else 0.0, r) for r in cfg.rates]
            if cfg.rates
            else [(level, level * throughput) for level in cfg.levels]
        )
        for level, wanted_rate in wanted:
            rate = min(wanted_rate, OPEN_RATE_CAP)
            count = max(1, int(rate * cfg.duration))
            records = list(itertools.islice(sim, count))
            now_ms = int(time.time() * 1000)
            levels.append(
                Level(
                    level=level,
                    rate=rate,
                    records=records,
                    event_ids=[event_id_of(r) for r in records],
                    admitted=admitted_count(records, settings, now_ms),
                    ahead_of_now=sum(r.occurred_at.timestamp() * 1000 > now_ms for r in records),
                )
            )
            for r, eid in zip(records, levels[-1].event_ids, strict=True):
                if eid is not None:
                    occurred.setdefault(eid, int(r.occurred_at.timestamp() * 1000))
        wphases = await run.open_loop(worker, offsets, levels, n, n_admitted) if levels else []
        wc["worker_counters_at_end"] = await asyncio.to_thread(scrape_counters, port)
        worker.proc.stop()
        wc["log"] = log_issues(worker.proc.log_path)

        # ---------------------------------------------------------- baseline
        say("baseline: raw aiokafka loop, closed loop")
        base, t_bready = await run.start_baseline(ns_base)
        bc, _ = await run.closed_loop(base, offsets, t_bready, n, n_admitted)
        say(f"  baseline: {bc['events_per_s']} events/s ({bc['seconds']}s)")
        results["baseline"] = {"closed_loop": bc}
        await run.snapshot(base, offsets, None)
        bphases = await run.open_loop(base, offsets, levels, n, n_admitted) if levels else []
        base.proc.stop()
        assert base.proc.popen.stdout is not None
        tail = await asyncio.to_thread(base.proc.popen.stdout.read)
        for raw in tail.splitlines()[::-1]:
            with contextlib.suppress(orjson.JSONDecodeError):
                bc["counters"] = orjson.loads(raw).get("counts", {})
                break
        bc["log"] = log_issues(base.proc.log_path)

        # ---------------------------------------------------------- profile
        if cfg.profile:
            exe = find_py_spy()
            if exe is None:
                run.notes.append("py-spy not found: no profile (pip install -e '.[test]')")
            else:
                say("profiled worker (py-spy attached): closed loop")
                results["profile"] = await profile_run(run, ns_prof, offsets, exe, n, n_admitted)

        # ------------------------------------------------------------- burst
        if cfg.burst:
            results["burst"] = await burst_run(run, ns_burst, offsets)

    # ------------------------------------------------------------- broker limit
    if cfg.broker_limit:
        results["broker_limit"] = await broker_limit(run, ns, results["input"]["mean_value_bytes"])

    say("reading back the journey and output topics")
    wstats = await run.read_back(worker, wphases, levels, occurred, n, n_admitted)
    last = wstats.pop("last_closed_loop_write_ms")
    if last:
        wc["seconds_to_last_journey_write"] = round(last / 1000 - t_ready, 3)
        wc["events_per_s_by_last_write"] = _rate(n, last / 1000 - t_ready)
    bstats = await run.read_back(base, bphases, levels, occurred, n, n_admitted)
    last = bstats.pop("last_closed_loop_write_ms")
    if last:
        bc["seconds_to_last_journey_write"] = round(last / 1000 - t_bready, 3)
        bc["events_per_s_by_last_write"] = _rate(n, last / 1000 - t_bready)

    results["worker"] = {
        "what": "python -m streams.cli worker (Faust, rocksdb store), "
        f"{cfg.partitions} partitions, JOURNEYFLOW_LOG_LEVEL=warning",
        "closed_loop": wc,
        "open_loop": wphases,
        "changelog": wstats,
    }
    results["baseline"] = {
        "what": "bench/baseline.py: raw aiokafka loop, admit + step with states as "
        "encode_state bytes in a dict; state records to a compacted topic, outputs and dead "
        "letters produced, acks=all, offsets committed per fetched batch; no re-keying hop, "
        "no timers table",
        "closed_loop": bc,
        "open_loop": bphases,
        "state_topic": bstats,
    }
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["notes"] = run.notes
    return results


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run the whole benchmark; returns the results (also written to cfg.output)."""
    # aiokafka logs every retry (e.g. leader elections right after topics are created)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    run = Run(cfg)

    async def main() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await _run(run)
        finally:
            await asyncio.to_thread(run.cleanup)

    output = cfg.output or RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = asyncio.run(main())
    except (Exception, KeyboardInterrupt, asyncio.CancelledError) as exc:
        if run.results:
            failed = output.with_suffix(".failed.json")
            partial = {
                **run.results,
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(),
                "notes": run.notes,
            }
            failed.write_bytes(orjson.dumps(partial, option=orjson.OPT_INDENT_2) + b"\n")
            say(f"partial results: {failed}")
        raise
    output.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    results["_output"] = str(output)
    return results
