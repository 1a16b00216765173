"""Next-best-action (``streams.core.actions``): the catalog, contact policies,
Thompson-sampling arbitration, the holdout, and feedback, through the real
journey engine and batch protocol where it matters."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import pytest
from factories import T0, VIEWER, Journey, epoch_ms, make_admitted, make_event, shipped_config

from models.bandit import ResponseModel, arm_key
from models.features import Features
from models.labels import Decision
from models.propensity import ModelSpec
from schemas.outputs import Action, Feedback
from streams.config import oneid_config
from streams.core.actions import (
    ActionsConfig,
    Catalog,
    choose,
    in_holdout,
    local_time,
    on_clock,
    on_feedback,
    parse_catalog,
)
from streams.core.contacts import Contact
from streams.core.errors import CoreError
from streams.core.journey import JourneyState, merge_states, new_state
from streams.core.profile import profile_view
from streams.runtime import LocalRuntime
from streams.settings import Settings

HOUR = 3_600_000
WECOM = "wecom_external_userid:wm-1"
PHONE = "phone:k1:5f2a"
OPENID = "wechat_openid:wxapp1:o-9"


def shipped_catalog() -> dict[str, Any]:
    text = resources.files("streams.core").joinpath("catalog/default.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


class Models:
    """The scorer's view arbitration reads: which models are ready, and the
    response statistics."""

    def __init__(self, ready: set[str] | None = None, responses: ResponseModel | None = None):
        self.ready_targets = ready or set()
        self.stats = responses or ResponseModel(
            ModelSpec(target="responses", kind="beta", min_examples=0)
        )

    def score(self, target: str, features: Features) -> tuple[float, int]:
        return min(1.0, features["lead_score"] / 100), 7

    def ready(self, target: str) -> bool:
        return target in self.ready_targets

    def seen(self, target: str) -> tuple[int, int]:
        return (500, 200) if target in self.ready_targets else (120, 200)

    def responses(self) -> ResponseModel:
        return self.stats


def catalog(*actions: dict[str, Any], **top: Any) -> Catalog:
    base = {"version": "t1", "holdout_percent": 0, **top, "actions": list(actions)}
    return parse_catalog(base)


def action(id: str = "repurchase", **fields: Any) -> dict[str, Any]:
    return {
        "id": id,
        "channel": "wecom",
        "identifiers": ["wecom_external_userid"],
        "value": 100,
        "cost": 0,  # always worth sending, unless a test says otherwise
        **fields,
    }


def customer(**update: Any) -> JourneyState:
    state = new_state(WECOM).model_copy(
        update={
            "identifiers": (WECOM, PHONE, OPENID),
            "stage": "interest",
            "lead_score": 40,
            "last_seen_ms": epoch_ms(T0),
        }
    )
    return state.model_copy(update=update)


def decide(
    state: JourneyState,
    cat: Catalog,
    *,
    at: datetime = T0 + timedelta(hours=-6),  # 14:00 in Shanghai
    event_type: str = "cart.add",
    models: Models | None = None,
    event_id: str = "ev-1",
    **event: Any,
) -> tuple[JourneyState, Action | None, Counter[str]]:
    ev = make_event(event_type, at=at, event_id=event_id, **event)
    decision = Decision(
        f"d-{event_id}", epoch_ms(at), {"lead_score": 40.0}, {"convert": 0.6}, {"convert": 3}
    )
    choice = choose(
        state,
        ev,
        decision,
        ActionsConfig(cat),
        models or Models(),
        shipped_config().scoring,
        shipped_config().limits,
    )
    return choice.state, choice.action, choice.left_out


# --- the catalog ---------------------------------------------------------------


def test_the_shipped_catalog_loads_and_covers_the_journey() -> None:
    settings = Settings(stage_model="aipl")
    config = oneid_config(settings).core
    assert config.decisions is not None and config.decisions.actions is not None
    ids = {a.id for a in config.decisions.actions.catalog.actions}
    assert ids == {
        "live_viewer_coupon",
        "coupon_reminder",
        "store_invitation",
        "win_back_coupon",
        "member_upgrade",
        "repurchase_reminder",
        "group_invitation",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["actions"].append(dict(c["actions"][0])), "unique"),
        (lambda c: c["actions"][0].update(stages=["intrest"]), "unknown stages"),
        (lambda c: c["actions"][1].update(requires_tags=["hot"]), "unknown tags"),
        (lambda c: c["actions"][2].update(quiet_hours="exempt"), "only a live_popup"),
        (lambda c: c["actions"][0].update(channel="fax"), "channel"),
        (lambda c: c["actions"][0].update(value=-1), "value"),
        (lambda c: c["actions"][0].update(identifiers=[]), "identifiers"),
        (lambda c: c["policies"].update(quiet_hours={"start": "25:00"}), "quiet_hours"),
    ],
)
def test_a_bad_catalog_is_refused_at_start_with_the_reason(change: Any, message: str) -> None:
    data = shipped_catalog()
    change(data)
    stages = frozenset({"awareness", "interest", "purchase", "loyalty", "lapsed"})
    tags = frozenset({"hot_lead", "effective_member", "high_value", "live_fan", "omnichannel"})
    with pytest.raises(CoreError, match=message):
        parse_catalog(data, stages=stages, tags=tags)


# --- choosing ------------------------------------------------------------------------


def test_an_interested_live_viewer_clicking_a_product_gets_the_coupon_pop_up() -> None:
    """Through the engine: the decision point chooses from the shipped catalog."""
    j = Journey()
    room = {"live_room_id": "room-1"}
    j.send("live.comment", context=room)
    j.send("live.product_click", at=T0 + timedelta(minutes=2), context=room)
    assert j.last is not None
    [popup] = [o for o in j.last.outputs if isinstance(o, Action) and o.catalog_version]
    assert popup.action == "live_viewer_coupon" and popup.channel == "livestream"
    assert popup.delivery is not None
    assert popup.delivery.channel == "live_popup"
    assert popup.delivery.identifier_type == "live_viewer_id"
    assert popup.delivery.identifier == VIEWER["live_viewer_id"]
    assert popup.params["live_room_id"] == "room-1" and popup.params["coupon_id"]
    decided = T0 + timedelta(minutes=2)
    assert popup.not_before == decided  # 20:02 is not quiet hours, and pop-ups are exempt
    assert popup.expires_at == decided + timedelta(minutes=15)
    assert popup.model_version is None  # no model is ready: the lead score stands in
    assert "lead score" in popup.reason and "0 of 200" in popup.reason
    assert popup.choice_probability is not None and 0 < popup.choice_probability <= 1
    assert popup.segment == "interest" and not popup.holdout
    assert j.state is not None
    [contact] = j.state.contacts
    assert (contact.id, contact.action, contact.status) == (popup.id, popup.action, "sent")
    [shown] = profile_view(j.state)["actions"]  # what the profile API shows
    assert (shown["action"], shown["channel"], shown["status"]) == (
        "live_viewer_coupon",
        "live_popup",
        "sent",
    )


def test_the_same_decision_chooses_the_same_action_with_the_same_probability() -> None:
    cat = catalog(
        action("a", value=100), action("b", value=90, channel="sms", identifiers=["phone"])
    )
    runs = [decide(customer(), cat)[1] for _ in range(3)]
    assert runs[0] is not None
    assert all(r == runs[0] for r in runs)
    picks = {decide(customer(), cat, event_id=f"ev-{i}")[1].action for i in range(40)}  # type: ignore[union-attr]
    assert picks == {"a", "b"}  # close priorities: both get tried


def test_a_ready_model_s_propensity_is_used_and_named() -> None:
    _, out, _ = decide(customer(), catalog(action()), models=Models(ready={"convert"}))
    assert out is not None
    assert out.model_version == "convert:3" and out.propensity == 0.6
    assert "convert propensity 0.60 (model v3)" in out.reason


def test_the_action_that_gets_responses_wins_once_the_feedback_shows_it() -> None:
    stats = ResponseModel(ModelSpec(target="responses", kind="beta", min_examples=0))
    for i in range(400):
        stats.learn({}, i % 3 == 0, arm=arm_key("good", "interest"))
        stats.learn({}, i % 100 == 0, arm=arm_key("poor", "interest"))
    cat = catalog(action("good"), action("poor", channel="sms", identifiers=["phone"]))
    chosen = Counter(
        decide(customer(), cat, models=Models(responses=stats), event_id=f"e{i}")[1].action  # type: ignore[union-attr]
        for i in range(100)
    )
    assert chosen["good"] >= 95
    _, before, _ = decide(customer(), cat, event_id="e1")
    assert before is not None and before.expected_response == 0.05  # the prior (1, 19), untried


def test_nothing_is_sent_when_no_action_is_worth_its_cost() -> None:
    _, out, left = decide(customer(), catalog(action(value=1, cost=50)))
    assert out is None and left["not_worth_it"] == 1


@pytest.mark.parametrize(
    ("fields", "state_update", "why"),
    [
        ({"stages": ["loyalty"]}, {}, "stage"),
        ({"requires_tags": ["high_value"]}, {}, "tags"),
        ({"excludes_tags": ["hot_lead"]}, {}, "tags"),
        ({"identifiers": ["member_id"]}, {}, "no_identifier"),
        ({"in_live_room": True}, {}, "not_in_live_room"),
        ({"needs_store": True}, {}, "no_store"),
        ({"on": ["store.check_in"]}, {}, "event"),
        ({"target": "churn"}, {}, "no_churn_risk"),
        ({"consent": {"purpose": "marketing"}}, {}, "no_consent"),
    ],
)
def test_an_action_is_left_out_when_it_is_not_for_this_customer(
    fields: dict[str, Any], state_update: dict[str, Any], why: str
) -> None:
    _, out, left = decide(customer(**state_update), catalog(action(**fields)))
    assert out is None and left == Counter({why: 1})


def test_consent_is_the_newest_change_for_the_purpose() -> None:
    cat = catalog(action(consent={"purpose": "marketing", "channels": ["wechat_group"]}))
    t = epoch_ms(T0) - 10 * HOUR
    granted = {
        "consent": {"wechat_group:marketing": True},
        "consent_ms": {"wechat_group:marketing": t},
    }
    assert decide(customer(**granted), cat)[1] is not None
    revoked_later = {
        "consent": {"wechat_group:marketing": True, "store:marketing": False},
        "consent_ms": {"wechat_group:marketing": t, "store:marketing": t + 1},
    }
    assert decide(customer(**revoked_later), cat)[1] is not None  # store is not a listed channel
    any_channel = catalog(action(consent={"purpose": "marketing"}))
    assert decide(customer(**revoked_later), any_channel)[1] is None


# --- contact policies ----------------------------------------------------------------


def test_quiet_hours_defer_to_their_end_in_the_customer_s_time_zone() -> None:
    late = T0 + timedelta(hours=2, minutes=30)  # 22:30 in Shanghai
    _, out, _ = decide(customer(), catalog(action()), at=late)
    assert out is not None and out.not_before is not None and out.expires_at is not None
    assert local_time(epoch_ms(out.not_before), "Asia/Shanghai").strftime("%d %H:%M") == "24 09:00"
    assert out.expires_at - out.not_before == timedelta(hours=24)
    # the same instant is 15:30 in Paris: not quiet there
    _, paris, _ = decide(
        customer(), catalog(action()), at=late, context={"timezone": "Europe/Paris"}
    )
    assert paris is not None and paris.not_before == late
    _, dropped, left = decide(customer(), catalog(action(quiet_hours="drop")), at=late)
    assert dropped is None and left["quiet_hours"] == 1


def test_caps_per_channel_per_local_day_and_rolling_week() -> None:
    cat = catalog(
        action("a", cooldown_hours=0),
        policies={"per_channel_day": {"wecom": 1}, "per_channel_week": {"wecom": 2}},
    )
    day1 = T0 - timedelta(hours=6)  # 14:00, 23 Nov
    state, first, _ = decide(customer(), cat, at=day1, event_id="e1")
    assert first is not None
    state, second, left = decide(state, cat, at=day1 + timedelta(hours=5), event_id="e2")
    assert second is None and left["channel_day_cap"] == 1  # 19:00 the same local day
    state, third, _ = decide(state, cat, at=day1 + timedelta(hours=19), event_id="e3")
    assert third is not None  # 09:00 the next local day
    state, fourth, left = decide(state, cat, at=day1 + timedelta(days=3), event_id="e4")
    assert fourth is None and left["channel_week_cap"] == 1
    _, fifth, _ = decide(state, cat, at=day1 + timedelta(days=7, hours=1), event_id="e5")
    assert fifth is not None  # the first left the rolling week


def test_caps_over_all_channels_and_the_cooldown() -> None:
    sms = action("b", channel="sms", identifiers=["phone"], cooldown_hours=0)
    cat = catalog(action("a", cooldown_hours=48), sms, policies={"per_day": 1})
    state, first, _ = decide(customer(), cat, event_id="e1")
    assert first is not None
    _, other, left = decide(state, cat, at=T0 - timedelta(hours=5), event_id="e2")
    assert other is None and left["day_cap"] + left["channel_day_cap"] + left["cooldown"] == 2
    cooling = catalog(action("a", cooldown_hours=48))
    state, _, _ = decide(customer(), cooling, event_id="e1")
    _, again, left = decide(state, cooling, at=T0 + timedelta(days=1, hours=-6), event_id="e3")
    assert again is None and left["cooldown"] == 1


def test_no_action_right_after_a_purchase() -> None:
    bought = customer(last_purchase_ms=epoch_ms(T0) - 12 * HOUR, transactions=1)
    _, out, left = decide(bought, catalog(action()))
    assert out is None and left["after_purchase"] == 1
    _, later, _ = decide(bought, catalog(action()), at=T0 + timedelta(hours=16))
    assert later is not None


def test_caps_follow_the_customer_through_a_merge() -> None:
    cat = catalog(action("a", cooldown_hours=0), policies={"per_channel_day": {"wecom": 1}})
    wecom_side, sent, _ = decide(customer(), cat, event_id="e1")
    assert sent is not None
    other = customer(customer_id=PHONE, identifiers=(PHONE, WECOM))
    config = shipped_config()
    merged = merge_states(
        other, wecom_side, config.stage_model, config.limits, "link", config.scoring
    )
    assert [c.id for c in merged.contacts] == [sent.id]
    _, again, left = decide(merged, cat, at=T0 - timedelta(hours=4), event_id="e2")
    assert again is None and left["channel_day_cap"] == 1


# --- the holdout ---------------------------------------------------------------------


def test_the_holdout_is_a_stable_share_and_logs_what_it_would_have_sent() -> None:
    cat = catalog(action(), holdout_percent=5)
    members = [f"member_id:M-{i}" for i in range(20_000)]
    held = [m for m in members if in_holdout(m, cat)]
    assert 0.04 < len(held) / len(members) < 0.06
    assert held == [m for m in members if in_holdout(m, cat)]
    salted = catalog(action(), holdout_percent=5, holdout_salt="other")
    assert set(held) != {m for m in members if in_holdout(m, salted)}
    who = next(m for m in held)
    state, out, _ = decide(customer(customer_id=who), cat)
    assert out is not None and out.holdout and "holdout" in out.reasons[-1]
    assert state.contacts[-1].status == "holdout"  # policies apply to it as to a real send
    _, again, left = decide(state, cat, at=T0 - timedelta(hours=5), event_id="e2")
    assert again is None and left["channel_day_cap"] + left["cooldown"] == 1


# --- feedback --------------------------------------------------------------------------


def feedback(out: Action, outcome: str, at: datetime, n: int = 0) -> Feedback:
    return Feedback(
        feedback_id=f"fb-{out.id}-{outcome}-{n}",
        action_id=out.id,
        customer_id=out.customer_id,
        outcome=outcome,  # type: ignore[arg-type]
        occurred_at=at,
    )


def test_a_delivery_without_response_in_its_window_is_ignored_and_suppresses_after_k() -> None:
    cat = catalog(
        action("a", cooldown_hours=0, response_window_hours=48),
        policies={
            "per_channel_day": {"wecom": 5},
            "per_channel_week": {"wecom": 9},
            "per_day": 5,
            "per_week": 9,
            "ignored_limit": 2,
        },
    )
    config = ActionsConfig(cat)
    state = customer()
    at = T0 - timedelta(hours=6)
    outcomes = []
    for i in range(2):
        state, out, _ = decide(state, cat, at=at + timedelta(days=3 * i), event_id=f"e{i}")
        assert out is not None
        delivered = on_feedback(
            state, feedback(out, "delivered", at + timedelta(days=3 * i, minutes=1)), config
        )
        [due] = delivered.scheduled
        assert due == epoch_ms(at + timedelta(days=3 * i, minutes=1)) + 48 * HOUR + 1
        assert on_clock(delivered.state, due - 2).examples == []  # still inside the window
        settled = on_clock(delivered.state, due)
        [example] = settled.examples
        outcomes.append(example)
        state = settled.state
    assert [(e.target, e.label, e.arm) for e in outcomes] == [
        ("responses", False, "a|interest")
    ] * 2
    assert state.ignored == {"a": 2}
    _, out, left = decide(state, cat, at=at + timedelta(days=7), event_id="e9")
    assert out is None and left["ignored"] == 1


def test_a_response_resets_suppression_and_a_late_one_corrects_the_miss() -> None:
    cat = catalog(action("a", cooldown_hours=0))
    config = ActionsConfig(cat)
    state, out, _ = decide(customer(ignored={"a": 1}), cat)
    assert out is not None
    sent_at = T0 - timedelta(hours=6)
    state = on_feedback(state, feedback(out, "delivered", sent_at), config).state
    state = on_clock(state, epoch_ms(sent_at) + 49 * HOUR).state
    assert state.ignored == {"a": 2} and state.contacts[-1].status == "ignored"
    late = on_feedback(state, feedback(out, "clicked", sent_at + timedelta(hours=50)), config)
    [example] = late.examples
    assert example.label and example.correction and example.score == out.expected_response
    assert late.state.ignored == {} and late.state.contacts[-1].status == "responded"
    again = on_feedback(
        late.state, feedback(out, "converted", sent_at + timedelta(hours=51)), config
    )
    assert again.examples == [] and again.state == late.state  # one response per contact


def test_a_failed_delivery_counts_against_no_cap() -> None:
    cat = catalog(action("a", cooldown_hours=0), policies={"per_channel_day": {"wecom": 1}})
    state, out, _ = decide(customer(), cat, event_id="e1")
    assert out is not None
    failed = on_feedback(
        state, feedback(out, "failed", T0 - timedelta(hours=6)), ActionsConfig(cat)
    )
    assert failed.examples == []
    _, again, _ = decide(failed.state, cat, at=T0 - timedelta(hours=5), event_id="e2")
    assert again is not None


def test_feedback_and_the_window_through_the_batch_protocol() -> None:
    """A worker's path: the action is chosen at a decision, its delivery is
    reported back, and the partition's clock passing the window (an idle
    tick) labels it ignored, as an example for the response statistics."""
    settings = Settings(stage_model="aipl")
    runtime = LocalRuntime(oneid_config(settings), partitions=2, timer_width_ms=10_000)
    room = {"live_room_id": "room-1"}

    async def run() -> None:
        runtime.submit(make_admitted("live.comment", context=room))
        runtime.submit(
            make_admitted("live.product_click", at=T0 + timedelta(minutes=1), context=room)
        )
        await runtime.run()
        [popup] = [o for o in runtime.outputs if isinstance(o, Action) and o.catalog_version]
        runtime.submit_feedback(
            popup.customer_id, feedback(popup, "delivered", T0 + timedelta(minutes=2))
        )
        await runtime.run()
        await runtime.advance_all(epoch_ms(T0 + timedelta(hours=2)))
        [outcome] = [e for e in runtime.examples if e.target == "responses"]
        assert (outcome.decision_id, outcome.label, outcome.arm) == (
            popup.id,
            False,
            "live_viewer_coupon|interest",
        )
        journey = runtime.journey(popup.customer_id)
        assert journey is not None and journey.ignored == {"live_viewer_coupon": 1}
        assert runtime.counts["nba_sent"] == 1

    asyncio.run(run())


def test_contacts_are_bounded_and_keep_the_ones_awaiting_a_response() -> None:
    from streams.core.contacts import add_contact

    waiting = Contact("w", "a", "wecom", "interest", 0, 1, 10, 0.1, "delivered", 0)
    contacts: tuple[Contact, ...] = (waiting,)
    for i in range(1, 50):
        contacts = add_contact(
            contacts, Contact(f"c{i}", "a", "wecom", "interest", i, i + 1, 10, 0.1, "ignored", i), 8
        )
    assert len(contacts) == 8 and contacts[0].id == "w"
    assert [c.id for c in contacts[1:]] == [f"c{i}" for i in range(43, 50)]


def test_actions_need_decisions_and_can_be_turned_off() -> None:
    off = oneid_config(Settings(stage_model="aipl", actions=False)).core
    assert off.decisions is not None and off.decisions.actions is None
    j = Journey(config=off)
    room = {"live_room_id": "room-1"}
    j.send("live.comment", context=room)
    j.send("live.product_click", at=T0 + timedelta(minutes=2), context=room)
    assert j.last is not None
    assert not [o for o in j.last.outputs if isinstance(o, Action) and o.catalog_version]
    assert j.state is not None and j.state.contacts == ()


# --- rule actions under the contact policies -------------------------------------------

ROOM = {"live_room_id": "room-618-beauty"}


def test_a_rule_s_coupon_goes_out_as_its_catalog_action_and_enters_the_contact_history() -> None:
    j = Journey()
    [coupon] = [
        o for o in j.send("live.comment", text="多少钱", context=ROOM) if isinstance(o, Action)
    ]
    assert (coupon.rule_id, coupon.action) == ("live_price_question_coupon", "live_viewer_coupon")
    assert coupon.delivery is not None and coupon.delivery.identifier == VIEWER["live_viewer_id"]
    assert coupon.not_before == T0 and coupon.expires_at == T0 + timedelta(minutes=15)
    assert "rule live_price_question_coupon" in coupon.reasons[1]
    assert j.state is not None
    [contact] = j.state.contacts
    assert (contact.id, contact.action, contact.status) == (coupon.id, "live_viewer_coupon", "sent")
    # ... so arbitration does not send the same pop-up again within its cooldown
    j.send("live.product_click", at=T0 + timedelta(minutes=2), context=ROOM)
    assert j.last is not None and not [o for o in j.last.outputs if isinstance(o, Action)]


def test_a_rule_s_reminder_in_quiet_hours_follows_its_catalog_action(tmp_path: Any) -> None:
    """The shipped reminder is a live-room pop-up (shows run late: exempt);
    a brand whose catalog drops it in quiet hours gets none, and is told why."""
    late = T0 + timedelta(minutes=45)  # 20:45 in Shanghai: due at 21:15, in the quiet hours

    def remind(config: Any) -> Journey:
        j = Journey(config=config)
        j.send("live.coupon_claim", at=late, coupon_id="CP-1", context=ROOM)
        j.send("page.view", at=late + timedelta(minutes=31))
        return j

    shipped = remind(shipped_config())
    assert shipped.last is not None
    [reminder] = [o for o in shipped.last.outputs if isinstance(o, Action)]
    assert reminder.action == "coupon_reminder" and reminder.not_before == late + timedelta(
        minutes=30
    )
    data = shipped_catalog()
    next(a for a in data["actions"] if a["id"] == "coupon_reminder")["quiet_hours"] = "drop"
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    j = remind(oneid_config(Settings(stage_model="aipl", catalog_file=path)).core)
    assert j.last is not None and not [o for o in j.last.outputs if isinstance(o, Action)]
    assert j.last.left_out == {"quiet_hours": 1}
    assert j.state is not None and j.state.pending == ()  # dropped, not kept for later


def test_a_rule_s_reminder_at_a_tick_obeys_the_caps_of_the_day() -> None:
    """The partition clock fires the reminder (``engine.tick``) after the day's
    live pop-ups are used up: it is left out, and said why."""
    from streams.core.engine import tick

    j = Journey()
    config = j.config
    j.send("live.coupon_claim", coupon_id="CP-1", context=ROOM)
    assert j.state is not None
    popups = tuple(
        Contact(f"c{n}", "other_popup", "live_popup", "interest", epoch_ms(T0) + n, 0, 0, 0.1)
        for n in range(3)
    )
    busy = j.state.model_copy(update={"contacts": popups})
    result = tick(busy, epoch_ms(T0 + timedelta(minutes=30)), config)
    assert result.outputs == () and result.left_out == {"channel_day_cap": 1}
    free = tick(j.state, epoch_ms(T0 + timedelta(minutes=30)), config)
    [reminder] = free.outputs
    assert isinstance(reminder, Action) and reminder.action == "coupon_reminder"
    assert reminder.params["coupon_id"] == "CP-1"


def test_a_window_closed_before_an_event_is_ignored_there_not_only_at_the_clock() -> None:
    """The partition's clock lags a customer's events (its idle tick is
    seconds away, or other customers' events hold it back): a delivery whose
    response window closed before the event counts as ignored at that event,
    so the suppression holds for what the event would send."""
    delivered = epoch_ms(T0 - timedelta(hours=13))  # the coupon's 12 h cooldown is over
    contact = Contact(
        "old-1",
        "live_viewer_coupon",
        "live_popup",
        "interest",
        delivered,
        delivered,
        HOUR,
        0.1,
        status="delivered",
        status_ms=delivered,
    )

    def price_question(ignored_before: int) -> Journey:
        j = Journey()
        j.send("live.like", at=T0 - timedelta(hours=14), context=ROOM)
        assert j.state is not None
        j.state = j.state.model_copy(
            update={"contacts": (contact,), "ignored": {"live_viewer_coupon": ignored_before}}
        )
        j.send("live.comment", text="多少钱", context=ROOM)
        return j

    suppressed = price_question(ignored_before=2)
    assert suppressed.last is not None and suppressed.state is not None
    assert not [o for o in suppressed.last.outputs if isinstance(o, Action)]
    assert suppressed.last.left_out == {"ignored": 1}
    assert suppressed.state.ignored == {"live_viewer_coupon": 3}
    [outcome] = [e for e in suppressed.last.examples if e.target == "responses"]
    assert (outcome.decision_id, outcome.label) == ("old-1", False)
    # one ignore short of the limit: it counts, and the coupon still goes out
    sent = price_question(ignored_before=1)
    assert sent.last is not None and sent.state is not None
    [coupon] = [o for o in sent.last.outputs if isinstance(o, Action)]
    assert coupon.action == "live_viewer_coupon"
    assert sent.state.ignored == {"live_viewer_coupon": 2}


def test_a_held_out_customer_s_rule_action_is_logged_not_sent() -> None:
    config = shipped_config()
    assert config.decisions is not None and config.decisions.actions is not None
    cat = config.decisions.actions.catalog
    viewer = next(
        f"douyin:{n}" for n in range(10_000) if in_holdout(f"live_viewer_id:douyin:{n}", cat)
    )
    j = Journey()
    outputs = j.send(
        "live.comment", text="多少钱", context=ROOM, identities={"live_viewer_id": viewer}
    )
    [coupon] = [o for o in outputs if isinstance(o, Action)]
    assert coupon.holdout and "holdout" in coupon.reasons[-1]
    assert j.state is not None and j.state.contacts[-1].status == "holdout"


def test_an_action_rule_outside_the_catalog_is_refused_at_start(tmp_path: Any) -> None:
    from streams.errors import JourneyflowError

    text = resources.files("streams.core").joinpath("rules/default.json").read_text()
    rules = json.loads(text)
    del rules["rules"][0]["catalog_action"]
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    with pytest.raises(JourneyflowError, match="live_price_question_coupon sends action"):
        oneid_config(Settings(rules_file=path))
    rules["rules"][0]["catalog_action"] = "no_such_action"
    path.write_text(json.dumps(rules))
    with pytest.raises(JourneyflowError, match="'no_such_action' is not in catalog"):
        oneid_config(Settings(rules_file=path))
    # without a catalog (or without decisions, which it needs), rules go out as they are
    assert oneid_config(Settings(rules_file=path, decisions=False)).core.decisions is None
    off = oneid_config(Settings(rules_file=path, actions=False)).core
    outputs = Journey(config=off).send("live.comment", text="多少钱", context=ROOM)
    assert [o.action for o in outputs if isinstance(o, Action)] == ["send_coupon"]


# --- the per-partition burst budget ------------------------------------------------


def burst_config(tmp_path: Any, per_minute: float, burst: int) -> Any:
    data = shipped_catalog()
    data["policies"]["burst"] = {"per_minute": per_minute, "burst": burst}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return oneid_config(Settings(stage_model="aipl", catalog_file=path))


def price_questions(viewers: int, start: int, at: datetime) -> list[Any]:
    """One price question each from ``viewers`` viewers in a live room (each
    gets the rule's coupon pop-up when the policies allow)."""
    from streams.batch import Record

    return [
        Record(
            "touchpoints",
            "journeyflow.touchpoints",
            0,
            start + n,
            None,
            json.dumps(
                {
                    "event_id": f"q-{start + n}",
                    "event_type": "live.comment",
                    "channel": "livestream",
                    "occurred_at": (at + timedelta(milliseconds=n)).isoformat(),
                    "identities": {"live_viewer_id": f"douyin:{start + n}"},
                    "context": ROOM,
                    "properties": {"text": "多少钱"},
                }
            ).encode(),
        )
        for n in range(viewers)
    ]


def test_a_burst_budget_caps_the_sends_of_a_partition_in_event_time(tmp_path: Any) -> None:
    """A spike of 60 price questions on one partition of journeys (one
    partition: every key lands there) gets 10 pop-ups (the bucket), the rest
    left out and counted; a minute of event time later the bucket has refilled
    5 sends. The budget is written with the batch, so replay spends it alike."""
    from streams.batch import BatchLimits, budget_key

    def spike(limit: int) -> LocalRuntime:
        rt = LocalRuntime(burst_config(tmp_path, 5, 10), 1, 60_000, limits=BatchLimits(limit))
        asyncio.run(rt.admit(price_questions(60, 0, T0)))
        asyncio.run(rt.run())
        return rt

    rt = spike(1000)
    popups = [o for o in rt.outputs if isinstance(o, Action)]
    assert len(popups) == 10 and rt.counts["nba_left_out_burst_budget"] == 50
    assert budget_key(0) in rt.timers
    asyncio.run(rt.admit(price_questions(20, 60, T0 + timedelta(minutes=1))))
    asyncio.run(rt.run())
    assert len([o for o in rt.outputs if isinstance(o, Action)]) == 15
    # the same whatever the batch size: the budget goes with the partition's records
    small = spike(7)
    assert sorted(o.id for o in small.outputs) == sorted(o.id for o in spike(1000).outputs)


def test_without_a_burst_budget_nothing_is_left_out_for_it(tmp_path: Any) -> None:
    data = shipped_catalog()
    del data["policies"]["burst"]  # the shipped catalog has one (600 a minute)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    config = oneid_config(Settings(stage_model="aipl", catalog_file=path))
    rt = LocalRuntime(config, 1, 60_000)
    asyncio.run(rt.admit(price_questions(60, 0, T0)))
    asyncio.run(rt.run())
    assert len([o for o in rt.outputs if isinstance(o, Action)]) == 60
    assert "nba_left_out_burst_budget" not in rt.counts
