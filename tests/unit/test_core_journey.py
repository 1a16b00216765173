"""The journey engine (``streams.core.engine.step``) with the shipped stage
model and rules: counters, stages, transactions, consent, dedupe, erasure,
bounded state and the versioned table record."""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from factories import T0, Journey, epoch_ms, make_admitted, shipped_config

from streams.batch import PartitionView
from streams.core import window
from streams.core.engine import CoreConfig, step
from streams.core.journey import (
    DECISION_FIELDS,
    STATE_VERSION,
    JourneyLimits,
    JourneyState,
    StageEntry,
    decode_state,
    encode_state,
    journeys_in,
    table_records,
)

GOLDEN_STATE = Path(__file__).resolve().parents[1] / "fixtures" / "journey_state_v1.json"
MEMBER = {"member_id": "M-77"}


def ms(delta: timedelta = timedelta(0)) -> int:
    return epoch_ms(T0 + delta)


MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


# --- counters and times --------------------------------------------------------


def test_counts_events_per_channel_and_type() -> None:
    j = Journey()
    j.send("live.comment")
    j.send("live.comment")
    j.send("live.like")
    j.send("store.check_in", context={"store_id": "store-1"})
    j.send("order.paid")

    assert j.state is not None
    assert j.state.events_total == 5
    assert j.state.channel_counts == {"livestream": 3, "store": 1, "ecommerce": 1}
    assert j.state.event_counts == {
        "live.comment": 2,
        "live.like": 1,
        "store.check_in": 1,
        "order.paid": 1,
    }
    assert j.state.last_store_id == "store-1"


def test_first_and_last_seen_follow_event_time_not_arrival_order() -> None:
    j = Journey()
    j.send("live.like", at=T0 + 10 * MIN)
    j.send("live.like", at=T0)
    j.send("live.like", at=T0 + 5 * MIN)

    assert j.state is not None
    assert (j.state.first_seen_ms, j.state.last_seen_ms) == (ms(), ms(10 * MIN))


def test_custom_events_share_one_counter_bucket() -> None:
    j = Journey()
    j.send("custom.lucky_spin")
    j.send("custom.survey.answered")
    j.send("custom.xyz")

    assert j.state is not None
    assert j.state.event_counts == {"custom.*": 3}


# --- stages ------------------------------------------------------------------


def test_aipl_progresses_with_entry_times_and_causes() -> None:
    j = Journey()
    j.send("page.view", event_id="e-view", at=T0)
    assert j.state is not None and j.state.stage == "awareness"
    j.send("live.like", event_id="e-like", at=T0 + MIN)
    assert j.state.stage == "interest"
    j.send("order.paid", event_id="e-paid", at=T0 + HOUR, order_id="O-1")
    assert j.state.stage == "purchase"
    j.send("store.purchase", event_id="e-store", at=T0 + DAY, order_id="O-2")

    assert j.state.stage == "loyalty"
    assert j.state.stage_history == (
        StageEntry(stage="awareness", entered_ms=ms(), cause_event_id="e-view"),
        StageEntry(stage="interest", entered_ms=ms(MIN), cause_event_id="e-like"),
        StageEntry(stage="purchase", entered_ms=ms(HOUR), cause_event_id="e-paid"),
        StageEntry(stage="loyalty", entered_ms=ms(DAY), cause_event_id="e-store"),
    )


def test_a_first_purchase_jumps_straight_to_purchase() -> None:
    j = Journey()
    j.send("store.purchase", event_id="e-walk-in")
    assert j.state is not None
    assert j.state.stage == "purchase"
    assert [(e.stage, e.cause_event_id) for e in j.state.stage_history] == [
        ("purchase", "e-walk-in")
    ]


def test_watching_a_minute_of_livestream_shows_interest() -> None:
    j = Journey()
    j.send("live.view_start")
    j.send("live.view_end", watch_seconds=59, at=T0 + MIN)
    assert j.state is not None
    assert (j.state.stage, j.state.watch_seconds) == ("awareness", 59)

    j.send("live.view_end", event_id="e-more", watch_seconds=1, at=T0 + 2 * MIN)

    assert (j.state.stage, j.state.watch_seconds) == ("interest", 60)
    assert j.state.stage_history[-1].cause_event_id == "e-more"


