"""A worker started on an empty data folder rebuilds its tables from their
changelogs (``streams.transport.Restore``, a fetch at a time) and carries
on exactly where the worker before it stopped: it serves the journeys the
changelog holds, and events it sees again are known as duplicates."""

from __future__ import annotations

import re
import signal
import urllib.parse
from pathlib import Path

import pytest
from conftest import Namespace, WorkerProcess, eventually, http_get, metric_samples
from kafka_io import produce
from test_crash import LAST_BOOK, accounted, dataset

from schemas.codec import InvalidEvent, decode_touchpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def valid(value: bytes) -> bool:
    try:
        decode_touchpoint(value)
    except InvalidEvent:
        return False
    return True


def identifiers(records: list[tuple[bytes, bytes, int]]) -> list[str]:
    """``TYPE:VALUE`` of every valid event's (only) identifier, once each."""
    out: dict[str, None] = {}
    for _, value, _ in records:
        try:
            event = decode_touchpoint(value)
        except InvalidEvent:
            continue
        for kind, raw in event.identities.items():
            out[f"{kind}:{raw}"] = None
    return list(out)


def profiles(worker: WorkerProcess, who: list[str]) -> dict[str, dict]:
    out = {}
    for identifier in who:
        status, body = http_get(f"{worker.url}/v1/customers/{urllib.parse.quote(identifier)}")
        assert status == 200, (identifier, status, body)
        out[identifier] = body
    return out


def fed(
    namespace: Namespace, tmp_path: Path, **extra: str
) -> tuple[WorkerProcess, list[tuple[bytes, bytes, int]], dict]:
    """A worker that applied the crash test's dataset: the worker, the
    records, and the ledger once every input is accounted for."""
    worker = namespace.worker(tmp_path, **extra).start()
    records = dataset()
    produce(namespace.bootstrap, namespace.topic("touchpoints"), records)
    book = eventually(
        lambda: accounted(namespace),
        timeout=240,
        what=lambda: f"all inputs accounted for {LAST_BOOK}; {worker.log_tail()}",
    )
    return worker, records, book


def test_a_worker_on_an_empty_folder_restores_every_table(
    namespace: Namespace, tmp_path: Path
) -> None:
    first, records, book = fed(namespace, tmp_path)
    who = identifiers(records)
    assert len(who) > 100
    served = eventually(
        lambda: (lambda a, b: a if a == b else None)(profiles(first, who), profiles(first, who)),
        what="the first worker's journeys to settle",
    )
    first.stop(signal.SIGTERM)

    # its own, empty data folder; info says how the tables were restored
    second = namespace.worker(tmp_path, JOURNEYFLOW_LOG_LEVEL="info").start()
    assert second.data_dir != first.data_dir
    assert profiles(second, who) == served
    eventually(
        lambda: "changelog records restored" in second.log_path.read_text(),
        timeout=10,
        what=lambda: f"the restore reported; {second.log_tail()}",
    )
    # its metrics say so too: as many records as the log, one positioning
    logged = int(re.findall(r"(\d+) changelog records restored", second.log_path.read_text())[-1])
    counters = metric_samples(
        second.url, "journeyflow_restored_records_total", "journeyflow_rebalances_total"
    )
    assert counters["journeyflow_restored_records_total"] == logged > 0
    assert counters["journeyflow_rebalances_total"] >= 1

    # the restored dedupe windows know these events: none is counted again
    again = records[:300]
    produce(namespace.bootstrap, namespace.topic("touchpoints"), again)
    after = eventually(
        lambda: (lambda b: b if b and b["in"] == book["in"] + len(again) else None)(
            accounted(namespace)
        ),
        timeout=240,
        what=lambda: f"the repeats accounted for {LAST_BOOK}; {second.log_tail()}",
    )
    invalid = sum(1 for _, value, _ in again if not valid(value))
    assert after["processed"] == book["processed"]
    assert after["duplicates"] == book["duplicates"] + len(again) - invalid
    assert after["dead_lettered"] == book["dead_lettered"] + invalid


def test_a_worker_stopped_cleanly_restarts_on_its_folder_without_reading_back(
    namespace: Namespace, tmp_path: Path
) -> None:
    """The batch protocol writes RocksDB without its write-ahead log
    (``streams.tables``): a clean stop must still leave every write in the
    folder (RocksDB flushes when the store is closed), so a rolling restart
    reads no changelog back and serves what it served."""
    worker, records, _ = fed(namespace, tmp_path, JOURNEYFLOW_LOG_LEVEL="info")
    who = identifiers(records)
    served = eventually(
        lambda: (lambda a, b: a if a == b else None)(profiles(worker, who), profiles(worker, who)),
        what="the journeys to settle",
    )
    worker.stop(signal.SIGTERM)

    worker.start()  # the same data folder
    assert profiles(worker, who) == served
    log = worker.log_path.read_text().split(f"===== start {worker.starts} =====")[-1]
    assert "Restore complete" in log, worker.log_tail()
    assert "changelog records restored" not in log, worker.log_tail()
    restored = metric_samples(worker.url, "journeyflow_restored_records_total")
    assert restored["journeyflow_restored_records_total"] == 0
