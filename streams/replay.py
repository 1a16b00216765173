"""``journeyflow replay``: the production logic, in process, over an NDJSON file.

No Kafka: each line is one input record (partition 0, offset = line number),
applied by the worker's batch protocol (``streams.batch``, in process through
``streams.runtime.LocalRuntime``): admission, identity resolution, merges,
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
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from models.labels import Example
from schemas.codec import dump
from schemas.outputs import DeadLetter, Merge
from streams.batch import Record
from streams.config import ingest_policy, oneid_config
from streams.core.journey import JourneyState
from streams.core.rules import Output
from streams.runtime import LocalRuntime, key_partition
from streams.settings import Settings

#: Input lines admitted before the internal records they produce are applied.
#: 1: each line's identity resolution (merges included) completes before the
#: next line, as for a worker that keeps up with its input, so outputs do not
#: depend on how far the input ran ahead of the merges it caused.
READ_AHEAD = 1


@dataclass
class ReplayResult:
    outputs: list[Output] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    journeys: dict[str, JourneyState] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: Labelled decisions (what the worker sends its trainer).
    examples: list[Example] = field(default_factory=list)

    def records(self) -> Iterable[dict[str, Any]]:
        """Everything as JSON-ready dicts: outputs, merges, dead letters,
        labelled decisions (``kind: example``), then final profiles (``kind:
        journey``) sorted by customer id."""
        for output in self.outputs:
            yield dump(output)
        for merge in self.merges:
            yield dump(merge)
        for letter in self.dead_letters:
            yield dump(letter)
        for example in self.examples:
            yield {"kind": "example", **dataclasses.asdict(example)}
        for customer_id in sorted(self.journeys):
            yield {"kind": "journey", **self.journeys[customer_id].model_dump(mode="json")}


def journey_partition(customer_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this customer's key."""
    return key_partition(customer_id, partitions)


def replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None = None) -> ReplayResult:
    return asyncio.run(_replay(lines, settings, until_ms))


async def _replay(lines: Iterable[bytes], settings: Settings, until_ms: int | None) -> ReplayResult:
    runtime = LocalRuntime(
        oneid_config(settings),
        settings.partitions,
        settings.timer_resolution_seconds * 1000,
        policy=ingest_policy(settings),
    )
    counts = {"in": 0, "processed": 0, "duplicate": 0, "redelivered": 0, "erased": 0}
    counts["dead_lettered"] = 0
    counts["blank_lines_skipped"] = 0  # NDJSON cannot hold an empty record; say so
    chunk: list[Record] = []

    async def flush() -> None:
        await runtime.admit(chunk)  # the worker's first stage: admit, route
        await runtime.run()  # then the internal topic, batch by batch
        chunk.clear()

    for offset, line in enumerate(lines):
        if not line.strip():
            counts["blank_lines_skipped"] += 1
            continue
        counts["in"] += 1
        chunk.append(Record("touchpoints", "replay", 0, offset, None, line.strip()))
        if len(chunk) >= READ_AHEAD:
            await flush()
    await flush()
    end = until_ms if until_ms is not None else runtime.latest_event_ms
    if end is not None:
        await runtime.advance_all(end)
    for name, n in runtime.counts.items():
        if not name.startswith("dlq_"):
            counts[name] = counts.get(name, 0) + n
    result = ReplayResult()
    result.dead_letters = runtime.dead_letters
    counts["merges"] = len(runtime.merges)
    result.outputs = runtime.outputs
    result.merges = runtime.merges
    result.examples = runtime.examples
    result.journeys = runtime.customers()
    result.counts = counts
    return result
