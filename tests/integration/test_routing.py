"""With two workers in one group, any worker answers for any customer."""

from __future__ import annotations

import pytest
from conftest import Namespace, eventually, http_get
from kafka_io import produce
from test_accounting import balanced, final_journeys, simulated

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def test_profile_is_answered_by_whichever_worker_is_asked(namespace: Namespace, tmp_path) -> None:
    first = namespace.worker(tmp_path).start()
    second = namespace.worker(tmp_path).start()
    records = simulated(600)
    produce(
        namespace.bootstrap, namespace.topic("touchpoints"), [(r.key, r.value) for r in records]
    )
    eventually(lambda: balanced(namespace), timeout=180, what="all inputs processed")
    first.wait_ready()
    second.wait_ready()

    customers = sorted(k.decode() for k in final_journeys(namespace))[:40]
    assert len(customers) == 40

    def answers(worker) -> dict[str, dict] | None:
        out = {}
        for customer in customers:
            status, body = http_get(f"{worker.url}/v1/customers/{customer}")
            if status != 200:
                return None
            out[customer] = body
        return out

    via_first = eventually(lambda: answers(first), timeout=60, what="first worker answers all")
    via_second = eventually(lambda: answers(second), timeout=60, what="second worker answers all")
    assert via_first == via_second
    assert {p["customer_id"] for p in via_first.values()} == set(customers)
