"""The worker's side of the batch protocol (``streams.batch``): reading and
writing Faust's tables outside its per-event stream iteration, and sending a
batch's records with one wait for all acknowledgements.

Faust internals relied on (faust-streaming 0.15, pinned ``<0.16``; a
upgrade must re-run ``tests/integration/test_rebalance.py`` and
``test_crash.py`` several times):

- ``Table.data`` is the table's store. RocksDB: ``Store._db_for_partition(p)``
  (a rocksdict ``Rdict`` in raw mode, one per partition, as Faust's own
  ``apply_changelog_batch`` writes it) and ``Store.offset_key``, the key
  under which ``Store.set_persisted_offset`` keeps the changelog offset
  recovery starts reading from (written here in the same batch as the
  records). Memory:
  ``Store.data``, a dict.
- ``Table.changelog_topic.get_topic_name()``; changelog records are the raw
  key and value (the tables use the raw serializer), a tombstone deletes.
- ``app.producer._ensure_producer()`` is the started aiokafka producer, whose
  ``create_batch`` / ``send_batch`` send a batch's records (``Outbox``), and
  ``client._wait_on_metadata`` / ``client.cluster`` give a topic's partitions.

Write order per batch: outputs and messages acknowledged (``send``), then
the changelog records acknowledged, then the local store and its persisted
changelog offset (``write``): the local store is never ahead of the
changelog another worker would restore from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import rocksdict

from models.trainer import encode_example
from schemas.codec import encode
from schemas.outputs import Action, Alert, LiveTrigger
from streams.batch import Batch, Messages
from streams.runtime import partition_of
from streams.topics import Topics


def _without_wal() -> rocksdict.WriteOptions:
    options = rocksdict.WriteOptions()
    options.disable_wal = True
    return options


#: The batch protocol's writes skip RocksDB's write-ahead log, as Kafka
#: Streams' state stores do: the changelog, acknowledged before the store is
#: written, is the log. A process killed before RocksDB flushed its memtable
#: loses the newest writes, and with them the changelog offset written in the
#: same batch: the store reopens at an older offset, consistent with its
#: records, and Faust's recovery reads the changelog from there
#: (``tests/integration/test_crash.py`` kills a worker and keeps its folder).
#: That holds only while no write with the log comes after one without (it
#: would survive a kill that the earlier one did not), so the option is set as
#: the partition's store default at our first write: Faust's own writes to it
#: (a later recovery's records and offsets) skip the log too. Faust opens a
#: store with the log on, so its recovery writes come first. A store closed
#: cleanly (Faust drops it on revoke and stop) is flushed by RocksDB, which
#: does so when writes skipped the log. Skipping the log halves what a write
#: costs (BENCHMARKS.md).
_NO_WAL = _without_wal()


class FaustTables:
    """``streams.batch.TableReader`` over the worker's Faust tables, and
    :meth:`write` for a batch's acknowledged changelog records."""

    def __init__(self, tables: dict[str, Any], rocksdb: bool) -> None:
        self.tables = tables
        self.rocksdb = rocksdb
        self._changelogs: dict[str, str] = {}

    def changelog(self, table: str) -> str:
        name = self._changelogs.get(table)
        if name is None:
            topic = self.tables[table].changelog_topic
            name = self._changelogs[table] = str(topic.get_topic_name())
        return name

    def read(self, table: str, partition: int, key: bytes) -> bytes | None:
        store = self.tables[table].data
        db = store._db_for_partition(partition) if self.rocksdb else store.data
        value = db.get(key)
        return value if value is None else bytes(value)

    def write(
        self, table: str, partition: int, changes: dict[bytes, bytes | None], offset: int
    ) -> None:
        """Apply changes whose changelog records are acknowledged up to ``offset``."""
        store = self.tables[table].data
        if self.rocksdb:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            # the changelog offset they reach, in the same atomic write (what
            # Store.set_persisted_offset writes): the store never claims an
            # offset its records do not hold, and one write instead of two
            batch.put(store.offset_key, str(offset).encode())
            db = store._db_for_partition(partition)
            db.set_write_options(_NO_WAL)  # Faust's own writes to it from now on too
            db.write(batch)
        else:
            for key, value in changes.items():
                if value is None:
                    store.data.pop(key, None)
                else:
                    store.data[key] = value