def test_stages_never_move_back() -> None:
    j = Journey()
    j.send("order.paid", order_id="O-1")
    j.send("order.paid", order_id="O-2")
    j.send("order.refund", order_id="O-2")
    j.send("page.view")
    assert j.state is not None
    assert j.state.stage == "loyalty"


# --- transactions --------------------------------------------------------------


def test_one_order_seen_on_two_channels_is_one_transaction() -> None:
    j = Journey()
    j.send("live.order", order_id="O-9", amount_minor=29900, at=T0)
    j.send("order.paid", order_id="O-9", amount_minor=29900, at=T0 + MIN)

    assert j.state is not None
    assert j.state.transactions == 1
    assert j.state.spend_minor == {"CNY": 29900}
    assert j.state.stage == "purchase"  # not loyalty: one purchase, reported twice
    assert j.state.last_purchase_ms == ms()


def test_spend_is_kept_per_currency() -> None:
    j = Journey()
    j.send("order.paid", order_id="O-1", amount_minor=100)
    j.send("order.paid", order_id="O-2", amount_minor=250, currency="HKD")
    j.send("store.purchase", order_id="O-3", amount_minor=900)

    assert j.state is not None
    assert j.state.transactions == 3
    assert j.state.spend_minor == {"CNY": 1000, "HKD": 250}


def test_refunds_are_summed_and_leave_transactions_alone() -> None:
    j = Journey()
    j.send("order.paid", order_id="O-1", amount_minor=19900)
    j.send("order.refund", order_id="O-1", amount_minor=4990)
    j.send("store.return", order_id="O-1", amount_minor=1000)
    j.send("order.refund", order_id="O-1", amount_minor=None)  # amount unknown: not summed

    assert j.state is not None
    assert j.state.refunds_minor == {"CNY": 5990}
    assert j.state.transactions == 1
    assert j.state.spend_minor == {"CNY": 19900}
    assert j.state.event_counts["order.refund"] == 2


# --- consent -------------------------------------------------------------------


def test_consent_granted_then_revoked() -> None:
    j = Journey()
    j.send("consent.granted", channel="wechat_group", purpose="marketing", at=T0)
    j.send("consent.granted", channel="chatbot", purpose="service", at=T0)
    assert j.state is not None
    assert j.state.consent == {"wechat_group:marketing": True, "chatbot:service": True}

    j.send("consent.revoked", channel="wechat_group", purpose="marketing", at=T0 + DAY)

    assert j.state.consent == {"wechat_group:marketing": False, "chatbot:service": True}


def test_a_late_older_grant_does_not_undo_a_newer_revoke() -> None:
    j = Journey()
    j.send("consent.revoked", channel="wechat_group", purpose="marketing", at=T0 + DAY)
    j.send("consent.granted", channel="wechat_group", purpose="marketing", at=T0)  # late

    assert j.state is not None
    assert j.state.consent == {"wechat_group:marketing": False}


def test_revoke_wins_a_tie_in_event_time() -> None:
    for order in (("consent.granted", "consent.revoked"), ("consent.revoked", "consent.granted")):
        j = Journey()
        for event_type in order:
            j.send(event_type, channel="wechat_group", purpose="marketing", at=T0)
        assert j.state is not None
        assert j.state.consent == {"wechat_group:marketing": False}, order


# --- duplicates and erasure ------------------------------------------------------


def test_an_exact_duplicate_changes_nothing_but_the_duplicate_count() -> None:
    j = Journey()
    j.send("page.view")
    question = {
        "event_id": "q-1",
        "text": "这个多少钱",
        "context": {"live_room_id": "room-618-beauty"},
    }
    assert j.apply(make_admitted("live.comment", **question)), "the first one decides"
    before = j.state
    assert before is not None

    resent = make_admitted("live.comment", **question)  # re-sent: a new record
    outputs = j.apply(resent)

    assert j.last is not None and j.last.outcome == "duplicate"
    assert outputs == ()
    assert j.state is not None
    # it was read, after all: its position is remembered (so reading it again is a redelivery)
    bookkeeping = {"source_offsets": j.state.source_offsets, "recent": j.state.recent}
    assert j.state == before.model_copy(update={"duplicates": before.duplicates + 1, **bookkeeping})
    assert j.state.recent_event_ids == before.recent_event_ids

    j.apply(dataclasses.replace(resent, source=resent.source))  # that record once more
    assert j.last.outcome == "redelivered"


