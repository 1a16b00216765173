"""The learning loop on a real broker: decisions labelled from event time go
to the trainer, its snapshots reach every worker, and a worker started from
nothing scores with the newest one (issue #10)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from conftest import Namespace, eventually, metric_samples
from kafka_io import produce, read_topic

from models.propensity import snapshot_header

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

CHINA = timezone(timedelta(hours=8))
VIEWERS = 90
LEARNING = {
    "JOURNEYFLOW_TICK_INTERVAL_SECONDS": "1",
    "JOURNEYFLOW_CONVERT_HORIZON_HOURS": "0.5",
    "JOURNEYFLOW_MODEL_MIN_EXAMPLES": "40",
    "JOURNEYFLOW_SNAPSHOT_EVERY_EXAMPLES": "1000",
    "JOURNEYFLOW_SNAPSHOT_INTERVAL_SECONDS": "2",
    # the second round of traffic (after the restart) is over an hour behind
    # the clock the idle ticks moved on; it must still decide
    "JOURNEYFLOW_LATE_AFTER_SECONDS": "10800",
}
#: Viewers of the second round, after a restart from nothing.
MORE = 30


def touch(event_id: str, event_type: str, viewer: int, at: datetime, **props: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "channel": "livestream",
            "occurred_at": at.astimezone(CHINA).isoformat(),
            "identities": {"live_viewer_id": f"douyin:{viewer}"},
            "context": {"live_room_id": "room-1"},
            "properties": props,
        }
    )


def traffic(
    start: datetime, viewers: range = range(VIEWERS)
) -> tuple[list[tuple[bytes, bytes]], set[int]]:
    """Every viewer adds to cart (a decision); every third buys 5 minutes later.
    A viewer's events share a key (in order); all within half an hour (none late)."""
    records: list[tuple[bytes, bytes]] = []
    buyers = set()
    for v in viewers:
        at = start + timedelta(seconds=20 * (v - viewers.start))
        key = f"douyin:{v}".encode()
        records.append((key, touch(f"cart-{v}", "live.add_to_cart", v, at, sku="SKU-1")))
        if v % 3 == 0:
            buyers.add(v)
            order = {"order_id": f"O-{v}", "amount_minor": 9900, "currency": "CNY"}
            records.append(
                (key, touch(f"order-{v}", "live.order", v, at + timedelta(minutes=5), **order))
            )
    return records, buyers


def model_gauges(url: str) -> dict[str, float]:
    return metric_samples(url, "journeyflow_model_version", "journeyflow_model_examples")


def convert_snapshots(ns: Namespace) -> list[dict]:
    records = read_topic(ns.bootstrap, f"{ns.app_id}-models", timeout=5)
    heads = [snapshot_header(r.value) for r in records]
    return [h for h in heads if h["spec"]["target"] == "convert"]