class Outbox:
    """Records grouped per topic partition and sent with aiokafka's batch API
    (``create_batch`` / ``send_batch``: one record batch per partition instead
    of a future and a partitioner call per record), then awaited together.

    Keyed records go where Kafka's default partitioner puts them (murmur2 of
    the key over the topic's partitions, ``streams.runtime.partition_of``),
    so consumers and the co-partitioned tables see the partitioning ``send``
    would give.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        #: topic -> [(partition or None, key, value)]
        self._records: dict[str, list[tuple[int | None, bytes | None, bytes | None]]] = {}

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self._records.setdefault(topic, []).append((partition, key, value))

    async def flush(self) -> dict[tuple[str, int], int]:
        """Send everything added; once all is acknowledged, the last offset
        written per topic partition."""
        sent: list[tuple[tuple[str, int], int, Awaitable[Any]]] = []
        for topic, records in self._records.items():
            for partition, builders in (await self._group(topic, records)).items():
                for builder, count in builders:
                    future = await self.producer.send_batch(builder, topic, partition=partition)
                    sent.append(((topic, partition), count, future))
        self._records = {}
        if not sent:
            return {}
        metas = await asyncio.gather(*(future for _, _, future in sent))
        last: dict[tuple[str, int], int] = {}
        for (tp, count, _), meta in zip(sent, metas, strict=True):
            last[tp] = max(last.get(tp, -1), meta.offset + count - 1)
        return last

    async def _group(
        self, topic: str, records: list[tuple[int | None, bytes | None, bytes | None]]
    ) -> dict[int, list[tuple[Any, int]]]:
        partitions = 0
        if any(partition is None for partition, _, _ in records):
            await self.producer.client._wait_on_metadata(topic)
            partitions = len(self.producer.client.cluster.partitions_for_topic(topic))
        out: dict[int, list[tuple[Any, int]]] = {}
        spread = 0
        for partition, key, value in records:
            if partition is None:
                if key is None:  # no key: spread over the partitions
                    spread += 1
                    partition = spread % partitions
                else:
                    partition = partition_of(key, partitions)
            builders = out.setdefault(partition, [])
            if builders:
                builder, count = builders[-1]
                if builder.append(timestamp=None, key=key, value=value) is not None:
                    builders[-1] = (builder, count + 1)
                    continue
            builder = self.producer.create_batch()
            if builder.append(timestamp=None, key=key, value=value) is None:
                size = len(value or b"")
                raise ValueError(f"a record of {size} bytes does not fit a batch for {topic}")
            builders.append((builder, 1))
        return out


class KafkaSink:
    """``streams.batch.Sink`` for the worker."""

    def __init__(
        self,
        app: Any,
        topics: Topics,
        tables: FaustTables,
        on_done: Callable[[Batch], None],
        messages: Messages,
    ) -> None:
        self.app = app
        #: The internal topic's codec, shared with the engine (``streams.batch.Messages``).
        self.messages = messages
        self.tables = tables
        self.on_done = on_done
        self.keyed = topics.keyed.name
        self.dlq = topics.dlq.name
        self.merges = topics.merges.name
        self.examples = topics.examples.name
        self.holdout = topics.holdout.name
        self.by_kind = {
            "action": topics.actions.name,
            "alert": topics.alerts.name,
            "live_trigger": topics.live_triggers.name,
        }

    def outbox(self) -> Outbox:
        # Faust's producer wraps aiokafka's (``_ensure_producer``: started with the app)
        return Outbox(self.app.producer._ensure_producer())

    async def send(self, batch: Batch) -> None:
        """Every record the batch decided, then one wait for all the acks."""
        out = self.outbox()
        for target, msg in batch.messages:
            out.add(self.keyed, target.encode(), self.messages.encode(msg))
        for letter in batch.dead_letters:
            key = letter.event_id.encode() if letter.event_id else None
            out.add(self.dlq, key, encode(letter))
        if batch.merges or batch.outputs:
            now = datetime.now(UTC)
            for merge in batch.merges:
                value = encode(merge.model_copy(update={"emitted_at": now}))
                out.add(self.merges, merge.survivor.encode(), value)
            for output in batch.outputs:
                stamped = output.model_copy(update={"emitted_at": now})
                topic = self.by_kind[stamped.kind]
                if isinstance(stamped, Action):
                    key = stamped.customer_id
                    if stamped.holdout:
                        topic = self.holdout
                elif isinstance(stamped, Alert):
                    key = stamped.routing_key
                else:
                    assert isinstance(stamped, LiveTrigger)
                    key = stamped.live_room_id
                out.add(topic, key.encode(), encode(stamped))
        for example in batch.examples:
            out.add(self.examples, example.decision_id.encode(), encode_example(example))
        await out.flush()
        batch.sent = time.time()

    async def write(self, batch: Batch) -> None:
        """Each changed key's changelog record, acknowledged; then the stores."""
        changes = batch.changes()
        if not changes:
            return
        out = self.outbox()
        for partition, tables in changes.items():
            for name, kv in tables.items():
                topic = self.tables.changelog(name)
                for key, value in kv.items():
                    out.add(topic, key, value, partition)
        last = await out.flush()
        for partition, tables in changes.items():
            for name, kv in tables.items():
                offset = last[(self.tables.changelog(name), partition)]
                self.tables.write(name, partition, kv, offset)

    def done(self, batch: Batch) -> None:
        self.on_done(batch)
