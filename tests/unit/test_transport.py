"""The consumer's rebalance guards, as decisions on plain values
(streams.transport; the integration tests move partitions with records in
flight and restart killed workers at once)."""

from __future__ import annotations

from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.batch import applied_key
from streams.transport import Cursor, gate_open, gone, lost_from, next_step, refetch_at, rewind

KEYED = "jf.keyed"


def test_stream_records_wait_for_the_positioning_of_each_generation() -> None:
    # a fresh worker: assigned (generation 5), tables restoring, not positioned
    assert not gate_open(None, 5, in_recovery=False)
    assert not gate_open(None, 5, in_recovery=True)
    # positioned for generation 5, then a new rebalance starts generation 6
    assert gate_open(5, 5, in_recovery=False)
    assert not gate_open(5, 6, in_recovery=False)
    assert not gate_open(5, 6, in_recovery=True)
    # positioned for 6 while its tables are restoring again: still closed
    assert not gate_open(6, 6, in_recovery=True)


def test_rewind_only_partitions_committed_past_their_applied_records() -> None:
    applied = {
        TP(KEYED, 0): 100,  # committed 120: 100..119 acknowledged, not applied
        TP(KEYED, 1): 50,  # committed 50: in step
        TP(KEYED, 2): 90,  # committed 80: applied ahead (repeats are recognised)
        TP(KEYED, 3): None,  # nothing applied yet
    }
    committed: dict[TP, int | None] = {
        TP(KEYED, 0): 120,
        TP(KEYED, 1): 50,
        TP(KEYED, 2): 80,
        TP(KEYED, 3): 7,
        TP("jf.touchpoints", 0): 300,  # no applied position: left alone
    }
    moves = rewind(committed, lambda tp: applied.get(tp))
    assert moves == {TP(KEYED, 0): 100}


def test_nothing_committed_means_nothing_to_rewind() -> None:
    assert rewind({TP(KEYED, 0): None, TP(KEYED, 1): -1001}, lambda _tp: 10) == {}


def test_applied_positions_are_one_key_per_partition() -> None:
    keys = {applied_key(p) for p in range(64)}
    assert len(keys) == 64
    assert all(k.startswith(b"\x00") for k in keys)  # outside customer ids' key space


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    batch=st.integers(min_value=1, max_value=8),
    losses=st.lists(st.lists(st.booleans(), max_size=8), max_size=12),
    at_apply=st.lists(st.booleans(), max_size=12),
)
def test_records_reach_faust_in_order_and_complete_whatever_the_gate_drops(
    n: int, batch: int, losses: list[list[bool]], at_apply: list[bool]
) -> None:
    """A partition's log 0..n-1 is fetched in batches (and nothing comes after
    it: a finite backlog). In the first rounds the closed gate may drop any
    fetched record before the guard sees it, or a whole fetch after it (at
    ``_apply``). What passes is every offset, once, in order: a dropped tail
    is fetched again although no later record shows the gap (a restarted
    worker stalled on such a tail once)."""
    cursor, position, fetches, passed, dropped = Cursor(due=0), 0, 0, [], False
    for round_ in range(4 * n + 4 * len(losses) + 8):
        fetches += 1
        fetch = fetches
        if dropped:  # the gate is open again: Consumer._fetch_dropped_again
            at = refetch_at(cursor, fetch)
            assert at is not None
            position, dropped = at, False
        if position >= n:
            break  # the consumer sees nothing more to fetch
        records = list(range(position, min(n, position + batch)))
        position = records[-1] + 1
        lost = losses[round_] if round_ < len(losses) else []
        taken = []
        for i, offset in enumerate(records):
            if i < len(lost) and lost[i]:
                lost_from(cursor, offset)
                dropped = True
                continue
            step = next_step(cursor, offset, fetch)
            if step == "jump":
                assert cursor.due is not None and not gone(cursor.due, log_start=0)
                cursor.sought_after = fetches
                position = cursor.due
            elif step == "pass":
                cursor.due, cursor.sought_after = offset + 1, None
                taken.append(offset)
        if taken and round_ < len(at_apply) and at_apply[round_]:
            for offset in taken:  # Consumer._apply with the gate closed
                lost_from(cursor, offset)
            dropped = True
            continue
        passed.extend(taken)
    assert passed == list(range(n))


def test_only_records_removed_by_retention_are_passed_over() -> None:
    cursor = Cursor(due=100)  # retention deleted 100..149 before they were read
    assert next_step(cursor, 150, fetch=1) == "jump"
    assert gone(100, log_start=150)
    assert not gone(100, log_start=80)  # still in the log: seek back instead
