"""Decision points and their delayed labels, through the real journey engine
(``streams.core.decisions``): what is recorded at a decision, that nothing
after it leaks in, and how transactions, the event-time clock and late
orders label it."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from factories import POLICY, T0, VIEWER, Journey, epoch_ms, make_raw, meta, shipped_config

from models.labels import HOUR, Features
from streams.batch import Record
from streams.config import oneid_config
from streams.core.decisions import DecisionConfig
from streams.core.engine import CoreConfig, step
from streams.core.ingest import Admitted, admit
from streams.runtime import LocalRuntime
from streams.settings import Settings


class FixedScorer:
    """Scores from the lead score (a stand-in model of version 7)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Features]] = []

    def score(self, target: str, features: Features) -> tuple[float, int]:
        self.seen.append((target, features))
        return min(1.0, features["lead_score"] / 100), 7


def deciding(scorer: FixedScorer | None = None) -> CoreConfig:
    return dataclasses.replace(shipped_config(), decisions=DecisionConfig(scorer or FixedScorer()))


def test_a_decision_point_records_features_scores_and_versions() -> None:
    scorer = FixedScorer()
    j = Journey(config=deciding(scorer))
    j.send("live.like", context={"live_room_id": "room-1"})
    assert j.state is not None and j.state.decisions == ()  # a like decides nothing
    j.send("live.product_click", at=T0 + timedelta(minutes=1), context={"live_room_id": "room-1"})
    assert j.state is not None
    [d] = j.state.decisions
    assert d.at_ms == epoch_ms(T0 + timedelta(minutes=1))
    assert d.features["in_live_room"] == 1.0 and d.features["dow=mon"] == 1.0
    # never bought: scored for convert only
    assert d.scores == {"convert": round(d.features["lead_score"] / 100, 6)}
    assert d.versions == {"convert": 7}
    assert j.last is not None and j.last.scheduled[-1] == d.at_ms + 72 * HOUR + 1
    assert scorer.seen == [("convert", d.features)]


def test_recorded_features_do_not_change_with_later_events() -> None:
    j = Journey(config=deciding())
    j.send("live.add_to_cart")
    assert j.state is not None
    [recorded] = j.state.decisions
    before = dict(recorded.features)
    j.send("live.comment", text="还有货吗", at=T0 + timedelta(minutes=5))
    j.send("chat.message", text="多少钱", intent="greeting", at=T0 + timedelta(minutes=6))
    assert j.state is not None and j.state.decisions == (recorded,)
    assert j.state.decisions[0].features == before


def test_decisions_are_spaced_and_bounded() -> None:
    j = Journey(config=deciding())
    for minutes in (0, 10, 50):  # within an hour of the first: one decision
        j.send("live.product_click", at=T0 + timedelta(minutes=minutes))
    assert j.state is not None and len(j.state.decisions) == 1
    for hours in range(1, 10):
        j.send("store.check_in", at=T0 + timedelta(hours=hours))
    assert j.state is not None
    limit = j.config.limits.decisions
    assert len(j.state.decisions) == limit
    assert j.state.decisions[-1].at_ms == epoch_ms(T0 + timedelta(hours=9))
    # each step says what it recorded, and that the oldest open one went unlabelled
    assert j.last is not None and j.last.decisions == {"recorded": 1, "dropped": 1}


def test_decisions_recorded_and_dropped_are_counted_for_the_metrics() -> None:
    rt = runtime()
    viewer = {"live_viewer_id": "douyin:42"}
    feed(
        rt,
        *(
            make_raw("store.check_in", identities=viewer, at=T0 + timedelta(hours=h))
            for h in range(7)
        ),
    )
    limit = shipped_config().limits.decisions
    assert rt.counts["decision_recorded"] == 7
    assert rt.counts["decision_dropped"] == 7 - limit


def test_spacing_counts_from_the_last_decision_even_once_it_is_labelled() -> None:
    j = Journey(config=deciding())
    j.send("live.add_to_cart")
    j.send("live.order", at=T0 + timedelta(minutes=10))  # labels it, then is a decision point
    assert j.last is not None and len(j.last.examples) == 1
    assert j.state is not None and j.state.decisions == ()  # too soon for another
    j.send("store.check_in", at=T0 + timedelta(hours=2))
    assert j.state is not None and set(j.state.decisions[0].scores) == {"convert", "churn"}


def test_an_event_older_than_the_journey_decides_nothing() -> None:
    j = Journey(config=deciding())
    j.send("live.comment", text="hi", at=T0 + timedelta(hours=1))
    j.send("live.add_to_cart", at=T0)  # arrived after a later event: the journey is ahead
    assert j.state is not None and j.state.decisions == ()


def test_a_price_question_and_a_negative_chat_are_decision_points() -> None:
    for props in ({"intent": "price_inquiry", "sentiment": 0.1}, {"sentiment": -0.8}):
        j = Journey(config=deciding())
        j.send("chat.message", text="…", **props)
        assert j.state is not None and len(j.state.decisions) == 1, props


