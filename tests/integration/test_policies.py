"""Contact policies hold on a streamed run on the real broker with merges and
a kill -9, by the independent checker (streams.audit, not the deciding
code): every catalog action published, recomputed per customer in local
time against what its journey held when it was decided (issue #10)."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from pathlib import Path

import orjson
import pytest
from conftest import Namespace, eventually
from kafka_io import count_messages, produce, read_topic
from test_crash import LAST_BOOK, accounted, stuck

from schemas.codec import InvalidEvent
from streams.audit import audit, knowledge, sent_actions
from streams.producer import prepare
from streams.settings import Settings
from streams.simulate import SimulationConfig, simulate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CST = timezone(timedelta(hours=8))
EVENTS = 20_000
#: Event time: about three days (quiet hours, day and week caps, cooldowns
#: all come into play), ending a day before now.
RATE = 0.08


def dataset() -> list[tuple[bytes, bytes, int]]:
    """Simulated traffic with every identifier an event carries (so One-ID
    links and merges customers), no dirty share."""
    settings = Settings(pii_key="integration-test-key", pii_key_id="t1")
    start = datetime.now(UTC) - timedelta(days=1) - timedelta(seconds=EVENTS / RATE)
    # Busy customers on purpose (the busiest has 1,879 of the 20,000 events):
    # after the kill -9 the touchpoints since the last commit are admitted
    # again, and their second copies reach a journey after more records than
    # its dedupe window holds (JOURNEYFLOW_DEDUPE_WINDOW, 256). They must be
    # known where they enter One-ID (``oneid._admitted_before``), or a few
    # events count twice (``accounted`` below).
    config = SimulationConfig(
        seed=17, customers=200, start=start, events_per_second=RATE, dirty_share=0.0
    )
    records = []
    for rec in itertools.islice(simulate(config), EVENTS):
        try:
            key, _ = prepare(orjson.loads(rec.value), settings)
        except (InvalidEvent, orjson.JSONDecodeError):
            key = b"bad"
        records.append((key, rec.value, 0))
    return records


def live(
    event_id: str,
    event_type: str,
    at: datetime,
    text: str | None = None,
    sku: str | None = None,
    **identities: str,
) -> bytes:
    properties = {"text": text} if text else {"sku": sku} if sku else {}
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "channel": "livestream",
            "occurred_at": at.astimezone(CST).isoformat(),
            "identities": identities,
            "context": {"live_room_id": "room-merge"},
            "properties": properties,
        }
    )


def send(ns: Namespace, value: bytes) -> None:
    settings = Settings(pii_key="integration-test-key", pii_key_id="t1")
    key, _ = prepare(orjson.loads(value), settings)
    produce(ns.bootstrap, ns.topic("touchpoints"), [(key, value)])


def popups(ns: Namespace, viewer: str) -> list[str]:
    """Ids of the coupon pop-ups (sent or held out) delivered to ``viewer``."""
    return sorted(
        p["id"]
        for name in ("actions", "holdout")
        for p in (orjson.loads(r.value) for r in read_topic(ns.bootstrap, ns.topic(name), 5))
        if p.get("action") == "live_viewer_coupon"
        and (p.get("delivery") or {}).get("identifier") == viewer
    )


def test_no_action_breaks_a_contact_policy_through_merges_and_a_kill(
    namespace: Namespace, tmp_path: Path
) -> None:
    catalog = json.loads(
        resources.files("streams.core").joinpath("catalog/default.json").read_text()
    )
    catalog["holdout_percent"] = 20  # the holdout's would-be contacts obey the policies too
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    env = {
        "JOURNEYFLOW_CATALOG_FILE": str(catalog_path),
        "JOURNEYFLOW_LOG_LEVEL": "info",
        "JOURNEYFLOW_TICK_INTERVAL_SECONDS": "1",
        "JOURNEYFLOW_LATE_AFTER_SECONDS": str(30 * 86_400),
        "JOURNEYFLOW_SESSION_TIMEOUT_SECONDS": "6",
        # no model snapshot mid-run: the choices do not hang on the trainer's timing
        "JOURNEYFLOW_SNAPSHOT_INTERVAL_SECONDS": "86400",
        "JOURNEYFLOW_SNAPSHOT_EVERY_EXAMPLES": "1000000000",
    }
    worker = namespace.worker(tmp_path, **env).start()
    produce(namespace.bootstrap, namespace.topic("touchpoints"), dataset())
    # kill -9 mid-stream (a batch writes each customer it changed once, so
    # 20,000 events of 200 customers make a few thousand journey records),
    # start afresh with the local state wiped
    eventually(
        lambda: count_messages(namespace.bootstrap, namespace.changelog) >= 700,
        timeout=240,
        interval=0.1,
        what="700 journey records",
    )
    worker.stop(signal.SIGKILL)
    worker.wipe_local_state()
    worker.start()
    eventually(
        lambda: accounted(namespace),
        timeout=300,
        what=lambda: f"inputs accounted for {LAST_BOOK}; {stuck(worker)}",
    )

    # then, deterministically, a person's contacts following a merge: a viewer
    # gets the room's coupon pop-up (12 h cooldown), an event links the viewer
    # to a phone (the phone's customer survives), and the viewer clicks again
    # an hour later: the survivor's history holds the pop-up, so no second one
    at = datetime.now(UTC) - timedelta(hours=20)
    viewer = "douyin:merge-1"
    send(namespace, live("m-view", "live.view_start", at, live_viewer_id=viewer))
    send(namespace, live("m-click", "live.product_click", at, live_viewer_id=viewer, sku="S1"))
    first = eventually(
        lambda: popups(namespace, viewer), timeout=60, what="a pop-up for the viewer"
    )
    phone = "+8613800138111"
    linked = at + timedelta(minutes=5)
    send(
        namespace,
        live("m-link", "live.comment", linked, text="hi", live_viewer_id=viewer, phone=phone),
    )
    eventually(
        lambda: any(
            orjson.loads(r.value)["absorbed"] == f"live_viewer_id:{viewer}"
            for r in read_topic(namespace.bootstrap, namespace.topic("merges"), 5)
        ),
        timeout=60,
        what="the viewer merged into the phone's customer",
    )
    again = at + timedelta(hours=1)
    send(namespace, live("m-click-2", "live.product_click", again, live_viewer_id=viewer, sku="S2"))
    eventually(lambda: accounted(namespace), timeout=60, what=lambda: f"accounted {LAST_BOOK}")
    # the clock still moves with the wall clock and may fire what falls due:
    # stopped, the worker publishes nothing more, so both checks below read
    # the same actions (a CI run once saw 576 against 575)
    worker.stop()

    payloads = [
        orjson.loads(r.value)
        for name in ("actions", "holdout")
        for r in read_topic(namespace.bootstrap, namespace.topic(name))
    ]
    actions = sent_actions(payloads)
    journeys = [
        (r.key, r.value, r.timestamp) for r in read_topic(namespace.bootstrap, namespace.changelog)
    ]
    merges = read_topic(namespace.bootstrap, namespace.topic("merges"))
    report = audit(catalog, actions, knowledge(journeys))

    print(
        f"checked {report.checked} actions of {report.customers} customers, "
        f"{report.with_merged_history} with a merged history; {len(merges)} merges; "
        f"channels {Counter(a.channel for a in actions)}; violations {report.by_rule()}"
    )
    # not vacuous: actions on more than one channel, the holdout's among them,
    # customers merged (whether an action comes after a merge in the simulated
    # traffic depends on timing: the scripted merge above makes sure of one)
    assert report.checked >= 100, report
    assert len({a.channel for a in actions}) >= 2
    assert any(a.holdout for a in actions)
    assert len(merges) >= 10
    shown = [f"{v.rule}: {v.action_id} ({v.customer}) {v.detail}" for v in report.violations[:10]]
    assert report.violations == [], f"{report.by_rule()}: " + "; ".join(shown)
    after = popups(namespace, viewer)
    assert len(first) == 1 and after == first, f"a second pop-up within the cooldown: {after}"

    # the same check as an operator runs it against a deployment
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "audit", "--catalog", str(catalog_path)],
        env=namespace.env(),
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode()
    printed = json.loads(done.stdout)
    assert printed["violations"] == 0 and printed["checked"] == report.checked
