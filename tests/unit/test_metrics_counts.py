"""What the worker's metrics count adds up to what its journeys say
(``streams.metrics.Metrics.record_batch`` fed the batch protocol's batches
in process)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from prometheus_client import CollectorRegistry
from test_batch import runtime, simulated, touchpoints

from streams.batch import Batch
from streams.metrics import Metrics
from streams.runtime import LocalRuntime


class Metered(LocalRuntime):
    def __post_init__(self) -> None:
        super().__post_init__()
        self.metrics = Metrics(CollectorRegistry())

    def done(self, batch: Batch) -> None:
        self.metrics.record_batch(batch, time.time())


def samples(metrics: Metrics, name: str) -> dict[tuple[str, ...], float]:
    out = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == name:
                out[tuple(s.labels.values())] = s.value
    return out


def test_stage_transitions_add_up_to_the_customers_in_each_stage() -> None:
    rt = runtime(Metered, records=50)
    asyncio.run(rt.admit(touchpoints(simulated(3, 60, 1200))))
    asyncio.run(rt.run())
    moves = samples(rt.metrics, "journeyflow_stage_transitions_total")  # type: ignore[attr-defined]
    net: Counter[str] = Counter()
    for (before, after), n in moves.items():
        net[after] += int(n)
        net[before] -= int(n)
    del net["none"]
    staged = Counter(j.stage for j in rt.customers().values() if j.stage is not None)
    assert len(staged) >= 2 and sum(n for (b, _), n in moves.items() if b != "none") > 0
    assert {stage: n for stage, n in net.items() if n} == staged


def test_inputs_by_channel_add_up_to_the_outcomes() -> None:
    rt = runtime(Metered)
    asyncio.run(rt.admit(touchpoints(simulated(4, 40, 600))))
    asyncio.run(rt.run())
    metrics = rt.metrics  # type: ignore[attr-defined]
    by_outcome: Counter[str] = Counter()
    for (_, outcome), n in samples(metrics, "journeyflow_inputs_total").items():
        by_outcome[outcome] += int(n)
    events = samples(metrics, "journeyflow_events_total")
    assert by_outcome["processed"] == events[("processed",)] == rt.counts["processed"]


def test_partitions_moved_away_stop_showing_their_lag_and_clock() -> None:
    metrics = Metrics(CollectorRegistry())
    batch = Batch(clocks={0: 5_000, 1: 6_000, 2: 7_000})
    metrics.record_batch(batch, time.time())
    metrics.hold({("t", 0): 4, ("t", 1): 0, ("keyed", 1): 9}, {0, 1, 2})
    # a rebalance took partitions 0 and 2 of both topics away
    metrics.hold({("t", 1): 3, ("keyed", 1): 2}, {1})
    assert samples(metrics, "journeyflow_consumer_lag_messages") == {
        ("t", "1"): 3.0,
        ("keyed", "1"): 2.0,
    }
    assert samples(metrics, "journeyflow_partition_event_time_seconds") == {("1",): 6.0}
    # given back, a partition's clock shows again with its next batch
    metrics.record_batch(Batch(clocks={2: 8_000}), time.time())
    assert samples(metrics, "journeyflow_partition_event_time_seconds") == {
        ("1",): 6.0,
        ("2",): 8.0,
    }
