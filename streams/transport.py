"""The Kafka consumer the worker runs: Faust's aiokafka consumer with guards
for rebalances.

Around a rebalance Faust (0.15) can let a stream see records of a partition
before that partition's tables are recovered and the consumer is positioned
at the committed offset (records fetched in the moment between the broker
assigning a partition and Faust pausing it wait in a channel and are
released when recovery resumes the flow to read the changelogs); it
acknowledges records it skips as fetched under an earlier generation; and it
reads a jump in a partition's offsets as a gap in the log (as compaction
leaves) and commits over it. Any of these moved the committed offset past
records that were never applied, in about a third of the test runs that
moved partitions with records in flight (``tests/integration/
test_rebalance.py``, ``test_crash.py``).

1. **Gate.** Records of stream topics are dropped on arrival until the
   consumer has been positioned (``seek_to_committed``) for the current
   group generation, outside table recovery. Faust resumes the stream
   partitions before it positions them, so a fetch may return, and be
   dropped, after the positioning's seek: the consumer's position is then
   past records never applied, and on a partition where nothing follows
   (a finite backlog) no gap would ever show. So every partition whose
   records the gate dropped is sought back to its first record due once
   the gate opens. (A fetch begun before a positioning may return after
   it: its records are judged by offset against the new position, below.)
2. **In order.** Under at-least-once, a stream partition's records reach
   Faust only in offset order from the position: a record beyond the next
   one due (earlier ones were dropped, or skipped upstream) makes the
   consumer seek back to the one due, unless retention has removed it from
   the log (then the jump is logged and taken). So Faust never sees a gap to
   commit over, and a dropped record is fetched again.
3. **Rewind.** The worker records, in a table recovered with the partition,
   the position after the last record it applied (``applied_key``). When
   the consumer is positioned and that position is behind the committed
   offset, it starts from there: records acknowledged but never applied are
   processed (a journey tells a record it never applied from a repeat, see
   ``streams.core.journey.seen_before``).

The decisions are functions of plain values (``gate_open``, ``next_step``,
``gone``, ``rewind``), tested in ``tests/unit/test_transport.py``; the
classes below wire them into Faust.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from time import monotonic
from typing import Any, Literal

from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streams.batch import IMPORT_HEADER, Record, Stream
from streams.logs import where

log = logging.getLogger(__name__)

#: Where the worker records, per partition of the re-keyed topic, the
#: position after the last record it applied (see ``streams.app``).
AppliedPosition = Callable[[TP], int | None]


def gate_open(positioned_generation: int | None, generation: int, in_recovery: bool) -> bool:
    """May records of stream topics pass to the streams now?

    >>> gate_open(None, 3, False)   # assigned, not yet positioned
    False
    >>> gate_open(3, 3, True)       # positioned, but tables restoring again
    False
    >>> gate_open(3, 3, False)
    True
    >>> gate_open(3, 4, False)      # a newer generation: position again first
    False
    """
    return positioned_generation == generation and not in_recovery


def rewind(
    committed: Mapping[TP, int | None], applied: Callable[[TP], int | None]
) -> dict[TP, int]:
    """The partitions to start before their committed offset, and where.

    Only where the applied position is known and behind the committed
    offset; where nothing was committed the consumer starts from the
    beginning anyway.

    >>> from faust.types import TP
    >>> tp = TP("jf.keyed", 0)
    >>> rewind({tp: 120}, lambda _: 100)
    {TP(topic='jf.keyed', partition=0): 100}
    >>> rewind({tp: 120}, lambda _: 120), rewind({tp: 120}, lambda _: None)
    ({}, {})
    >>> rewind({tp: None}, lambda _: 5)
    {}
    """
    moves: dict[TP, int] = {}
    for tp, offset in committed.items():
        if offset is None or offset < 0:
            continue
        position = applied(tp)
        if position is not None and position < offset:
            moves[tp] = position
    return moves


def _quiet(applied: AppliedPosition) -> AppliedPosition:
    """A store that cannot answer yet (partition not open) means no rewind."""

    def read(tp: TP) -> int | None:
        try:
            return applied(tp)
        except Exception as exc:  # the seek must not fail over a missing hint
            log.warning(
                "%s: applied position unreadable (%s); starting at the commit",
                tp,
                exc,
                extra=where(tp),
            )
            return None

    return read


@dataclass
class Cursor:
    """Where a stream partition stands: the next offset due, and the fetch
    after which a seek back to it took effect (fetches are numbered)."""

    due: int | None = None
    sought_after: int | None = None


Step = Literal["pass", "drop", "jump"]


def next_step(cursor: Cursor, offset: int, fetch: int) -> Step:
    """What to do with a record at ``offset`` from fetch number ``fetch``:
    pass it on, drop it, or (``jump``) find out why records before it are
    missing.

    >>> next_step(Cursor(due=10), 10, fetch=4)
    'pass'
    >>> next_step(Cursor(due=10), 9, fetch=4)     # read before: Faust has it
    'drop'
    >>> next_step(Cursor(due=10), 12, fetch=4)    # 10 and 11 missing
    'jump'
    >>> next_step(Cursor(due=10, sought_after=4), 12, fetch=4)  # fetched before the seek back
    'drop'
    >>> next_step(Cursor(due=10, sought_after=4), 12, fetch=5)  # after it, still missing
    'jump'
    """
    if cursor.due is None or offset == cursor.due:
        return "pass"
    if offset < cursor.due:
        return "drop"
    if cursor.sought_after is not None and fetch <= cursor.sought_after:
        return "drop"
    return "jump"


def lost_from(cursor: Cursor | None, offset: int) -> None:
    """Records from ``offset`` on were fetched and dropped before the batch
    protocol got them (the gate was closed): they are due again.

    >>> c = Cursor(due=120)
    >>> lost_from(c, 100); c.due
    100
    """
    if cursor is not None and cursor.due is not None and offset < cursor.due:
        cursor.due = offset


def refetch_at(cursor: Cursor | None, fetch: int) -> int | None:
    """Where to seek a partition whose fetched records were dropped, once the
    gate is open (None: nothing known, e.g. no longer assigned). Records
    past it from fetches up to ``fetch`` (begun before the seek) are dropped.

    >>> c = Cursor(due=602)
    >>> refetch_at(c, fetch=9), c.sought_after
    (602, 9)
    >>> refetch_at(Cursor(), fetch=9) is None
    True
    """
    if cursor is None or cursor.due is None:
        return None
    cursor.sought_after = fetch
    return cursor.due


def gone(due: int, log_start: int | None) -> bool:
    """Records from ``due`` on are missing for good only when the log no
    longer holds ``due`` (retention removed it); otherwise seek back to it.

    >>> gone(100, 150), gone(100, 100), gone(100, None)
    (True, False, False)
    """
    return log_start is not None and due < log_start


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the broker's fetch wait from the settings.

    Faust creates the aiokafka consumer with ``fetch_max_wait_ms=1500``, and
    aiokafka sends a node no new fetch while one is in flight: records of a
    partition whose last records were being applied when that fetch left
    (so it was not in it) waited up to 1.5 s for it to come back. At 600
    events/s this held every record ~1 s per stage, with the worker half
    idle. Internals relied on (faust-streaming 0.15, aiokafka 0.14, both
    pinned): Faust's ``Consumer._new_consumer_thread`` and
    ``AIOKafkaConsumerThread._create_worker_consumer`` (which builds the
    aiokafka consumer), and ``AIOKafkaConsumer._fetch_max_wait_ms`` and
    ``_fetch_min_bytes`` (read when the consumer starts), set before it
    starts.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(transport, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)
        least = getattr(transport, "fetch_min_bytes", None)
        if least is not None:
            consumer._fetch_min_bytes = int(least)
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with the gate, in-order delivery and the rewind."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    _positioned_generation: int | None = None
    #: Fetches are numbered as they begin (see ``Cursor.sought_after``).
    _fetches: int = 0
    _cursors: dict[TP, Cursor]
    #: Partitions whose fetched records were dropped at the gate (see getmany).
    _dropped: set[TP]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors = {}
        self._dropped = set()
        self._restore = Restore(self.app, lambda n: self.transport.restored(n))

    async def _seek(self, partition: TP, offset: int) -> None:
        """Seek in the consumer's own thread. Faust calls the aiokafka
        consumer's ``seek`` from the worker's loop, and aiokafka's seek drops
        the partition's fetched records from the fetcher while the consumer
        thread may be handing them out (``Fetcher.fetched_records`` deletes
        the same entry when drained): the worker crashed with a ``KeyError``
        in aiokafka's fetcher, once in a CI run of ``test_routing``. In the
        thread the seek runs between two of its steps, never inside one.
        Internals relied on (pinned): Faust's ``Consumer._seek`` (what
        ``seek`` awaits) and its consumer thread's ``call_thread`` and
        ``seek``."""
        await self._thread.call_thread(self._thread.seek, partition, offset)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = dict(await super().seek_to_committed())
        for tp, offset in committed.items():
            if offset is None or offset <= 0:
                # aiokafka leaves the position alone where nothing is committed;
                # records dropped before must be fetched again (the worker
                # reads from the earliest record, see streams.app)
                await self.seek(tp, 0)
                committed[tp] = 0
        applied = getattr(self.transport, "applied_position", None)
        if applied is not None:
            for tp, position in rewind(committed, _quiet(applied)).items():
                log.warning(
                    "%s: records %d..%d were acknowledged but not applied; processing them again",
                    tp,
                    position,
                    committed[tp] - 1,
                    extra=where(tp, position),
                )
                await self.seek(tp, position)
                committed[tp] = position
        # the stores may have changed under what the batch protocol keeps decoded
        # (a rebalance, table recovery, standby replicas): forget it before the
        # gate opens for this assignment
        self.transport.positioned()
        self._positioned_generation = self.app.consumer_generation_id
        self._cursors = {tp: Cursor(due=offset) for tp, offset in committed.items()}
        return committed

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        self._fetches += 1
        fetch = self._fetches
        changelogs = self.app.tables.changelog_topics
        in_order = not self.app.in_transaction  # transactions leave marker gaps
        streams = self.transport.streams
        taken: list[Message] = []
        if self._dropped and self._gate_open():
            await self._fetch_dropped_again(fetch)
        restore = self._restore
        async for tp, message in super().getmany(timeout):
            if tp.topic in changelogs:
                if not restore.take(tp, message):
                    yield tp, message
                continue
            if not self._gate_open():
                # fetched, so the consumer's position is past it: whether the
                # positioning under way seeks back depends on when this fetch
                # began, and a partition with no later records would never show
                # the gap (a worker restarted on a finite backlog stalled so)
                lost_from(self._cursors.get(tp), message.offset)
                self._dropped.add(tp)
                continue
            if in_order:
                cursor = self._cursors.setdefault(tp, Cursor())
                step = next_step(cursor, message.offset, fetch)
                if step == "jump":
                    assert cursor.due is not None
                    jump = (message.offset, cursor.due)
                    start = (await self.earliest_offsets(tp)).get(tp)
                    if self._cursors.get(tp) is not cursor:
                        continue  # positioned meanwhile, which fetches it again
                    if not gone(cursor.due, start):
                        log.info(
                            "%s: %d arrived while %d was due; fetching again",
                            tp,
                            *jump,
                            extra=where(tp, cursor.due),
                        )
                        cursor.sought_after = self._fetches
                        await self.seek(tp, cursor.due)
                        continue
                    log.warning(
                        "%s: records %d..%d are no longer in the log; going on from %d",
                        tp,
                        cursor.due,
                        message.offset - 1,
                        message.offset,
                        extra=where(tp, cursor.due),
                    )
                    step = "pass"
                if step != "pass":
                    continue
                cursor.due, cursor.sought_after = message.offset + 1, None
            if tp.topic in streams:
                taken.append(message)
            else:
                yield tp, message
        for tp, message in restore.apply():
            yield tp, message  # applied already: Faust's recovery skips it, and sees it is done
        if taken:
            await self._apply(taken)

    def _gate_open(self) -> bool:
        return gate_open(
            self._positioned_generation,
            self.app.consumer_generation_id,
            bool(self.app.in_recovery),
        )

    async def _fetch_dropped_again(self, fetch: int) -> None:
        """Seek the partitions whose records the closed gate dropped back to
        the first record still due (a no-op where a positioning did already)."""
        dropped, self._dropped = self._dropped, set()
        for tp in dropped:
            at = refetch_at(self._cursors.get(tp), fetch)
            if at is None:
                continue  # no longer assigned: the positioning left it out
            log.info(
                "%s: records from %d were dropped while positioning; fetching again",
                tp,
                at,
                extra=where(tp, at),
            )
            try:
                await self.seek(tp, at)
            except IllegalStateError:  # revoked by a rebalance under way: it positions anew
                log.info(
                    "%s: no longer assigned; left to the next positioning", tp, extra=where(tp)
                )

    async def _apply(self, messages: list[Message]) -> None:
        """Hand a fetch's stream records to the batch protocol, unless the
        consumer was positioned anew meanwhile (that positioning fetches them
        again). Faust waits for tracked records before it gives partitions
        up, so a batch under way ends before its partitions move."""
        if not self._gate_open():
            for message in messages:
                tp = message.tp
                lost_from(self._cursors.get(tp), message.offset)
                self._dropped.add(tp)
            return
        self._unacked_messages.update(messages)
        records = [self.transport.record(m) for m in messages]
        await self.transport.apply(records)

    def ack_batch(self, records: Iterable[Record]) -> None:
        """The batch's records are applied: Faust may commit past them."""
        ack = self.ack
        inbound = getattr(self.app.monitor, "stream_inbound_time", None)
        now = monotonic()
        for record in records:
            message = record.source
            ack(message)
            if inbound is not None:
                inbound[message.tp] = now  # Faust's slow-stream warnings watch this


