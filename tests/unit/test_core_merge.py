"""Merging journeys (One-ID): folding two event sets separately and merging
equals folding their union, for every field of the journey, the stage
history included (each stage entered at the event that first met its
condition in event-time order; the state keeps the earliest contributions
to each counted metric a stage reads, so a merge knows it too). Decayed
engagement is compared within 1e-9 relative (float rounding). Events here
have distinct times (a tie in event time is ordered by event id).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from factories import T0, make_admitted, shipped_config
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.engine import CoreConfig, step
from streams.core.ingest import Admitted
from streams.core.journey import (
    JourneyLimits,
    JourneyState,
    Pending,
    StageEntry,
    advance_stage,
    apply_event,
    merge_states,
    schedule_decay,
)

SURVIVOR = "member_id:M-1"
ABSORBED = "wechat_openid:wx1:o-2"

#: (event type, extra fields): a mix that touches every field of the journey.
KINDS: list[tuple[str, dict[str, Any]]] = [
    ("live.view_start", {"context": {"live_room_id": "room-a"}}),
    ("live.view_end", {"watch_seconds": 40, "context": {"live_room_id": "room-b"}}),
    ("live.comment", {"text": "多少钱", "context": {"live_room_id": "room-a"}}),
    ("live.coupon_claim", {"coupon_id": "CP-1", "context": {"live_room_id": "room-a"}}),
    ("store.check_in", {"context": {"store_id": "store-1"}}),
    ("store.check_in", {"context": {"store_id": "store-2"}}),
    ("chat.message", {"text": "太差了", "intent": "complaint", "sentiment": -0.9}),
    ("page.view", {}),
    ("custom.lucky_draw", {}),
    ("store.return", {"amount_minor": 500}),
    ("consent.granted", {"channel": "wechat_group", "purpose": "marketing"}),
    ("consent.revoked", {"channel": "wechat_group", "purpose": "marketing"}),
]
TRANSACTIONS = ["live.order", "store.purchase", "order.paid"]

event_specs = st.lists(
    st.tuples(
        st.integers(0, len(KINDS) + len(TRANSACTIONS) - 1),  # kind
        st.integers(0, 60 * 24 * 40),  # minute of the event
        st.integers(0, 3),  # order id (shared across channels) / amount
        st.booleans(),  # side: A or B
    ),
    max_size=40,
    unique_by=lambda spec: spec[1],
)


def build(specs: list[tuple[int, int, int, bool]]) -> list[tuple[Admitted, bool]]:
    events = []
    for i, (kind, minute, order, side) in enumerate(specs):
        fields: dict[str, Any]
        if kind < len(KINDS):
            event_type, fields = KINDS[kind]
        else:
            event_type = TRANSACTIONS[kind - len(KINDS)]
            fields = {"order_id": f"O-{order}", "amount_minor": 1000 * (1 + order + kind % 2)}
        admitted = make_admitted(
            event_type, event_id=f"e-{i:03d}", at=T0 + timedelta(minutes=minute), **fields
        )
        events.append((admitted, side))
    return events


def fold(
    events: list[Admitted], customer_id: str, config: CoreConfig, *, decide: bool
) -> JourneyState | None:
    """The journey of these events, applied in event-time order."""
    state: JourneyState | None = None
    ordered = sorted(events, key=lambda a: (a.occurred_ms, a.event.event_id))
    for offset, admitted in enumerate(ordered):
        admitted = dataclasses.replace(admitted, customer_id=customer_id)
        position = f"0:{offset}"  # where this journey read it: in processing order
        if decide:
            state = step(state, admitted, config, position).state
        else:
            state, outcome = apply_event(
                state,
                customer_id,
                admitted.event,
                config.limits,
                admitted.occurred_ms,
                admitted.source,
                position,
                config.scoring,
            )
            if state is not None and outcome == "processed":
                state = advance_stage(
                    state,
                    config.stage_model,
                    admitted.occurred_ms,
                    admitted.event.event_id,
                    config.limits,
                )
                state = schedule_decay(state, config.stage_model, config.limits)
    return state


def merged_and_union(
    specs: list[tuple[int, int, int, bool]], config: CoreConfig, *, decide: bool
) -> tuple[JourneyState, JourneyState] | None:
    events = build(specs)
    a = fold([e for e, side in events if side], SURVIVOR, config, decide=decide)
    b = fold([e for e, side in events if not side], ABSORBED, config, decide=decide)
    if a is None or b is None:
        return None
    merged = merge_states(a, b, config.stage_model, config.limits, "link-1", config.scoring)
    union = fold([e for e, _ in events], SURVIVOR, config, decide=decide)
    assert union is not None
    # Each side kept its own read positions; the union's are of one run.
    bookkeeping = {"identifiers": (SURVIVOR, ABSORBED), "source_offsets": merged.source_offsets}
    return merged, union.model_copy(update=bookkeeping)


def assert_equal(merged: JourneyState, union: JourneyState) -> None:
    """Equal in every field (decayed engagement within 1e-9 relative: float
    rounding)."""
    assert merged.engagement.keys() == union.engagement.keys()
    for name, (value, at) in merged.engagement.items():
        assert at == union.engagement[name][1]
        assert value == pytest.approx(union.engagement[name][0], rel=1e-9)
    merged = merged.model_copy(update={"engagement": union.engagement})
    assert merged.stage_history == union.stage_history
    assert merged == union


@settings(max_examples=300, deadline=None)
@given(event_specs)
def test_merging_two_folds_equals_folding_the_union(specs: list[Any]) -> None:
    result = merged_and_union(specs, shipped_config(), decide=False)
    if result is not None:
        assert_equal(*result)


@settings(max_examples=200, deadline=None)
@given(event_specs)
def test_the_property_holds_with_the_shipped_rules_deciding(specs: list[Any]) -> None:
    """With rules: once-per scopes fired on either side are fired on the
    merged journey, reminders one side scheduled are cancelled by an order on
    the other, as in one journey (the outputs themselves may differ: each
    side decided alone before the link was known). Recorded decisions, too,
    are each side's own: what each knew when it decided."""
    result = merged_and_union(specs, shipped_config(), decide=True)
    if result is None:
        return
    merged, union = result
    assert set(merged.fired) >= set(union.fired)
    same = {"fired", "pending", "decisions", "labelled", "last_decision_ms", "contacts", "ignored"}
    assert_equal(merged.model_copy(update={k: getattr(union, k) for k in same}), union)
    assert {p.rule_id for p in merged.pending} >= {p.rule_id for p in union.pending}


