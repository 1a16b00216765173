"""No raw phone number leaves the front door: traffic whose customers carry
known phone numbers (written several common ways) goes through a worker
that logs JSON at debug level; then every record of every topic the worker
writes, every log line and the metrics text are searched for them.

The two topics that hold raw input by design are left out, as the README
says ("Personal data"): ``journeyflow.touchpoints`` itself and the dead
letters' original bytes."""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from conftest import Namespace, eventually, http_get, http_post
from kafka_io import read_topic
from test_pipeline import STORY

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: Raw phone numbers as producers write them -> the national number.
PHONES = {
    "13800138000": "13800138000",
    "+86 139 1234 5678": "13912345678",
    "0086-137-0000-1111": "13700001111",
    "186 0000 2222": "18600002222",
}


def with_phones(events: list[dict]) -> list[dict]:
    """The pipeline test's story, each customer also known by a phone, and a
    second member sharing the first's phone (a One-ID merge that publishes
    the identifiers)."""
    by_customer: dict[str, str] = {}
    raw = iter(PHONES)
    out = []
    for event in events:
        ids = dict(event["identities"])
        key = orjson.dumps(ids).decode()
        if key not in by_customer:
            by_customer[key] = next(raw)
        out.append({**event, "identities": {**ids, "phone": by_customer[key]}})
    shared = by_customer[orjson.dumps(events[0]["identities"]).decode()]
    out.append(
        {
            **events[0],
            "event_id": "s9",
            "event_type": "live.like",
            "identities": {"member_id": "M-88", "phone": shared},
        }
    )
    return out


def topics_of(ns: Namespace) -> list[str]:
    async def go() -> list[str]:
        consumer = AIOKafkaConsumer(bootstrap_servers=ns.bootstrap)
        await consumer.start()
        try:
            return sorted(await consumer.topics())
        finally:
            await consumer.stop()

    return [t for t in asyncio.run(go()) if t.startswith((f"{ns.prefix}.", f"{ns.app_id}-"))]


def leaks(text: str) -> list[str]:
    digits = re.sub(r"[\s+-]", "", text)  # a number reformatted still counts
    return [raw for raw, national in PHONES.items() if raw in text or national in digits]


def test_no_raw_phone_number_in_any_topic_log_or_metric(namespace: Namespace, tmp_path) -> None:
    worker = namespace.worker(
        tmp_path, JOURNEYFLOW_LOG_FORMAT="json", JOURNEYFLOW_LOG_LEVEL="debug"
    ).start()
    story = with_phones(STORY)
    status, body = http_post(
        f"{worker.url}/v1/events",
        b"\n".join(orjson.dumps(e) for e in story),
        content_type="application/x-ndjson",
    )
    assert status == 202 and body["accepted"] == len(story), body
    # applied, decided on, and merged: alerts, triggers and a merge are there
    kinds = ("alerts", "live-triggers", "merges")  # and actions: none in this story

    def published() -> dict[str, int]:
        return {
            t: len(read_topic(namespace.bootstrap, namespace.topic(t), timeout=5)) for t in kinds
        }

    eventually(
        lambda: all(published().values()),
        timeout=120,
        what=lambda: f"outputs and a merge: {published()}",
    )
    # a profile read by phone works (hashed on the way in) and shows none back
    status, profile = http_get(f"{worker.url}/v1/customers/phone:13800138000")
    assert status == 200, profile
    assert leaks(orjson.dumps(profile).decode()) == []

    searched = 0
    for topic in topics_of(namespace):
        if topic == namespace.topic("touchpoints"):
            continue  # the raw input itself
        for record in read_topic(namespace.bootstrap, topic, timeout=10):
            text = (record.key or b"").decode(errors="replace")
            value = record.value or b""
            if topic == namespace.topic("dlq"):
                letter = orjson.loads(value)
                letter.pop("original_b64")  # the refused input's own bytes, by design
                value = orjson.dumps(letter)
            text += value.decode(errors="replace")
            assert leaks(text) == [], (topic, text[:500])
            searched += 1
    assert searched > 50

    _, metrics = http_get(f"{worker.url}/metrics")
    assert leaks(metrics) == []

    log = worker.log_path.read_text(errors="replace")
    assert leaks(log) == [], [line for line in log.splitlines() if leaks(line)][:5]
    lines = [line for line in log.splitlines() if line.startswith("{")]
    assert len(lines) > 20
    for line in lines:  # JSON, one object a line
        entry = orjson.loads(line)
        assert {"ts", "level", "logger", "message"} <= entry.keys()
    assert {orjson.loads(line)["level"] for line in lines} >= {"debug", "info"}
