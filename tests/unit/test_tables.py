"""``streams.tables.FaustTables`` remembers what the worker wrote and reads it
back from memory, until the group generation changes or a recovery runs."""

from __future__ import annotations

from types import SimpleNamespace

from streams.tables import FaustTables


class Fence:
    def __init__(self) -> None:
        self.generation: int | None = 1
        self.in_recovery = False

    def __call__(self) -> tuple[int | None, bool]:
        return self.generation, self.in_recovery


def memory_tables(fence: Fence, written: int = 100) -> tuple[FaustTables, dict[bytes, bytes]]:
    store: dict[bytes, bytes] = {}
    table = SimpleNamespace(data=SimpleNamespace(data=store))
    return FaustTables({"journeys": table}, rocksdb=False, written=written, fence=fence), store


def test_what_it_wrote_is_read_back_without_the_store() -> None:
    tables, store = memory_tables(Fence())
    tables.write("journeys", 0, {b"a": b"1", b"gone": None}, offset=7)
    assert store == {b"a": b"1"}
    store[b"a"] = b"changed behind its back"  # as if the store were not read
    assert tables.read("journeys", 0, b"a") == b"1"
    assert tables.read("journeys", 0, b"gone") is None


def test_a_new_generation_reads_the_store_again() -> None:
    fence = Fence()
    tables, store = memory_tables(fence)
    tables.write("journeys", 0, {b"a": b"1"}, offset=7)
    store[b"a"] = b"2"  # another owner's record, restored after a rebalance
    fence.generation = 2
    assert tables.read("journeys", 0, b"a") == b"2"


def test_nothing_is_remembered_during_a_recovery() -> None:
    fence = Fence()
    tables, store = memory_tables(fence)
    tables.write("journeys", 0, {b"a": b"1"}, offset=7)
    fence.in_recovery = True
    assert tables.read("journeys", 0, b"a") == b"1"  # the store's, which holds it too
    tables.write("journeys", 0, {b"a": b"2"}, offset=8)
    store[b"a"] = b"3"  # the recovery writes the changelog's newer record
    fence.in_recovery = False
    assert tables.read("journeys", 0, b"a") == b"3"


def test_the_least_recently_written_are_forgotten_first() -> None:
    tables, store = memory_tables(Fence(), written=2)
    tables.write("journeys", 0, {b"a": b"1", b"b": b"1", b"c": b"1"}, offset=7)
    store.update({b"a": b"x", b"b": b"x", b"c": b"x"})
    assert [tables.read("journeys", 0, k) for k in (b"a", b"b", b"c")] == [b"x", b"1", b"1"]


def test_without_a_fence_every_read_goes_to_the_store() -> None:
    store: dict[bytes, bytes] = {}
    table = SimpleNamespace(data=SimpleNamespace(data=store))
    tables = FaustTables({"journeys": table}, rocksdb=False, written=100)
    tables.write("journeys", 0, {b"a": b"1"}, offset=7)
    store[b"a"] = b"2"
    assert tables.read("journeys", 0, b"a") == b"2"
