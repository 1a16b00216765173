"""``journeyflow replay``: the production logic, in process, over an NDJSON file.

No Kafka: each line is one input record (partition 0, offset = line number),
admitted, and handed to the worker's One-ID message protocol and journey
engine (``streams.runtime.LocalRuntime``): identity resolution, merges,
the same due-time index and per-partition event-time clocks, partitions as
Kafka's default partitioner would pick them (``JOURNEYFLOW_PARTITIONS``).
Idle ticks are replaced by one final move of every clock to ``until``
(default: the latest event time seen), so reminders due by then fire.

Blank lines are skipped and counted (NDJSON cannot hold an empty record).
What "the same" means, and what the tests check:

- final profiles are equal whatever the arrival order across identities,
  stage history included when the stage model's conditions are thresholds
  (``journey.advance_stage``; decayed engagement is rounded in the profile);
- the sets of actions, alerts and merges are equal when each customer's
  events keep their order;
- for an input the worker reads in file order, replay gives the same final
  journeys and the same outputs (ids and payloads; ``emitted_at`` is wall
  clock and left out).

Differences by design: there is no Kafka record timestamp, so the
future-timestamp check does not apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from schemas.codec import dump
from schemas.outputs import DeadLetter, Merge
from streams.config import ingest_policy, oneid_config
from streams.core.ingest import RecordMeta, admit
from streams.core.journey import JourneyState
from streams.core.rules import Output
from streams.runtime import LocalRuntime, key_partition
from streams.settings import Settings


@dataclass
class ReplayResult:
    outputs: list[Output] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    journeys: dict[str, JourneyState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def records(self) -> Iterable[dict[str, Any]]:
        """Everything as JSON-ready dicts: outputs, merges, dead letters, then
        final profiles (``kind: journey``) sorted by customer id."""
        for output in self.outputs:
            yield dump(output)
        for merge in self.merges:
            yield dump(merge)
        for letter in self.dead_letters:
            yield dump(letter)
        for customer_id in sorted(self.journeys):
            yield {"kind": "journey", **self.journeys[customer_id].model_dump(mode="json")}


def journey_partition(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this customer's key."""
    return key_partition(customer_id, partitions)


def replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None = None) -> ReplayResult:
    return asyncio.run(_replay(lines, settings, until_ms))


async def _replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None) -> ReplayResult:
    policy = ingest_policy(settings)
    runtime = LocalRuntime(
        oneid_config(settings), settings.partitions, settings.timer_resolution_seconds * 1000
    )
    result = ReplayResult()
    counts = {"in": 0, "processed": 0, "duplicate": 0, "redelivered": 0, "erased": 0}
    counts["dead_lettered"] = 0
    counts["blank_lines_skipped"] = 0  # NDJSON cannot hold an empty record; say so
    latest = None
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
        runtime.submit(admitted)
        await runtime.run()
        latest = admitted.occurred_ms if latest is None else max(latest, admitted.occurred_ms)
    end = until_ms if until_ms is not None else latest
    if end is not None:
        await runtime.advance_all(end)
    for name, n in runtime.counts.items():
        counts[name] = counts.get(name, 0) + n
    result.dead_letters.extend(runtime.dead_letters)  # found too late
    counts["merges"] = len(runtime.merges)
    result.outputs = runtime.outputs
    result.merges = runtime.merges
    result.journeys = runtime.customers()
    result.counts = counts
    return result
