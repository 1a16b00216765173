"""Two workers share the partitions; stopping one moves its partitions to the
other without losing anything, and starting it again moves them back."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import Namespace, WorkerProcess, eventually, http_get
from kafka_io import count_messages, produce
from test_crash import LAST_BOOK, accounted, dataset, final_journeys, rules_with_short_reminders

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def owned(worker: WorkerProcess) -> list[int] | None:
    status, body = http_get(f"{worker.url}/readyz", timeout=5)
    return body["partitions"] if status == 200 else None


def test_partitions_move_over_and_back_without_loss(namespace: Namespace, tmp_path: Path) -> None:
    extra = {
        "JOURNEYFLOW_RULES_FILE": str(rules_with_short_reminders(tmp_path)),
        "JOURNEYFLOW_SESSION_TIMEOUT_SECONDS": "6",
    }
    everything = list(range(namespace.partitions))
    first = namespace.worker(tmp_path, **extra).start()
    second = namespace.worker(tmp_path, **extra).start()
    split = eventually(
        lambda: (lambda a, b: (a, b) if a and b and sorted(a + b) == everything else None)(
            owned(first), owned(second)
        ),
        what="the two workers splitting the partitions",
    )
    assert set(split[0]).isdisjoint(split[1])

    records = dataset()
    produce(namespace.bootstrap, namespace.topic("touchpoints"), records)
    eventually(
        lambda: count_messages(namespace.bootstrap, namespace.changelog) > 500,
        interval=0.1,
        what="processing under way",
    )
    second.stop(signal.SIGTERM)  # a graceful stop, e.g. a rolling deploy
    eventually(lambda: owned(first) == everything, what="the first worker owning everything")

    second.start()
    eventually(
        lambda: (lambda a, b: a and b and sorted(a + b) == everything)(owned(first), owned(second)),
        what="partitions moving back to the second worker",
    )
    book = eventually(
        lambda: accounted(namespace),
        timeout=240,
        what=lambda: (
            f"all inputs accounted for {LAST_BOOK}; {first.log_tail()} {second.log_tail()}"
        ),
    )
    assert book["in"] == len(records)

    journeys = final_journeys(namespace)
    sample = sorted(k.decode() for k in journeys)[:: max(1, len(journeys) // 25)]
    for customer in sample:
        a = http_get(f"{first.url}/v1/customers/{customer}")
        b = http_get(f"{second.url}/v1/customers/{customer}")
        assert a[0] == b[0] == 200
        assert a[1] == b[1]
        assert a[1]["events_total"] == journeys[customer.encode()]["events_total"]
