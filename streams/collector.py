"""The interpreter's garbage collector, set for the batch engine.

CPython starts a collection of its youngest generation every 700 container
allocations, and every tenth of those also the next; the batch engine
allocates thousands of short-lived containers per batch (decoded records,
model copies, messages), most freed by reference counting, so the default
scans the same survivors again and again: with 50,000 the batch protocol
used 10-24 % less CPU per event in process (``python -m bench.collector``,
six alternating pairs, median 20 %; BENCHMARKS.md, where the worker's own
gain is not yet shown apart from this machine's noise).
What a process has loaded by the time it starts its work (modules, the
app, configuration, the catalog) lives as long as the process: ``freeze``
moves it out of every later collection.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


def tune(threshold: int) -> None:
    """Collect the youngest generation every ``threshold`` allocations (0:
    CPython's defaults, nothing frozen) and leave what is loaded by now out
    of every collection."""
    if threshold <= 0:
        return
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(threshold, middle, oldest)


@contextmanager
def tuned(threshold: int) -> Iterator[None]:
    """:func:`tune` for a block (the benches' in-process passes), then back."""
    before = gc.get_threshold()
    try:
        tune(threshold)
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
