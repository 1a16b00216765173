"""The garbage collector setting (streams.collector): the worker's, and the
benches' in-process passes run as the worker does and then give it back."""

from __future__ import annotations

import gc

from streams import collector


def test_tuned_sets_the_young_generation_and_gives_the_defaults_back() -> None:
    before = gc.get_threshold()
    with collector.tuned(50_000):
        assert gc.get_threshold() == (50_000, *before[1:])
        assert gc.get_freeze_count() > 0  # what was loaded is out of every collection
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_zero_keeps_cpython_s_defaults() -> None:
    before = gc.get_threshold()
    with collector.tuned(0):
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
