"""Time-based rules in event time: the coupon reminder, pending items, and
the per-partition clock index."""

from __future__ import annotations

import random
from datetime import timedelta

from factories import T0, Journey, epoch_ms

from streams.core.engine import tick
from streams.core.ids import output_id
from streams.core.timers import PartitionClock

ROOM = {"live_room_id": "room-618-beauty"}
DELAY = timedelta(minutes=30)


def claim(j: Journey, at=T0, coupon: str = "CP-1", event_id: str = "claim-1"):
    return j.send("live.coupon_claim", event_id=event_id, at=at, coupon_id=coupon, context=ROOM)


def reminders(outputs) -> list:
    return [o for o in outputs if getattr(o, "rule_id", None) == "live_coupon_reminder"]


def test_a_claim_schedules_a_reminder_but_emits_nothing_at_claim_time() -> None:
    j = Journey()
    outputs = claim(j)
    assert reminders(outputs) == []
    assert j.last is not None and j.last.scheduled[0] == epoch_ms(T0 + DELAY)
    assert j.last.scheduled[1:] == (epoch_ms(T0 + timedelta(hours=72)) + 1,)  # its label
    assert j.state is not None and [p.rule_id for p in j.state.pending] == ["live_coupon_reminder"]


def test_the_reminder_fires_when_event_time_reaches_the_due_time() -> None:
    j = Journey()
    claim(j)
    assert j.state is not None
    early = tick(j.state, epoch_ms(T0 + DELAY) - 1)
    assert early.outputs == () and early.state == j.state

    due = tick(j.state, epoch_ms(T0 + DELAY))
    [reminder] = due.outputs
    assert reminder.action == "remind_coupon"
    assert reminder.params == {"coupon_id": "CP-1", "live_room_id": "room-618-beauty"}
    assert reminder.cause_event_id == "claim-1"
    assert reminder.decided_at == T0 + DELAY
    assert reminder.id == output_id("live_coupon_reminder", j.state.customer_id, "claim-1")
    assert "CP-1" in reminder.reason and "{" not in reminder.reason
    assert due.state.pending == ()
    assert tick(due.state, epoch_ms(T0 + 2 * DELAY)).outputs == ()  # fires once


def test_an_order_before_the_due_time_cancels_the_reminder() -> None:
    j = Journey()
    claim(j)
    j.send("live.order", at=T0 + timedelta(minutes=10), order_id="o-1", context=ROOM)
    assert j.state is not None and j.state.pending == ()
    assert tick(j.state, epoch_ms(T0 + 2 * DELAY)).outputs == ()


def test_an_older_order_arriving_late_does_not_cancel() -> None:
    j = Journey()
    j.send("page.view", at=T0 - timedelta(hours=1))
    claim(j)
    j.send("order.paid", at=T0 - timedelta(minutes=5), order_id="o-old")  # before the claim
    assert j.state is not None
    assert len(tick(j.state, epoch_ms(T0 + DELAY)).outputs) == 1


def test_the_customers_own_later_event_fires_what_fell_due_before_it() -> None:
    j = Journey()
    claim(j)
    outputs = j.send("page.view", at=T0 + DELAY + timedelta(minutes=1))
    assert [o.cause_event_id for o in reminders(outputs)] == ["claim-1"]
    assert j.state is not None and j.state.pending == ()


def test_a_buyer_is_not_reminded() -> None:
    j = Journey()
    j.send("store.purchase", at=T0 - timedelta(days=1), order_id="o-0", amount_minor=9900)
    claim(j)
    assert j.state is not None and j.state.pending == ()


def test_the_same_coupon_claimed_twice_gives_one_reminder() -> None:
    j = Journey()
    claim(j, event_id="claim-1")
    claim(j, at=T0 + timedelta(minutes=1), event_id="claim-2")
    assert j.state is not None and len(j.state.pending) == 1
    claim(j, at=T0 + timedelta(minutes=2), coupon="CP-2", event_id="claim-3")
    assert len(j.state.pending) == 2


def test_pending_items_are_bounded() -> None:
    j = Journey()
    for i in range(50):
        claim(j, at=T0 + timedelta(seconds=i), coupon=f"CP-{i}", event_id=f"c-{i}")
    assert j.state is not None
    assert len(j.state.pending) == j.config.limits.pending


def test_the_clock_index_fires_every_item_once_and_never_early() -> None:
    """Random due times (some already past) and clock moves: each item's bucket
    is processed exactly once, and only once the clock has reached its due time."""
    rng = random.Random(3)
    width = 10_000
    clock = PartitionClock.start(1_000_000, width)
    index: dict[int, list[int]] = {}
    dues: dict[int, int] = {}
    fired: set[int] = set()
    now = 1_000_000

    def process(to_ms: int) -> None:
        nonlocal clock
        clock, due_buckets = clock.advance(to_ms, width)
        for b in due_buckets:
            for it in index.pop(b):
                assert it not in fired, "fired twice"
                assert dues[it] <= clock.clock_ms, "fired before its due time"
                fired.add(it)

    for item in range(2000):
        now += rng.randint(0, 4000) if rng.random() < 0.9 else rng.randint(0, 900_000)
        dues[item] = now + rng.choice([-50_000, 0, 1, 9_999, 60_000, 1_800_000])
        bucket = clock.bucket_for(dues[item], width)
        index.setdefault(bucket, []).append(item)
        clock = clock.with_bucket(bucket)
        process(now)
    process(now + 10 * 1_800_000)
    assert index == {}
    assert fired == set(dues)


def test_a_far_jump_costs_only_the_buckets_that_hold_items() -> None:
    clock = PartitionClock.start(0, 10_000).with_bucket(5).with_bucket(10**9)
    moved, due = clock.advance(365 * 24 * 3600 * 1000, 10_000)  # a year later
    assert due == (5,)
    assert moved.buckets == (10**9,)
    assert PartitionClock.from_bytes(moved.to_bytes()) == moved
