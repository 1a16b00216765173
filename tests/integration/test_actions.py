"""Next-best-action on a real broker: the worker chooses catalog actions at
decisions, logs the holdout's apart, takes feedback back, closes unanswered
response windows with the event-time clock, and the per-action outcomes
reach the trainer and come back to the workers as the ``responses``
snapshot (issue #10)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import orjson
import pytest
from conftest import Namespace, eventually, http_get, metric_samples
from kafka_io import produce, read_topic
from test_learning import LEARNING, touch

from models.propensity import snapshot_header
from streams.core.actions import in_holdout, parse_catalog

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

VIEWERS = 60


def catalog_file(tmp_path: Path) -> tuple[Path, dict]:
    """The shipped catalog with a larger holdout, so a few dozen viewers have some."""
    text = resources.files("streams.core").joinpath("catalog/default.json").read_text()
    data = json.loads(text)
    data["holdout_percent"] = 25
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    return path, data


def nba_counts(url: str) -> dict[str, float]:
    """``journeyflow_nba_total`` by its ``result`` label."""
    samples = metric_samples(url, "journeyflow_nba_total")
    return {sample.split('"')[1]: value for sample, value in samples.items()}


def test_actions_are_chosen_held_out_and_learn_from_feedback(
    namespace: Namespace, tmp_path: Path
) -> None:
    path, data = catalog_file(tmp_path)
    catalog = parse_catalog(data)
    worker = namespace.worker(tmp_path, JOURNEYFLOW_CATALOG_FILE=str(path), **LEARNING).start()
    start = datetime.now(UTC) - timedelta(hours=3)
    records = []
    for v in range(VIEWERS):  # each viewer adds to cart in a live room: a decision
        at = start + timedelta(seconds=30 * v)
        records.append(
            (f"douyin:{v}".encode(), touch(f"cart-{v}", "live.add_to_cart", v, at, sku="SKU-1"))
        )
    produce(namespace.bootstrap, namespace.topic("touchpoints"), records)

    def chosen() -> tuple[list[dict], list[dict]] | None:
        # every cart applied first (its batch's outputs were acknowledged before),
        # so no action is still on its way when the topics are read
        applied = metric_samples(worker.url, "journeyflow_events_total")
        if applied.get('journeyflow_events_total{outcome="processed"}') != VIEWERS:
            return None
        sent = [
            orjson.loads(r.value)
            for r in read_topic(namespace.bootstrap, namespace.topic("actions"), 5)
        ]
        held = [
            orjson.loads(r.value)
            for r in read_topic(namespace.bootstrap, namespace.topic("holdout"), 5)
        ]
        sent = [a for a in sent if a.get("catalog_version")]
        return (sent, held) if len(sent) + len(held) >= VIEWERS - 3 else None

    sent, held = eventually(chosen, timeout=120, what="an action for (nearly) every viewer")
    # Thompson sampling may find an action not worth its cost for a few: never more than one each
    assert len({a["customer_id"] for a in sent + held}) == len(sent) + len(held)
    assert held and sent
    assert all(a["holdout"] for a in held) and not any(a["holdout"] for a in sent)
    assert all(in_holdout(a["customer_id"], catalog) for a in held)
    assert not any(in_holdout(a["customer_id"], catalog) for a in sent)
    for action in sent:
        viewer = action["customer_id"].removeprefix("live_viewer_id:")
        assert action["action"] == "live_viewer_coupon"
        assert action["delivery"] == {
            "channel": "live_popup",
            "identifier_type": "live_viewer_id",
            "identifier": viewer,
        }
        assert action["params"]["live_room_id"] == "room-1"
        assert action["not_before"] == action["decided_at"]  # pop-ups are exempt from quiet hours
        assert "model_version" not in action and "lead score" in action["reason"]  # none yet
        assert 0 < action["choice_probability"] <= 1 and action["reasons"]

    # marketing automation reports back: all delivered a minute later; two in
    # three clicked; the rest never answer (the clock closes their window)
    feedback = []
    clicked = set()
    for i, action in enumerate(sent):
        decided = datetime.fromisoformat(action["decided_at"])
        key = action["customer_id"].encode()
        for outcome, after in (("delivered", 1), ("clicked", 5)):
            if outcome == "clicked" and i % 3 == 2:
                continue
            if outcome == "clicked":
                clicked.add(action["id"])
            body = {
                "feedback_id": f"fb-{action['id']}-{outcome}",
                "action_id": action["id"],
                "customer_id": action["customer_id"],
                "outcome": outcome,
                "occurred_at": (decided + timedelta(minutes=after)).isoformat(),
            }
            feedback.append((key, orjson.dumps(body)))
    produce(namespace.bootstrap, namespace.topic("feedback"), feedback)

    def outcomes() -> dict[str, dict] | None:
        found = read_topic(namespace.bootstrap, f"{namespace.app_id}-examples", timeout=5)
        mine = [orjson.loads(r.value) for r in found]
        by_id = {e["decision_id"]: e for e in mine if e["target"] == "responses"}
        return by_id if len(by_id) == len(sent) else None

    settled = eventually(outcomes, timeout=150, what="an outcome for every delivered action")
    assert {i for i, e in settled.items() if e["label"]} == clicked
    assert all(e["arm"] == "live_viewer_coupon|interest" for e in settled.values())

    def responses_snapshot() -> dict | None:
        records = read_topic(namespace.bootstrap, f"{namespace.app_id}-models", timeout=5)
        heads = [snapshot_header(r.value) for r in records]
        heads = [h for h in heads if h["spec"]["target"] == "responses"]
        return heads[-1] if heads and heads[-1]["examples"] == len(sent) else None

    snapshot = eventually(responses_snapshot, timeout=60, what="the responses snapshot")
    assert snapshot["positives"] == len(clicked)
    counts = nba_counts(worker.url)
    assert counts.get("sent") == len(sent) and counts.get("holdout") == len(held)
    # each delivery reported is a latency hop: a minute after the action's not_before
    hops = metric_samples(
        worker.url, "journeyflow_latency_seconds_count", "journeyflow_latency_seconds_sum"
    )
    assert hops['journeyflow_latency_seconds_count{hop="delivered"}'] == len(sent)
    assert hops['journeyflow_latency_seconds_sum{hop="delivered"}'] == 60 * len(sent)

    shown = subprocess.run(
        [sys.executable, "-m", "streams.cli", "models", "--json"],
        env=worker.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    models = {m["target"]: m for m in map(json.loads, shown.stdout.splitlines())}
    assert models["responses"]["examples"] == len(sent)
    assert models["responses"]["positives"] == len(clicked)

    # the profile shows what became of a viewer's action
    a = next(a for a in sent if a["id"] in clicked)
    status, profile = http_get(f"{worker.url}/v1/customers/{a['customer_id']}")
    assert status == 200
    assert [(x["action"], x["status"]) for x in profile["actions"]] == [
        ("live_viewer_coupon", "responded")
    ]


def test_an_action_ignored_three_times_in_a_row_is_not_sent_again(
    namespace: Namespace, tmp_path: Path
) -> None:
    """Marketing automation reports a viewer's pop-ups ignored, one after the
    other; after the third (``ignored_limit``) the viewer gets none, the left
    out one is counted, and the independent checker (``journeyflow audit``)
    recomputes the suppression from the feedback stream and finds nothing
    sent that should not have been."""
    path, data = catalog_file(tmp_path)
    catalog = parse_catalog(data)
    limit = catalog.policies.ignored_limit
    viewer = next(
        v for v in range(1000, 2000) if not in_holdout(f"live_viewer_id:douyin:{v}", catalog)
    )
    customer = f"live_viewer_id:douyin:{viewer}"
    # clocks move with events only: the story is days in the past
    worker = namespace.worker(
        tmp_path, JOURNEYFLOW_CATALOG_FILE=str(path), JOURNEYFLOW_TICK_INTERVAL_SECONDS="0"
    ).start()
    key = f"douyin:{viewer}".encode()

    def popups() -> list[dict]:
        found = [
            orjson.loads(r.value)
            for r in read_topic(namespace.bootstrap, namespace.topic("actions"), 5)
        ]
        return [a for a in found if a.get("action") == "live_viewer_coupon"]

    at = datetime.now(UTC) - timedelta(days=4)
    ignored: list[str] = []
    tries = 0
    while len(ignored) < limit:  # a cart event every 13 h (past the 12 h cooldown)
        tries += 1
        assert tries <= 3 * limit, "Thompson sampling kept leaving the pop-up out"
        event = touch(f"cart-{tries}", "live.add_to_cart", viewer, at, sku="SKU-1")
        produce(namespace.bootstrap, namespace.topic("touchpoints"), [(key, event)])
        eventually(
            lambda n=tries: (
                http_get(f"{worker.url}/v1/customers/{customer}")[1].get("events_total") == n
            ),
            timeout=60,
            what=f"cart event {tries} applied",
        )
        new = [a for a in popups() if a["id"] not in ignored]
        for action in new:
            body = {
                "feedback_id": f"fb-{action['id']}-ignored",
                "action_id": action["id"],
                "customer_id": customer,
                "outcome": "ignored",
                "occurred_at": (at + timedelta(minutes=30)).isoformat(),
            }
            produce(namespace.bootstrap, namespace.topic("feedback"), [(key, orjson.dumps(body))])
            ignored.append(action["id"])
            counted = len(ignored)
            eventually(
                lambda counted=counted: (
                    http_get(f"{worker.url}/v1/customers/{customer}")[1]
                    .get("feedback", {})
                    .get("ignored")
                    == counted
                ),
                timeout=60,
                what=f"ignored feedback {counted} counted",
            )
        at += timedelta(hours=13)
    for n in range(2):  # later carts: eligible, past the cooldown, and suppressed
        event = touch(f"after-{n}", "live.add_to_cart", viewer, at, sku="SKU-2")
        produce(namespace.bootstrap, namespace.topic("touchpoints"), [(key, event)])
        at += timedelta(hours=13)
    eventually(
        lambda: (
            http_get(f"{worker.url}/v1/customers/{customer}")[1].get("events_total") == tries + 2
        ),
        timeout=60,
        what="the later carts applied",
    )
    # the checker first: it must find nothing wrong on its own (it does find a
    # pop-up sent after three ignores when the engine's check is taken out)
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "audit", "--catalog", str(path)],
        env=namespace.env(),
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    printed = json.loads(done.stdout)
    assert printed["violations"] == 0 and printed["checked"] == len(ignored)
    assert sorted(a["id"] for a in popups()) == sorted(ignored)
    eventually(
        lambda: nba_counts(worker.url).get("left_out_ignored") == 2,
        timeout=30,
        what="both later pop-ups counted as left out (ignored)",
    )
