"""The CPU ceiling: the worker's work per event in one process, no Kafka.

Passes over the same input bytes the worker reads, each with fresh state, on
one core:

- ``batch_protocol`` (the headline): the worker's batch protocol in process,
  ``streams.runtime.LocalRuntime`` (``streams.batch.BatchEngine``) fed the
  raw touchpoint records in chunks of :data:`CHUNK` (``admit``, then ``run``
  until every One-ID message is handled), with the worker's batch limits.
  Internal-topic records are encoded as the topic carries them and read
  back through ``streams.batch.Messages``, as the worker reads them (a record
  this process sent is not decoded again); tables are dicts of the bytes the
  worker's tables store (each changed key encoded once per batch), and
  every output, merge and dead letter is stamped and encoded (every labelled
  example encoded) as the worker's sink does. Everything the worker does per
  event except Kafka, Faust and RocksDB: admission, One-ID, the journey
  engine, decisions, timers, the codecs.
- ``core``: ``ingest.admit`` + ``engine.step``, states kept as objects, keyed
  by the strongest identifier (no One-ID). The least work per event of the
  journey engine alone.
- ``core_and_codecs``: ``core`` plus the pre-batch worker's encodes and
  decodes per event (the re-keyed record, the state, outputs, dead letters).
- ``small_batches``: the same protocol on a journey state already built from
  :data:`SMALL_WARM_EVENTS` inputs (half of them when fewer; in chunks of
  :data:`CHUNK`, untimed), then the next :data:`SMALL_EVENTS` in chunks of
  :data:`SMALL_CHUNK`: about what one 20 ms fetch returns at 850 events/s.
  Against ``batch_protocol``,
  what small batches cost per event (per-batch work, and each event's
  journey encoded and its window scanned on its own instead of with its
  customer's other events of the batch). Not shown: a paced worker's
  caches may also have gone cold between its batches.

- ``codecs``: the codecs alone, timed call by call inside the ``core``
  loop: reading and validating the touchpoint, encoding its re-keyed record,
  the journey's record and page (once per event), outputs and dead letters.
  What any engine speaking these formats in Python pays per event before
  doing anything else.

``core``, ``core_and_codecs`` and ``codecs`` run on at most :data:`LEGACY_EVENTS` of the
inputs (they are kept for comparison with earlier results). The
``batch_protocol`` pass also counts outcomes; the harness uses them as the
expected totals (admitted events, dead letters, outputs) when it accounts
for the worker's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from models.trainer import encode_example
from schemas.codec import InvalidEvent, decode_touchpoint, encode
from schemas.outputs import DeadLetter
from streams import collector
from streams.batch import Batch, BatchLimits, Record
from streams.config import core_config, ingest_policy, oneid_config
from streams.core import window
from streams.core.engine import step
from streams.core.ingest import Admitted, RecordMeta, admit
from streams.core.journey import (
    JourneyState,
    decode_state,
    encode_record,
    encode_state,
    table_records,
)
from streams.core.oneid import Message, encode_message, route_event
from streams.runtime import LocalRuntime
from streams.settings import Settings

#: (value bytes, Kafka record timestamp in ms)
Input = tuple[bytes, int]
#: Touchpoint records handed to the batch protocol at a time (about one fetch).
CHUNK = 1000
#: Most inputs the ``core`` and ``core_and_codecs`` passes run on.
LEGACY_EVENTS = 20_000
#: Touchpoint records per batch in the ``small_batches`` pass.
SMALL_CHUNK = 17
#: Inputs that build the state the ``small_batches`` pass starts from (at most).
SMALL_WARM_EVENTS = 30_000
#: Inputs the ``small_batches`` pass times (at most).
SMALL_EVENTS = 8_000


class TopicRuntime(LocalRuntime):
    """``LocalRuntime`` with the worker's codecs: internal records travel as
    bytes (encoded when sent, decoded by the engine when read), and what the
    worker's sink encodes besides them (outputs and merges stamped with
    ``emitted_at``, dead letters) is encoded too."""

    def __post_init__(self) -> None:
        super().__post_init__()
        #: Touchpoints admitted (each becomes one ``route`` record on the internal topic).
        self.admitted = 0
        #: Bytes of the encoded outputs, merges and dead letters (keeps the work live).
        self.sent_bytes = 0
        #: Table -> [records, key + value bytes] written (what the worker's changelogs get).
        self.written: dict[str, list[int]] = {}

    async def write(self, batch: Batch) -> None:
        await super().write(batch)
        for tables in batch.changes().values():
            for name, changes in tables.items():
                tally = self.written.setdefault(name, [0, 0])
                tally[0] += len(changes)
                tally[1] += sum(len(k) + len(v or b"") for k, v in changes.items())

    def record(self, partition: int, offset: int, key: str, msg: Message) -> Record:
        raw = self.engine.messages.encode(msg)  # as the worker's sink encodes it
        return Record("keyed", "internal", partition, offset, key.encode(), raw)

    async def send(self, batch: Batch) -> None:
        await super().send(batch)
        if batch.records and batch.records[0].stream == "touchpoints":
            self.admitted += len(batch.messages)
        size = sum(len(encode(letter)) for letter in batch.dead_letters)
        if batch.merges or batch.outputs:
            now = datetime.now(UTC)
            for merge in batch.merges:
                size += len(encode(merge.model_copy(update={"emitted_at": now})))
            for output in batch.outputs:
                size += len(encode(output.model_copy(update={"emitted_at": now})))
        size += sum(len(encode_example(example)) for example in batch.examples)
        self.sent_bytes += size


def topic_runtime(settings: Settings) -> TopicRuntime:
    """A :class:`TopicRuntime` with the worker's configuration and batch
    limits, trusting what it decoded as the worker does."""
    rt = TopicRuntime(
        oneid_config(settings),
        settings.partitions,
        settings.timer_resolution_seconds * 1000,
        policy=ingest_policy(settings),
        limits=BatchLimits(
            settings.batch_max_records, settings.batch_max_ms, settings.decoded_cache
        ),
    )
    rt.engine.trust()
    return rt


async def feed(
    rt: LocalRuntime,
    inputs: Sequence[Input],
    settings: Settings,
    chunk: int = CHUNK,
    first: int = 0,
) -> None:
    """The raw touchpoint records through the batch protocol, ``chunk`` at a
    time (``first``: the offset of ``inputs[0]``)."""
    topic = settings.topic("touchpoints")
    for start in range(0, len(inputs), chunk):
        await rt.admit(
            [
                Record("touchpoints", topic, 0, offset, None, raw, ts)
                for offset, (raw, ts) in enumerate(inputs[start : start + chunk], first + start)
            ]
        )
        await rt.run()


def _batch_pass(
    inputs: Sequence[Input], settings: Settings, chunk: int = CHUNK
) -> tuple[float, float, dict[str, Any]]:
    """The worker's batch protocol in process (see the module docstring)."""
    rt = topic_runtime(settings)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(feed(rt, inputs, settings, chunk))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    outcomes = ("processed", "duplicate", "redelivered", "erased", "dead_lettered", "late")
    journeys = rt.customers()
    n = max(1, len(inputs))
    counts = {
        "tables_written": {
            name: {"records_per_event": round(r / n, 3), "bytes_per_event": round(b / n, 1)}
            for name, (r, b) in sorted(rt.written.items())
        },
        "state_bytes_at_end": _state_sizes(journeys.values()),
        "outcomes": {k: rt.counts[k] for k in outcomes if rt.counts.get(k)},
        "outputs": dict(sorted(Counter(o.kind for o in rt.outputs).items())),
        "merges": len(rt.merges),
        "admitted": rt.admitted,
        "customers": len(journeys),
        "aliases": len(rt.aliases),
        "counts": dict(sorted(rt.counts.items())),
    }
    return wall, cpu, counts


