"""The traffic simulator: deterministic, valid where it says so, dirty where it
says so, and shaped like the traffic of a brand selling in China."""

from __future__ import annotations

import collections
import hashlib
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from functools import cache
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.codec import InvalidEvent, decode_feedback, decode_touchpoint
from streams.core.identity import normalise
from streams.core.pii import PiiKey
from streams.simulate import TRUTH, SimulatedRecord, Simulation, SimulationConfig, simulate

CST = timezone(timedelta(hours=8))
START = datetime(2026, 6, 18, 20, 0, tzinfo=CST)
ROOT = Path(__file__).resolve().parents[2]


@cache
def _records(n: int, **overrides: Any) -> tuple[SimulatedRecord, ...]:
    config = SimulationConfig(start=START, **overrides)
    return tuple(islice(simulate(config), n))


def _events(records: tuple[SimulatedRecord, ...]) -> list[dict[str, Any]]:
    """The JSON of every record that must be valid (clean, duplicate, late)."""
    return [orjson.loads(r.value) for r in records if r.kind in ("clean", "duplicate", "late")]


def _clean(records: tuple[SimulatedRecord, ...]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records if r.kind == "clean"]


def _phone(value: str) -> str:
    return re.sub(r"\D", "", value)[-11:]


def _identifier(kind: str, value: str) -> tuple[str, str]:
    return (kind, _phone(value)) if kind == "phone" else (kind, value)


