"""The shipped decision rules, end to end through ``engine.step``: who gets a
coupon, which host cue and alert fires, how often, with what id and reason;
and which rule files are refused."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from factories import CST, MEMBER_ID, T0, Journey, make_admitted

from schemas.codec import encode
from schemas.outputs import Action, Alert, LiveTrigger
from streams.core.errors import CoreError
from streams.core.ids import output_id
from streams.core.rules import Output, parse_rules
from streams.core.stages import parse_stage_model

ROOM = "room-618-beauty"
STORE = "store-sh-jingan"
VIP_SPEND = 500_000  # fen: 5000 yuan
DAY = timedelta(days=1)


def _ask_price(j: Journey, room: str = ROOM, text: str = "这个多少钱", **kw: Any) -> list[Output]:
    return list(j.send("live.comment", text=text, context={"live_room_id": room}, **kw))


def _of(outputs: list[Output] | tuple[Output, ...], kind: type[Any]) -> list[Any]:
    return [o for o in outputs if isinstance(o, kind)]


# --- price questions in a livestream -------------------------------------------


@pytest.mark.parametrize("text", ["这个多少钱", "how much?", "HOW MUCH is the serum", "价格呢"])
def test_a_price_question_gets_the_rooms_coupon_and_a_host_cue(text: str) -> None:
    outputs = _ask_price(Journey(), text=text)

    [action] = _of(outputs, Action)
    # the rule's send_coupon goes out as the catalog's pop-up, under its policies
    assert action.rule_id == "live_price_question_coupon"
    assert action.action == "live_viewer_coupon"
    assert action.channel == "livestream"
    assert action.params == {
        "coupon_id": "CP-618-BEAUTY-30",
        "live_room_id": ROOM,
        "template_id": "popup_coupon_v2",
    }
    assert action.delivery is not None and action.delivery.identifier_type == "live_viewer_id"
    assert action.catalog_version and action.choice_probability == 1.0
    [cue] = _of(outputs, LiveTrigger)
    assert cue.trigger_type == "price_question"
    assert cue.live_room_id == ROOM
    assert cue.details == {"stage": "interest", "transactions": 0}
    assert len(outputs) == 2


def test_a_room_without_its_own_coupon_gets_the_default() -> None:
    [action] = _of(_ask_price(Journey(), room="room-unlisted"), Action)
    assert action.params["coupon_id"] == "CP-LIVE-DEFAULT"
    assert "CP-LIVE-DEFAULT" in action.reason


def test_a_comment_that_is_not_about_price_decides_nothing() -> None:
    assert _ask_price(Journey(), text="主播好漂亮") == []


def test_a_price_question_outside_a_live_room_decides_nothing() -> None:
    assert Journey().send("live.comment", text="how much?") == ()


def test_a_second_price_question_in_the_same_room_is_quiet() -> None:
    j = Journey()
    assert _ask_price(j)

    assert _ask_price(j, text="how much??") == []
    assert _ask_price(j, text="多少钱啊") == []


def test_a_price_question_in_another_room_fires_again_once_the_cooldown_is_over() -> None:
    j = Journey()
    _ask_price(j, room=ROOM, at=T0)

    # the same evening: the host is cued, the coupon waits out the action's cooldown
    evening = _ask_price(j, room="room-double11-skincare", at=T0 + timedelta(minutes=20))
    assert _of(evening, Action) == [] and len(_of(evening, LiveTrigger)) == 1
    assert j.last is not None and j.last.left_out.get("cooldown") == 1

    outputs = _ask_price(j, room="room-other", at=T0 + DAY)
    [action] = _of(outputs, Action)
    assert action.params["coupon_id"] == "CP-LIVE-DEFAULT"
    assert len(_of(outputs, LiveTrigger)) == 1


def test_a_customer_who_has_bought_gets_no_coupon_but_the_host_is_still_cued() -> None:
    j = Journey()
    j.send("order.paid", order_id="O-1")

    outputs = _ask_price(j)

    assert _of(outputs, Action) == []
    [cue] = outputs
    assert isinstance(cue, LiveTrigger)
    assert cue.details == {"stage": "purchase", "transactions": 1}


def test_the_price_rules_are_per_customer() -> None:
    j = Journey()
    _ask_price(j, identities={"live_viewer_id": "douyin:1"})
    other = Journey()
    assert len(_ask_price(other, identities={"live_viewer_id": "douyin:2"})) == 2


def test_output_ids_are_derived_from_rule_customer_and_event() -> None:
    event = make_admitted(
        "live.comment", event_id="ev-42", text="多少钱", context={"live_room_id": ROOM}
    )
    first = Journey().apply(event)
    replayed = Journey().apply(event)  # e.g. after a crash, from scratch

    assert [o.id for o in first] == [o.id for o in replayed]
    assert {o.rule_id: o.id for o in first} == {
        "live_price_question_coupon": output_id(
            "live_price_question_coupon", event.customer_id, "ev-42"
        ),
        "live_price_question_host_cue": output_id(
            "live_price_question_host_cue", event.customer_id, "ev-42"
        ),
    }
    other = Journey().apply(
        make_admitted(
            "live.comment", event_id="ev-43", text="多少钱", context={"live_room_id": ROOM}
        )
    )
    assert not {o.id for o in other} & {o.id for o in first}


# --- VIP arrival in a store --------------------------------------------------


def _vip(spend: int = VIP_SPEND) -> Journey:
    j = Journey()
    j.send("order.paid", identities={"member_id": MEMBER_ID}, order_id="O-big", amount_minor=spend)
    return j


def _check_in(j: Journey, at: datetime = T0, store: str = STORE) -> list[Output]:
    return list(
        j.send(
            "store.check_in",
            at=at,
            identities={"member_id": MEMBER_ID},
            context={"store_id": store},
        )
    )


def test_a_vip_checking_in_alerts_the_store() -> None:
    [alert] = _check_in(_vip())

    assert isinstance(alert, Alert)
    assert alert.alert_type == "vip_arrival"
    assert alert.routing_key == STORE
    assert alert.severity == "info"
    assert alert.customer_id == f"member_id:{MEMBER_ID}"
    assert alert.details["spend_minor_cny"] == VIP_SPEND
    assert str(VIP_SPEND) in alert.reason and STORE in alert.reason


def test_a_customer_just_below_the_vip_threshold_is_not_announced() -> None:
    assert _check_in(_vip(VIP_SPEND - 1)) == []


def test_spend_adds_up_to_vip_across_orders_and_channels() -> None:
    j = _vip(VIP_SPEND - 100)
    j.send("store.purchase", identities={"member_id": MEMBER_ID}, order_id="O-2", amount_minor=100)
    assert len(_check_in(j)) == 1


def test_a_vip_is_announced_once_per_store_and_day() -> None:
    j = _vip()
    assert len(_check_in(j, T0)) == 1
    assert _check_in(j, T0 + timedelta(hours=2)) == []
    assert len(_check_in(j, T0 + timedelta(hours=2), store="store-sh-xintiandi")) == 1
    assert len(_check_in(j, T0 + DAY)) == 1


def test_the_day_is_the_stores_local_day_whatever_offset_the_producer_wrote() -> None:
    # Producers write UTC. 15:30Z and 16:30Z are 23:30 and 00:30 in Shanghai:
    # one UTC day, two local days.
    late = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)
    j = _vip()
    assert len(_check_in(j, late)) == 1
    assert len(_check_in(j, late + timedelta(hours=1))) == 1
    # 23:00Z and 01:00Z are 07:00 and 09:00 in Shanghai: two UTC days, one local day.
    morning = datetime(2026, 11, 26, 23, 0, tzinfo=UTC)
    assert len(_check_in(j, morning)) == 1
    assert _check_in(j, morning + timedelta(hours=2)) == []


def test_the_day_follows_the_events_timezone() -> None:
    # 06:30 and 07:30 on one Shanghai day are 23:30 and 00:30 in Berlin (UTC+1
    # in November): two days for a Berlin store.
    j = _vip()
    berlin = {"store_id": "store-berlin", "timezone": "Europe/Berlin"}
    member = {"member_id": MEMBER_ID}
    before_midnight = datetime(2026, 11, 27, 6, 30, tzinfo=CST)
    after_midnight = before_midnight + timedelta(hours=1)
    for at in (before_midnight, after_midnight):
        assert len(j.send("store.check_in", at=at, identities=member, context=berlin)) == 1


# --- negative chatbot sentiment ------------------------------------------------


def _chat(sentiment: float | None, **kw: Any) -> list[Output]:
    context = kw.pop("context", {"sales_rep_id": "rep-17"})
    return list(
        Journey().send(
            "chat.message",
            text="快递太慢了",
            intent="complaint",
            sentiment=sentiment,
            context=context,
            **kw,
        )
    )


def test_a_strongly_negative_chat_message_alerts_the_sales_rep() -> None:
    [alert] = _chat(-0.8)

    assert isinstance(alert, Alert)
    assert alert.alert_type == "negative_sentiment"
    assert alert.routing_key == "rep-17"
    assert alert.severity == "warning"
    assert alert.details["sentiment"] == -0.8
    assert "-0.8" in alert.reason and "complaint" in alert.reason


@pytest.mark.parametrize("sentiment", [-0.2, 0.0, 0.9, None])
def test_a_mild_or_unknown_sentiment_is_not_an_alert(sentiment: float | None) -> None:
    assert _chat(sentiment) == []


def test_the_sentiment_threshold_is_inclusive() -> None:
    assert len(_chat(-0.5)) == 1


def test_without_a_sales_rep_the_alert_is_routed_by_customer() -> None:
    [alert] = _chat(-0.9, context={})
    assert alert.routing_key == alert.customer_id


# --- what every output carries -----------------------------------------------


def _every_rule_fires() -> list[tuple[Any, Output]]:
    """A short journey in which each shipped rule fires at least once."""
    j = Journey()
    fired: list[tuple[Any, Output]] = []

    def send(event_type: str, **kw: Any) -> None:
        # a viewer id: the coupon pop-up needs one to be delivered to
        admitted = make_admitted(event_type, identities={"live_viewer_id": "douyin:7"}, **kw)
        fired.extend((admitted.event, out) for out in j.apply(admitted))

    send("live.comment", text="how much?", context={"live_room_id": ROOM}, at=T0)
    send("order.paid", order_id="O-1", amount_minor=VIP_SPEND, at=T0 + timedelta(minutes=5))
    send("store.check_in", context={"store_id": STORE}, at=T0 + DAY)
    send("chat.message", sentiment=-0.7, context={"sales_rep_id": "rep-9"}, at=T0 + 2 * DAY)
    return fired


def test_every_shipped_rule_is_exercised() -> None:
    assert {out.rule_id for _, out in _every_rule_fires()} == {
        "live_price_question_coupon",
        "live_price_question_host_cue",
        "vip_store_check_in",
        "negative_chat_sentiment",
    }


def test_every_output_names_its_cause_time_and_reason() -> None:
    for event, out in _every_rule_fires():
        assert out.cause_event_id == event.event_id
        assert out.decided_at == event.occurred_at
        assert out.reason.strip()
        assert "{" not in out.reason and "}" not in out.reason, out.reason
        assert "None" not in out.reason, out.reason
        # what goes on the topic reads back as the same output
        assert type(out).model_validate_json(encode(out)) == out


# --- rule files that are refused ---------------------------------------------------


def _shipped_rules() -> dict[str, Any]:
    text = resources.files("streams.core").joinpath("rules/default.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _broken(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(_shipped_rules())
    edit(data)
    return data


def _set_lookup_table(d: dict[str, Any]) -> None:
    d["rules"][0]["lookups"]["coupon_id"]["table"] = "no_such_table"


def _condition_with_both(d: dict[str, Any]) -> None:
    d["rules"][0]["when"][0] = {"metric": "transactions", "field": "event_type", "op": "exists"}


_BROKEN: dict[str, Any] = {
    "duplicate rule ids": (
        lambda d: d["rules"].append(copy.deepcopy(d["rules"][0])),
        "unique",
    ),
    "unknown table in a lookup": (_set_lookup_table, "no_such_table"),
    "action rule without an action": (lambda d: d["rules"][0].pop("action"), "action"),
    "alert rule without an alert type": (
        lambda d: next(r for r in d["rules"] if r["output"] == "alert").pop("alert_type"),
        "alert_type",
    ),
    "condition with both metric and field": (_condition_with_both, "exactly one"),
    "condition with neither metric nor field": (
        lambda d: d["rules"][0]["when"].append({"op": "exists"}),
        "exactly one",
    ),
    "contains_any without words": (
        lambda d: d["rules"][0]["when"][1].update(value=[]),
        "contains_any",
    ),
    "unknown key in a rule": (lambda d: d["rules"][0].update(cooldown="1h"), "cooldown"),
    "unknown channel": (lambda d: d["rules"][0].update(channel="fax"), "channel"),
    "cancel_on without a delay": (
        lambda d: d["rules"][0].update(cancel_on=["live.order"]),
        "delay_seconds",
    ),
    "a delay of zero": (lambda d: d["rules"][0].update(delay_seconds=0), "delay_seconds"),
}


def test_the_shipped_rules_parse() -> None:
    assert [r.id for r in parse_rules(_shipped_rules()).rules] == [
        "live_price_question_coupon",
        "live_price_question_host_cue",
        "live_coupon_reminder",
        "vip_store_check_in",
        "negative_chat_sentiment",
    ]


@pytest.mark.parametrize("case", sorted(_BROKEN))
def test_an_invalid_rule_file_is_refused_with_the_reason(case: str) -> None:
    edit, mentioned = _BROKEN[case]
    with pytest.raises(CoreError) as info:
        parse_rules(_broken(edit))
    assert mentioned in str(info.value)


def test_a_stage_model_reading_event_fields_is_refused() -> None:
    with pytest.raises(CoreError, match="metrics, not fields"):
        parse_stage_model(
            {
                "name": "bad",
                "stages": [{"id": "seen", "when": [{"field": "event_type", "op": "exists"}]}],
            }
        )