def test_a_duplicate_record_sent_again_on_a_new_internal_position_is_not_counted_twice() -> None:
    """After a crash the admission step re-sends records it had already
    passed on: the journey reads them at new positions of its own topic."""
    j = Journey()
    first = make_admitted("page.view", event_id="e-1")
    dup = make_admitted("page.view", event_id="e-1")  # the producer sent it twice
    state = step(None, first, j.config, "0:1").state
    state = step(state, dup, j.config, "0:2").state
    again = step(state, dup, j.config, "0:7")  # re-sent by admission after a restart

    assert again.outcome == "redelivered"
    assert again.state == state
    assert state is not None and (state.events_total, state.duplicates) == (1, 1)


def test_a_redelivery_is_recognised_even_beyond_the_dedupe_window() -> None:
    j = Journey()
    first = make_admitted("page.view", event_id="old-1")
    j.apply(first)
    for i in range(j.config.limits.recent_event_ids + 10):
        j.send("page.view", event_id=f"later-{i}")
    before = j.state

    j.apply(first)  # a restart re-reads an old, uncommitted record

    assert j.last is not None and j.last.outcome == "redelivered"
    assert j.state == before


def test_a_record_skipped_and_read_after_later_ones_still_counts_once() -> None:
    """Around a rebalance a record can be read after later ones of its
    partition (streams.transport rewinds to it): it is applied then, once."""
    j = Journey()
    skipped = make_admitted("page.view", event_id="e-196", at=T0 + MIN)
    later = make_admitted("live.like", event_id="e-198", at=T0 + 2 * MIN)
    state = step(None, later, j.config, "0:198").state

    first = step(state, skipped, j.config, "0:196")
    again = step(first.state, skipped, j.config, "0:196")  # and once more after a crash

    assert first.outcome == "processed"
    assert again.outcome == "redelivered" and again.state == first.state
    assert first.state is not None and first.state.events_total == 2
    assert set(first.state.recent_event_ids) == {"e-196", "e-198"}


def test_a_redelivered_record_changes_nothing_at_all() -> None:
    """After a crash the worker re-reads records it had applied but not
    committed: they are not the producer's duplicates and are not counted."""
    j = Journey()
    question = make_admitted(
        "live.comment", text="这个多少钱", context={"live_room_id": "room-618-beauty"}
    )
    assert j.apply(question)
    before = j.state

    outputs = j.apply(question)  # the same input record (same partition and offset)

    assert j.last is not None and j.last.outcome == "redelivered"
    assert outputs == ()
    assert j.state == before


def test_a_duplicate_is_caught_anywhere_in_the_window() -> None:
    j = Journey()
    j.send("live.like", event_id="e-old")
    window = shipped_config().limits.recent_event_ids
    for i in range(window - 1):
        j.send("live.like", event_id=f"e-{i}")

    j.send("live.like", event_id="e-old")

    assert j.last is not None and j.last.outcome == "duplicate"
    assert j.state is not None and j.state.events_total == window


def test_privacy_erase_forgets_the_journey() -> None:
    j = Journey()
    j.send("order.paid")
    j.send("live.comment")

    outputs = j.send("privacy.erase")

    assert j.last is not None and j.last.outcome == "erased"
    assert (j.state, outputs) == (None, ())
    j.send("page.view")  # a later event starts a new journey from nothing
    assert j.state is not None
    assert (j.state.events_total, j.state.transactions, j.state.stage) == (1, 0, "awareness")


# --- bounded state ---------------------------------------------------------------


def _noisy_event(i: int) -> dict[str, Any]:
    """One of many distinct-looking events of one member: new ids, custom names,
    orders, rooms, stores, devices and consent purposes."""
    common: dict[str, Any] = {
        "event_id": f"bulk-{i:06d}",
        "at": T0 + i * MIN,
        "identities": {**MEMBER, "device_id": f"dev-{i:06d}"},
    }
    kind = i % 6
    if kind == 0:
        return {"event_type": f"custom.brand_event_{i:06d}", **common}
    if kind == 1:
        return {"event_type": "order.paid", "order_id": f"O-{i:06d}", **common}
    if kind == 2:
        room = {"live_room_id": f"room-{i:06d}"}
        return {"event_type": "live.comment", "text": "多少钱?", "context": room, **common}
    if kind == 3:
        store = {"store_id": f"store-{i:06d}"}
        return {"event_type": "store.check_in", "context": store, **common}
    if kind == 4:
        return {"event_type": "consent.granted", "purpose": f"p-{i:06d}", **common}
    return {"event_type": "live.view_end", "watch_seconds": 30, **common}


