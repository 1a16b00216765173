"""The batch protocol (``streams.batch``) in process: what a batch sends and
writes, in which order, and that batching changes no result."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

from factories import POLICY, make_raw, shipped_config

from streams.batch import TICK_KEY, Batch, BatchLimits, Record, applied_key
from streams.core.oneid import OneIdConfig
from streams.runtime import LocalRuntime
from streams.simulate import SimulationConfig, simulate

COMMENT = {"live_room_id": "room-618-beauty"}


class Recording(LocalRuntime):
    """LocalRuntime that notes the order of the protocol's calls."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.calls: list[tuple[str, int, int]] = []  # (what, records, outputs or changes)

    async def send(self, batch: Batch) -> None:
        self.calls.append(("send", len(batch.records), len(batch.outputs)))
        await super().send(batch)

    async def write(self, batch: Batch) -> None:
        changed = sum(len(kv) for t in batch.changes().values() for kv in t.values())
        self.calls.append(("write", len(batch.records), changed))
        await super().write(batch)

    def done(self, batch: Batch) -> None:
        self.calls.append(("done", len(batch.records), 0))


def runtime(cls: type[LocalRuntime] = LocalRuntime, **limits: float) -> LocalRuntime:
    return cls(
        OneIdConfig(shipped_config()),
        4,
        60_000,
        policy=POLICY,
        limits=BatchLimits(**limits),  # type: ignore[arg-type]
    )


def touchpoints(raws: list[bytes]) -> list[Record]:
    return [
        Record("touchpoints", "journeyflow.touchpoints", 0, n, None, raw)
        for n, raw in enumerate(raws)
    ]


def comments(n: int, viewer: str = "douyin:88231") -> list[bytes]:
    return [
        make_raw(
            "live.comment",
            event_id=f"c-{i}",
            identities={"live_viewer_id": viewer},
            context=COMMENT,
            text="这个多少钱?" if i == 0 else "好看",
        )
        for i in range(n)
    ]


def test_outputs_are_sent_before_the_state_that_made_them_is_written() -> None:
    rt = runtime(Recording)
    assert isinstance(rt, Recording)
    asyncio.run(rt.admit(touchpoints(comments(5))))
    asyncio.run(rt.run())
    keyed = [c for c in rt.calls if c[0] == "write" and c[2] > 0]
    assert keyed, "the internal records changed the tables"
    # every batch: send, then write, then done; never a write before its send
    for n in range(0, len(rt.calls), 3):
        assert [c[0] for c in rt.calls[n : n + 3]] == ["send", "write", "done"]
    sent_outputs = sum(c[2] for c in rt.calls if c[0] == "send")
    assert sent_outputs == len(rt.outputs) > 0


def test_a_key_changed_by_many_records_of_a_batch_is_written_once() -> None:
    rt = runtime(Recording)
    assert isinstance(rt, Recording)
    asyncio.run(rt.admit(touchpoints(comments(50))))
    asyncio.run(rt.run())
    [journey_batch] = [c for c in rt.calls if c[0] == "write" and c[1] == 50 and c[2]]
    # one journey, one alias-free viewer: the journey, the partition's clock and
    # due-time records, and where the partition's applied records end
    assert journey_batch[2] <= 4
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 50


def test_a_batch_is_closed_at_its_record_limit() -> None:
    rt = runtime(Recording, records=7)
    assert isinstance(rt, Recording)
    asyncio.run(rt.admit(touchpoints(comments(20))))
    sizes = [c[1] for c in rt.calls if c[0] == "send"]
    assert sizes == [7, 7, 6]


def test_a_batch_is_closed_once_its_time_is_spent() -> None:
    rt = runtime(Recording, millis=1e-6)  # every record overruns it
    assert isinstance(rt, Recording)
    asyncio.run(rt.admit(touchpoints(comments(5))))
    assert [c[1] for c in rt.calls if c[0] == "send"] == [1, 1, 1, 1, 1]


def test_where_the_applied_records_end_is_written_with_the_batch() -> None:
    rt = runtime()
    asyncio.run(rt.admit(touchpoints(comments(3))))
    asyncio.run(rt.run())
    ends = {p: int(rt.timers[applied_key(p)]) for p in range(4) if applied_key(p) in rt.timers}
    assert sum(ends.values()) == 3  # three internal records, on one partition
    assert set(ends.values()) == {3}


