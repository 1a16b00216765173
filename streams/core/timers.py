"""Per-partition event-time clocks and the due-time index.

Each partition of the journey table has a clock: the largest event time it
has seen, moved further by idle ticks (see ``streams.watermark`` for the
rule). Pending items are indexed by due-time bucket (``width_ms`` wide), so
moving a clock costs one look-up per bucket passed plus one per customer with
an item due: O(items due), never O(customers).

A bucket is processed once the clock has passed its end. An item scheduled
into a bucket already processed (a late event) goes into the next bucket to
be processed, so nothing is skipped. The clock record lists the buckets that
hold items, so a clock that jumps far (a quiet night) costs nothing extra.

>>> c = PartitionClock.start(65_000, width_ms=10_000)
>>> c.clock_ms, c.done_bucket
(65000, 5)
>>> c = c.with_bucket(c.bucket_for(72_000, width_ms=10_000)).with_bucket(12)
>>> c2, due = c.advance(95_000, width_ms=10_000)
>>> due, c2.done_bucket, c2.buckets
((7,), 8, (12,))
>>> c2.bucket_for(70_000, width_ms=10_000)  # bucket 7 is done: the next one
9
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


def bucket_of(ms: int, width_ms: int) -> int:
    return ms // width_ms


@dataclass(frozen=True)
class PartitionClock:
    clock_ms: int
    #: Every bucket up to and including this one has been processed.
    done_bucket: int
    #: Buckets that hold items, ascending.
    buckets: tuple[int, ...] = ()

    @classmethod
    def start(cls, at_ms: int, width_ms: int) -> PartitionClock:
        return cls(at_ms, bucket_of(at_ms + 1, width_ms) - 1)

    def advance(self, to_ms: int, width_ms: int) -> tuple[PartitionClock, tuple[int, ...]]:
        """Move the clock to ``to_ms`` (never back); return the buckets now due."""
        clock = max(self.clock_ms, to_ms)
        done = max(self.done_bucket, bucket_of(clock + 1, width_ms) - 1)
        due = tuple(b for b in self.buckets if b <= done)
        left = self.buckets[len(due) :]
        return PartitionClock(clock, done, left), due

    def bucket_for(self, due_ms: int, width_ms: int) -> int:
        """The index bucket for an item due at ``due_ms``."""
        return max(bucket_of(due_ms, width_ms), self.done_bucket + 1)

    def with_bucket(self, bucket: int) -> PartitionClock:
        if bucket in self.buckets:
            return self
        return PartitionClock(
            self.clock_ms, self.done_bucket, tuple(sorted((*self.buckets, bucket)))
        )

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"clock_ms": self.clock_ms, "done_bucket": self.done_bucket, "buckets": self.buckets}
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PartitionClock:
        data = orjson.loads(raw)
        return cls(int(data["clock_ms"]), int(data["done_bucket"]), tuple(data.get("buckets", ())))