def test_state_size_stays_bounded_however_long_the_history() -> None:
    j = Journey()
    sizes: dict[int, int] = {}
    for i in range(1, 5001):
        spec = _noisy_event(i)
        j.apply(make_admitted(spec.pop("event_type"), **spec))
        if i in (1000, 5000):
            assert j.state is not None
            sizes[i] = len(encode_state(j.state))

    limits = shipped_config().limits
    state = j.state
    assert state is not None
    assert state.events_total == 5000
    assert abs(sizes[5000] - sizes[1000]) <= 32  # only counters' digits may grow
    assert sizes[5000] < 48_000
    assert len(state.recent_event_ids) == limits.recent_event_ids
    assert state.recent_event_ids[-1] == "bulk-005000"
    assert len(state.order_ids) == limits.order_ids
    assert state.identifiers == ("member_id:M-77",)  # linking is One-ID's, bounded there
    assert len(state.fired) == limits.fired
    assert len(state.consent) == len(state.consent_ms) == limits.consents
    assert state.event_counts["custom.*"] == 833


# --- the table record ------------------------------------------------------------


def _realistic_journey() -> Journey:
    """A member who joins a WeChat group, watches a livestream, asks the price,
    buys live (reported twice), checks in and buys at a store, comes back as a
    VIP, complains to the chatbot, gets a partial refund and spins a brand wheel."""
    live = {"live_room_id": "room-618-beauty"}
    viewer = {**MEMBER, "live_viewer_id": "douyin:88231"}
    store = {"store_id": "store-sh-jingan", "sales_rep_id": "rep-17"}
    in_store = {**MEMBER, "phone": "+86 138-0013-8000"}
    j = Journey()
    j.send("group.join", event_id="g-1", at=T0 - 3 * DAY, identities=MEMBER)
    j.send("live.view_start", event_id="l-1", at=T0, identities=viewer, context=live)
    j.send(
        "live.comment",
        event_id="l-2",
        at=T0 + 2 * MIN,
        identities=viewer,
        context=live,
        text="这个多少钱",
    )
    j.send(
        "live.view_end",
        event_id="l-3",
        at=T0 + 30 * MIN,
        identities=viewer,
        context=live,
        watch_seconds=1834,
    )
    j.send(
        "live.order",
        event_id="l-4",
        at=T0 + 31 * MIN,
        identities=viewer,
        context=live,
        order_id="O-1",
        amount_minor=29900,
    )
    j.send(
        "order.paid",
        event_id="o-1",
        at=T0 + 32 * MIN,
        identities=MEMBER,
        order_id="O-1",
        amount_minor=29900,
    )
    j.send(
        "consent.granted",
        event_id="c-1",
        at=T0 + DAY,
        identities=MEMBER,
        channel="wechat_group",
        purpose="marketing",
    )
    j.send("store.check_in", event_id="s-1", at=T0 + 2 * DAY, identities=in_store, context=store)
    j.send(
        "store.purchase",
        event_id="s-2",
        at=T0 + 2 * DAY + 10 * MIN,
        identities=in_store,
        context=store,
        order_id="SO-2",
        amount_minor=499000,
    )
    # the next visit, now as a VIP
    j.send(
        "store.check_in", event_id="s-3", at=T0 + 3 * DAY - HOUR, identities=in_store, context=store
    )
    j.send(
        "chat.message",
        event_id="ch-1",
        at=T0 + 3 * DAY,
        identities=MEMBER,
        context={"sales_rep_id": "rep-17"},
        text="快递太慢了",
        intent="complaint",
        sentiment=-0.8,
    )
    j.send(
        "order.refund",
        event_id="r-1",
        at=T0 + 4 * DAY,
        identities=MEMBER,
        order_id="O-1",
        amount_minor=4990,
    )
    j.send("custom.lucky_spin", event_id="x-1", at=T0 + 4 * DAY + HOUR, identities=MEMBER)
    # the price question again, redelivered by the producer
    j.send(
        "live.comment",
        event_id="l-2",
        at=T0 + 2 * MIN,
        identities=viewer,
        context=live,
        text="这个多少钱",
    )
    return j


