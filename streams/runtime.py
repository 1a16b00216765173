"""One-ID and the journey engine in process, over dicts: ``journeyflow
replay`` and the unit tests drive the worker's exact message protocol
(``streams.core.oneid``) without Kafka.

Messages go through one FIFO queue; each is handled against the records of
the key it is addressed to, at the next offset of that key's partition (the
partition Kafka's default partitioner would pick), like the worker reading
its internal topic. With ``interleave`` (a seeded ``random.Random``) each
partition has its own FIFO queue and the next message comes from a random
partition, as when several workers run at their own pace: Kafka keeps order
within a partition, never across. The due-time index and per-partition event-time clocks
are the worker's (``streams.timer_index``).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from schemas.outputs import DeadLetter, Feedback, Merge
from streams.core.ingest import Admitted
from streams.core.journey import JourneyState, decode_state, encode_state
from streams.core.oneid import (
    Alias,
    Effects,
    FeedbackMsg,
    Message,
    OneIdConfig,
    decode_alias,
    encode_alias,
    handle,
    message_event_ms,
    route_event,
)
from streams.core.rules import Output
from streams.timer_index import TimerIndex


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives this key."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def read_records(
    key: str, aliases: MutableMapping[bytes, bytes], journeys: MutableMapping[bytes, bytes]
) -> tuple[Alias | None, JourneyState | None]:
    raw_alias = aliases.get(key.encode())
    raw_journey = journeys.get(key.encode())
    return (
        decode_alias(raw_alias) if raw_alias else None,
        decode_state(raw_journey) if raw_journey else None,
    )


def write_records(
    key: str,
    fx: Effects,
    aliases: MutableMapping[bytes, bytes],
    journeys: MutableMapping[bytes, bytes],
) -> None:
    """Store what handling a message changed (after its sends were acknowledged)."""
    k = key.encode()
    if fx.alias_changed:
        if fx.alias is None:
            aliases.pop(k, None)
        else:
            aliases[k] = encode_alias(fx.alias)
    if fx.journey_changed:
        if fx.journey is None:
            journeys.pop(k, None)
        else:
            journeys[k] = encode_state(fx.journey)


@dataclass
class LocalRuntime:
    config: OneIdConfig
    partitions: int
    timer_width_ms: int
    aliases: dict[bytes, bytes] = field(default_factory=dict)
    journeys: dict[bytes, bytes] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    interleave: random.Random | None = None
    _queue: deque[tuple[str, Message]] = field(default_factory=deque)
    _offsets: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = TimerIndex({}, self.journeys, self.timer_width_ms)
        self._queues: dict[int, deque[tuple[str, Message]]] = {}

    def _put(self, key: str, msg: Message) -> None:
        if self.interleave is None:
            self._queue.append((key, msg))
        else:
            partition = key_partition(key, self.partitions)
            self._queues.setdefault(partition, deque()).append((key, msg))

    def _next(self) -> tuple[str, Message] | None:
        if self.interleave is None:
            return self._queue.popleft() if self._queue else None
        busy = sorted(p for p, q in self._queues.items() if q)
        if not busy:
            return None
        return self._queues[self.interleave.choice(busy)].popleft()

    async def _emit(self, outputs: tuple[Output, ...]) -> None:
        self.outputs.extend(outputs)

    def submit_feedback(self, customer_id: str, feedback: Feedback) -> None:
        """An action's outcome, addressed to the customer id the action named."""
        self._put(customer_id, FeedbackMsg(feedback))

    def submit(self, admitted: Admitted, *, quiet: bool = False) -> None:
        """An admitted event enters identity resolution (``quiet``: imported history)."""
        self._put(*route_event(admitted, quiet=quiet))

    async def run(self) -> None:
        """Handle messages until none is left."""
        while (item := self._next()) is not None:
            key, msg = item
            partition = key_partition(key, self.partitions)
            offset = self._offsets.get(partition, 0)
            self._offsets[partition] = offset + 1
            fx = self.deliver(key, msg, f"{partition}:{offset}")
            at_ms = message_event_ms(msg)
            if fx.scheduled:
                self.index.add(partition, key, tuple(fx.scheduled), at_ms or min(fx.scheduled))
            if fx.outcome is not None and at_ms is not None:
                await self.index.advance(partition, at_ms, self._emit)

    def deliver(self, key: str, msg: Message, position: str) -> Effects:
        """Handle one message against its key's records, send what it sends,
        then write the records (the worker's order)."""
        alias, journey = read_records(key, self.aliases, self.journeys)
        clock = self.index.clock(int(position.partition(":")[0]))
        fx = handle(
            key,
            msg,
            alias,
            journey,
            self.config,
            position,
            None if clock is None else clock.clock_ms,
        )
        self.send(fx)
        write_records(key, fx, self.aliases, self.journeys)
        return fx

    def send(self, fx: Effects) -> None:
        """What the worker sends (and counts) for one handled message."""
        for target, out in fx.sends:
            self._put(target, out)
        self.outputs.extend(fx.outputs)
        self.merges.extend(fx.merges)
        self.dead_letters.extend(fx.dead_letters)
        if fx.dead_letters:
            self.counts["dead_lettered"] = self.counts.get("dead_lettered", 0) + 1
        if fx.late:
            self.counts["late"] = self.counts.get("late", 0) + 1
        if fx.feedback is not None:
            name = f"feedback_{fx.feedback}"
            self.counts[name] = self.counts.get(name, 0) + 1
        for reason in fx.refusals:
            self.counts[f"refused_{reason}"] = self.counts.get(f"refused_{reason}", 0) + 1
        if fx.outcome is not None:
            self.counts[fx.outcome] = self.counts.get(fx.outcome, 0) + 1

    async def advance_all(self, to_ms: int) -> None:
        """Move every partition's clock to ``to_ms`` (an idle tick everywhere)."""
        for partition in range(self.partitions):
            await self.index.advance(partition, to_ms, self._emit, start=False)

    def journey_of(self, identifier: str) -> JourneyState | None:
        """The journey of the customer an identifier belongs to."""
        key = identifier
        for _ in range(64):
            raw = self.aliases.get(key.encode())
            root = decode_alias(raw).root if raw else None
            if root is None or root == key:
                break
            key = root
        raw_journey = self.journeys.get(key.encode())
        return decode_state(raw_journey) if raw_journey else None

    def customers(self) -> dict[str, JourneyState]:
        return {k.decode(): decode_state(v) for k, v in self.journeys.items()}
