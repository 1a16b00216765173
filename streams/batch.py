"""The batch protocol: how records are applied, by the worker and by
``journeyflow replay`` alike.

A batch is a run of input records (what one fetch returned, bounded in
records and milliseconds). Applying it:

1. **Step** every record in offset order against an in-memory view of its
   partition's tables (:class:`PartitionView`): each key's records are read
   and decoded once per batch, changed in memory, and encoded once.
   Touchpoints are admitted (validated, PII hashed) and routed to their
   first identifier; feedback is validated and routed to its customer;
   records of the internal topic go through One-ID and the journey engine
   (``streams.core.oneid.handle``); idle ticks move a partition's clock.
2. **Send** everything the batch decided (One-ID messages and re-keyed
   events to the internal topic, outputs, merges, dead letters) and wait for
   every acknowledgement at once (:meth:`Sink.send`).
3. **Write** each changed key once (:meth:`Sink.write`): the worker sends the
   changelog records, waits for their acks, then writes its local store.
4. **Done**: the input records may be committed (:meth:`Sink.done`).

Steps 2-4 of a batch overlap step 1 of the next (:meth:`BatchEngine.process`):
the next batch reads the changes of the one being sent and written from an
:class:`Overlay`, and is sent only once that one is done.

So an output is acknowledged before the state that produced it is written;
a crash between 2 and 3 repeats the batch's outputs under the same ids (at
most one batch), never loses one, and a redelivered record changes nothing
(``journey.seen_before``). Where the internal topic's records of a
partition end is written with the batch (``applied_key``), for the
consumer's rewind (``streams.transport``).

Nothing here knows Faust or Kafka: the worker's :class:`Sink` and
``TableReader`` are in ``streams.tables``; ``streams.runtime.LocalRuntime``
implements them over dicts for replay and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson

from models.labels import Example
from schemas.codec import InvalidEvent, decode_feedback
from schemas.outputs import Action, DeadLetter, Merge
from streams.core import window
from streams.core.actions import Budget
from streams.core.engine import TickResult
from streams.core.errors import CoreError
from streams.core.identity import normalise, parse_typed
from streams.core.ingest import IngestPolicy, RecordMeta, admit, dead_letter
from streams.core.journey import (
    DecisionRecord,
    JourneyState,
    decode_decisions,
    decode_journey,
    encode_decisions,
    encode_record,
)
from streams.core.oneid import (
    Alias,
    FeedbackMsg,
    Message,
    OneIdConfig,
    decode_alias,
    decode_message,
    encode_alias,
    encode_message,
    handle,
    message_event_ms,
    route_event,
)
from streams.core.rules import Output
from streams.timer_index import TimerIndex

log = logging.getLogger(__name__)

#: Key of the idle-tick records on the internal topic (never a customer id).
TICK_KEY = b"\x00tick"
#: Header ``journeyflow import`` puts on history: update journeys, decide nothing.
IMPORT_HEADER = "jf-import"

#: The tables the protocol keeps, co-partitioned with the internal topic.
#: ``decisions`` holds the decision fields of journeys (written only when
#: they change: ``journey.DecisionRecord``).
TABLES = ("aliases", "journeys", "timers", "decisions")

Stream = Literal["touchpoints", "feedback", "keyed"]


def budget_key(partition: int) -> bytes:
    """``timers`` key of a partition's burst budget (``actions.Budget``)."""
    return b"\x00budget:%d" % partition


def stages_key(partition: int) -> bytes:
    """``timers`` key of how many of a partition's journeys are in each stage."""
    return b"\x00stages:%d" % partition


def stage_counts(raw: bytes | None) -> dict[str, int]:
    """A partition's journeys by stage, from its ``stages_key`` record: kept
    by the batches that move journeys between stages (a stage with none left
    is gone); tables written before the record was kept make it wrong.

    >>> stage_counts(b'{"interest": 3, "purchase": 1}')
    {'interest': 3, 'purchase': 1}
    >>> stage_counts(None)
    {}
    """
    counts: dict[str, int] = orjson.loads(raw) if raw else {}
    return counts


def applied_key(partition: int) -> bytes:
    """``timers`` key of where the applied records of a partition of the
    internal topic end (``streams.transport`` rewinds to it)."""
    return b"\x00applied:%d" % partition