#: The once_per keys the golden record was written with (by the rules of its day).
GOLDEN_FIRED = (
    "live_price_question_coupon|room-618-beauty",
    "live_price_question_host_cue|room-618-beauty",
    "vip_store_check_in|store-sh-jingan:2026-11-26",
)


def _check_golden_values(state: JourneyState) -> None:
    assert state.version == STATE_VERSION
    assert state.customer_id == "member_id:M-77"
    assert state.stage == "loyalty"
    assert [(e.stage, e.entered_ms, e.cause_event_id) for e in state.stage_history] == [
        ("awareness", ms(-3 * DAY), "g-1"),
        ("interest", ms(2 * MIN), "l-2"),
        ("purchase", ms(31 * MIN), "l-4"),
        ("loyalty", ms(2 * DAY + 10 * MIN), "s-2"),
    ]
    assert (state.first_seen_ms, state.last_seen_ms) == (ms(-3 * DAY), ms(4 * DAY + HOUR))
    assert (state.events_total, state.duplicates) == (13, 1)
    assert state.channel_counts == {
        "wechat_group": 1,
        "livestream": 4,
        "ecommerce": 2,
        "mini_program": 2,
        "store": 3,
        "chatbot": 1,
    }
    assert state.event_counts["live.comment"] == 1
    assert state.event_counts["custom.*"] == 1
    assert state.watch_seconds == 1834
    assert state.transactions == 2
    assert state.order_ids == ("O-1", "SO-2")
    assert state.spend_minor == {"CNY": 528900}
    assert state.refunds_minor == {"CNY": 4990}
    assert state.last_purchase_ms == ms(2 * DAY + 10 * MIN)
    assert (state.last_live_room_id, state.last_store_id) == ("room-618-beauty", "store-sh-jingan")
    assert state.consent == {"wechat_group:marketing": True}
    # which once_per keys exist depends on the rules shipped at the time
    assert set(GOLDEN_FIRED) <= set(state.fired)
    assert state.recent_event_ids[0] == "g-1"
    assert len(state.recent_event_ids) == 13


def test_the_realistic_journey_is_what_the_golden_record_holds() -> None:
    state = _realistic_journey().state
    assert state is not None
    _check_golden_values(state)
    # One journey driven alone holds only its own id: identifiers join a
    # customer through One-ID linking (tests/unit/test_core_oneid.py).
    assert state.identifiers == ("member_id:M-77",)


def test_golden_v1_record_decodes_to_the_journey_it_was_written_for() -> None:
    raw = GOLDEN_STATE.read_bytes()
    assert orjson.loads(raw)["version"] == 1
    state = decode_state(raw)
    _check_golden_values(state)
    assert state.identifiers[:2] == ("member_id:M-77", "live_viewer_id:douyin:88231")
    [phone] = state.identifiers[2:]
    assert phone.startswith("phone:test-k1:")
    assert state.fired == GOLDEN_FIRED


def test_a_restored_journey_still_drops_redelivered_events() -> None:
    state = decode_state(GOLDEN_STATE.read_bytes())
    redelivered = make_admitted("order.paid", event_id="s-2", order_id="SO-2", identities=MEMBER)

    result = step(state, redelivered, shipped_config())

    assert result.outcome == "duplicate"
    assert result.outputs == ()
    assert result.state is not None and result.state.transactions == 2


@pytest.mark.parametrize(
    "dropped",
    [
        ("consent", "consent_ms"),
        ("fired",),
        ("stage_history",),
        ("consent", "consent_ms", "fired", "stage_history", "refunds_minor", "version"),
    ],
    ids=lambda d: "+".join(d),
)
def test_a_record_from_an_older_writer_loads_with_defaults(dropped: tuple[str, ...]) -> None:
    data = orjson.loads(GOLDEN_STATE.read_bytes())
    for name in dropped:
        del data[name]

    state = decode_state(orjson.dumps(data))

    defaults = JourneyState(customer_id="x")
    for name in dropped:
        assert getattr(state, name) == getattr(defaults, name)
    assert state.transactions == 2
    assert state.stage == "loyalty"


def test_a_record_from_a_newer_writer_loads_and_ignores_what_it_does_not_know() -> None:
    data = orjson.loads(GOLDEN_STATE.read_bytes())
    data["propensity"] = {"convert": 0.42, "model_version": "v7"}
    data["next_best_action_cooldowns"] = []

    state = decode_state(orjson.dumps(data))

    assert state == decode_state(GOLDEN_STATE.read_bytes())


