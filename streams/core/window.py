"""A journey's recent window, stored apart from its record, in pages.

``JourneyState.recent`` (the newest input records, up to 256, for exact
dedupe and redelivery detection) is most of a busy customer's record and
changes by an entry or two per event, while the record's counters change
with every event too. Rewriting the whole window with every counter change
made it about half of the journeys changelog. So the journeys table keeps
it in pages of :data:`PAGE` entries under keys of their own
(:func:`page_key`), appended to in the order entries arrive: an event
rewrites the last page (a few hundred bytes), not the window. The journey's
own record carries a manifest, ``"window": [first page, pages, entries,
entries in the last page]``, and nothing else of the window.

How pages change, so that the window read back is always the one written:

- **Pages are appended to, never changed.** A page's first entries stay as
  they are; the manifest says how many of the last page belong to the
  window, so a page written ahead of its record (a crash between the two)
  reads back as it was.
- **Entries leave by being left behind.** A full window drops its oldest
  entry; the page holding it stays until all its entries are older than the
  window's oldest, and is then deleted. Every entry still stored that is not
  in the window is older than all the window holds, so the window is the
  newest ``entries`` of the pages' entries (:func:`read`).
- **Anything else is written anew.** When the window lost an entry that is
  not older than its oldest (a One-ID fold, an erased journey begun again),
  or when stale entries pile up (late events sorted in), the window is
  written into new pages, numbered after the old ones, which are deleted.
- **Written in order** (``streams.batch.PartitionView``): a journey's pages
  before its record, pages it no longer needs after it. The changelog keeps
  a partition's records in order, so a record that arrived has its pages,
  and the pages an older record names are still there.

Entries are distinct: a record applied twice is a redelivery and is not
added again (``journey.seen_before``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain

import orjson

#: Entries per page (the last page of a window holds fewer).
PAGE = 32
#: Pages are written anew once they hold more than twice the window (plus a page).
_SLACK = 2

#: ``(event ms, event id, input position)``, as ``JourneyState.recent`` holds them.
Entry = tuple[int, str, str]
Window = tuple[Entry, ...]
Manifest = tuple[int, int, int, int]


def page_key(customer_key: bytes, page: int) -> bytes:
    """The journeys table key of a page of a customer's window (customer ids
    never hold a NUL: ``streams.core.identity.normalise`` refuses it).

    >>> page_key(b"member_id:M-1", 7)
    b'member_id:M-1\\x00w7'
    """
    return b"%s\x00w%d" % (customer_key, page)


def is_page_key(key: bytes) -> bool:
    """Is this journeys table key a window page, not a customer's record?"""
    return b"\x00w" in key


def encode_page(entries: Window) -> bytes:
    return orjson.dumps(entries)


def decode_page(raw: bytes) -> Window:
    return tuple((int(e[0]), str(e[1]), str(e[2])) for e in orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class Pages:
    """How a journey's window is stored: pages ``first`` to ``first +
    len(pages) - 1``, their entries in the order written, holding ``window``."""

    first: int = 0
    pages: tuple[Window, ...] = ()
    window: Window = ()

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + len(self.pages))

    @property
    def manifest(self) -> Manifest | None:
        """What the journey's record says of its pages (None: no pages)."""
        if not self.pages:
            return None
        return (self.first, len(self.pages), len(self.window), len(self.pages[-1]))


#: A journey with nothing stored (new, or read from a record that holds its
#: window itself, as records before pages did).
NO_PAGES = Pages()


def read(manifest: Manifest, page: Callable[[int], bytes | None]) -> Pages:
    """The pages a journey's record names, read with ``page(number)`` (a
    missing page reads as empty: it never is, unless the table was changed
    by hand)."""
    first, count, entries, last = (int(n) for n in manifest)
    pages = []
    for i in range(count):
        raw = page(first + i)
        held = decode_page(raw) if raw else ()
        pages.append(held[: last if i == count - 1 else PAGE])
    stored = sorted(set(chain.from_iterable(pages)))
    window = tuple(stored[max(0, len(stored) - entries) :]) if entries else ()
    return Pages(first, tuple(pages), window)


@dataclass(frozen=True, slots=True)
class Store:
    """What writing a window changes: the pages now, the pages to write
    (number -> entries) and the page numbers to delete."""

    pages: Pages
    write: dict[int, Window]
    delete: tuple[int, ...]


def store(old: Pages, window: Window) -> Store:
    """Write ``window`` over the pages holding ``old.window``."""
    if window is old.window or window == old.window:
        return Store(old, {}, ())
    if not window:
        return Store(Pages(old.first + len(old.pages)), {}, tuple(old.numbers))
    added = _appended(old.window, window)
    stored_count = sum(len(p) for p in old.pages)
    if added is None:
        stored = set(chain.from_iterable(old.pages))
        live = set(window)
        stale = stored - live
        if stale and max(stale) >= window[0]:
            return _anew(old, window)
        added = tuple(e for e in window if e not in stored)
    if stored_count + len(added) > _SLACK * len(window) + PAGE:
        return _anew(old, window)
    pages = list(old.pages)
    write: dict[int, Window] = {}
    at = 0
    while at < len(added):
        if pages and len(pages[-1]) < PAGE:
            room = PAGE - len(pages[-1])
            pages[-1] = pages[-1] + added[at : at + room]
            at += room
        else:
            pages.append(added[at : at + PAGE])
            at += PAGE
        write[old.first + len(pages) - 1] = pages[-1]
    first = old.first
    delete = []
    oldest = window[0]
    while len(pages) > 1 and max(pages[0]) < oldest:
        delete.append(first)
        write.pop(first, None)
        pages.pop(0)
        first += 1
    return Store(Pages(first, tuple(pages), window), write, tuple(delete))


def _anew(old: Pages, window: Window) -> Store:
    """``window`` in pages of its own, numbered after ``old``'s."""
    first = old.first + len(old.pages)
    pages = tuple(window[i : i + PAGE] for i in range(0, len(window), PAGE))
    write = {first + i: page for i, page in enumerate(pages)}
    return Store(Pages(first, pages, window), write, tuple(old.numbers))


def _appended(old: Window, new: Window) -> Window | None:
    """The entries ``new`` adds when it is ``old`` without its first few
    entries, with entries appended (nearly every event); None otherwise."""
    for dropped in range(min(len(old), 4) + 1):
        kept = len(old) - dropped
        if kept > len(new) or (dropped and new and old[dropped - 1] >= new[0]):
            continue  # what it drops must be older than all it keeps
        if new[:kept] == old[dropped:]:
            return new[kept:]
    return None
