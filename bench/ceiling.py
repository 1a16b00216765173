"""The CPU ceiling: the core's work per event in one process, no Kafka.

Two passes over the same input bytes the worker reads, each with a fresh
``dict`` of states, on one core:

- ``core``: ``ingest.admit`` + ``engine.step``, states kept as objects. The
  least work any deployment of this core can do per event.
- ``core_and_codecs``: also every encode/decode the worker does per event:
  the internal record (``Admitted.to_bytes`` / ``from_internal``, the
  re-keying hop's serialisation), the state (``decode_state`` /
  ``encode_state``, as the table stores bytes), dead letters and outputs
  (``schemas.codec.encode``). Everything the worker does except Kafka,
  Faust and RocksDB.

The first pass also counts outcomes; the harness uses them as the expected
totals (admitted events, dead letters, outputs) when it accounts for the
worker's and the baseline's work.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.codec import encode
from schemas.outputs import DeadLetter
from streams.config import core_config, ingest_policy
from streams.core.engine import step
from streams.core.ingest import Admitted, RecordMeta, admit
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.settings import Settings

#: (value bytes, Kafka record timestamp in ms)
Input = tuple[bytes, int]


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
    """Sizes of the final states (what one changelog record of each weighs now), and
    the mean bytes one remembered event id adds (the ``recent`` window)."""
    sizes = sorted(len(encode_state(st)) for st in states)
    if not sizes:
        return {}
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


def measure(inputs: Sequence[Input], settings: Settings) -> dict[str, Any]:
    """Run both passes; events/s counts every input (dead letters included)."""
    n = len(inputs)
    gc.collect()
    wall, cpu, counts = _core_pass(inputs, settings)
    gc.collect()
    wall2, cpu2 = _codec_pass(inputs, settings)
    return {
        "events": n,
        "core": {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "events_per_s": round(n / wall, 1),
            "us_per_event": round(wall / n * 1e6, 1),
        },
        "core_and_codecs": {
            "seconds": round(wall2, 3),
            "cpu_seconds": round(cpu2, 3),
            "events_per_s": round(n / wall2, 1),
            "us_per_event": round(wall2 / n * 1e6, 1),
        },
        **counts,
    }