def test_encode_decode_round_trip() -> None:
    state = _realistic_journey().state
    assert state is not None
    raw = encode_state(state)
    assert decode_state(raw) == state
    assert encode_state(decode_state(raw)) == raw


def test_a_journey_record_leaves_out_what_a_reader_fills_in() -> None:
    fresh = JourneyState(customer_id="member_id:M-1", identifiers=("member_id:M-1",))
    raw = encode_state(fresh)
    # every empty list, map, zero and null is a default: only what is known is written
    assert raw.startswith(b'{"version":%d,' % STATE_VERSION)
    assert set(orjson.loads(raw)) == {"version", "customer_id", "identifiers"}
    assert decode_state(raw) == fresh
    legacy = fresh.model_copy(update={"progress": None})  # a v4 journey: not a default
    assert orjson.loads(encode_state(legacy))["progress"] is None
    assert decode_state(encode_state(legacy)).progress is None


def test_a_journeys_table_holds_the_window_in_pages_and_reads_it_back() -> None:
    """Through the batch protocol's view of the journeys table: appends, a
    full window dropping its oldest, a late event sorted in, a producer's
    duplicate and JSON escapes. After every event the record names its
    pages, no longer holds ``recent`` itself, and the journey read back from
    the table is the one written."""
    small = CoreConfig(
        shipped_config().stage_model, shipped_config().rules, JourneyLimits(recent_event_ids=40)
    )
    j = Journey(config=small)
    table: dict[bytes, bytes] = {}
    sends: list[tuple[str, dict[str, Any]]] = [
        *(("live.comment", {"event_id": f"e-{i}", "at": T0 + i * MIN}) for i in range(80)),
        ("live.like", {"event_id": "e-late", "at": T0 + 60 * MIN + timedelta(seconds=1)}),
        ("live.like", {"event_id": "e-79", "at": T0 + 79 * MIN}),  # a producer's duplicate
        ("live.like", {"event_id": 'e-"7"', "at": T0 + 90 * MIN}),  # JSON escapes
    ]
    for event_type, overrides in sends:
        j.send(event_type, **overrides)
        assert j.state is not None
        key = j.state.customer_id.encode()
        write(table, j.state)
        record = orjson.loads(table[key])
        assert "recent" not in record and record["window"][2] == len(j.state.recent)
        read = journeys_in(table)[key.decode()]
        assert read.recent == j.state.recent
        assert read == j.state.model_copy(update={f: read.__dict__[f] for f in DECISION_FIELDS})
    assert j.state.recent_event_ids[0] == "e-43"  # full: the oldest dropped
    assert "e-late" in j.state.recent_event_ids
    # e-0 .. e-31 were left behind by the window: their page is gone
    assert sorted(k for k in table if k != key) == [window.page_key(key, n) for n in (1, 2)]
    assert len(orjson.loads(table[window.page_key(key, 2)])) == 80 + 3 - 2 * window.PAGE


def write(table: dict[bytes, bytes], state: JourneyState) -> None:
    """Write one journey through the batch protocol's view of its table."""
    tables: dict[str, dict[bytes, bytes]] = {"journeys": table, "decisions": {}, "timers": {}}

    class Reader:
        def read(self, name: str, partition: int, k: bytes) -> bytes | None:
            return tables[name].get(k)

    view = PartitionView(Reader(), 0)
    view.journey(state.customer_id)
    view.set_journey(state.customer_id, state)
    for k, v in view.changes()["journeys"].items():
        if v is None:
            table.pop(k, None)
        else:
            table[k] = v


def test_a_journey_seeded_from_nothing_reads_back() -> None:
    j = Journey()
    for i in range(70):
        j.send("live.comment", event_id=f"e-{i}", at=T0 + i * MIN)
    assert j.state is not None
    records = table_records(j.state)
    assert [k for k, _ in records][-1] == j.state.customer_id.encode()  # the record last
    assert len(records) == 1 + 3  # 70 entries: three pages
    assert journeys_in(dict(records))[j.state.customer_id].recent == j.state.recent