def _small_batch_pass(inputs: Sequence[Input], settings: Settings) -> tuple[int, int, float, float]:
    """``small_batches`` (see the module docstring): events that built the
    state, events timed, wall and CPU seconds."""
    warm = min(SMALL_WARM_EVENTS, len(inputs) // 2)
    timed = inputs[warm : warm + SMALL_EVENTS]
    rt = topic_runtime(settings)

    async def run() -> tuple[float, float]:
        await feed(rt, inputs[:warm], settings)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await feed(rt, timed, settings, SMALL_CHUNK, first=warm)
        return time.perf_counter() - wall0, time.process_time() - cpu0

    wall, cpu = asyncio.run(run())
    return warm, len(timed), wall, cpu


def _core_pass(inputs: Sequence[Input], settings: Settings) -> tuple[float, float, dict[str, Any]]:
    core = core_config(settings)
    policy = ingest_policy(settings)
    topic = settings.topic("touchpoints")
    states: dict[str, JourneyState] = {}
    outcomes: Counter[str] = Counter()
    outputs: Counter[str] = Counter()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for offset, (raw, ts) in enumerate(inputs):
        result = admit(raw, RecordMeta(topic, 0, offset, ts), policy)
        if isinstance(result, DeadLetter):
            outcomes["dead_lettered"] += 1
            continue
        stepped = step(states.get(result.customer_id), result, core)
        if stepped.state is None:
            states.pop(result.customer_id, None)
        else:
            states[result.customer_id] = stepped.state
        outcomes[stepped.outcome] += 1
        for out in stepped.outputs:
            outputs[out.kind] += 1
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    counts = {
        "state_bytes_at_end": _state_sizes(states.values()),
        "outcomes": dict(sorted(outcomes.items())),
        "outputs": dict(sorted(outputs.items())),
        "admitted": sum(n for k, n in outcomes.items() if k != "dead_lettered"),
        "customers": len(states),
    }
    return wall, cpu, counts


def _state_sizes(states: Any) -> dict[str, Any]:
    """Sizes of the final states (all of each journey: record, window and
    decision fields), of their journeys table records (what a change rewrites:
    no window, no decision fields), and the mean bytes one remembered event id
    adds (the ``recent`` window, kept in pages)."""
    states = list(states)
    sizes = sorted(len(encode_state(st)) for st in states)
    if not sizes:
        return {}
    records = sorted(len(table_records(st)[-1][1]) for st in states)  # the record comes last
    per_id: list[float] = []
    for st in states:
        recent = st.recent
        if recent and len(recent) >= 8:
            empty = st.model_copy(update={"recent": ()})
            per_id.append((len(encode_state(st)) - len(encode_state(empty))) / len(recent))
    return {
        "customers": len(sizes),
        "median": sizes[len(sizes) // 2],
        "p99": sizes[int(len(sizes) * 0.99)],
        "max": sizes[-1],
        "record_median": records[len(records) // 2],
        "record_p99": records[int(len(records) * 0.99)],
        "bytes_per_remembered_event_id": round(sum(per_id) / len(per_id), 1) if per_id else None,
    }


def _codec_pass(inputs: Sequence[Input], settings: Settings) -> tuple[float, float]:
    core = core_config(settings)
    policy = ingest_policy(settings)
    topic = settings.topic("touchpoints")
    states: dict[str, bytes] = {}
    sink = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for offset, (raw, ts) in enumerate(inputs):
        result = admit(raw, RecordMeta(topic, 0, offset, ts), policy)
        if isinstance(result, DeadLetter):
            sink += len(encode(result))
            continue
        internal = result.to_bytes()  # what the worker writes to the re-keyed topic
        admitted = Admitted.from_internal(internal, result.customer_id, result.source)
        raw_state = states.get(admitted.customer_id)
        stepped = step(decode_state(raw_state) if raw_state else None, admitted, core)
        if stepped.state is None:
            states.pop(admitted.customer_id, None)
        elif stepped.outcome != "redelivered":
            states[admitted.customer_id] = encoded = encode_state(stepped.state)
            sink += len(encoded)
        if stepped.outputs:
            now = datetime.now(UTC)
            for out in stepped.outputs:
                sink += len(encode(out.model_copy(update={"emitted_at": now})))
    return time.perf_counter() - wall0, time.process_time() - cpu0


def _codecs_within_core(inputs: Sequence[Input], settings: Settings) -> dict[str, Any]:
    """``codecs``: what the codecs alone cost per input, timed call by call
    inside the ``core`` loop (admit + step, no One-ID): the touchpoint read
    and validated (admission's decode), the re-keyed record encoded (the
    internal topic's ``route`` message), the journey's table record and the
    window page an event rewrites encoded once per event (as under paced
    traffic: one change per customer per batch), outputs and dead letters
    stamped and encoded. Decoding the internal record and the journey is
    left out (the worker keeps what it sent and what it decoded). A floor
    under any engine that speaks these formats in Python: what is left of
    the per-event budget for everything else."""
    core = core_config(settings)
    policy = ingest_policy(settings)
    topic = settings.topic("touchpoints")
    states: dict[str, JourneyState] = {}
    pages: dict[str, window.Pages] = {}
    spent: Counter[str] = Counter()
    clock = time.perf_counter
    for offset, (raw, ts) in enumerate(inputs):
        t0 = clock()
        with contextlib.suppress(InvalidEvent):
            decode_touchpoint(raw)
        spent["touchpoint_read"] += clock() - t0
        result = admit(raw, RecordMeta(topic, 0, offset, ts), policy)
        if isinstance(result, DeadLetter):
            t0 = clock()
            encode(result)
            spent["outputs_and_dead_letters"] += clock() - t0
            continue
        route = route_event(result)[1]
        t0 = clock()
        encode_message(route)
        spent["rekeyed_record"] += clock() - t0
        cid = result.customer_id
        stepped = step(states.get(cid), result, core)
        if stepped.state is None:
            states.pop(cid, None)
            pages.pop(cid, None)
        elif stepped.outcome != "redelivered":
            state = states[cid] = stepped.state
            stored = window.store(pages.get(cid, window.NO_PAGES), state.recent)
            pages[cid] = stored.pages
            t0 = clock()
            for entries in stored.write.values():
                window.encode_page(entries)
            encode_record(state, stored.pages.manifest)
            spent["journey_record_and_page"] += clock() - t0
        if stepped.outputs:
            t0 = clock()
            now = datetime.now(UTC)
            for out in stepped.outputs:
                encode(out.model_copy(update={"emitted_at": now}))
            spent["outputs_and_dead_letters"] += clock() - t0
    n = max(1, len(inputs))
    parts = {name: round(seconds / n * 1e6, 2) for name, seconds in sorted(spent.items())}
    return {
        "what": "the codecs alone, timed call by call inside admit + step (no One-ID): "
        "touchpoint read and validated, re-keyed record, journey record and page "
        "(once per event), outputs and dead letters; µs per input",
        "events": len(inputs),
        "us_per_event": round(sum(spent.values()) / n * 1e6, 1),
        "us_per_event_by_part": parts,
    }


def _timing(n: int, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "events": n,
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "events_per_s": round(n / wall, 1),
        "us_per_event": round(wall / n * 1e6, 1),
    }


def measure(inputs: Sequence[Input], settings: Settings) -> dict[str, Any]:
    """Run the passes; events/s counts every input (dead letters included).

    Top-level counts (``admitted``, ``outcomes``, ``outputs``, ...) are the
    ``batch_protocol`` pass's, over every input."""
    n = len(inputs)
    legacy = inputs[:LEGACY_EVENTS]
    gc.collect()
    with collector.tuned(settings.gc_threshold):  # as the worker runs
        wall, cpu, counts = _batch_pass(inputs, settings)
        gc.collect()
        warm, n_small, wall_small, cpu_small = _small_batch_pass(inputs, settings)
        gc.collect()
        wall_core, cpu_core, _ = _core_pass(legacy, settings)
        gc.collect()
        wall_codec, cpu_codec = _codec_pass(legacy, settings)
        gc.collect()
        codecs = _codecs_within_core(legacy, settings)
    return {
        "events": n,
        "batch_protocol": {
            "what": "streams.runtime.LocalRuntime (the worker's batch protocol: admission, "
            f"One-ID, journey engine, timers) fed raw touchpoints in chunks of {CHUNK}, "
            "internal records encoded/decoded as on the topic, tables as dicts of bytes, "
            "outputs/merges/dead letters encoded; one core, no Kafka",
            "chunk": CHUNK,
            **_timing(n, wall, cpu),
        },
        "small_batches": {
            "what": f"the batch protocol in chunks of {SMALL_CHUNK} (about a 20 ms fetch at "
            f"850 events/s), timed after {warm} events built the state",
            "chunk": SMALL_CHUNK,
            **_timing(n_small, wall_small, cpu_small),
        },
        "core": {
            "what": "ingest.admit + engine.step, states as objects, no One-ID",
            **_timing(len(legacy), wall_core, cpu_core),
        },
        "core_and_codecs": {
            "what": "core + the pre-batch worker's per-event encodes/decodes, no One-ID",
            **_timing(len(legacy), wall_codec, cpu_codec),
        },
        "codecs": codecs,
        **counts,
    }
