"""The worker's batch protocol in process, over dicts: ``journeyflow
replay`` and the unit tests apply records exactly as the worker does
(``streams.batch.BatchEngine``), without Kafka.

Records of the internal topic wait in one FIFO queue per partition (the
partition Kafka's default partitioner would pick for their key) and are
numbered like offsets. :meth:`LocalRuntime.run` takes the queued records of
one partition at a time as a batch, in partition order; with
``interleave`` (a seeded ``random.Random``) it takes a few records of a
random busy partition at a time, as when several workers run at their own
pace: Kafka keeps order within a partition, never across. "Sending" puts
One-ID messages back on the queues and collects outputs; "writing" stores
the batch's changes in the dicts.
"""

from __future__ import annotations

import functools
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka.partitioner import murmur2

from models.labels import Example
from schemas.outputs import DeadLetter, Feedback, Merge
from streams.batch import TICK_KEY, Batch, BatchEngine, BatchLimits, PartitionView, Record
from streams.core.ingest import Admitted, IngestPolicy
from streams.core.journey import JourneyState
from streams.core.oneid import (
    FeedbackMsg,
    Message,
    OneIdConfig,
    decode_alias,
    message_event_ms,
    route_event,
)
from streams.core.pii import PiiKey
from streams.core.rules import Output
from streams.core.timers import PartitionClock
from streams.core.window import is_page_key
from streams.timer_index import clock_key

#: Records of one partition taken at a time with ``interleave``: 1 to this many.
INTERLEAVE_RUN = 4


@functools.lru_cache(maxsize=262_144)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key (cached:
    keys repeat, and murmur2 is pure Python)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key."""
    return partition_of(key.encode(), partitions)


@dataclass
class LocalRuntime:
    config: OneIdConfig
    partitions: int
    timer_width_ms: int
    aliases: dict[bytes, bytes] = field(default_factory=dict)
    journeys: dict[bytes, bytes] = field(default_factory=dict)
    timers: dict[bytes, bytes] = field(default_factory=dict)
    decisions: dict[bytes, bytes] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    interleave: random.Random | None = None
    #: Admission of raw touchpoints (``admit``); unused when events come admitted.
    policy: IngestPolicy = field(
        default_factory=lambda: IngestPolicy(PiiKey("local", b"local-runtime"))
    )
    limits: BatchLimits = field(default_factory=BatchLimits)

    def __post_init__(self) -> None:
        self._queues: dict[int, deque[tuple[str, Message]]] = {}
        #: The latest event time admitted (replay's default end of time).
        self.latest_event_ms: int | None = None
        self._offsets: dict[int, int] = {}
        self._tables = {
            "aliases": self.aliases,
            "journeys": self.journeys,
            "timers": self.timers,
            "decisions": self.decisions,
        }
        self.engine = BatchEngine(
            self.config, self.policy, self.timer_width_ms, self, self, self.limits
        )

    # --- streams.batch.TableReader and Sink ------------------------------------

    def read(self, table: str, partition: int, key: bytes) -> bytes | None:
        return self._tables[table].get(key)

    async def send(self, batch: Batch) -> None:
        """What the worker sends for a batch: messages go back on the queues."""
        for target, msg in batch.messages:
            self._put(target, msg)
            if msg.kind == "route":
                at = message_event_ms(msg)
                if at is not None and (self.latest_event_ms is None or at > self.latest_event_ms):
                    self.latest_event_ms = at
        self.outputs.extend(batch.outputs)
        self.examples.extend(batch.examples)
        self.merges.extend(batch.merges)
        self.dead_letters.extend(batch.dead_letters)
        for name, n in batch.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n

    async def write(self, batch: Batch) -> None:
        for tables in batch.changes().values():
            for name, changes in tables.items():
                table = self._tables[name]
                for key, value in changes.items():
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = value

    def done(self, batch: Batch) -> None:
        pass

    # --- input ----------------------------------------------------------------

    def _put(self, key: str, msg: Message) -> None:
        partition = key_partition(key, self.partitions)
        self._queues.setdefault(partition, deque()).append((key, msg))

    def submit_feedback(self, customer_id: str, feedback: Feedback) -> None:
        """An action's outcome, addressed to the customer id the action named."""
        self._put(customer_id, FeedbackMsg(feedback))

    def submit(self, admitted: Admitted, *, quiet: bool = False) -> None:
        """An admitted event enters identity resolution (``quiet``: imported history)."""
        self._put(*route_event(admitted, quiet=quiet))

    async def admit(self, records: Sequence[Record]) -> None:
        """Raw touchpoint (or feedback) records through the worker's first stage."""
        await self.engine.process(records)
        await self.engine.drain()

    def record(self, partition: int, offset: int, key: str, msg: Message) -> Record:
        """The internal-topic record a queued message is read as."""
        return Record("keyed", "internal", partition, offset, key.encode(), None, message=msg)

    def _take(self) -> tuple[int, list[tuple[str, Message]]] | None:
        busy = sorted(p for p, q in self._queues.items() if q)
        if not busy:
            return None
        if self.interleave is None:
            queue = self._queues[busy[0]]
            items = list(queue)
            queue.clear()
            return busy[0], items
        partition = self.interleave.choice(busy)
        queue = self._queues[partition]
        n = min(len(queue), self.interleave.randint(1, INTERLEAVE_RUN))
        return partition, [queue.popleft() for _ in range(n)]

    async def run(self) -> None:
        """Apply queued records, batch by batch, until none is left."""
        while (taken := self._take()) is not None:
            partition, items = taken
            records = []
            for key, msg in items:
                offset = self._offsets.get(partition, 0)
                self._offsets[partition] = offset + 1
                records.append(self.record(partition, offset, key, msg))
            await self.apply(records)

    async def apply(self, records: Sequence[Record]) -> None:
        """One partition's records through the batch protocol."""
        await self.engine.process(records)
        await self.engine.drain()

    async def advance_all(self, to_ms: int) -> None:
        """Move every partition's clock to ``to_ms``: an idle tick record on
        every partition, through the batch protocol as the worker's are."""
        value = orjson.dumps({"watermark_ms": to_ms})
        for partition in range(self.partitions):
            offset = self._offsets.get(partition, 0)
            self._offsets[partition] = offset + 1
            tick = Record("keyed", "internal", partition, offset, TICK_KEY, value)
            await self.apply([tick])

    def clock(self, partition: int) -> PartitionClock | None:
        """A partition's event-time clock as the tables hold it."""
        raw = self.timers.get(clock_key(partition))
        return PartitionClock.from_bytes(raw) if raw else None

    def journey_of(self, identifier: str) -> JourneyState | None:
        """The journey of the customer an identifier belongs to."""
        key = identifier
        for _ in range(64):
            raw = self.aliases.get(key.encode())
            root = decode_alias(raw).root if raw else None
            if root is None or root == key:
                break
            key = root
        return self.journey(key)

    def journey(self, customer_id: str) -> JourneyState | None:
        """A customer's journey as the tables hold it (decision fields included)."""
        return PartitionView(self, key_partition(customer_id, self.partitions)).journey(customer_id)

    def customers(self) -> dict[str, JourneyState]:
        out = {}
        for k in self.journeys:
            if is_page_key(k):
                continue
            state = self.journey(k.decode())
            assert state is not None
            out[k.decode()] = state
        return out