def _customers(events: list[dict[str, Any]]) -> collections.Counter[tuple[str, str]]:
    """Events per customer, customers found by linking identifiers that share an
    event (a minimal One-ID: union-find over identifiers, phones normalised)."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for event in events:
        ids = [_identifier(k, v) for k, v in event["identities"].items()]
        for other in ids[1:]:
            a, b = find(ids[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return collections.Counter(
        find(_identifier(*next(iter(e["identities"].items())))) for e in events
    )


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_the_same_bytes() -> None:
    first = list(islice(simulate(SimulationConfig(start=START, seed=11)), 3000))
    second = list(islice(simulate(SimulationConfig(start=START, seed=11)), 3000))
    assert first == second
    assert {r.kind for r in first} >= {"clean", "duplicate", "malformed", "invalid", "late"}


def test_different_seeds_differ() -> None:
    a = [r.value for r in islice(simulate(SimulationConfig(start=START, seed=1)), 500)]
    b = [r.value for r in islice(simulate(SimulationConfig(start=START, seed=2)), 500)]
    assert a != b
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 10


def _digest_in_subprocess(hash_seed: str) -> str:
    code = (
        "import hashlib, itertools\n"
        "from datetime import datetime, timedelta, timezone\n"
        "from streams.simulate import SimulationConfig, simulate\n"
        "start = datetime(2026, 6, 18, 20, 0, tzinfo=timezone(timedelta(hours=8)))\n"
        "h = hashlib.sha256()\n"
        "for r in itertools.islice(simulate(SimulationConfig(start=start, seed=5)), 2000):\n"
        "    h.update((r.key or b'-') + b'|' + r.value + r.kind.encode())\n"
        "print(h.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_stream_does_not_depend_on_the_process() -> None:
    expected = hashlib.sha256()
    for r in islice(simulate(SimulationConfig(start=START, seed=5)), 2000):
        expected.update((r.key or b"-") + b"|" + r.value + r.kind.encode())
    assert _digest_in_subprocess("1") == expected.hexdigest()
    assert _digest_in_subprocess("2") == expected.hexdigest()


def test_start_is_required_and_must_be_aware() -> None:
    with pytest.raises(TypeError):
        SimulationConfig()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="aware"):
        SimulationConfig(start=datetime(2026, 6, 18, 20, 0))  # noqa: DTZ001
    with pytest.raises(ValueError):
        SimulationConfig(start=START, dirty_share=1.5)
    with pytest.raises(ValueError):
        SimulationConfig(start=START, events_per_second=0)


# ------------------------------------------------------------------ validity


def test_every_record_is_valid_or_invalid_as_its_kind_says() -> None:
    records = _records(5000, dirty_share=0.25)
    kinds = collections.Counter(r.kind for r in records)
    assert set(kinds) == {"clean", "duplicate", "late", "malformed", "invalid"}
    for record in records:
        if record.kind in ("clean", "duplicate", "late"):
            event = decode_touchpoint(record.value)
            assert event.occurred_at == record.occurred_at
            assert event.schema_version == 1
        else:
            with pytest.raises(InvalidEvent) as caught:
                decode_touchpoint(record.value)
            if record.kind == "malformed":
                assert caught.value.code == "malformed_json"
            else:
                assert caught.value.code != "malformed_json"


def test_invalid_records_fail_in_several_ways() -> None:
    codes: collections.Counter[str] = collections.Counter()
    fields: set[str] = set()
    for record in _records(5000, dirty_share=0.25):
        if record.kind == "invalid":
            try:
                decode_touchpoint(record.value)
            except InvalidEvent as exc:
                codes[exc.code] += 1
                fields.update(e.field for e in exc.errors)
    assert {"schema_violation", "unknown_event_type", "unsupported_schema_version"} <= set(codes)
    assert {"event_id", "channel", "identities", "occurred_at"} <= fields


def test_clean_events_have_unique_ids_and_increasing_cst_times() -> None:
    records = _records(5000)
    clean = [r for r in records if r.kind == "clean"]
    events = [orjson.loads(r.value) for r in records if r.kind in ("clean", "late")]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"sim-7-\d+", i) for i in ids)
    assert all(e["schema_version"] == 1 for e in events)
    assert all(e["occurred_at"].endswith("+08:00") for e in events)
    times = [r.occurred_at for r in clean]
    assert all(a < b for a, b in pairwise(times))
    assert times[0] >= START


def test_event_time_advances_at_the_configured_rate() -> None:
    for rate in (50.0, 400.0):
        records = _records(4000, events_per_second=rate)
        clean = [r.occurred_at for r in records if r.kind == "clean"]
        span = (clean[-1] - START).total_seconds()
        assert span == pytest.approx(len(records) / rate, rel=0.05)


def test_keys_are_the_strongest_non_personal_identifier() -> None:
    for record in _records(3000):
        if record.kind != "clean":
            continue
        identities = orjson.loads(record.value)["identities"]
        assert record.key is None or b"phone" not in record.key
        if "member_id" in identities:
            assert record.key == f"member_id:{identities['member_id']}".encode()
        if set(identities) == {"phone"}:
            assert record.key is None
        elif record.key is not None:
            kind, _, value = record.key.decode().partition(":")
            assert identities[kind] == value


# ------------------------------------------------------------------ dirty input


def test_dirty_share_is_near_the_configured_one() -> None:
    for share, low, high in ((0.03, 0.02, 0.04), (0.2, 0.17, 0.23)):
        records = _records(5000, dirty_share=share)
        dirty = sum(r.kind != "clean" for r in records) / len(records)
        assert low <= dirty <= high, (share, dirty)
    assert all(r.kind == "clean" for r in _records(2000, dirty_share=0.0))


def test_duplicates_resend_earlier_bytes_and_late_events_are_hours_old() -> None:
    records = _records(5000, dirty_share=0.25)
    seen: set[bytes] = set()
    latest = START
    duplicates = late = 0
    for record in records:
        if record.kind == "duplicate":
            duplicates += 1
            assert record.value in seen
        elif record.kind == "late":
            late += 1
            assert record.occurred_at <= latest - timedelta(hours=1)
            assert record.occurred_at >= latest - timedelta(hours=7)
        if record.kind == "clean":
            seen.add(record.value)
            latest = record.occurred_at
    assert duplicates > 50
    assert late > 20


# ------------------------------------------------------------------ realism


def test_activity_is_skewed_towards_a_few_customers() -> None:
    events = _clean(_records(20_000, customers=200))
    per_customer = sorted(_customers(events).values(), reverse=True)
    top = sum(per_customer[:20]) / sum(per_customer)  # the top 10% of 200 customers
    assert top > 0.3, top


def test_the_main_channels_and_their_touchpoints_appear() -> None:
    events = _events(_records(5000))
    channels = collections.Counter(e["channel"] for e in events)
    assert {"livestream", "wechat_group", "store", "chatbot"} <= set(channels)
    assert {"mini_program", "ecommerce", "ad"} <= set(channels)
    types = {e["event_type"] for e in events}
    assert {
        "live.view_start",
        "live.view_end",
        "live.comment",
        "live.like",
        "live.product_click",
        "live.add_to_cart",
        "live.coupon_claim",
        "group.join",
        "group.message",
        "store.check_in",
        "store.consult",
        "chat.session_start",
        "chat.message",
        "page.view",
        "product.view",
        "ad.impression",
    } <= types


def test_context_carries_the_right_keys() -> None:
    for event in _events(_records(5000)):
        ctx, kind = event["context"], event["event_type"]
        if kind.startswith("live."):
            assert ctx["live_room_id"].startswith("room-")
        elif kind.startswith("store."):
            assert re.fullmatch(r"store-[a-z]{2}-\d{3}", ctx["store_id"])
        elif kind.startswith("group."):
            assert ctx["group_id"].startswith("grp-")
        if kind == "store.consult":
            assert ctx["sales_rep_id"].startswith("sa-")
        if kind.startswith("ad."):
            assert ctx["campaign_id"].startswith("cmp-")


def test_livestream_comments_ask_for_the_price() -> None:
    events = _events(_records(5000))
    texts = [e["properties"]["text"] for e in events if e["event_type"] == "live.comment"]
    asks = {"这个多少钱", "有优惠吗", "how much is this", "价格多少"}
    assert sum(t in asks for t in texts) > 0.03 * len(texts)
    assert any(re.search(r"[\u4e00-\u9fff]", t) for t in texts)
    assert any(re.fullmatch(r"[ -~]+", t) and re.search("[a-z]", t) for t in texts)
    watch = [e["properties"]["watch_seconds"] for e in events if e["event_type"] == "live.view_end"]
    assert watch and min(watch) >= 0 and max(watch) > 60


def test_chatbot_messages_have_intents_and_some_negative_sentiment() -> None:
    events = _events(_records(8000))
    messages = [e["properties"] for e in events if e["event_type"] == "chat.message"]
    assert {"price_inquiry", "complaint", "product_question"} <= {m["intent"] for m in messages}
    assert all(-1.0 <= m["sentiment"] <= 1.0 for m in messages)
    assert any(m["sentiment"] < -0.4 for m in messages)
    leads = [e for e in events if e["event_type"] == "chat.lead_submitted"]
    assert leads and all("phone" in e["identities"] for e in leads)
    assert any(e["event_type"] == "chat.handoff" for e in events)


def test_transactions_are_in_fen_and_some_orders_span_two_channels() -> None:
    events = _clean(_records(20_000))
    transactions = [
        e for e in events if e["event_type"] in ("live.order", "store.purchase", "order.paid")
    ]
    assert {"live.order", "store.purchase", "order.paid"} <= {e["event_type"] for e in transactions}
    channels: dict[str, set[str]] = collections.defaultdict(set)
    amounts: dict[str, set[int]] = collections.defaultdict(set)
    for event in transactions:
        props = event["properties"]
        assert type(props["amount_minor"]) is int
        assert 9900 <= props["amount_minor"] <= 2_000_000
        assert props["currency"] == "CNY"
        channels[props["order_id"]].add(event["channel"])
        amounts[props["order_id"]].add(props["amount_minor"])
    shared = [order for order, seen in channels.items() if len(seen) >= 2]
    assert len(shared) >= 3
    assert all(len(amounts[order]) == 1 for order in shared)
    assert len(shared) < len(channels) / 2  # most orders are reported once


def test_events_carry_one_to_three_identifiers_often_several() -> None:
    events = _events(_records(5000))
    sizes = collections.Counter(len(e["identities"]) for e in events)
    assert set(sizes) <= {1, 2, 3}
    assert sizes[2] + sizes[3] > 0.05 * len(events)
    kinds = {k for e in events for k in e["identities"]}
    assert {"live_viewer_id", "wechat_openid", "phone", "member_id", "chatbot_user_id"} <= kinds
    viewers = {
        e["identities"]["live_viewer_id"] for e in events if "live_viewer_id" in e["identities"]
    }
    assert all(re.fullmatch(r"(douyin|kuaishou|taobao|wxchannels):\w+", v) for v in viewers)
    assert {v.partition(":")[0] for v in viewers} >= {"douyin", "kuaishou"}


def test_phones_are_written_in_varied_forms() -> None:
    phones = {
        e["identities"]["phone"] for e in _events(_records(8000)) if "phone" in e["identities"]
    }
    assert all(re.fullmatch(r"1[3-9]\d{9}", _phone(p)) for p in phones)
    forms = {re.sub(r"\d", "9", p) for p in phones}
    assert {"99999999999", "+99 999-9999-9999", "999 9999 9999"} <= forms


def test_vips_spend_big_and_later_come_to_a_store() -> None:
    events = _clean(_records(20_000))
    transactions = ("live.order", "order.paid", "store.purchase")
    big_spenders: dict[str, datetime] = {}  # phone -> when they first spent big
    visits = 0
    for event in events:
        kind, props, ids = event["event_type"], event["properties"], event["identities"]
        if "phone" not in ids:
            continue
        phone, at = _phone(ids["phone"]), datetime.fromisoformat(event["occurred_at"])
        if kind in transactions and props["amount_minor"] >= 299_900:
            big_spenders.setdefault(phone, at)
        elif kind == "store.check_in" and phone in big_spenders and at > big_spenders[phone]:
            visits += 1
    assert big_spenders
    assert visits


def test_memory_stays_bounded() -> None:
    from streams.simulate import _World

    world = _World(SimulationConfig(start=START, customers=100, events_per_second=5000))
    for _ in islice(world.records(), 80_000):
        pass
    assert len(world.personas) == 100
    assert len(world.heap) <= world.cap
    assert len(world.used) <= 2 * 100  # a phone and a live viewer id per persona at most
    assert len(world.recent) <= 64


# ------------------------------------------------------------------ ground truth, closed loop


def _with_identifier(sim: Simulation, records: list[SimulatedRecord], kind: str) -> Any:
    """A persona seen in ``records`` with an identifier of ``kind`` (typed), and that id."""
    for r in records:
        event = orjson.loads(r.value) if r.kind == "clean" else None
        if event and kind in event["identities"]:
            typed = f"{kind}:{event['identities'][kind]}"
            return sim._world.persona_of(typed), typed
    raise AssertionError(f"no {kind} in the stream")


TRANSACTIONS = ("live.order", "store.purchase", "order.paid")


def _action(customer_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "act-1",
        "kind": "action",
        "customer_id": customer_id,
        "action": "store_invitation",
        "segment": "interest",
        "catalog_version": "v1",
        "holdout": False,
        "decided_at": START.isoformat(),
        **fields,
    }


def test_hidden_intent_drives_who_buys() -> None:
    """Buyers with a high intent buy more often than buyers with a low one;
    non-buyers never buy unless an action lifts them."""
    sim = Simulation(SimulationConfig(start=START, customers=300, dirty_share=0.0))
    records = list(islice(sim.records(), 40_000))
    world = sim._world
    orders: collections.Counter[int] = collections.Counter()
    events: collections.Counter[int] = collections.Counter()
    for r in records:
        event = orjson.loads(r.value)
        for kind, value in event["identities"].items():
            p = world.persona_of(f"{kind}:{value}")
            if p is not None:
                events[p.index] += 1
                orders[p.index] += event["event_type"] in TRANSACTIONS
                break
    buyers = [p for p in world.personas if p.buyer and not p.vip and events[p.index]]

    def orders_per_event(group: list[Any]) -> float:
        return sum(orders[p.index] for p in group) / sum(events[p.index] for p in group)

    high = [p for p in buyers if p.intent > 0.6]
    low = [p for p in buyers if p.intent < 0.3]
    assert high and low
    assert orders_per_event(high) > 2 * orders_per_event(low)
    assert not any(orders[p.index] for p in world.personas if not p.buyer)


def test_an_action_is_answered_with_feedback_at_its_event_time() -> None:
    sim = Simulation(SimulationConfig(start=START, customers=50, dirty_share=0.0))
    stream = sim.records()
    head = list(islice(stream, 2_000))
    p, viewer = _with_identifier(sim, head, "live_viewer_id")
    decided = head[-1].occurred_at
    said = {}
    for i in range(40):  # several actions: some clicked, most only delivered
        action = _action(viewer, id=f"act-{i}", decided_at=decided.isoformat())
        said[action["id"]] = sim.respond(action)
    assert set(said.values()) <= {"delivered", "clicked", "failed", "ignored"}
    assert {"delivered", "clicked", "ignored"} <= set(said.values())
    feedback = []
    while sim._world.answers:  # every answer comes out at its event time
        record = next(stream)
        if record.topic == "feedback":
            feedback.append(record)
    bodies = [decode_feedback(r.value) for r in feedback]  # valid feedback v1
    assert {b.customer_id for b in bodies} == {viewer}
    assert all(b.occurred_at > decided for b in bodies)
    got = collections.defaultdict(list)
    for b in sorted(bodies, key=lambda b: b.occurred_at):
        got[b.action_id].append(b.outcome)
    expected = {
        "failed": ["failed"],
        "delivered": ["delivered"],
        "clicked": ["delivered", "clicked"],
        "ignored": ["delivered", "ignored"],  # reported 20 minutes after delivery
    }
    assert got == {action_id: expected[outcome] for action_id, outcome in said.items()}
    assert sim.intent(viewer) == p.intent


def test_a_customer_known_only_by_a_phone_hash_is_answered_with_the_deployment_s_key() -> None:
    key = PiiKey("t1", b"integration-test-key")
    config = SimulationConfig(start=START, customers=50, dirty_share=0.0)
    head = list(islice(Simulation(config).records(), 2_000))
    with_phone = next(p for p in Simulation(config)._world.personas if p.phone is not None)
    hashed = f"phone:{normalise('phone', with_phone.phone, key)}"
    action = _action(hashed, decided_at=head[-1].occurred_at.isoformat())
    assert Simulation(config).respond(action) is None  # without the key: nobody
    answering = Simulation(config, pii_key=key)
    list(islice(answering.records(), 2_000))
    assert answering.respond(action) in {"delivered", "clicked", "failed", "ignored"}
    assert answering.intent(hashed) == with_phone.intent


def test_held_out_rule_and_unknown_actions_get_no_answer() -> None:
    sim = Simulation(SimulationConfig(start=START, customers=50, dirty_share=0.0))
    head = list(islice(sim.records(), 2_000))
    _, viewer = _with_identifier(sim, head, "live_viewer_id")
    assert sim.respond(_action(viewer, holdout=True)) is None
    assert sim.respond(_action(viewer, catalog_version=None)) is None
    assert sim.respond(_action("member_id:nobody")) is None
    assert sim._world.answers == []


def test_a_customer_who_clicks_buys_lift_times_as_often_for_a_while() -> None:
    sim = Simulation(SimulationConfig(start=START, customers=50, dirty_share=0.0))
    world = sim._world
    head = list(islice(sim.records(), 2_000))
    p, viewer = _with_identifier(sim, head, "live_viewer_id")
    p.buyer, p.intent = True, 0.5
    before = world._buys(p)
    for i in range(200):  # until one is clicked
        if (
            sim.respond(_action(viewer, id=f"a{i}", decided_at=head[-1].occurred_at.isoformat()))
            == "clicked"
        ):
            break
    assert p.boost is not None
    start, until, lift = p.boost
    assert lift == TRUTH["store_invitation"]["interest"][1]
    world.t_us = start
    assert world._buys(p) == pytest.approx(before * lift)
    world.t_us = until
    assert world._buys(p) == pytest.approx(before)
    p.buyer = False  # a non-buyer who clicks may buy too, while it lasts
    world.t_us = start
    assert world._buys(p) == pytest.approx(2 * 0.5 * (lift - 1))
