"""The due-time index: which customers of a partition have something due,
and moving a partition's event-time clock.

The index lives in the ``timers`` table (``clock_key``, ``due_key``); the
journeys it fires are read and written through a :class:`JourneyStore`. The
worker and ``journeyflow replay`` pass a batch's in-memory view of a
partition (``streams.batch.PartitionView``), so the index's reads see the
batch's writes and everything is written once, after the batch's outputs
are acknowledged; the tick benchmark and unit tests pass dicts
(:class:`EncodedJourneys`). The clock and bucket arithmetic is
``streams.core.timers``; what fires is ``streams.core.engine.tick``.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Protocol

import orjson

from streams.core.actions import Budget
from streams.core.engine import CoreConfig, TickResult, tick
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.core.timers import PartitionClock

#: Takes what a tick of one customer emitted (outputs and labelled examples).
Emit = Callable[[TickResult], None]


def clock_key(partition: int) -> bytes:
    return b"\x00clock:%d" % partition


def due_key(partition: int, bucket: int) -> bytes:
    return b"\x00due:%d:%d" % (partition, bucket)


class Timers(Protocol):
    """The part of a bytes -> bytes mapping the index uses."""

    def get(self, key: bytes) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def pop(self, key: bytes, default: None, /) -> bytes | None: ...


class JourneyStore(Protocol):
    def journey(self, customer_id: str) -> JourneyState | None: ...
    def set_journey(self, customer_id: str, state: JourneyState | None) -> None: ...


class EncodedJourneys:
    """A :class:`JourneyStore` over a dict of encoded journeys (tests, benchmarks)."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def journey(self, customer_id: str) -> JourneyState | None:
        raw = self.table.get(customer_id.encode())
        return decode_state(raw) if raw else None

    def set_journey(self, customer_id: str, state: JourneyState | None) -> None:
        if state is None:
            self.table.pop(customer_id.encode(), None)
        else:
            self.table[customer_id.encode()] = encode_state(state)


class TimerIndex:
    def __init__(
        self,
        timers: Timers,
        journeys: JourneyStore,
        width_ms: int,
        core: CoreConfig | None = None,
    ) -> None:
        self.timers = timers
        self.journeys = journeys
        self.width_ms = width_ms
        #: What a tick labels decisions with (``streams.core.engine.tick``).
        self.core = core
        #: partition -> (record bytes, decoded clock): the record lists every
        #: bucket holding items and is read after every event, so it is parsed
        #: only when it changed (the table stays the truth, e.g. after a rebalance).
        self._decoded: dict[int, tuple[bytes, PartitionClock]] = {}
        #: The partition's burst budget for the actions ticks send (set per batch).
        self.budget: Budget | None = None

    def clock(self, partition: int) -> PartitionClock | None:
        raw = self.timers.get(clock_key(partition))
        if not raw:
            return None
        cached = self._decoded.get(partition)
        if cached is not None and cached[0] == raw:
            return cached[1]
        clock = PartitionClock.from_bytes(raw)
        self._decoded[partition] = (raw, clock)
        return clock

    def add(self, partition: int, customer_id: str, due: tuple[int, ...], at_ms: int) -> None:
        """Remember that ``customer_id`` has items due at these times."""
        clock = self.clock(partition) or PartitionClock.start(at_ms, self.width_ms)
        for due_ms in due:
            bucket = clock.bucket_for(due_ms, self.width_ms)
            key = due_key(partition, bucket)
            raw = self.timers.get(key)
            members = orjson.loads(raw) if raw else []
            if customer_id not in members:
                self.timers[key] = orjson.dumps([*members, customer_id])
            clock = clock.with_bucket(bucket)
        self.timers[clock_key(partition)] = clock.to_bytes()

    def advance(
        self, partition: int, to_ms: int, emit: Emit, *, start: bool = True
    ) -> PartitionClock | None:
        """Move the partition's clock to ``to_ms`` and fire what fell due.

        ``emit`` collects the outputs and examples; the caller must have them acknowledged
        before it writes the journeys this changed (the batch protocol does),
        so a crash repeats an output rather than losing it. The clock is
        persisted only when a bucket completes. A partition's clock starts
        with its first event; an idle tick (``start=False``) only moves a
        clock that exists, so where a clock starts never depends on when the
        first tick happened to come.
        """
        clock = self.clock(partition)
        if clock is None:
            if not start:
                return None
            started = PartitionClock.start(to_ms, self.width_ms)
            self.timers[clock_key(partition)] = started.to_bytes()
            return started
        moved, due_buckets = clock.advance(to_ms, self.width_ms)
        if moved.done_bucket == clock.done_bucket:
            return clock
        for bucket in due_buckets:
            key = due_key(partition, bucket)
            for customer_id in orjson.loads(self.timers.get(key) or b"[]"):
                state = self.journeys.journey(customer_id)
                if state is None:
                    continue
                result = tick(state, moved.clock_ms, self.core, self.budget)
                # (a stage decay alone is written with the customer's next event:
                # replay-equals-live tests pin that)
                if result.outputs or result.examples or result.left_out:
                    emit(result)
                    self.journeys.set_journey(customer_id, result.state)
            self.timers.pop(key, None)
        self.timers[clock_key(partition)] = moved.to_bytes()
        return moved
