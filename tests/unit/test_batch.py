"""The batch protocol (``streams.batch``) in process: what a batch sends and
writes, in which order, and that batching changes no result."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson
from factories import POLICY, make_raw, shipped_config

from streams.batch import TICK_KEY, Batch, BatchLimits, Messages, Record, applied_key
from streams.core.oneid import Message, OneIdConfig, decode_message, encode_message
from streams.core.window import is_page_key
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


def touchpoints(raws: list[bytes], first: int = 0) -> list[Record]:
    """Records of touchpoints partition 0 from offset ``first``."""
    return [
        Record("touchpoints", "journeyflow.touchpoints", 0, first + n, None, raw)
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


class SlowAcks(Recording):
    """Recording whose sends take a while to be acknowledged, noting when each
    record is stepped."""

    def __post_init__(self) -> None:
        super().__post_init__()
        step = self.engine.step

        def noted(batch: Batch, record: Record) -> None:
            self.calls.append(("step", record.offset, 0))
            step(batch, record)

        self.engine.step = noted  # type: ignore[method-assign]

    async def send(self, batch: Batch) -> None:
        self.calls.append(("send", len(batch.records), len(batch.outputs)))
        await asyncio.sleep(0.02)  # the acknowledgements' round trip
        await LocalRuntime.send(self, batch)


def test_the_next_batch_is_stepped_while_one_is_acknowledged_and_sent_after_it_is_done() -> None:
    rt = runtime(SlowAcks, records=4)
    assert isinstance(rt, SlowAcks)
    asyncio.run(rt.admit(touchpoints(comments(12))))
    what = [c[0] for c in rt.calls]
    # batch 2's records are stepped while batch 1's send waits for its acks
    assert what[:10] == ["step"] * 4 + ["send"] + ["step"] * 4 + ["write"]
    # every batch sent only once the one before is written and done
    finishing = [w for w in what if w != "step"]
    assert finishing == ["send", "write", "done"] * 3
    # and the pipeline changed nothing: the same as one record per batch, unpipelined
    asyncio.run(rt.run())
    one_by_one = runtime(records=1)
    for offset, raw in enumerate(comments(12)):
        asyncio.run(one_by_one.admit(touchpoints([raw], offset)))
    asyncio.run(one_by_one.run())
    assert rt.customers() == one_by_one.customers()
    assert sorted(o.id for o in rt.outputs) == sorted(o.id for o in one_by_one.outputs)


def test_a_key_changed_by_many_records_of_a_batch_is_written_once() -> None:
    rt = runtime(Recording)
    assert isinstance(rt, Recording)
    asyncio.run(rt.admit(touchpoints(comments(50))))
    asyncio.run(rt.run())
    [journey_batch] = [c for c in rt.calls if c[0] == "write" and c[1] == 50 and c[2]]
    # one journey, one alias-free viewer: the journey and the two pages of its
    # window (50 entries), the partition's clock and due-time records, its
    # burst budget (the price question's pop-up spent some), its customers by
    # stage, and where the partition's applied records end
    assert journey_batch[2] <= 8
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 50


def test_an_erased_journey_takes_the_pages_of_its_window_with_it() -> None:
    rt = runtime()
    asyncio.run(rt.admit(touchpoints(comments(40))))
    asyncio.run(rt.run())
    assert sum(is_page_key(k) for k in rt.journeys) == 2  # 40 entries
    erase = make_raw("privacy.erase", identities={"live_viewer_id": "douyin:88231"})
    asyncio.run(rt.admit(touchpoints([erase], 40)))
    asyncio.run(rt.run())
    assert rt.journeys == {}


def test_feedback_naming_a_window_page_is_a_dead_letter() -> None:
    """A customer id never holds a NUL: feedback naming ``<customer>\\x00w0``
    (a journey's window page) is refused, not read as a journey."""
    rt = runtime()
    asyncio.run(rt.admit(touchpoints(comments(3))))
    asyncio.run(rt.run())
    raw = orjson.dumps(
        {
            "feedback_id": "fb-1",
            "action_id": "out-1",
            "customer_id": "live_viewer_id:douyin:88231\x00w0",
            "outcome": "clicked",
            "occurred_at": "2026-11-23T20:05:00+08:00",
        }
    )
    asyncio.run(rt.apply([Record("feedback", "journeyflow.feedback", 0, 0, None, raw)]))
    [letter] = rt.dead_letters
    assert letter.reason_code == "invalid_identifier"


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


def applied(
    raws: list[bytes], trusted: bool = False, **limits: float
) -> tuple[LocalRuntime, tuple[object, ...]]:
    """A runtime that applied ``raws``, and what a user sees of it."""
    rt = runtime(Reads, **limits)
    rt.engine.trust(trusted)
    asyncio.run(rt.admit(touchpoints(raws)))
    asyncio.run(rt.run())
    examples = sorted((e.decision_id, e.target, e.label) for e in rt.examples)
    # the journeys as read back (how a window's pages are cut depends on the batches)
    journeys = rt.customers()
    return rt, (journeys, rt.decisions, sorted(o.id for o in rt.outputs), rt.counts, examples)


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
    [key] = [k for k in rt.journeys if not is_page_key(k)]
    after_three = rt.journeys[key]  # its window's page will hold more entries, not its record
    more = comments(6)[3:]
    asyncio.run(rt.admit(touchpoints(more[:2], 3)))
    asyncio.run(rt.run())
    assert rt.engine.decoded_journeys.hits > 0
    rt.journeys[key] = after_three  # the store goes back to three events
    asyncio.run(rt.admit(touchpoints(more[2:], 5)))
    asyncio.run(rt.run())
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 4


def test_remembering_decoded_records_changes_no_result() -> None:
    raws = simulated(3, 60, 800)
    results = []
    reads = {}
    for decoded in (0, 5, 10_000):
        for trusted in (False, True):
            # batches closed by their record count only: the reads counted
            # depend on where batches end, which the time limit makes vary
            rt, seen = applied(raws, trusted, decoded=decoded, records=50, millis=1e9)
            assert len(rt.engine.decoded_journeys) <= decoded
            results.append(seen)
            assert isinstance(rt, Reads)
            reads[decoded, trusted] = rt.reads
    assert all(seen == results[0] for seen in results)
    # trusted, what is kept is not read again (here most reads left are a
    # customer's first, as there are few batches)
    for table in ("aliases", "journeys", "decisions", "timers"):
        assert reads[10_000, True][table] < 0.7 * reads[10_000, False][table], table
    assert reads[0, True] == reads[0, False]


class Reads(LocalRuntime):
    """LocalRuntime counting the store reads of each table."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.reads: Counter[str] = Counter()

    def read(self, table: str, partition: int, key: bytes) -> bytes | None:
        self.reads[table] += 1
        return super().read(table, partition, key)


def test_a_trusted_engine_reads_the_store_again_once_told_to_forget() -> None:
    """The worker trusts what it decoded until its consumer is positioned
    anew (a rebalance may have moved the partition elsewhere and back)."""
    rt = runtime()
    rt.engine.trust()
    asyncio.run(rt.admit(touchpoints(comments(3))))
    asyncio.run(rt.run())
    [key] = [k for k in rt.journeys if not is_page_key(k)]
    after_three = rt.journeys[key]
    more = comments(6)[3:]
    asyncio.run(rt.admit(touchpoints(more[:2], 3)))
    asyncio.run(rt.run())
    rt.journeys[key] = after_three  # another worker's writes, restored here
    rt.engine.forget()
    asyncio.run(rt.admit(touchpoints(more[2:], 5)))
    asyncio.run(rt.run())
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 4


def test_a_trusted_engine_knows_an_erased_journey_is_gone() -> None:
    rt = runtime()
    rt.engine.trust()
    viewer = {"live_viewer_id": "douyin:88231"}
    erase = make_raw("privacy.erase", identities=viewer)
    again = comments(8)[5:]
    for offset, raws in ((0, comments(5)), (5, [erase]), (6, again)):
        asyncio.run(rt.admit(touchpoints(raws, offset)))
        asyncio.run(rt.run())
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.events_total == 3  # begun again after the erase


class OnTheTopic(LocalRuntime):
    """LocalRuntime whose internal records travel as the worker's do: as
    bytes encoded by the engine's ``Messages``, with every message noted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sent: list[Message] = []

    def record(self, partition: int, offset: int, key: str, msg: Message) -> Record:
        self.sent.append(msg)
        raw = self.engine.messages.encode(msg)
        return Record("keyed", "internal", partition, offset, key.encode(), raw)


def test_internal_messages_read_back_equal_what_was_sent() -> None:
    # the worker skips decoding records it sent itself (streams.batch.Messages):
    # that is only sound if decoding one gives back the message sent
    rt = runtime(OnTheTopic)
    assert isinstance(rt, OnTheTopic)
    asyncio.run(rt.admit(touchpoints(simulated(5, 40, 1200))))
    asyncio.run(rt.run())
    kinds = {msg.kind for msg in rt.sent}
    assert {"route", "link", "propose", "accepted", "absorb", "fold"} <= kinds, kinds
    for msg in rt.sent:
        assert decode_message(encode_message(msg)) == msg


def test_sent_messages_kept_or_not_give_the_same_results() -> None:
    raws = simulated(7, 60, 1200)
    results = []
    for kept in (0, 3, 10_000):
        rt = OnTheTopic(
            OneIdConfig(shipped_config()),
            4,
            60_000,
            policy=POLICY,
            limits=BatchLimits(decoded=kept),
        )
        asyncio.run(rt.admit(touchpoints(raws)))
        asyncio.run(rt.run())
        assert len(rt.engine.messages) <= kept
        assert (rt.engine.messages.hits > 0) == (kept > 0)
        outputs = sorted(o.model_dump_json() for o in rt.outputs)
        results.append((rt.customers(), rt.aliases, rt.decisions, outputs, rt.counts))
    assert results[0] == results[1] == results[2]
    assert applied(raws)[0].customers() == results[0][0]  # messages passed as objects


def test_a_sent_message_is_kept_until_read_back_once() -> None:
    messages = Messages(2)
    rt = runtime(OnTheTopic)
    assert isinstance(rt, OnTheTopic)
    asyncio.run(rt.admit(touchpoints(comments(3))))
    asyncio.run(rt.run())
    first, second, third = rt.sent[:3]
    raws = [messages.encode(m) for m in (first, second, third)]  # the first is pushed out
    assert len(messages) == 2
    assert messages.decode(raws[1]) is second
    again = messages.decode(raws[1])  # read twice (a redelivery): decoded
    assert again == second and again is not second
    assert messages.decode(raws[0]) == first
    assert (messages.hits, messages.misses, len(messages)) == (1, 2, 1)


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
    asyncio.run(rt.admit(touchpoints([like], len(raws))))
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


# --- a touchpoint admitted twice (the first stage killed before it committed) ---

VIEWER_ID = "douyin:88231"
TP = "journeyflow.touchpoints"


def viewer_events(n: int, identities: dict[str, str], start: int = 0) -> list[bytes]:
    """``n`` comments, a second apart: the newest by event time come last."""
    t0 = datetime(2026, 11, 23, 20, tzinfo=UTC)
    return [
        make_raw(
            "live.comment",
            event_id=f"c-{start + i}",
            at=t0 + timedelta(seconds=start + i),
            identities=identities,
            context=COMMENT,
            text="好看",
        )
        for i in range(n)
    ]


def at_offsets(raws: list[bytes], first: int, partition: int = 0) -> list[Record]:
    return [Record("touchpoints", TP, partition, first + n, None, r) for n, r in enumerate(raws)]


def admitted_again(rt: LocalRuntime, records: list[Record]) -> None:
    """The same touchpoint records through the first stage again, as after a
    kill -9 before its offsets were committed: new internal records, same source."""
    asyncio.run(rt.admit(records))
    asyncio.run(rt.run())


def test_touchpoints_admitted_again_after_more_records_than_the_dedupe_window_count_once() -> None:
    rt = runtime()
    window = shipped_config().limits.recent_event_ids
    raws = viewer_events(window + 50, {"live_viewer_id": VIEWER_ID})
    first = at_offsets(raws, 0)
    admitted_again(rt, first)
    before = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert before is not None and before.events_total == window + 50
    admitted_again(rt, first[:20])  # the oldest: long gone from the window
    after = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert after is not None and after.events_total == window + 50
    assert rt.counts["redelivered"] == 20
    assert rt.counts["processed"] == window + 50


def test_admitted_again_through_an_identifier_that_is_not_its_customer_counts_once() -> None:
    """The event's identifier forwards to its customer (One-ID): a copy is
    known where it enters, not only by the customer's window."""
    rt = runtime()
    window = shipped_config().limits.recent_event_ids
    both = {"live_viewer_id": VIEWER_ID, "phone": "13800138000"}
    linking = at_offsets(viewer_events(1, both), 0)
    admitted_again(rt, linking)
    viewer_only = at_offsets(viewer_events(window + 30, {"live_viewer_id": VIEWER_ID}, 1), 1)
    admitted_again(rt, viewer_only)
    customer = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert customer is not None and customer.customer_id.startswith("phone:")
    assert customer.events_total == window + 31
    admitted_again(rt, [*linking, *viewer_only[:10]])
    again = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert again is not None and again.events_total == window + 31
    assert rt.counts["processed"] == window + 31


def test_admitted_again_after_its_customer_was_merged_away_counts_once() -> None:
    """Copies of a viewer's records reach the viewer after it joined a phone:
    what the viewer had admitted went with it, not with its journey."""
    rt = runtime()
    window = shipped_config().limits.recent_event_ids
    alone = at_offsets(viewer_events(window + 20, {"live_viewer_id": VIEWER_ID}), 0)
    admitted_again(rt, alone)
    both = {"live_viewer_id": VIEWER_ID, "phone": "13800138000"}
    admitted_again(rt, at_offsets(viewer_events(1, both, window + 20), window + 20))
    merged = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert merged is not None and merged.customer_id.startswith("phone:")
    assert merged.events_total == window + 21
    admitted_again(rt, alone[:15])
    again = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert again is not None and again.events_total == window + 21
    assert rt.counts["processed"] == window + 21


def test_records_of_several_input_partitions_are_told_apart() -> None:
    """Offsets of one touchpoints partition say nothing about another's."""
    rt = runtime()
    ids = {"live_viewer_id": VIEWER_ID}
    admitted_again(rt, at_offsets(viewer_events(5, ids), 100, partition=0))
    admitted_again(rt, at_offsets(viewer_events(5, ids, 5), 0, partition=1))
    journey = rt.journey_of(f"live_viewer_id:{VIEWER_ID}")
    assert journey is not None and journey.events_total == 10
    assert rt.counts.get("redelivered", 0) == 0
