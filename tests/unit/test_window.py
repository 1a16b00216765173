"""A journey's recent window in pages (``streams.core.window``): read back
as written, whatever order entries come in, bounded, and safe to read with
an older record when a crash left its pages written ahead of it."""

from __future__ import annotations

import random

from streams.core.journey import _newest, _with_newest
from streams.core.window import (
    NO_PAGES,
    PAGE,
    Entry,
    Pages,
    Window,
    decode_page,
    encode_page,
    read,
    store,
)

LIMIT = 256


class Table:
    """One customer's pages, as the journeys table holds them."""

    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.now = NO_PAGES

    def write(self, window: Window) -> None:
        stored = store(self.now, window)
        for n, entries in stored.write.items():
            self.pages[n] = encode_page(entries)
        for n in stored.delete:
            del self.pages[n]
        self.now = stored.pages

    def read(self) -> Pages:
        manifest = self.now.manifest
        return NO_PAGES if manifest is None else read(manifest, self.pages.get)


def entry(i: int, at: int | None = None) -> Entry:
    return (1_000 * (i if at is None else at), f"e-{i}", f"0:{i}")


def test_a_sliding_window_reads_back_and_keeps_few_pages() -> None:
    table, window = Table(), ()
    for i in range(2_000):
        window = _with_newest(window, entry(i), LIMIT)
        table.write(window)
        assert table.read().window == window
        # at most a page of entries the window left behind, and the page being filled
        assert len(table.pages) <= LIMIT // PAGE + 2
    assert sorted(table.pages) == list(table.now.numbers)


def test_late_entries_sorted_in_read_back_and_stay_bounded() -> None:
    rng = random.Random(7)
    table, window = Table(), ()
    for i in range(3_000):
        late = rng.random() < 0.3
        window = _with_newest(window, entry(i, i - rng.randrange(400) if late else i), LIMIT)
        table.write(window)
        assert table.read().window == window
        assert sum(len(decode_page(raw)) for raw in table.pages.values()) <= 2 * LIMIT + 2 * PAGE


def test_an_event_rewrites_one_page_not_the_window() -> None:
    table, window = Table(), ()
    for i in range(LIMIT + 40):
        window = _with_newest(window, entry(i), LIMIT)
        table.write(window)
    stored = store(table.now, _with_newest(window, entry(LIMIT + 40), LIMIT))
    assert len(stored.write) == 1
    assert all(len(entries) <= PAGE for entries in stored.write.values())


def test_an_older_record_reads_its_own_window_over_pages_written_ahead_of_it() -> None:
    """A crash between a batch's pages and its journey record: the record
    restored is the older one, and it must read the window it was written
    with, though its last page has grown (and pages it never named exist)."""
    table, window = Table(), ()
    for i in range(LIMIT + 70):
        window = _with_newest(window, entry(i), LIMIT)
        before = table.now
        stored = store(before, window)
        # the pages landed; the record, and the deletes written after it, did not
        ahead = {**table.pages, **{n: encode_page(e) for n, e in stored.write.items()}}
        if before.manifest is not None:
            assert read(before.manifest, ahead.get).window == before.window
        table.write(window)


def test_a_folded_window_reads_back() -> None:
    """A One-ID fold keeps the newest of both windows: what this one loses
    is older than all the merged window holds, so the other's entries are
    appended and the pages left behind deleted."""
    table = Table()
    mine = tuple(entry(i) for i in range(0, 200, 2))
    table.write(mine)
    theirs = tuple(entry(i) for i in range(1, 400, 2))
    merged = _newest({*mine, *theirs}, 120)
    table.write(merged)
    assert table.read().window == merged
    assert set(table.pages) == set(table.now.numbers)


def test_a_window_that_lost_more_than_its_oldest_is_written_anew() -> None:
    """A journey erased and begun again within a batch, with older events:
    what the old window held is not older than the new one, so the pages are
    written anew, under new numbers, and the old ones deleted."""
    table = Table()
    table.write(tuple(entry(i) for i in range(100, 200)))
    old_numbers = set(table.now.numbers)
    again = tuple(entry(i) for i in range(10))
    stored = store(table.now, again)
    assert set(stored.delete) == old_numbers
    assert not old_numbers & set(stored.write)
    table.write(again)
    assert table.read().window == again
    assert set(table.pages) == set(table.now.numbers)


def test_an_emptied_window_deletes_its_pages() -> None:
    table = Table()
    table.write(tuple(entry(i) for i in range(70)))
    table.write(())
    assert table.pages == {} and table.now.manifest is None


def test_a_missing_page_reads_as_empty() -> None:
    table = Table()
    table.write(tuple(entry(i) for i in range(70)))
    del table.pages[table.now.first]
    assert table.read().window == tuple(entry(i) for i in range(PAGE, 70))