@dataclass(frozen=True, slots=True)
class Record:
    """One input record. ``message``: an internal record already decoded
    (replay keeps messages as objects; the worker decodes ``value``)."""

    stream: Stream
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    #: Imported history (header ``jf-import``): update journeys, decide nothing.
    quiet: bool = False
    message: Message | None = None
    #: The shell's own handle on the record (the worker: Faust's message, acked when done).
    source: Any = None


class TableReader(Protocol):
    """Committed state: one table's record for a key of a partition."""

    def read(self, table: str, partition: int, key: bytes) -> bytes | None: ...


#: partition -> table -> key -> new value (None: delete).
Changes = dict[int, dict[str, dict[bytes, bytes | None]]]

T = TypeVar("T")


class Decoded(Generic[T]):
    """Table records decoded before, kept with the bytes they were decoded
    from (or encoded to). At most ``entries`` are kept, least recently used
    first out; 0 keeps none. Decoded values are immutable (frozen models),
    so a batch that changes one makes a new one.

    Two ways to use what is kept:

    - **Compared** (the default; replay and the tests): a record is reused
      while the committed record is those same bytes, so the store is read
      for every key a batch touches, and nothing needs invalidating: a
      rebalance, a table recovery or a write that never happened leaves
      other bytes in the store, and the record is decoded again.
    - **Trusted** (the worker, :meth:`BatchEngine.trust`): what is kept is
      the committed record, or the record of the batch being written, which
      the next batch would read first (:class:`Overlay`); a key known to be
      absent is kept as absent. The store is not read for a kept key. That
      holds while nothing but this engine writes the stores of the
      partitions it applies, which is true between two positionings of the
      consumer: stores change under it only at a rebalance, by table
      recovery and by standby replicas (the worker calls :meth:`clear` each
      time it is positioned, before any batch of the new assignment), and a
      batch that fails to be written stops the worker.
    """

    def __init__(self, decode: Callable[[bytes], T], entries: int) -> None:
        self._decode = decode
        self.entries = entries
        self._items: OrderedDict[bytes, tuple[bytes, Any]] = OrderedDict()
        self.trusted = False
        self.hits = 0
        self.misses = 0

    def decode(self, key: bytes, raw: bytes) -> T:
        value = self.get(key, raw)
        if value is None:
            value = self._decode(raw)
            self.remember(key, raw, value)
        return value

    def get(self, key: bytes, raw: bytes) -> T | None:
        """The value decoded from ``raw`` before, if still kept (counted as a hit or a miss)."""
        known = self._items.get(key)
        if known is not None and known[0] == raw:  # bytes equality tries identity first
            self._items.move_to_end(key)
            self.hits += 1
            return None if known[1] is _ABSENT else known[1]
        self.misses += 1
        return None

    def known(self, key: bytes) -> tuple[bool, T | None]:
        """When trusted: ``(True, value)`` for a kept key (None: known absent),
        ``(False, None)`` when the store must be read."""
        if not self.trusted:
            return False, None
        known = self._items.get(key)
        if known is None:
            return False, None
        self._items.move_to_end(key)
        self.hits += 1
        return True, None if known[1] is _ABSENT else known[1]

    def remember(self, key: bytes, raw: bytes, value: T) -> None:
        if not self.entries:
            return
        items = self._items
        items[key] = (raw, value)
        items.move_to_end(key)
        if len(items) > self.entries:
            items.popitem(last=False)

    def absent(self, key: bytes) -> None:
        """The key has no record (read so, or deleted by the batch being written)."""
        if self.trusted:
            self.remember(key, b"", _ABSENT)
        else:
            self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


#: What :class:`Decoded` keeps for a key known to have no record.
_ABSENT: Any = object()


