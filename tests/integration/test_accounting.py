"""Nothing lost, and state that survives losing the worker's disk.

Counts come from the topics themselves, not from process counters: the input
topic, the DLQ, and the final journeys in the changelog topic (whose
``events_total`` and ``duplicates`` say what each customer's worker did).
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Namespace, eventually, http_get
from kafka_io import count_messages, produce, read_topic

from streams.core.journey import journeys_in
from streams.simulate import SimulationConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

N_EVENTS = 1500


def simulated(n: int) -> list:
    config = SimulationConfig(
        seed=11,
        customers=300,
        start=datetime.now(UTC) - timedelta(hours=1),
        events_per_second=50.0,
        dirty_share=0.05,
    )
    return list(itertools.islice(simulate(config), n))


def final_journeys(ns: Namespace) -> dict[bytes, object]:
    """Last record per key of the changelog (a tombstone removes the key)."""
    latest: dict[bytes, bytes | None] = {}
    for record in read_topic(ns.bootstrap, ns.changelog):
        latest[record.key] = record.value
    return {k.encode(): state for k, state in journeys_in(latest).items()}


def ledger(ns: Namespace) -> dict[str, int]:
    journeys = final_journeys(ns).values()
    return {
        "in": count_messages(ns.bootstrap, ns.topic("touchpoints")),
        "processed": sum(j.events_total for j in journeys),
        "duplicates": sum(j.duplicates for j in journeys),
        "dead_lettered": count_messages(ns.bootstrap, ns.topic("dlq")),
    }


def balanced(ns: Namespace) -> dict[str, int] | None:
    """The ledger once every input is accounted for and it holds still: One-ID
    merges move counts between journeys (a fold can land before the absorbed
    journey's tombstone), so one balanced read is not yet the end."""
    book = ledger(ns)
    if book["processed"] + book["duplicates"] + book["dead_lettered"] != book["in"]:
        return None
    time.sleep(1.0)
    return book if ledger(ns) == book else None


def test_events_in_equal_processed_plus_duplicates_plus_dead_lettered(
    namespace: Namespace, tmp_path
) -> None:
    records = simulated(N_EVENTS)
    kinds = {r.kind for r in records}
    assert {"clean", "duplicate", "malformed", "invalid"} <= kinds  # dirty input is there
    namespace.worker(tmp_path).start()
    produce(
        namespace.bootstrap, namespace.topic("touchpoints"), [(r.key, r.value) for r in records]
    )

    book = eventually(lambda: balanced(namespace), timeout=180, what="all inputs accounted for")
    assert book["in"] == N_EVENTS
    assert book["processed"] + book["duplicates"] + book["dead_lettered"] == N_EVENTS
    assert book["dead_lettered"] == sum(r.kind in ("malformed", "invalid") for r in records)
    assert book["duplicates"] >= sum(r.kind == "duplicate" for r in records)


def test_profiles_survive_losing_the_local_state(namespace: Namespace, tmp_path) -> None:
    records = simulated(800)
    worker = namespace.worker(tmp_path).start()
    produce(
        namespace.bootstrap, namespace.topic("touchpoints"), [(r.key, r.value) for r in records]
    )
    eventually(lambda: balanced(namespace), timeout=180, what="all inputs processed")

    customers = sorted(k.decode() for k in final_journeys(namespace))
    assert len(customers) > 50
    before = {c: http_get(f"{worker.url}/v1/customers/{c}")[1] for c in customers}
    wrong = {c: p.get("customer_id") for c, p in before.items() if p.get("customer_id") != c}
    assert not wrong, wrong

    worker.stop()
    assert worker.data_dir.exists()
    worker.wipe_local_state()
    worker.start()

    after = {c: http_get(f"{worker.url}/v1/customers/{c}")[1] for c in customers}
    assert after == before