def fresh(messages: list[Message], seen: int | None) -> list[Message]:
    """The records of one changelog partition a table does not hold yet:
    those after ``seen``, the last offset applied (None: nothing yet).

    >>> from types import SimpleNamespace as M
    >>> [m.offset for m in fresh([M(offset=4), M(offset=5), M(offset=6)], 4)]
    [5, 6]
    >>> len(fresh([M(offset=1)], None))
    1
    """
    return messages if seen is None else [m for m in messages if m.offset > seen]


class _Change:
    """A changelog record as a table's ``apply_changelog_batch`` reads it
    (Faust passes its events: the RocksDB store reads ``message``, the memory
    store ``key`` and ``value``; the tables here store raw bytes)."""

    __slots__ = ("key", "message", "value")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.key = message.key
        self.value = message.value


class Restore:
    """Table recovery a fetch at a time.

    Faust's recovery (``Recovery._slurp_changelogs``) takes changelog records
    one by one off a queue, each as an event with a wait, debug messages
    formatted whether logged or not, and a recount of every partition's
    remaining offsets: 3-4k records/s, five minutes for a million customers
    from an empty data folder. Records of partitions under active recovery
    are taken here instead, as the consumer hands them out, and written per
    fetch with the table's own ``apply_changelog_batch`` (one store write per
    partition, and the persisted offset, as Faust writes its own batches).
    The recovery's offsets move on as Faust's loop would move them; one
    record of the fetch is then passed on to that loop, which finds it
    applied, skips it, and sees whether recovery is complete.

    Order is kept: records Faust buffered and had not written are written
    first, and a record is applied only past the partition's offset, which
    Faust's loop also checks. Standby partitions, and everything outside
    recovery, go Faust's way. Internals relied on (faust-streaming 0.15,
    pinned): ``Recovery.in_recovery``, ``active_tps``, ``active_offsets``,
    ``tp_to_table``, ``buffers`` and the skip by offset in
    ``_slurp_changelogs``; guarded by ``tests/integration/test_rebalance.py``,
    ``test_crash.py`` and ``test_recovery.py``.
    """

    def __init__(self, app: Any, restored: Callable[[int], None] = lambda n: None) -> None:
        self.app = app
        #: Told how many records each fetch restored.
        self.restored = restored
        self._taken: dict[TP, list[Message]] = {}
        #: Changelog records written here (not through Faust's loop) in this recovery.
        self.applied = 0
        self._began: float | None = None
        self._last = 0.0

    def take(self, tp: TP, message: Message) -> bool:
        """Keep a record of a partition under active recovery for :meth:`apply`."""
        recovery = self.app.tables.recovery
        if not recovery.in_recovery or tp not in recovery.active_tps:
            return False
        if self._began is None:
            self._began = monotonic()
        self._taken.setdefault(tp, []).append(message)
        return True

    def apply(self) -> list[tuple[TP, Message]]:
        """Write what was taken; one record of it, written already, for Faust's loop.

        One: Faust's loop looks at every partition's offset at each record it
        takes, and once one completes the recovery Faust suspends the flow,
        after which a record handed to it waits for the flow to resume (the
        consumer hung so on the second of two records)."""
        recovery = self.app.tables.recovery
        if not self._taken:
            if self._began is not None and not recovery.in_recovery:
                self._report()
            return []
        taken, self._taken = self._taken, {}
        marker: tuple[TP, Message] | None = None
        for tp, messages in taken.items():
            if not recovery.in_recovery or tp not in recovery.active_tps:
                continue  # revoked meanwhile (a rebalance): its next recovery reads them again
            table = recovery.tp_to_table[tp]
            buffered = recovery.buffers.get(table)
            if buffered:  # older records Faust's loop holds: before these
                table.apply_changelog_batch(buffered)
                buffered.clear()
            new = fresh(messages, recovery.active_offsets.get(tp))
            if new:
                table.apply_changelog_batch([_Change(m) for m in new])
                recovery.active_offsets[tp] = new[-1].offset
                self.applied += len(new)
                self.restored(len(new))
                self._last = monotonic()
            marker = (tp, messages[-1])
        return [] if marker is None else [marker]

    def _report(self) -> None:
        assert self._began is not None
        seconds = max(self._last - self._began, 1e-6)
        log.info(
            "%d changelog records restored in %.1f s (%.0f records/s)",
            self.applied,
            seconds,
            self.applied / seconds,
        )
        self.applied, self._began = 0, None


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with :class:`Consumer`.

    ``applied_position`` tells the consumer where each internal partition's
    applied records end; ``streams`` maps the topics whose records go to the
    batch protocol to their stream; ``apply`` applies a fetch's records
    (``streams.batch.BatchEngine.process``); ``positioned`` is told when the
    consumer has been positioned for an assignment; ``fetch_max_wait_ms`` bounds how
    long a fetch may hold records of other partitions back."""

    Consumer = Consumer

    def __init__(self, *args: Any, applied_position: AppliedPosition | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.applied_position = applied_position
        #: The longest the broker holds a fetch with nothing to return (see
        #: :class:`ConsumerThread`); None keeps Faust's 1,500 ms.
        self.fetch_max_wait_ms: int | None = None
        #: What the broker waits for (up to ``fetch_max_wait_ms``) before it
        #: answers a fetch; None keeps aiokafka's 1 byte.
        self.fetch_min_bytes: int | None = None
        self.streams: dict[str, Stream] = {}
        self.apply: Callable[[list[Record]], Awaitable[None]] = _unwired
        #: Called each time the consumer is positioned, before records of the
        #: new assignment pass (``streams.batch.BatchEngine.forget``).
        self.positioned: Callable[[], None] = lambda: None
        #: Told how many changelog records each recovery fetch restored (metrics).
        self.restored: Callable[[int], None] = lambda n: None

    def record(self, message: Message) -> Record:
        """The batch protocol's view of a consumed record."""
        stream = self.streams[message.topic]
        stamp = message.timestamp
        return Record(
            stream,
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            None if stamp is None else int(stamp * 1000),
            quiet=stream == "touchpoints" and header_value(message.headers, IMPORT_HEADER) == b"1",
            source=message,
        )


async def _unwired(records: list[Record]) -> None:
    raise RuntimeError("the transport's batch handler was never set (streams.app wires it)")


def header_value(headers: Any, name: str) -> bytes | None:
    """One header of a Kafka record (Faust gives a mapping or a list of pairs)."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in items:
        if key == name:
            return value if isinstance(value, bytes) else str(value).encode()
    return None