class Messages:
    """The internal topic's codec, remembering what this process sent.

    Both stages run in every worker, so most records the keyed stage reads
    were encoded by the same process a moment before: each message sent is
    kept with its bytes until its record is read back (then dropped), and
    only records sent by another worker, before a restart, or more than
    ``entries`` sends ago are decoded. A message decoded from its bytes
    equals the one encoded (``tests/unit/test_batch.py`` checks the round
    trip on the simulator's traffic), so which path gave it changes nothing.
    Messages are immutable. 0 entries keeps none."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._sent: dict[bytes, Message] = {}
        self.hits = 0
        self.misses = 0

    def encode(self, msg: Message) -> bytes:
        raw = encode_message(msg)
        if self.entries:
            sent = self._sent
            sent[raw] = msg
            if len(sent) > self.entries:
                del sent[next(iter(sent))]  # the oldest send
        return raw

    def decode(self, raw: bytes) -> Message:
        msg = self._sent.pop(raw, None)
        if msg is None:
            self.misses += 1
            return decode_message(raw)
        self.hits += 1
        return msg

    def __len__(self) -> int:
        return len(self._sent)


class PartitionView:
    """One partition's tables as a batch sees them: reads fall through to the
    committed state once per key (decoded, or taken from the engine's
    :class:`Decoded` records: while the committed bytes are the same, or,
    trusted, without reading them), writes
    stay here until the batch is written, and each changed key is encoded
    once."""

    def __init__(
        self,
        reader: TableReader,
        partition: int,
        aliases: Decoded[Alias] | None = None,
        journeys: Decoded[StoredJourney] | None = None,
        decisions: Decoded[DecisionRecord] | None = None,
        timers: Decoded[bytes] | None = None,
    ) -> None:
        self.reader = reader
        self.partition = partition
        self._decoded_aliases = Decoded(decode_alias, 0) if aliases is None else aliases
        self._decoded_journeys = Decoded(_unreadable, 0) if journeys is None else journeys
        self._decoded_decisions = Decoded(decode_decisions, 0) if decisions is None else decisions
        #: ``timers`` records kept as read or written (used only when trusted).
        self._kept_timers = Decoded(bytes, 0) if timers is None else timers
        self._aliases: dict[str, Alias | None] = {}
        self._journeys: dict[str, JourneyState | None] = {}
        #: How each journey read had its window stored.
        self._pages: dict[str, window.Pages] = {}
        #: The decision fields each journey read had in the ``decisions`` table.
        self._stored_decisions: dict[str, DecisionRecord] = {}
        self._timers: dict[bytes, bytes | None] = {}
        self._dirty_aliases: set[str] = set()
        self._dirty_journeys: set[str] = set()
        self._dirty_timers: set[bytes] = set()
        #: The partition's burst budget, read at its first use in the batch.
        self.budget: Budget | None = None
        #: Journeys that changed stage, by ``(from, to)``, for the metrics:
        #: ``"none"`` before is a journey's first stage, after a journey gone
        #: (erased, or merged into another).
        self.stage_moves: Counter[tuple[str, str]] = Counter()

    def _load(
        self, values: dict[str, T | None], table: str, decoded: Decoded[T], key: str
    ) -> T | None:
        """A key's committed record, decoded (or as decoded before), kept for the batch."""
        value = values[key] = self._read(table, decoded, key.encode())
        return value

    def _read(self, table: str, decoded: Decoded[T], k: bytes) -> T | None:
        """A key's committed record: kept (trusted), or read and decoded (None: absent)."""
        hit, value = decoded.known(k)
        if not hit:
            raw = self.reader.read(table, self.partition, k)
            if raw:
                value = decoded.decode(k, raw)
            else:
                decoded.absent(k)
        return value

    def alias(self, key: str) -> Alias | None:
        try:
            return self._aliases[key]
        except KeyError:
            return self._load(self._aliases, "aliases", self._decoded_aliases, key)

    def set_alias(self, key: str, alias: Alias | None) -> None:
        self._aliases[key] = alias
        self._dirty_aliases.add(key)

    def journey(self, customer_id: str) -> JourneyState | None:
        try:
            return self._journeys[customer_id]
        except KeyError:
            pass
        k = customer_id.encode()
        hit, known = self._decoded_journeys.known(k)
        if not hit:
            raw = self.reader.read("journeys", self.partition, k)
            if raw:
                known = self._decoded_journeys.get(k, raw)
                if known is None:
                    known = decode_journey(raw, lambda n: self._page(k, n))
                    self._decoded_journeys.remember(k, raw, known)
            else:
                self._decoded_journeys.absent(k)
        state = None
        if known is not None:
            state, self._pages[customer_id] = known
        self._journeys[customer_id] = state
        stored = self._read("decisions", self._decoded_decisions, k) or _NO_DECISIONS
        self._stored_decisions[customer_id] = stored
        if state is not None:
            state = self._journeys[customer_id] = stored.applied_to(state)
        return state

    def _page(self, customer_key: bytes, number: int) -> bytes | None:
        return self.reader.read("journeys", self.partition, window.page_key(customer_key, number))

    def set_journey(self, customer_id: str, state: JourneyState | None) -> None:
        old = self._journeys.get(customer_id)  # read before it is set
        before = None if old is None else old.stage
        after = None if state is None else state.stage
        if before != after:
            self.stage_moves[before or "none", after or "none"] += 1
        self._journeys[customer_id] = state
        self._dirty_journeys.add(customer_id)

    # the ``timers`` table, as the due-time index reads it (streams.timer_index.Timers)
    def get(self, key: bytes) -> bytes | None:
        try:
            return self._timers[key]
        except KeyError:
            pass
        hit, raw = self._kept_timers.known(key)
        if not hit:
            raw = self.reader.read("timers", self.partition, key)
            self._keep_timer(key, raw)
        self._timers[key] = raw
        return raw

    def _keep_timer(self, key: bytes, raw: bytes | None) -> None:
        kept = self._kept_timers
        if not kept.trusted:
            return  # compared timers records are read anyway: keeping them buys nothing
        if raw is None:
            kept.absent(key)
        else:
            kept.remember(key, raw, raw)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._timers[key] = value
        self._dirty_timers.add(key)

    def pop(self, key: bytes, default: None = None, /) -> bytes | None:
        old = self.get(key)
        self._timers[key] = None
        self._dirty_timers.add(key)
        return old

    def changes(self) -> dict[str, dict[bytes, bytes | None]]:
        """Every changed key, encoded (None: deleted); called once, when the
        batch is closed (it adds the batch's stage moves to the partition's
        counts)."""
        if self.stage_moves:
            self._count_stages()
        out: dict[str, dict[bytes, bytes | None]] = {}
        if self._dirty_aliases:
            out["aliases"] = _encoded(
                self._aliases, self._dirty_aliases, encode_alias, self._decoded_aliases
            )
        if self._dirty_journeys:
            out["journeys"] = self._journeys_changed()
            decisions = self._decisions_changed()
            if decisions:
                out["decisions"] = decisions
        if self._dirty_timers:
            timers = out["timers"] = {k: self._timers[k] for k in self._dirty_timers}
            for k, raw in timers.items():
                self._keep_timer(k, raw)
        return out

    def _count_stages(self) -> None:
        """The partition's journeys by stage, with this batch's moves."""
        key = stages_key(self.partition)
        counts = Counter(stage_counts(self.get(key)))
        for (before, after), n in self.stage_moves.items():
            counts[before] -= n
            counts[after] += n
        del counts["none"]
        self[key] = orjson.dumps({stage: n for stage, n in sorted(counts.items()) if n})

    def _journeys_changed(self) -> dict[bytes, bytes | None]:
        """The changed journeys' records and window pages, in the order the
        changelog must keep (``streams.core.window``): a journey's pages
        before its record, pages no longer named after every record."""
        out: dict[bytes, bytes | None] = {}
        gone: list[bytes] = []
        for key in self._dirty_journeys:
            state = self._journeys[key]
            k = key.encode()
            old = self._pages.get(key, window.NO_PAGES)
            if state is None:
                out[k] = None
                self._decoded_journeys.absent(k)
                gone.extend(window.page_key(k, n) for n in old.numbers)
                continue
            stored = window.store(old, state.recent)
            for n, entries in stored.write.items():
                out[window.page_key(k, n)] = window.encode_page(entries)
            raw = out[k] = encode_record(state, stored.pages.manifest)
            self._decoded_journeys.remember(k, raw, (state, stored.pages))
            gone.extend(window.page_key(k, n) for n in stored.delete)
        for page in gone:
            out[page] = None
        return out

    def _decisions_changed(self) -> dict[bytes, bytes | None]:
        """The ``decisions`` records of changed journeys whose decision fields changed."""
        out: dict[bytes, bytes | None] = {}
        for key in self._dirty_journeys:
            state = self._journeys[key]
            stored = self._stored_decisions.get(key, _NO_DECISIONS)
            if state is None:
                if not stored.empty:
                    out[key.encode()] = None
                    self._decoded_decisions.absent(key.encode())
                continue
            if stored.same_as(state):
                continue
            record = DecisionRecord.of(state)
            k = key.encode()
            if record.empty:
                out[k] = None
                self._decoded_decisions.absent(k)
            else:
                raw = out[k] = encode_decisions(record)
                self._decoded_decisions.remember(k, raw, record)
        return out