def test_labelled_decisions_train_a_model_every_worker_then_scores_with(
    namespace: Namespace, tmp_path
) -> None:
    worker = namespace.worker(tmp_path, **LEARNING).start()
    start = datetime.now(UTC) - timedelta(hours=2)
    records, buyers = traffic(start)
    produce(namespace.bootstrap, namespace.topic("touchpoints"), records)

    # every decision is labelled: buyers by their order, the rest by the clock
    # (idle ticks carry it past their 30-minute horizon). Customers' events
    # reach a partition out of order across input partitions: should the clock
    # label a buyer first, the order corrects it.
    def read() -> tuple[list[dict], dict[str, dict], list[dict]]:
        found = read_topic(namespace.bootstrap, f"{namespace.app_id}-examples", timeout=5)
        examples = [orjson.loads(r.value) for r in found]
        final = {e["decision_id"]: e for e in examples if not e["correction"]}
        corrections = [e for e in examples if e["correction"]]
        for fix in corrections:
            final[fix["decision_id"]] = fix
        return examples, final, corrections

    def settled() -> tuple | None:
        examples, final, corrections = read()
        done = len(final) == VIEWERS and sum(e["label"] for e in final.values()) == len(buyers)
        return (examples, final, corrections) if done else None

    def progress(decisions: int = VIEWERS, expected: int = len(buyers)) -> str:
        examples, final, corrections = read()
        positives = sum(e["label"] for e in final.values())
        return (
            f"{decisions} decisions and {expected} positives: {len(examples)} examples, "
            f"{len(final)} decisions, {positives} positives, {len(corrections)} corrections"
        )

    examples, _, corrections = eventually(settled, timeout=180, what=progress)
    assert len(corrections) == len({e["decision_id"] for e in corrections})
    originals = {e["decision_id"]: e for e in examples if not e["correction"]}
    for fix in corrections:  # a clock label turned round by a late order
        assert originals[fix["decision_id"]]["label"] is False and fix["label"] is True
    assert {e["target"] for e in examples} == {"convert"}  # nobody had bought before deciding
    # what the model was shown is what the journey held at the add-to-cart
    assert all(e["features"]["transactions"] == 0.0 for e in examples)
    assert all(e["features"]["in_live_room"] == 1.0 for e in examples)

    # the trainer learned all of them and published a snapshot; the worker swapped it in
    def trained() -> dict | None:
        heads = [h for h in convert_snapshots(namespace) if h["examples"] == len(examples)]
        return heads[-1] if heads else None

    snapshot = eventually(trained, timeout=90, what="a snapshot of every example")
    assert snapshot["positives"] == len(buyers)
    quality = snapshot["meta"]["quality"]
    assert (quality["labelled"], quality["corrections"]) == (VIEWERS, len(corrections))
    version_key = 'journeyflow_model_version{target="convert"}'
    eventually(
        lambda: model_gauges(worker.url).get(version_key) == snapshot["version"],
        timeout=30,
        what="the worker scoring with the newest snapshot",
    )

    # `journeyflow models` shows it
    shown = subprocess.run(
        [sys.executable, "-m", "streams.cli", "models", "--json"],
        env=worker.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    [convert] = [json.loads(line) for line in shown.stdout.splitlines() if b'"convert"' in line]
    assert (convert["version"], convert["examples"], convert["ready"]) == (
        snapshot["version"],
        len(examples),
        True,
    )

    # a worker started from nothing scores with the newest snapshot, not from zero
    worker.stop(signal.SIGKILL)
    worker.wipe_local_state()
    worker.start()
    gauges = eventually(
        lambda: (g := model_gauges(worker.url)).get(version_key) and g,
        timeout=60,
        what="gauges after the restart",
    )
    assert gauges[version_key] >= snapshot["version"]
    assert gauges['journeyflow_model_examples{target="convert"}'] >= VIEWERS

    # the restarted worker took training over from that snapshot: what it
    # learns next goes on from it, and so does its quality, measured over the
    # decisions before the restart and after it
    later, later_buyers = traffic(start + timedelta(minutes=40), range(VIEWERS, VIEWERS + MORE))
    produce(namespace.bootstrap, namespace.topic("touchpoints"), later)
    positives = len(buyers) + len(later_buyers)

    def all_labelled() -> list[dict] | None:
        examples, final, _ = read()
        done = len(final) == VIEWERS + MORE and sum(e["label"] for e in final.values()) == positives
        return examples if done else None

    examples = eventually(
        all_labelled, timeout=120, what=lambda: progress(VIEWERS + MORE, positives)
    )

    def retrained() -> dict | None:
        heads = [h for h in convert_snapshots(namespace) if h["examples"] == len(examples)]
        return heads[-1] if heads else None

    again = eventually(retrained, timeout=60, what=f"a snapshot of all {len(examples)} examples")
    assert again["version"] > snapshot["version"]
    quality = again["meta"]["quality"]
    assert (quality["labelled"], quality["window"]) == (VIEWERS + MORE, VIEWERS + MORE)
