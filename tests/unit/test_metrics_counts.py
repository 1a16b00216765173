"""What the worker's metrics count adds up to what its journeys say
(``streams.metrics.Metrics.record_batch`` fed the batch protocol's batches
in process)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from pathlib import Path

from factories import POLICY, T0, make_admitted
from prometheus_client import CollectorRegistry
from test_batch import runtime, simulated, touchpoints

from schemas.outputs import Action, Feedback
from streams.batch import Batch, Record, stage_counts, stages_key
from streams.config import oneid_config
from streams.core.ids import output_id
from streams.core.oneid import Message
from streams.metrics import Metrics
from streams.runtime import LocalRuntime, key_partition
from streams.settings import Settings


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


def test_customers_per_stage_are_the_journeys_of_the_partitions_held() -> None:
    rt = runtime(Metered, records=50)
    raws = simulated(3, 60, 1200)
    asyncio.run(rt.admit(touchpoints(raws[:600])))
    asyncio.run(rt.run())
    asyncio.run(rt.admit(touchpoints(raws[600:], 600)))  # and on from what was written
    asyncio.run(rt.run())
    metrics = rt.metrics  # type: ignore[attr-defined]
    journeys = rt.customers()
    everyone = Counter(j.stage for j in journeys.values() if j.stage is not None)
    metrics.hold({}, set(range(rt.partitions)), held(rt, range(rt.partitions)))
    assert samples(metrics, "journeyflow_customers") == {
        (stage,): float(n) for stage, n in everyone.items()
    }
    assert len(everyone) >= 2
    # a worker holding partitions 0 and 1 shows their customers only
    mine = Counter(
        j.stage
        for j in journeys.values()
        if j.stage is not None and key_partition(j.customer_id, rt.partitions) in (0, 1)
    )
    metrics.hold({}, {0, 1}, held(rt, (0, 1)))
    assert samples(metrics, "journeyflow_customers") == {
        (stage,): float(n) for stage, n in mine.items()
    }
    assert mine != everyone


def held(rt: LocalRuntime, partitions: Iterable[int]) -> Counter[str]:
    """What a worker holding ``partitions`` reads of their customers by stage."""
    counts: Counter[str] = Counter()
    for p in partitions:
        counts.update(stage_counts(rt.read("timers", p, stages_key(p))))
    return counts


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


def test_the_holdout_s_conversions_are_counted_by_group(tmp_path: Path) -> None:
    """Each labelled decision next-best-action arbitrated at counts for its
    customer's group, whether an action was chosen there or not (intention
    to treat); where one was, the group is the action's (sent, or logged for
    the holdout)."""
    catalog = json.loads(
        resources.files("streams.core").joinpath("catalog/default.json").read_text()
    )
    catalog["holdout_percent"] = 50
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    settings = Settings(stage_model="aipl", rules_file=None, catalog_file=tmp_path / "catalog.json")
    rt = Metered(oneid_config(settings), 4, 60_000, policy=POLICY)
    asyncio.run(rt.admit(touchpoints(simulated(5, 200, 8000))))
    asyncio.run(rt.run())
    assert rt.latest_event_ms is not None
    asyncio.run(rt.advance_all(rt.latest_event_ms + 4 * 24 * 3_600_000))  # past every horizon
    chosen = {
        output_id("decision", o.customer_id, o.cause_event_id): o.holdout
        for o in rt.outputs
        if isinstance(o, Action) and o.rule_id.startswith("catalog:")
    }
    convert = [e for e in rt.examples if e.target == "convert"]
    assert {e.group for e in convert} == {"treated", "holdout"}
    for e in convert:
        if e.decision_id in chosen:
            assert e.group == ("holdout" if chosen[e.decision_id] else "treated")
    unchosen = Counter(e.group for e in convert if e.decision_id not in chosen)
    assert unchosen["treated"] and unchosen["holdout"]  # in the lift all the same
    counted = Counter(
        (e.group, "corrected" if e.correction else "converted" if e.label else "not_converted")
        for e in convert
        if e.group is not None
    )
    lift = samples(rt.metrics, "journeyflow_lift_labels_total")  # type: ignore[attr-defined]
    assert lift == {key: float(n) for key, n in counted.items()}
    assert {label for _, label in lift} >= {"converted", "not_converted"}


class Stamped(Metered):
    """Internal records stamped by the broker one second ago; outputs
    acknowledged at the batch's ``sent``, three seconds later still (the
    batch is done at once)."""

    def record(self, partition: int, offset: int, key: str, msg: Message) -> Record:
        stamped = int(time.time() * 1000) - 1_000
        return replace(super().record(partition, offset, key, msg), timestamp_ms=stamped)

    async def send(self, batch: Batch) -> None:
        await super().send(batch)
        batch.sent = time.time() + 3


def test_each_output_and_each_delivery_is_a_latency_hop() -> None:
    rt = Stamped(oneid_config(Settings(stage_model="aipl")), 2, 10_000)
    room = {"live_room_id": "room-1"}
    rt.submit(make_admitted("live.comment", context=room))
    rt.submit(make_admitted("live.product_click", at=T0 + timedelta(minutes=1), context=room))
    asyncio.run(rt.run())
    [popup] = [o for o in rt.outputs if isinstance(o, Action) and o.catalog_version]
    assert popup.not_before is not None
    delivered = Feedback(
        feedback_id="fb-1",
        action_id=popup.id,
        customer_id=popup.customer_id,
        outcome="delivered",
        occurred_at=popup.not_before + timedelta(seconds=40),
    )
    rt.submit_feedback(popup.customer_id, delivered)
    asyncio.run(rt.run())
    count = rt.metrics.registry.get_sample_value  # type: ignore[attr-defined]

    def observed(hop: str, le: str = "+Inf") -> float | None:
        return count("journeyflow_latency_seconds_bucket", {"hop": hop, "le": le})

    assert observed("output") == len(rt.outputs) == 1  # each output a record decided
    assert observed("output", "2.5") == 0  # until the acks: a second on the topic, three sending
    assert observed("output", "5.0") == 1
    assert observed("delivered") == 1  # the one catalog action reported delivered
    assert count("journeyflow_latency_seconds_sum", {"hop": "delivered"}) == 40