_NO_DECISIONS = DecisionRecord()

#: A journey as the journeys table holds it: the state, and how its window is stored.
StoredJourney = tuple[JourneyState, window.Pages]


def _unreadable(raw: bytes) -> StoredJourney:
    raise TypeError("journeys are read with their pages (PartitionView.journey)")


def _encoded(
    values: dict[str, T | None],
    dirty: set[str],
    encode: Callable[[T], bytes],
    decoded: Decoded[T],
) -> dict[bytes, bytes | None]:
    """The changed keys' records (None: deleted), remembered as decoded."""
    out: dict[bytes, bytes | None] = {}
    for key in dirty:
        value = values[key]
        k = key.encode()
        if value is None:
            out[k] = None
            decoded.absent(k)
        else:
            raw = out[k] = encode(value)
            decoded.remember(k, raw, value)
    return out


@dataclass
class Batch:
    """What one batch decided, to be sent (and acknowledged) before its
    changes are written."""

    records: Sequence[Record] = ()
    #: One-ID messages and re-keyed events for the internal topic: (key, message).
    messages: list[tuple[str, Message]] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    #: Decisions labelled (``streams.core.decisions``), for the trainer.
    examples: list[Example] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    views: dict[int, PartitionView] = field(default_factory=dict)
    #: Counts by name: outcomes (``processed``, ``duplicate``, ``redelivered``,
    #: ``erased``), ``dead_lettered``, ``dlq_<reason>``, ``late``,
    #: ``feedback_<result>``, ``refused_<reason>``.
    counts: Counter[str] = field(default_factory=Counter)
    #: Touchpoints applied to journeys, by ``(channel, outcome)``.
    inputs: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Kafka timestamps (ms) of the re-keyed records of the events applied.
    applied_timestamps: list[int] = field(default_factory=list)
    #: Kafka timestamps (ms) of the touchpoints admitted (for the metrics).
    admitted_timestamps: list[int] = field(default_factory=list)
    #: Kafka timestamps (ms) of the re-keyed records that decided outputs, one
    #: per output (for the metrics).
    output_timestamps: list[int] = field(default_factory=list)
    #: Deliveries of catalog actions reported: ms after their ``not_before``.
    delivered_after_ms: list[int] = field(default_factory=list)
    #: Partition -> its event-time clock after the batch (ms).
    clocks: dict[int, int] = field(default_factory=dict)
    #: ``time.perf_counter()`` when stepping began (for the shell's metrics).
    started: float | None = None
    #: Wall clock (epoch s) when the shell's sink had the batch's records
    #: acknowledged (for the metrics).
    sent: float | None = None
    _changes: Changes | None = None

    def changes(self) -> Changes:
        """Every changed key of every partition, encoded once (the batch is
        closed: its views change no more)."""
        if self._changes is None:
            self._changes = {p: c for p, view in self.views.items() if (c := view.changes())}
        return self._changes


