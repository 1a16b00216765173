"""Scores, attribution and tags (``streams.core.scoring``, shown by
``streams.core.profile``) with the shipped scoring file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import T0, Journey, shipped_config

from streams.core.errors import CoreError
from streams.core.profile import profile_view, tags_for
from streams.core.scoring import EffectiveMember, is_effective_member, parse_scoring

DAY = timedelta(days=1)


def scoring():  # type: ignore[no-untyped-def]
    return shipped_config().scoring


def test_lead_score_adds_the_points_of_each_event_and_only_matching_conditions() -> None:
    j = Journey()
    j.send("live.view_start")  # 1
    j.send("live.comment", text="多少钱")  # 2
    j.send("chat.message", text="想买", intent="purchase", sentiment=0.5)  # 2 + 5 (intent)
    j.send("chat.message", text="hi", intent="greeting", sentiment=0.1)  # 2
    j.send("chat.lead_submitted")  # 25
    j.send("order.paid")  # no points: money is not a touch

    assert j.state is not None and j.state.lead_score == 37


def test_engagement_decays_with_the_half_life_whatever_the_order() -> None:
    times = [T0, T0 + 14 * DAY, T0 + 28 * DAY]
    forward, backward = Journey(), Journey()
    for at in times:
        forward.send("live.like", at=at)
    for at in reversed(times):
        backward.send("live.like", at=at)

    for j in (forward, backward):
        view = profile_view(j.state, scoring())  # type: ignore[arg-type]
        # as of the last like: 1 + 1/2 + 1/4 (half-life 14 days)
        assert view["scores"]["engagement"]["channel:livestream"] == pytest.approx(1.75)
        assert view["scores"]["engagement"]["event:live.like"] == pytest.approx(1.75)


def test_first_and_last_touch_follow_event_time_and_skip_money() -> None:
    j = Journey()
    j.send("ad.click", at=T0 + DAY)
    j.send("live.comment", at=T0 + 2 * DAY)
    j.send("store.check_in", at=T0, context={"store_id": "s-1"})  # late, but earliest
    j.send("order.paid", at=T0 + 3 * DAY)

    attribution = profile_view(j.state, scoring())["attribution"]  # type: ignore[arg-type]
    assert attribution["first_touch"]["channel"] == "store"
    assert attribution["last_touch"]["channel"] == "livestream"


def test_effective_member_needs_two_orders_within_the_period_counted_once_per_order() -> None:
    j = Journey()
    j.send("live.order", order_id="O-1", at=T0)
    j.send("order.paid", order_id="O-1", at=T0 + DAY)  # the same order on another channel
    view = profile_view(j.state, scoring())  # type: ignore[arg-type]
    assert view["scores"]["effective_member"] is False
    assert "effective_member" not in view["tags"]

    j.send("store.purchase", order_id="S-2", at=T0 + 200 * DAY)
    view = profile_view(j.state, scoring())  # type: ignore[arg-type]
    assert view["scores"]["effective_member"] is True
    assert "effective_member" in view["tags"]
    assert not is_effective_member([0, 400 * 86_400_000], EffectiveMember())


def test_rfm_and_the_lifetime_value_estimate() -> None:
    j = Journey()
    j.send("order.paid", order_id="O-1", amount_minor=10000, at=T0)
    j.send("order.paid", order_id="O-2", amount_minor=30000, at=T0 + 30 * DAY)
    j.send("page.view", at=T0 + 40 * DAY)

    scores = profile_view(j.state, scoring())["scores"]  # type: ignore[arg-type]
    assert scores["rfm"] == {
        "recency_days": 10.0,
        "frequency": 2,
        "monetary_minor": {"CNY": 40000},
    }
    # average order 20,000 fen, one order per 30 days: about 12 more in a year
    assert scores["ltv_estimate_minor"] == {"CNY": 40000 + round(20000 * 365 / 30)}


def test_tags_follow_the_rules_of_the_scoring_file() -> None:
    j = Journey()
    for _ in range(2):
        j.send("chat.lead_submitted")  # 50 points, no purchase: a hot lead
    j.send("store.check_in", context={"store_id": "s-1"})
    j.send("live.like")
    assert j.state is not None
    assert set(tags_for(j.state, scoring())) == {"hot_lead", "omnichannel"}

    j.send("order.paid", amount_minor=600000)
    assert set(tags_for(j.state, scoring())) == {"omnichannel", "high_value"}


def test_a_scoring_file_with_a_metric_in_a_point_rule_is_refused() -> None:
    with pytest.raises(CoreError, match="lead point conditions read the event"):
        parse_scoring(
            {
                "lead_points": [
                    {
                        "on": ["page.view"],
                        "points": 1,
                        "when": [{"metric": "transactions", "op": "==", "value": 0}],
                    }
                ]
            }
        )
