"""The due-time index over plain dicts (the worker uses Faust tables)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from factories import T0, Journey, epoch_ms, shipped_config

from streams.core.engine import TickResult
from streams.core.journey import encode_state
from streams.timer_index import EncodedJourneys, TimerIndex, clock_key

ROOM = {"live_room_id": "room-618-beauty"}


def claimed(customer: str, at=T0) -> Journey:
    # reminders only: a claim is also a decision point, whose label is due days later
    j = Journey(config=dataclasses.replace(shipped_config(), decisions=None))
    j.send(
        "live.coupon_claim",
        event_id=f"claim-{customer}",
        at=at,
        coupon_id="CP-1",
        context=ROOM,
        identities={"live_viewer_id": customer},
    )
    return j


def test_moving_the_clock_fires_each_due_customer_once() -> None:
    timers: dict[bytes, bytes] = {}
    journeys: dict[bytes, bytes] = {}
    index = TimerIndex(timers, EncodedJourneys(journeys), width_ms=10_000)
    for n, viewer in enumerate(["douyin:1", "douyin:2", "douyin:3"]):
        j = claimed(viewer, at=T0 + timedelta(minutes=n))
        assert j.state is not None and j.last is not None
        journeys[j.state.customer_id.encode()] = encode_state(j.state)
        index.add(0, j.state.customer_id, j.last.scheduled, epoch_ms(T0))
    sent: list = []

    def emit(result: TickResult) -> None:
        sent.extend(result.outputs)

    index.advance(0, epoch_ms(T0 + timedelta(minutes=31, seconds=10)), emit)
    assert [o.customer_id for o in sent] == ["live_viewer_id:douyin:1", "live_viewer_id:douyin:2"]
    index.advance(0, epoch_ms(T0 + timedelta(minutes=31, seconds=10)), emit)
    assert len(sent) == 2  # nothing twice
    index.advance(0, epoch_ms(T0 + timedelta(hours=5)), emit)
    assert [o.customer_id for o in sent][-1] == "live_viewer_id:douyin:3"
    assert len(sent) == 3
    assert [k for k in timers if k != clock_key(0)] == []  # index emptied


def test_the_clock_is_read_from_the_table_not_a_stale_copy() -> None:
    timers: dict[bytes, bytes] = {}
    index = TimerIndex(timers, EncodedJourneys({}), width_ms=10_000)

    def emit(outputs) -> None:
        raise AssertionError("nothing is due")

    index.advance(3, 1_000_000, emit)
    assert index.clock(3) is not None and index.clock(3).clock_ms == 1_000_000
    other = TimerIndex(
        timers, EncodedJourneys({}), width_ms=10_000
    )  # e.g. the partition moved away and back
    other.advance(3, 2_000_000, emit)
    assert index.clock(3).clock_ms == 2_000_000


def test_an_idle_tick_does_not_start_a_clock() -> None:
    timers: dict[bytes, bytes] = {}
    index = TimerIndex(timers, EncodedJourneys({}), width_ms=10_000)

    def emit(outputs) -> None:
        raise AssertionError("nothing is due")

    assert index.advance(5, 1_000_000, emit, start=False) is None
    assert index.clock(5) is None  # the partition's first event will start it