class Overlay:
    """The committed state as the next batch must read it: the changes of the
    batch still being sent and written, over the reader's committed records."""

    def __init__(self, reader: TableReader) -> None:
        self.reader = reader
        self.changes: Changes = {}

    def read(self, table: str, partition: int, key: bytes) -> bytes | None:
        if self.changes:
            tables = self.changes.get(partition)
            if tables is not None:
                kv = tables.get(table)
                if kv is not None and key in kv:
                    return kv[key]
        return self.reader.read(table, partition, key)


class Sink(Protocol):
    async def send(self, batch: Batch) -> None:
        """Send everything the batch decided; return once all is acknowledged."""

    async def write(self, batch: Batch) -> None:
        """Make the batch's changes the committed state."""

    def done(self, batch: Batch) -> None:
        """The batch's input records may be committed."""


@dataclass(frozen=True)
class BatchLimits:
    #: Most records stepped before the batch is sent and written.
    records: int = 1000
    #: A batch is closed once stepping it took this long, records left or not.
    millis: float = 50.0
    #: Decoded journeys (and as many aliases) kept across batches (``Decoded``),
    #: and internal messages kept from their send until read back (``Messages``).
    decoded: int = 10_000
    #: While the previous batch is being sent and written, stepping lets the
    #: event loop take its acknowledgements at least this often (seconds).
    yield_every: float = 0.005