def test_a_tick_moves_the_clock_of_its_partition_only() -> None:
    rt = runtime()
    asyncio.run(rt.admit(touchpoints(comments(1))))
    asyncio.run(rt.run())
    [partition] = [p for p in range(4) if applied_key(p) in rt.timers]
    started = rt.clock(partition)
    assert started is not None
    later = started.clock_ms + 3_600_000
    tick = Record("keyed", "internal", partition, 1, TICK_KEY, b'{"watermark_ms":%d}' % later)
    asyncio.run(rt.apply([tick]))
    moved = rt.clock(partition)
    assert moved is not None and moved.clock_ms == later
    assert all(rt.clock(p) is None for p in range(4) if p != partition)


def simulated(seed: int, customers: int, n: int) -> list[bytes]:
    config = SimulationConfig(
        seed=seed, customers=customers, start=datetime(2026, 11, 23, tzinfo=UTC)
    )
    return [r.value for r in itertools.islice(simulate(config), n)]


def applied(raws: list[bytes], **limits: float) -> tuple[LocalRuntime, tuple[object, ...]]:
    """A runtime that applied ``raws``, and what a user sees of it."""
    rt = runtime(**limits)
    asyncio.run(rt.admit(touchpoints(raws)))
    asyncio.run(rt.run())
    examples = sorted((e.decision_id, e.target, e.label) for e in rt.examples)
    return rt, (rt.journeys, rt.decisions, sorted(o.id for o in rt.outputs), rt.counts, examples)


def test_batches_of_any_size_give_the_same_journeys_and_outputs() -> None:
    raws = simulated(9, 80, 1500)
    results = [applied(raws, records=limit)[1] for limit in (1, 13, 1000)]
    assert results[0] == results[1] == results[2]
    counts = results[0][3]
    assert isinstance(counts, dict) and counts["processed"] > 1000


def test_a_journey_whose_stored_record_changed_is_read_from_the_store() -> None:
    # the engine keeps decoded journeys between batches; a record replaced
    # under it (a rebalance, a table recovery, a write that never happened)
    # must win over what it remembers
    rt = runtime()
    asyncio.run(rt.admit(touchpoints(comments(3))))
    asyncio.run(rt.run())
    [key] = rt.journeys
    after_three = rt.journeys[key]
    more = comments(6)[3:]
    asyncio.run(rt.admit(touchpoints(more[:2])))
    asyncio.run(rt.run())
    assert rt.engine.decoded_journeys.hits > 0
    rt.journeys[key] = after_three  # the store goes back to three events
    asyncio.run(rt.admit(touchpoints(more[2:])))
    asyncio.run(rt.run())
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 4


def test_remembering_decoded_records_changes_no_result() -> None:
    raws = simulated(3, 60, 800)
    results = []
    for decoded in (0, 5, 10_000):
        rt, seen = applied(raws, decoded=decoded)
        assert len(rt.engine.decoded_journeys) <= decoded
        results.append(seen)
    assert results[0] == results[1] == results[2]


def test_decisions_have_a_table_of_their_own_written_when_they_change() -> None:
    raws = simulated(5, 60, 800)
    rt = Recording(runtime().config, partitions=4, timer_width_ms=60_000)
    asyncio.run(rt.admit(touchpoints(raws)))
    asyncio.run(rt.run())
    assert rt.decisions, "simulated traffic makes decisions"
    assert all(b'"decisions"' not in raw for raw in rt.journeys.values())
    customers = rt.customers()
    with_decisions = {k for k, j in customers.items() if j.last_decision_ms is not None}
    assert {k.decode() for k in rt.decisions} == with_decisions
    # a later event that decides nothing (a like) rewrites the journey, not its decisions
    [key] = [k for k in sorted(with_decisions) if k.startswith("live_viewer_id:")][:1]
    before = dict(rt.decisions)
    viewer = key.split(":", 1)[1]
    at = datetime.fromtimestamp(customers[key].last_seen_ms / 1000 + 1, UTC)
    like = make_raw("live.like", identities={"live_viewer_id": viewer}, at=at)
    journey_before = rt.journeys[key.encode()]
    asyncio.run(rt.admit(touchpoints([like])))
    asyncio.run(rt.run())
    assert rt.journeys[key.encode()] != journey_before and rt.decisions == before
    assert rt.journey(key) is not None and rt.journey(key).decisions == customers[key].decisions


def test_bad_input_becomes_a_dead_letter_and_the_batch_goes_on() -> None:
    rt = runtime()
    records = touchpoints([b"{not json", *comments(2)])
    asyncio.run(rt.admit(records))
    asyncio.run(rt.run())
    assert [d.reason_code for d in rt.dead_letters] == ["malformed_json"]
    assert rt.counts["dead_lettered"] == 1 and rt.counts["processed"] == 2
