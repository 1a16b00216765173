"""``journeyflow replay``: the production logic, in process, over an NDJSON file.

No Kafka: each line is one input record (partition 0, offset = line number),
admitted, re-keyed to the journey partition Kafka's default partitioner
would pick for the customer id (``JOURNEYFLOW_PARTITIONS``), and stepped
through the same core, the same due-time index and the same per-partition
event-time clocks as the worker. Idle ticks are replaced by one final move
of every clock to ``until`` (default: the latest event time seen), so
reminders due by then fire.

Blank lines are skipped and counted (NDJSON cannot hold an empty record).
What "the same" means, and what the tests check: for an input the worker
reads from one touchpoints partition in file order, replay gives the same
final journeys and the same outputs (ids and payloads; ``emitted_at`` is
wall clock and left out). Differences by design: there is no Kafka record
timestamp, so the future-timestamp check does not apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

from schemas.codec import dump
from schemas.outputs import DeadLetter
from streams.config import core_config, ingest_policy
from streams.core.engine import step
from streams.core.ingest import RecordMeta, admit
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.core.rules import Output
from streams.settings import Settings
from streams.timer_index import TimerIndex


@dataclass
class ReplayResult:
    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    journeys: dict[str, JourneyState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def records(self) -> Iterable[dict[str, Any]]:
        """Everything as JSON-ready dicts: outputs, dead letters, then final
        profiles (``kind: journey``) sorted by customer id."""
        for output in self.outputs:
            yield dump(output)
        for letter in self.dead_letters:
            yield dump(letter)
        for customer_id in sorted(self.journeys):
            yield {"kind": "journey", **self.journeys[customer_id].model_dump(mode="json")}


def journey_partition(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this customer's key."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % partitions


def replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None = None) -> ReplayResult:
    return asyncio.run(_replay(lines, settings, until_ms))


async def _replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None) -> ReplayResult:
    core = core_config(settings)
    policy = ingest_policy(settings)
    journeys: dict[bytes, bytes] = {}
    index = TimerIndex({}, journeys, settings.timer_resolution_seconds * 1000)
    result = ReplayResult()
    counts = {"in": 0, "processed": 0, "duplicate": 0, "redelivered": 0, "erased": 0}
    counts["dead_lettered"] = 0
    counts["blank_lines_skipped"] = 0  # NDJSON cannot hold an empty record; say so
    latest = None

    async def emit(outputs: tuple[Output, ...]) -> None:
        result.outputs.extend(outputs)

    for offset, line in enumerate(lines):
        if not line.strip():
            counts["blank_lines_skipped"] += 1
            continue
        counts["in"] += 1
        admitted = admit(line.strip(), RecordMeta("replay", 0, offset), policy)
        if isinstance(admitted, DeadLetter):
            result.dead_letters.append(admitted)
            counts["dead_lettered"] += 1
            continue
        key = admitted.customer_id.encode()
        partition = journey_partition(admitted.customer_id, settings.partitions)
        raw = journeys.get(key)
        stepped = step(decode_state(raw) if raw else None, admitted, core)
        await emit(stepped.outputs)
        if stepped.scheduled:
            index.add(partition, admitted.customer_id, stepped.scheduled, admitted.occurred_ms)
        if stepped.state is None:
            journeys.pop(key, None)
        else:
            journeys[key] = encode_state(stepped.state)
        await index.advance(partition, admitted.occurred_ms, emit)
        counts[stepped.outcome] += 1
        latest = admitted.occurred_ms if latest is None else max(latest, admitted.occurred_ms)
    end = until_ms if until_ms is not None else latest
    if end is not None:
        for partition in range(settings.partitions):
            await index.advance(partition, end, emit, start=False)
    result.journeys = {k.decode(): decode_state(v) for k, v in journeys.items()}
    result.counts = counts
    return result
