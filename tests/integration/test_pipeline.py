"""The touchpoint pipeline end to end against the real broker: HTTP and Kafka
in, journey state, outputs on the right topics, dead letters, dedupe."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from conftest import Namespace, WorkerProcess, eventually, http_get, http_post
from kafka_io import produce, read_topic

from streams.core.ids import output_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

NOW = datetime.now(UTC).replace(microsecond=0)


CHINA = timezone(timedelta(hours=8))


def at(seconds: int) -> str:
    """An occurred_at ten minutes ago plus ``seconds``, in China time."""
    return (NOW - timedelta(minutes=10) + timedelta(seconds=seconds)).astimezone(CHINA).isoformat()


def event(event_id: str, event_type: str, channel: str, identities: dict, t: int, **extra):
    body = {
        "event_id": event_id,
        "event_type": event_type,
        "channel": channel,
        "occurred_at": at(t),
        "identities": identities,
        "schema_version": 1,
    }
    body.update(extra)
    return body


VIEWER = {"live_viewer_id": "douyin:88231"}
MEMBER = {"member_id": "M-77"}
CHATTER = {"chatbot_user_id": "bot:5501"}

STORY = [
    event(
        "s1",
        "live.view_start",
        "livestream",
        VIEWER,
        0,
        context={"live_room_id": "room-618-beauty"},
    ),
    event(
        "s2",
        "live.comment",
        "livestream",
        VIEWER,
        5,
        context={"live_room_id": "room-618-beauty"},
        properties={"text": "这个多少钱?", "lang": "zh"},
    ),
    event(
        "s3",
        "store.purchase",
        "store",
        MEMBER,
        10,
        context={"store_id": "store-sh-001"},
        properties={"order_id": "o-1", "amount_minor": 650000, "currency": "CNY"},
    ),
    event("s4", "store.check_in", "store", MEMBER, 20, context={"store_id": "store-sh-001"}),
    event(
        "s5",
        "chat.message",
        "chatbot",
        CHATTER,
        30,
        context={"sales_rep_id": "rep-9"},
        properties={"text": "太差了", "intent": "complaint", "sentiment": -0.8},
    ),
]


@pytest.fixture
def running(namespace: Namespace, tmp_path) -> tuple[Namespace, WorkerProcess]:
    return namespace, namespace.worker(tmp_path).start()


def outputs(ns: Namespace, topic: str) -> list[dict]:
    return [orjson.loads(r.value) for r in read_topic(ns.bootstrap, ns.topic(topic))]


def test_events_become_journeys_and_outputs(running) -> None:
    ns, worker = running
    status, body = http_post(
        f"{worker.url}/v1/events",
        b"\n".join(orjson.dumps(e) for e in STORY),
        content_type="application/x-ndjson",
    )
    assert status == 202, body
    assert body == {"accepted": 5, "rejected": []}

    member = eventually(
        lambda: (lambda r: r[1] if r[0] == 200 and r[1]["events_total"] == 2 else None)(
            http_get(f"{worker.url}/v1/customers/member_id:M-77")
        ),
        what="member profile",
    )
    assert member["stage"] == "purchase"
    assert member["transactions"] == 1
    assert member["spend_minor"] == {"CNY": 650000}
    assert member["channels"] == {"store": 2}

    viewer = http_get(f"{worker.url}/v1/customers/live_viewer_id:douyin:88231")[1]
    assert viewer["stage"] == "interest"
    assert viewer["event_types"] == {"live.comment": 1, "live.view_start": 1}

    actions = eventually(lambda: outputs(ns, "actions"), what="an action")
    assert len(actions) == 1
    action = actions[0]
    # the price-question rule's coupon, sent as the catalog's pop-up (contact policies apply)
    assert action["action"] == "live_viewer_coupon" and action["catalog_version"]
    assert action["params"] == {
        "coupon_id": "CP-618-BEAUTY-30",
        "live_room_id": "room-618-beauty",
        "template_id": "popup_coupon_v2",
    }
    assert action["delivery"]["identifier"] == "douyin:88231"
    assert action["cause_event_id"] == "s2"
    assert action["customer_id"] == "live_viewer_id:douyin:88231"
    assert action["id"] == output_id("live_price_question_coupon", action["customer_id"], "s2")
    assert "room-618-beauty" in action["reason"] and "{" not in action["reason"]
    assert action["decided_at"].startswith(STORY[1]["occurred_at"][:19])
    assert action["emitted_at"]

    alerts = eventually(lambda: (lambda a: a if len(a) >= 2 else None)(outputs(ns, "alerts")))
    by_type = {a["alert_type"]: a for a in alerts}
    assert set(by_type) == {"vip_arrival", "negative_sentiment"}
    assert by_type["vip_arrival"]["routing_key"] == "store-sh-001"
    assert by_type["vip_arrival"]["cause_event_id"] == "s4"
    assert by_type["negative_sentiment"]["routing_key"] == "rep-9"

    triggers = eventually(lambda: outputs(ns, "live-triggers"), what="a live trigger")
    assert [t["trigger_type"] for t in triggers] == ["price_question"]
    assert triggers[0]["live_room_id"] == "room-618-beauty"

    assert outputs(ns, "dlq") == []

    status, text = http_get(f"{worker.url}/metrics")
    assert status == 200
    assert 'journeyflow_events_total{outcome="processed"} 5.0' in text
    assert 'journeyflow_outputs_total{kind="action",rule="live_price_question_coupon"} 1.0' in text


def test_bad_input_is_dead_lettered_with_reason(running) -> None:
    ns, worker = running
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    good = event("ok-1", "store.check_in", "store", MEMBER, 0, context={"store_id": "s1"})
    bad = {
        "malformed_json": b'{"event_id": "x1", "event_type": ',
        "missing_field": orjson.dumps({k: v for k, v in good.items() if k != "event_id"}),
        "wrong_type": orjson.dumps(
            event(
                "x3",
                "order.paid",
                "ecommerce",
                MEMBER,
                1,
                properties={"order_id": "o9", "amount_minor": "99.00", "currency": "CNY"},
            )
        ),
        "unknown_channel": orjson.dumps({**good, "event_id": "x4", "channel": "telegram"}),
        "future": orjson.dumps({**good, "event_id": "x5", "occurred_at": future}),
    }
    produce(ns.bootstrap, ns.topic("touchpoints"), [(None, v) for v in bad.values()])
    produce(ns.bootstrap, ns.topic("touchpoints"), [(None, orjson.dumps(good))])

    letters = eventually(
        lambda: (lambda d: d if len(d) >= 5 else None)(outputs(ns, "dlq")), what="5 dead letters"
    )
    assert len(letters) == 5
    by_bytes = {base64.b64decode(d["original_b64"]): d for d in letters}
    assert set(by_bytes) == set(bad.values())  # original bytes kept exactly

    def letter(name: str) -> dict:
        return by_bytes[bad[name]]

    assert letter("malformed_json")["reason_code"] == "malformed_json"
    assert letter("missing_field")["reason_code"] == "schema_violation"
    assert [e["field"] for e in letter("missing_field")["errors"]] == ["event_id"]
    assert letter("wrong_type")["errors"][0]["field"] == "properties.amount_minor"
    assert letter("unknown_channel")["errors"][0]["field"] == "channel"
    assert letter("future")["reason_code"] == "future_timestamp"
    assert letter("future")["event_id"] == "x5"
    for d in letters:
        assert d["source_topic"] == ns.topic("touchpoints")
        assert d["source_offset"] >= 0 and d["reason"]

    # the good event after the bad ones was processed: the worker kept going
    profile = eventually(
        lambda: (lambda r: r[1] if r[0] == 200 else None)(
            http_get(f"{worker.url}/v1/customers/member_id:M-77")
        )
    )
    assert profile["events_total"] == 1


def test_resent_event_is_counted_once(running) -> None:
    ns, worker = running
    comment = orjson.dumps(STORY[1])
    produce(ns.bootstrap, ns.topic("touchpoints"), [(None, comment)] * 3)
    profile = eventually(
        lambda: (lambda r: r[1] if r[0] == 200 and r[1]["duplicates_dropped"] == 2 else None)(
            http_get(f"{worker.url}/v1/customers/live_viewer_id:douyin:88231")
        ),
        what="two duplicates dropped",
    )
    assert profile["events_total"] == 1
    assert profile["event_types"] == {"live.comment": 1}
    assert len(outputs(ns, "actions")) == 1


def test_http_ingest_reports_each_bad_event(running) -> None:
    _, worker = running
    batch = [
        STORY[0],
        {**STORY[1], "channel": "fax"},
        {**STORY[2], "properties": {"order_id": "o", "amount_minor": 1.5}},
    ]
    status, body = http_post(f"{worker.url}/v1/events", orjson.dumps(batch))
    assert status == 202
    assert body["accepted"] == 1
    assert [(r["index"], r["errors"][0]["field"]) for r in body["rejected"]] == [
        (1, "channel"),
        (2, "properties.amount_minor"),
    ]
    status, body = http_post(f"{worker.url}/v1/events", b"not json\n")
    assert status == 422 and body["rejected"][0]["reason_code"] == "malformed_json"
    status, body = http_get(f"{worker.url}/v1/customers/nonsense")
    assert status == 400 and "TYPE:VALUE" in body["error"]
    status, body = http_get(f"{worker.url}/v1/customers/member_id:nobody")
    assert status == 404


def test_api_key_guards_ingest_and_profile(namespace: Namespace, tmp_path) -> None:
    worker = namespace.worker(tmp_path, JOURNEYFLOW_API_KEY="s3cret").start()
    status, _ = http_post(f"{worker.url}/v1/events", orjson.dumps([STORY[0]]))
    assert status == 401
    status, _ = http_get(f"{worker.url}/v1/customers/member_id:M-77")
    assert status == 401
    assert http_get(f"{worker.url}/healthz")[0] == 200
    ready = http_get(f"{worker.url}/readyz")[1]
    assert ready["ready"] is True and ready["partitions"] == list(range(namespace.partitions))


def test_http_ingest_takes_bodies_up_to_8_mib_and_profile_hops_are_bounded(running) -> None:
    _, worker = running
    # ~2 MB of NDJSON: over aiohttp's 1 MiB default, within the 8 MiB the README promises
    lines = [
        orjson.dumps({**STORY[1], "event_id": f"big-{n}", "properties": {"text": "x" * 300}})
        for n in range(5000)
    ]
    body = b"\n".join(lines)
    assert 2_000_000 < len(body) < 8 * 1024 * 1024
    status, answer = http_post(f"{worker.url}/v1/events", body, "application/x-ndjson")
    assert (status, answer["accepted"], answer["rejected"]) == (202, 5000, [])
    status, answer = http_get(
        f"{worker.url}/v1/customers/phone:13800138000?hops=99999999999999999999"
    )
    assert status == 400 and "hops" in answer["error"]