def test_an_order_reported_on_both_sides_counts_once_with_its_earliest_record() -> None:
    config = shipped_config()
    live = make_admitted("live.order", order_id="O-7", amount_minor=9900, at=T0)
    paid = make_admitted(
        "order.paid", order_id="O-7", amount_minor=9900, at=T0 + timedelta(hours=1)
    )
    a = fold([paid], SURVIVOR, config, decide=False)
    b = fold([live], ABSORBED, config, decide=False)
    assert a is not None and b is not None

    merged = merge_states(a, b, config.stage_model, config.limits, "x")

    assert (merged.transactions, merged.spend_minor) == (1, {"CNY": 9900})
    assert merged.events_total == 2
    assert merged.last_purchase_ms == live.occurred_ms
    assert merged.stage == "purchase"  # one order, reported twice: not loyalty


def test_two_purchases_one_on_each_side_reach_loyalty_at_the_merge() -> None:
    config = shipped_config()
    a = fold(
        [make_admitted("store.purchase", order_id="S-1", at=T0)], SURVIVOR, config, decide=False
    )
    b = fold(
        [make_admitted("live.order", order_id="L-1", at=T0 + timedelta(days=1))],
        ABSORBED,
        config,
        decide=False,
    )
    assert a is not None and b is not None

    merged = merge_states(a, b, config.stage_model, config.limits, "link-9")

    assert merged.stage == "loyalty"
    # as one journey of both purchases: loyal at the second one
    second = b.recent[-1]
    assert merged.stage_history[-1] == StageEntry(
        stage="loyalty", entered_ms=second[0], cause_event_id=second[1]
    )
    assert merged.stage_history[-2].stage == "purchase"
    assert merged.stage_history[-2].entered_ms == a.last_seen_ms


def test_a_reminder_on_one_side_is_cancelled_by_a_later_order_on_the_other() -> None:
    limits = JourneyLimits()
    reminder = Pending(
        rule_id="r", due_ms=5000, created_ms=1000, cause_event_id="c", cancel_on=("live.order",)
    )
    a = JourneyState(customer_id=SURVIVOR, pending=(reminder,), events_total=1)
    ordered = JourneyState(
        customer_id=ABSORBED, events_total=1, last_ms_by_type={"live.order": 2000}
    )
    earlier = JourneyState(
        customer_id=ABSORBED, events_total=1, last_ms_by_type={"live.order": 500}
    )
    model = shipped_config().stage_model

    assert merge_states(a, ordered, model, limits, "x").pending == ()
    assert merge_states(a, earlier, model, limits, "x").pending == (reminder,)


def test_consent_keeps_the_newest_change_whichever_side_holds_it() -> None:
    limits = JourneyLimits()
    model = shipped_config().stage_model
    key = "wechat_group:marketing"
    granted = JourneyState(customer_id=SURVIVOR, consent={key: True}, consent_ms={key: 100})
    revoked = JourneyState(customer_id=ABSORBED, consent={key: False}, consent_ms={key: 200})

    assert merge_states(granted, revoked, model, limits, "x").consent == {key: False}
    assert merge_states(
        revoked.model_copy(update={"customer_id": SURVIVOR}),
        granted.model_copy(update={"customer_id": ABSORBED}),
        model,
        limits,
        "x",
    ).consent == {key: False}