def test_a_v7_record_holding_its_window_reads_as_written_and_moves_it_to_pages() -> None:
    j = Journey()
    for i in range(3):
        j.send("live.comment", event_id=f"e-{i}")
    assert j.state is not None
    v7 = orjson.loads(encode_state(j.state))
    v7["version"] = 7
    key = j.state.customer_id.encode()
    table = {key: orjson.dumps(v7)}
    assert journeys_in(table)[j.state.customer_id].recent == j.state.recent
    write(table, j.state.model_copy(update={"version": STATE_VERSION}))
    assert "recent" not in orjson.loads(table[key])
    assert set(table) == {key, window.page_key(key, 0)}
    assert journeys_in(table)[j.state.customer_id].recent == j.state.recent


def test_tighter_limits_are_honoured() -> None:
    small = CoreConfig(
        shipped_config().stage_model,
        shipped_config().rules,
        JourneyLimits(recent_event_ids=3, order_ids=2),
    )
    j = Journey(config=small)
    for i in range(5):
        j.send("order.paid", event_id=f"e-{i}", order_id=f"O-{i}")
    assert j.state is not None
    assert j.state.recent_event_ids == ("e-2", "e-3", "e-4")
    assert j.state.order_ids == ("O-3", "O-4")


if __name__ == "__main__":  # pragma: no cover
    # How the golden record was written. Never overwrite it: a record format
    # change keeps this v1 file (old records must still load) and adds a new one.
    if GOLDEN_STATE.exists() and "--force" not in sys.argv:
        sys.exit(f"{GOLDEN_STATE} exists; it is a frozen v1 record")
    journey_state = _realistic_journey().state
    assert journey_state is not None
    GOLDEN_STATE.write_bytes(encode_state(journey_state))
    print(f"wrote {GOLDEN_STATE}")


def test_a_late_order_dates_the_purchase_stage_by_when_it_happened() -> None:
    """Stage entry times follow event time, not arrival: an order paid at
    the till on Monday but reported on Wednesday, after a Tuesday livestream
    order, makes Monday the purchase and Tuesday the second (loyalty)."""
    j = Journey()
    j.send("live.view_start", event_id="e-view", at=T0)
    j.send("live.order", event_id="e-tue", order_id="L-1", at=T0 + DAY)
    j.send("store.purchase", event_id="e-mon", order_id="S-1", at=T0 + HOUR)  # arrives last

    assert j.state is not None
    assert [(e.stage, e.entered_ms, e.cause_event_id) for e in j.state.stage_history] == [
        ("awareness", ms(), "e-view"),
        ("purchase", ms(HOUR), "e-mon"),
        ("loyalty", ms(DAY), "e-tue"),
    ]


def test_a_journey_written_before_v5_keeps_its_history_and_goes_on_by_arrival() -> None:
    config = shipped_config()
    j = Journey()
    j.send("live.view_start", event_id="e-view", at=T0)
    assert j.state is not None
    v4 = orjson.loads(encode_state(j.state))
    v4.pop("progress")
    v4["version"] = 4

    state = decode_state(orjson.dumps(v4))
    assert state.progress is None and state.stage_history == j.state.stage_history
    later = step(state, make_admitted("order.paid", order_id="O-1", at=T0 + DAY), config).state

    assert later is not None and later.progress is None
    assert [e.stage for e in later.stage_history] == ["awareness", "purchase"]
    assert later.stage_history[-1].entered_ms == ms(DAY)


def test_stage_history_is_the_same_whatever_order_the_order_records_arrive_in() -> None:
    """Three orders; the third was also reported earlier by another channel,
    and that report arrives last. As in event-time order: bought at the
    earliest report, loyal at the next order."""
    events = [
        make_admitted("live.order", event_id="e-a", order_id="A", at=T0 + 10 * MIN),
        make_admitted("live.order", event_id="e-b", order_id="B", at=T0 + 20 * MIN),
        make_admitted("order.paid", event_id="e-c", order_id="C", at=T0 + 30 * MIN),
        make_admitted("store.purchase", event_id="e-c0", order_id="C", at=T0 + 5 * MIN),
    ]

    def history(arrival: list[Any]) -> list[tuple[str, int, str]]:
        j = Journey()
        for admitted in arrival:
            j.apply(admitted)
        assert j.state is not None and j.state.transactions == 3
        return [(e.stage, e.entered_ms, e.cause_event_id) for e in j.state.stage_history]

    in_time = history(sorted(events, key=lambda a: a.occurred_ms))
    assert in_time == [("purchase", ms(5 * MIN), "e-c0"), ("loyalty", ms(10 * MIN), "e-a")]
    assert history(events) == in_time