class BatchEngine:
    """Applies runs of records batch by batch (see the module docstring)."""

    def __init__(
        self,
        oneid: OneIdConfig,
        policy: IngestPolicy,
        timer_width_ms: int,
        reader: TableReader,
        sink: Sink,
        limits: BatchLimits | None = None,
        messages: Messages | None = None,
    ) -> None:
        self.oneid = oneid
        self.policy = policy
        self.timer_width_ms = timer_width_ms
        #: What batches read: the committed state under the changes of the
        #: batch being sent and written.
        self.overlay = Overlay(reader)
        self.reader: TableReader = self.overlay
        self.sink = sink
        self.limits = limits or BatchLimits()
        #: The last batch's send, write and done, while under way.
        self._tail: asyncio.Future[None] | None = None
        #: Called with the error of a batch that could not be sent or written.
        self.on_failure: Callable[[BaseException], None] | None = None
        #: One due-time index per partition, pointed at each batch's view (it
        #: keeps the partition's decoded clock while its record is unchanged).
        self._indexes: dict[int, TimerIndex] = {}
        actions = oneid.core.decisions.actions if oneid.core.decisions is not None else None
        self.burst = actions.catalog.policies.burst if actions is not None else None
        self.decoded_aliases = Decoded(decode_alias, self.limits.decoded)
        self.decoded_journeys: Decoded[StoredJourney] = Decoded(_unreadable, self.limits.decoded)
        self.decoded_decisions = Decoded(decode_decisions, self.limits.decoded)
        #: ``timers`` records (clocks, due-time buckets, budgets), kept when trusted.
        self.kept_timers: Decoded[bytes] = Decoded(bytes, self.limits.decoded)
        #: The internal topic's codec (the worker's sink encodes with it).
        self.messages = Messages(self.limits.decoded) if messages is None else messages

    def trust(self, on: bool = True) -> None:
        """Trust the decoded records kept instead of reading the store for
        them (see :class:`Decoded`); the shell must :meth:`forget` whenever
        anything else may have written its partitions' stores."""
        for decoded in self._kept():
            decoded.trusted = on
            decoded.clear()

    def forget(self) -> None:
        """Drop every decoded record kept: the stores are read again."""
        for decoded in self._kept():
            decoded.clear()

    def _kept(self) -> tuple[Decoded[Any], ...]:
        return (
            self.decoded_aliases,
            self.decoded_journeys,
            self.decoded_decisions,
            self.kept_timers,
        )

    async def process(self, records: Sequence[Record]) -> None:
        """Apply ``records`` (each partition's in offset order), in batches.

        Pipelined one deep: a batch is stepped while the one before it is
        sent and written (it reads that batch's changes from :class:`Overlay`),
        and is sent only once the one before is written and done. So at most
        one batch has outputs acknowledged and state unwritten, as before;
        and the acknowledgement round trips overlap the next batch's CPU work,
        also across calls: this returns with its last batch still being sent
        and written (:meth:`drain` waits for it). An error sending or writing
        a batch is raised by the next call (or ``drain``), before anything
        more is sent, and passed to :attr:`on_failure` at once.
        """
        start = 0
        limit = self.limits.records
        budget = self.limits.millis / 1000
        every = self.limits.yield_every
        clock = time.perf_counter
        while start < len(records):
            began = clock()
            batch = Batch(started=began)
            deadline = began + budget
            next_yield = began + every
            end = start
            while end < len(records) and end - start < limit:
                self.step(batch, records[end])
                end += 1
                now = clock()
                if now > deadline:
                    break
                if now > next_yield and self._tail is not None:
                    await asyncio.sleep(0)  # the previous batch's acks, sent on meanwhile
                    next_yield = clock() + every
            batch.records = records[start:end]
            self.close(batch)
            changes = batch.changes()
            await self.drain()
            self.overlay.changes = changes
            self._tail = asyncio.ensure_future(self._finish(batch))
            await asyncio.sleep(0)  # its records go out before the next batch is stepped
            start = end

    async def _finish(self, batch: Batch) -> None:
        """Send, write, done: a batch's outputs are acknowledged before its state is written."""
        try:
            await self.sink.send(batch)
            await self.sink.write(batch)
            self.sink.done(batch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            log.error(
                "a batch of %d records could not be sent or written: %r",
                len(batch.records),
                exc,
                extra={"records": len(batch.records), "partitions": sorted(batch.views)},
            )
            if self.on_failure is not None:
                self.on_failure(exc)
            raise
        finally:
            if self.overlay.changes is batch.changes():
                self.overlay.changes = {}  # written, or never to be: the store answers

    async def drain(self) -> None:
        """Wait until the last batch is sent, written and done (raises its error)."""
        tail, self._tail = self._tail, None
        if tail is not None:
            await tail

    def step(self, batch: Batch, record: Record) -> None:
        if record.stream == "keyed":
            self._keyed(batch, record)
        elif record.stream == "touchpoints":
            self._touchpoint(batch, record)
        else:
            self._feedback(batch, record)

    def close(self, batch: Batch) -> None:
        """Note where each partition's applied records end (for the rewind)."""
        last: dict[int, int] = {}
        for record in batch.records:
            if record.stream == "keyed":
                last[record.partition] = record.offset
        for partition, offset in last.items():
            self._view(batch, partition)[applied_key(partition)] = b"%d" % (offset + 1)
        for partition, view in batch.views.items():
            if view.budget is not None and view.budget.changed:
                view[budget_key(partition)] = view.budget.to_bytes()

    # --- stages ---------------------------------------------------------------

    def _dead_letter(self, batch: Batch, letter: DeadLetter) -> None:
        batch.dead_letters.append(letter)
        batch.counts["dead_lettered"] += 1
        batch.counts[f"dlq_{letter.reason_code}"] += 1

    def _touchpoint(self, batch: Batch, record: Record) -> None:
        """Validate, hash PII, route to the strongest identifier; bad input to the DLQ."""
        meta = RecordMeta(record.topic, record.partition, record.offset, record.timestamp_ms)
        result = admit(record.value or b"", meta, self.policy)
        if isinstance(result, DeadLetter):
            self._dead_letter(batch, result)
        else:
            batch.messages.append(route_event(result, quiet=record.quiet))
            if record.timestamp_ms is not None:
                batch.admitted_timestamps.append(record.timestamp_ms)

    def _feedback(self, batch: Batch, record: Record) -> None:
        """An action's outcome, sent to the customer it names (One-ID forwards
        it if that customer was merged since)."""
        raw = record.value or b""
        meta = RecordMeta(record.topic, record.partition, record.offset, record.timestamp_ms)
        try:
            fb = decode_feedback(raw)
            kind, value = parse_typed(fb.customer_id)
            key = f"{kind}:{normalise(kind, value, self.policy.pii_key)}"
        except InvalidEvent as exc:
            letter = dead_letter(raw, meta, exc.code, exc.message, exc.errors, exc.event_id)
            self._dead_letter(batch, letter)
            return
        except CoreError as exc:  # includes InvalidIdentifier
            self._dead_letter(batch, dead_letter(raw, meta, "invalid_identifier", str(exc)))
            return
        batch.messages.append((key, FeedbackMsg(fb)))

    def _view(self, batch: Batch, partition: int) -> PartitionView:
        view = batch.views.get(partition)
        if view is None:
            view = batch.views[partition] = PartitionView(
                self.reader,
                partition,
                self.decoded_aliases,
                self.decoded_journeys,
                self.decoded_decisions,
                self.kept_timers,
            )
        return view

    def _index(self, view: PartitionView) -> TimerIndex:
        index = self._indexes.get(view.partition)
        if index is None:
            index = self._indexes[view.partition] = TimerIndex(
                view, view, self.timer_width_ms, self.oneid.core
            )
        index.timers = index.journeys = view
        index.budget = self._budget(view)
        return index

    def _budget(self, view: PartitionView) -> Budget | None:
        """The partition's burst budget (None: the catalog sets none)."""
        if self.burst is None:
            return None
        if view.budget is None:
            view.budget = Budget.from_bytes(view.get(budget_key(view.partition)), self.burst)
        return view.budget

    def _keyed(self, batch: Batch, record: Record) -> None:
        """One record of the internal topic: a One-ID message against its
        key's alias and journey, or an idle tick moving the partition's clock."""
        partition = record.partition
        view = self._view(batch, partition)
        index = self._index(view)
        if record.key == TICK_KEY:
            mark = int(orjson.loads(record.value or b"{}")["watermark_ms"])
            self._move_clock(batch, index, partition, mark, start=False)
            return
        try:
            key = (record.key or b"").decode()
            message = record.message or self.messages.decode(record.value or b"")
        except (InvalidEvent, AttributeError, KeyError, TypeError, ValueError) as exc:
            meta = RecordMeta(record.topic, partition, record.offset, record.timestamp_ms)
            letter = dead_letter(record.value or b"", meta, "schema_violation", f"internal: {exc}")
            self._dead_letter(batch, letter)
            return
        clock = index.clock(partition)
        fx = handle(
            key,
            message,
            view.alias(key),
            view.journey(key),
            self.oneid,
            f"{partition}:{record.offset}",
            None if clock is None else clock.clock_ms,
            index.budget,
        )
        for letter in fx.dead_letters:
            self._dead_letter(batch, letter)
        batch.messages.extend(fx.sends)
        if fx.outputs:
            batch.outputs.extend(fx.outputs)
            if record.timestamp_ms is not None:
                batch.output_timestamps.extend([record.timestamp_ms] * len(fx.outputs))
        batch.examples.extend(fx.examples)
        batch.merges.extend(fx.merges)
        if fx.late:
            batch.counts["late"] += 1
        if fx.feedback is not None:
            batch.counts[f"feedback_{fx.feedback}"] += 1
            if fx.delivered_after_ms is not None:
                batch.delivered_after_ms.append(fx.delivered_after_ms)
        for reason in fx.refusals:
            batch.counts[f"refused_{reason}"] += 1
        _count_actions(batch, fx.outputs, fx.left_out)
        for what, n in fx.decisions.items():
            batch.counts[f"decision_{what}"] += n
        event_ms = message_event_ms(message)
        if fx.scheduled:
            index.add(partition, key, tuple(fx.scheduled), event_ms or min(fx.scheduled))
        if fx.alias_changed:
            view.set_alias(key, fx.alias)
        if fx.journey_changed:
            view.set_journey(key, fx.journey)
        if fx.outcome is not None:
            batch.counts[fx.outcome] += 1
            event = getattr(message, "event", None)
            if event is not None:
                batch.inputs[event.channel, fx.outcome] += 1
            if record.timestamp_ms is not None:
                batch.applied_timestamps.append(record.timestamp_ms)
            if event_ms is not None:
                self._move_clock(batch, index, partition, event_ms)

    def _move_clock(
        self, batch: Batch, index: TimerIndex, partition: int, to_ms: int, *, start: bool = True
    ) -> None:
        def emit(result: TickResult) -> None:
            batch.outputs.extend(result.outputs)
            batch.examples.extend(result.examples)
            _count_actions(batch, result.outputs, result.left_out)

        clock = index.advance(partition, to_ms, emit, start=start)
        if clock is not None:
            batch.clocks[partition] = clock.clock_ms


def _count_actions(batch: Batch, outputs: Sequence[Output], left_out: Mapping[str, int]) -> None:
    """Catalog actions sent or held out, and those left out by reason."""
    for why, n in left_out.items():
        batch.counts[f"nba_left_out_{why}"] += n
    for output in outputs:
        if isinstance(output, Action) and output.catalog_version is not None:
            batch.counts["nba_holdout" if output.holdout else "nba_sent"] += 1