def test_a_purchase_labels_convert_and_opens_churn() -> None:
    j = Journey(config=deciding())
    j.send("live.add_to_cart")
    j.send("live.order", order_id="O-1", at=T0 + timedelta(hours=3))
    assert j.last is not None
    [example] = j.last.examples
    assert (example.target, example.label, example.correction) == ("convert", True, False)
    assert example.labelled_ms == epoch_ms(T0 + timedelta(hours=3))
    assert example.version == 7 and example.features["transactions"] == 0.0
    # the purchase itself is a decision: a buyer is scored for churn as well
    assert j.state is not None
    [after] = j.state.decisions
    assert set(after.scores) == {"convert", "churn"} and after.features["transactions"] == 1.0


def test_one_order_reported_on_two_channels_labels_once() -> None:
    j = Journey(config=deciding())
    j.send("live.add_to_cart")
    j.send("live.order", order_id="O-5", at=T0 + timedelta(hours=2))
    assert j.last is not None and len(j.last.examples) == 1
    assert j.state is not None
    open_ = j.state.decisions  # the purchase is a decision point itself
    j.send("order.paid", order_id="O-5", at=T0 + timedelta(hours=2, minutes=5))  # same order
    assert j.last is not None and j.last.examples == ()
    assert j.state is not None and j.state.decisions == open_ != ()


def test_a_late_order_is_quiet_but_still_labels() -> None:
    j = Journey(config=deciding())
    j.send("live.add_to_cart")
    assert j.state is not None
    late = make_raw("live.order", order_id="O-9", at=T0 + timedelta(hours=1))
    admitted = admit(late, meta(99, timestamp_ms=epoch_ms(T0 + timedelta(hours=1))), POLICY)
    assert isinstance(admitted, Admitted)
    result = step(j.state, admitted, j.config, quiet=True)
    assert result.outputs == () and [e.label for e in result.examples] == [True]


# --- through the batch protocol: the clock labels, a late order corrects ------------


def runtime() -> LocalRuntime:
    config = oneid_config(Settings(stage_model="aipl", rules_file=None, partitions=4))
    config = dataclasses.replace(
        config, core=dataclasses.replace(config.core, decisions=DecisionConfig(FixedScorer()))
    )
    return LocalRuntime(config, partitions=4, timer_width_ms=60_000)


def feed(rt: LocalRuntime, *raws: bytes) -> None:
    records = [
        Record("touchpoints", "journeyflow.touchpoints", 0, rt.counts.get("_fed", 0) + i, None, raw)
        for i, raw in enumerate(raws)
    ]
    rt.counts["_fed"] = rt.counts.get("_fed", 0) + len(raws)
    asyncio.run(rt.admit(records))
    asyncio.run(rt.run())


def customer_of(rt: LocalRuntime) -> str:
    [customer_id] = rt.customers()
    return customer_id


def test_the_clock_labels_a_customer_who_never_comes_back() -> None:
    rt = runtime()
    feed(rt, make_raw("live.add_to_cart", identities=VIEWER))
    journey = rt.journey_of(customer_of(rt))
    assert journey is not None and len(journey.decisions) == 1
    asyncio.run(rt.advance_all(epoch_ms(T0 + timedelta(hours=71))))
    assert rt.examples == []
    asyncio.run(rt.advance_all(epoch_ms(T0 + timedelta(hours=73))))
    [example] = rt.examples
    assert (example.target, example.label) == ("convert", False)
    journey = rt.journey_of(customer_of(rt))
    assert journey is not None and journey.decisions == ()
    assert [e.decision_id for e in journey.labelled] == [example.decision_id]

    # the order of hour 2, reported late: the label is corrected, once
    late = make_raw("live.order", order_id="O-2", identities=VIEWER, at=T0 + timedelta(hours=2))
    feed(rt, late)
    fixes = rt.examples[1:]
    assert [(e.decision_id, e.label, e.correction) for e in fixes] == [
        (example.decision_id, True, True)
    ]


def test_merged_customers_keep_both_decisions_and_the_clock_labels_them() -> None:
    rt = runtime()
    phone = {"phone": "13800138000"}
    feed(
        rt,
        make_raw("live.add_to_cart", identities=VIEWER),
        make_raw("store.check_in", identities=phone, at=T0 + timedelta(hours=2)),
    )
    apart = {d.decision_id for j in rt.customers().values() for d in j.decisions}
    assert len(rt.customers()) == 2 and len(apart) == 2
    both = {**VIEWER, **phone}
    feed(rt, make_raw("live.comment", text="hi", identities=both, at=T0 + timedelta(hours=3)))
    assert len(rt.customers()) == 1
    # the absorbed journey went with the pages of its window
    assert all(k.partition(b"\x00")[0] in rt.journeys for k in rt.journeys)
    [merged] = rt.customers().values()
    assert apart <= {d.decision_id for d in merged.decisions}
    asyncio.run(rt.advance_all(epoch_ms(T0 + timedelta(hours=80))))
    assert {e.label for e in rt.examples} == {False}
    assert {e.decision_id for e in rt.examples} == {d.decision_id for d in merged.decisions}


def test_without_a_decision_config_nothing_is_recorded() -> None:
    j = Journey(config=dataclasses.replace(shipped_config(), decisions=None))
    j.send("live.add_to_cart")
    j.send("live.order", at=datetime(2026, 11, 24, tzinfo=UTC))
    assert j.state is not None and j.state.decisions == () and j.last is not None
    assert j.last.examples == ()
