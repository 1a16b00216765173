"""One-ID on the real broker: two workers, four partitions, RocksDB tables,
identifiers chosen so the linked ones live on different workers."""

from __future__ import annotations

import itertools
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from conftest import Namespace, WorkerProcess, eventually, http_get
from kafka_io import produce, read_topic

from streams.core.identity import normalise
from streams.core.pii import PiiKey
from streams.core.profile import DECISION_PARTS as DECIDED
from streams.runtime import key_partition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

KEY = PiiKey("t1", b"integration-test-key")  # what Namespace.env gives the workers
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=4)  # events in the past
ROLES = {  # role -> (identifier type, value pattern); D (a member id) is the strongest
    "A": ("live_viewer_id", "douyin:v{n}"),
    "B": ("wechat_openid", "wx1:o{n}"),
    "C": ("chatbot_user_id", "bot:c{n}"),
    "D": ("member_id", "M{n}"),
}


def owned(worker: WorkerProcess) -> set[int]:
    """The partitions a worker owns; empty while it is not ready (rebalancing)."""
    status, body = http_get(f"{worker.url}/readyz")
    return set(body["partitions"]) if status == 200 else set()


def pick(role: str, partitions: set[int], total: int, counter: Any) -> dict[str, str]:
    """A fresh identifier of this role whose key lands on one of ``partitions``."""
    kind, pattern = ROLES[role]
    while True:
        value = pattern.format(n=next(counter))
        if key_partition(f"{kind}:{value}", total) in partitions:
            return {kind: value}


def person(mine: set[int], theirs: set[int], counter: Any) -> dict[str, dict[str, str]]:
    """Fresh identifiers A-D, A and C on one worker's partitions, B and D on
    the other's: every link of A-B, C-D, B-C crosses workers."""
    return {
        "A": pick("A", mine, 4, counter),
        "B": pick("B", theirs, 4, counter),
        "C": pick("C", mine, 4, counter),
        "D": pick("D", theirs, 4, counter),
    }


def event(
    event_id: str, event_type: str, minute: int, identities: dict[str, str], **fields: Any
) -> tuple[bytes, bytes]:
    body = {
        "event_id": event_id,
        "event_type": event_type,
        "channel": fields.pop("channel"),
        "occurred_at": (NOW + timedelta(minutes=minute)).isoformat(),
        "identities": identities,
        "context": fields.pop("context", {}),
        "properties": fields,
    }
    return event_id.encode(), orjson.dumps(body)


#: Profile fields of what was decided: each side decided with what it knew
#: then, so they depend on the order links arrive in (README, Replay).


def profile(worker: WorkerProcess, identifier: str) -> dict[str, Any] | None:
    status, body = http_get(f"{worker.url}/v1/customers/{identifier}")
    return body if status == 200 else None


def typed(ids: dict[str, str]) -> str:
    [(kind, value)] = ids.items()
    return f"{kind}:{value}"


def two_workers(namespace: Namespace, tmp_path: Any) -> tuple[WorkerProcess, WorkerProcess]:
    first = namespace.worker(tmp_path).start()
    second = namespace.worker(tmp_path).start()
    eventually(lambda: split(first, second), timeout=120, what="both workers own partitions")
    return first, second


def split(first: WorkerProcess, second: WorkerProcess) -> tuple[set[int], set[int]] | None:
    """The partitions of each worker, once both are ready and own all four."""
    mine, theirs = owned(first), owned(second)
    return (mine, theirs) if mine and theirs and len(mine | theirs) == 4 else None


def converged(workers: list[WorkerProcess], ids: list[str], events: int) -> dict[str, Any] | None:
    """Every worker answers for every identifier with the same, complete customer."""
    seen = []
    for worker in workers:
        for ident in ids:
            body = profile(worker, ident)
            if body is None or body["events_total"] != events:
                return None
            if not set(ids) <= set(body["identifiers"]):
                return None
            seen.append(body)
    first = seen[0]
    return first if all(b == first for b in seen) else None


def test_links_in_all_six_orders_end_as_one_customer_with_the_same_profile(
    namespace: Namespace, tmp_path: Any
) -> None:
    first, second = two_workers(namespace, tmp_path)
    mine, theirs = eventually(lambda: split(first, second), timeout=60, what="partitions")
    counter = itertools.count(1)
    results = {}
    for n, order in enumerate(itertools.permutations(["AB", "CD", "BC"])):
        who = person(mine, theirs, counter)
        links = {
            "AB": event(
                f"o{n}-ab",
                "live.comment",
                1,
                {**who["A"], **who["B"]},
                channel="livestream",
                text="多少钱",
                context={"live_room_id": "r-1"},
            ),
            "CD": event(
                f"o{n}-cd",
                "store.check_in",
                2,
                {**who["C"], **who["D"]},
                channel="store",
                context={"store_id": "s-1"},
            ),
            "BC": event(
                f"o{n}-bc",
                "chat.message",
                3,
                {**who["B"], **who["C"]},
                channel="chatbot",
                text="hi",
                sentiment=0.2,
            ),
        }
        for step in order:
            produce(namespace.bootstrap, namespace.topic("touchpoints"), [links[step]])
            strongest = typed(who[step[0]]) if step != "CD" else typed(who["D"])
            eventually(lambda s=strongest: profile(first, s), timeout=60, what=f"{step} applied")
        ids = [typed(who[r]) for r in "ABCD"]
        body = eventually(
            lambda ids=ids: converged([first, second], ids, 3),
            timeout=120,
            what=f"order {order} converged",
        )
        assert body["customer_id"] == typed(who["D"])  # the strongest identifier survives
        roles = {typed(who[r]): r for r in "ABCD"}
        body["customer_id"] = roles[body["customer_id"]]
        body["identifiers"] = sorted(roles[i] for i in body["identifiers"])
        for entry in body["stage_history"]:  # event ids carry the order's number
            entry["cause_event_id"] = entry["cause_event_id"].split("-", 1)[1]
        for decided in DECIDED:
            body.pop(decided)
        results[order] = body
    profiles = list(results.values())
    assert profiles[0]["identifiers"] == ["A", "B", "C", "D"]
    assert profiles[0]["channels"] == {"chatbot": 1, "livestream": 1, "store": 1}
    for other in profiles[1:]:
        assert other == profiles[0]

    merges = [
        orjson.loads(r.value) for r in read_topic(namespace.bootstrap, namespace.topic("merges"))
    ]
    assert merges, "merges are published"
    finals = {m["survivor"] for m in merges if m["survivor"].startswith("member_id:")}
    assert len(finals) == 6  # every order ended with a merge into its member id
    for merge in merges:
        assert merge["absorbed"] in merge["absorbed_identifiers"]
        assert merge["cause_event_id"].startswith("o")


def test_a_worker_killed_during_merges_still_converges(namespace: Namespace, tmp_path: Any) -> None:
    first, second = two_workers(namespace, tmp_path)
    mine, theirs = eventually(lambda: split(first, second), timeout=60, what="partitions")
    counter = itertools.count(1000)
    people = []
    for _ in range(25):
        people.append(person(mine, theirs, counter))
    before = []
    for n, who in enumerate(people):
        before.append(
            event(f"k{n}-ab", "live.like", 1, {**who["A"], **who["B"]}, channel="livestream")
        )
        before.append(
            event(
                f"k{n}-cd",
                "order.paid",
                2,
                {**who["C"], **who["D"]},
                channel="ecommerce",
                order_id=f"O-{n}",
                amount_minor=9900,
                currency="CNY",
            )
        )
    produce(namespace.bootstrap, namespace.topic("touchpoints"), before)
    for who in people:
        eventually(
            lambda who=who: profile(first, typed(who["D"])), timeout=90, what="first links applied"
        )

    bridges = [
        event(
            f"k{n}-bc",
            "chat.message",
            3,
            {**who["B"], **who["C"]},
            channel="chatbot",
            text="hi",
            sentiment=0.0,
        )
        for n, who in enumerate(people)
    ]
    produce(namespace.bootstrap, namespace.topic("touchpoints"), bridges)
    time.sleep(0.3)  # merges under way on both workers
    second.stop(signal.SIGKILL)
    second.start()

    for who in people:
        ids = [typed(who[r]) for r in "ABCD"]
        body = eventually(
            lambda ids=ids: converged([first, second], ids, 3),
            timeout=180,
            what="merges converged after the kill",
        )
        assert body["customer_id"] == typed(who["D"])
        assert (body["transactions"], body["spend_minor"]) == (1, {"CNY": 9900})


def test_viewer_then_chatbot_phone_then_store_member_is_one_customer(
    namespace: Namespace, tmp_path: Any
) -> None:
    first, second = two_workers(namespace, tmp_path)
    viewer = {"live_viewer_id": "douyin:70071"}
    records = [
        event(
            "p-1",
            "live.view_start",
            0,
            viewer,
            channel="livestream",
            context={"live_room_id": "room-9"},
        ),
        event(
            "p-2",
            "live.comment",
            1,
            viewer,
            channel="livestream",
            text="链接在哪",
            context={"live_room_id": "room-9"},
        ),
        event(
            "p-3",
            "chat.lead_submitted",
            30,
            {**viewer, "chatbot_user_id": "bot:u-70071", "phone": "13800138000"},
            channel="chatbot",
        ),
        event(
            "p-4",
            "store.purchase",
            120,
            {"member_id": "M-70071", "phone": "+86 138-0013-8000"},
            channel="store",
            order_id="SO-70071",
            amount_minor=59900,
            currency="CNY",
            context={"store_id": "store-sh-1"},
        ),
    ]
    for record in records:
        produce(namespace.bootstrap, namespace.topic("touchpoints"), [record])
        time.sleep(0.5)

    phone = "phone:" + normalise("phone", "13800138000", KEY)
    ids = ["live_viewer_id:douyin:70071", "chatbot_user_id:bot:u-70071", phone, "member_id:M-70071"]
    body = eventually(
        lambda: converged([first, second], ids, 4),
        timeout=120,
        what="one customer across three channels",
    )
    assert body["customer_id"] == "member_id:M-70071"
    assert body["channels"] == {"livestream": 2, "chatbot": 1, "store": 1}
    assert (body["transactions"], body["stage"]) == (1, "purchase")
    status, by_raw_phone = http_get(f"{second.url}/v1/customers/phone:13800138000")
    assert status == 200 and by_raw_phone["customer_id"] == "member_id:M-70071"


def test_conflicting_member_ids_and_a_shared_phone_are_refused_and_reported(
    namespace: Namespace, tmp_path: Any
) -> None:
    first = namespace.worker(tmp_path, JOURNEYFLOW_SHARED_IDENTIFIER_PARTNERS="3").start()
    second = namespace.worker(tmp_path, JOURNEYFLOW_SHARED_IDENTIFIER_PARTNERS="3").start()
    family_phone = "13900001111"
    records = [
        event(
            "c-1",
            "store.check_in",
            0,
            {"member_id": "M-1", "phone": family_phone},
            channel="store",
            context={"store_id": "s-1"},
        ),
        event(
            "c-2",
            "store.check_in",
            1,
            {"member_id": "M-2", "phone": family_phone},
            channel="store",
            context={"store_id": "s-1"},
        ),
    ]
    test_phone = "13800000000"
    records += [
        event(
            f"t-{i}",
            "chat.message",
            2 + i,
            {"phone": test_phone, "chatbot_user_id": f"bot:t-{i}"},
            channel="chatbot",
            text="test",
            sentiment=0.0,
        )
        for i in range(8)
    ]
    for record in records:
        produce(namespace.bootstrap, namespace.topic("touchpoints"), [record])
        time.sleep(0.3)

    def m2() -> dict[str, Any] | None:
        return profile(first, "member_id:M-2")

    body = eventually(m2, timeout=90, what="the second member has a journey")
    assert body["customer_id"] == "member_id:M-2" and body["events_total"] == 1
    m1 = eventually(lambda: profile(second, "member_id:M-1"), timeout=60, what="M-1")
    assert "member_id:M-2" not in m1["identifiers"]

    def alerts() -> list[dict[str, Any]] | None:
        found = [
            orjson.loads(r.value)
            for r in read_topic(namespace.bootstrap, namespace.topic("alerts"))
        ]
        kinds = {a["alert_type"] for a in found}
        return found if {"identity_link_refused", "shared_identifier"} <= kinds else None

    found = eventually(alerts, timeout=90, what="refusal and shared-identifier alerts")
    refusal = next(a for a in found if a["alert_type"] == "identity_link_refused")
    assert refusal["details"]["refusal"] == "conflict_member_id"

    # The records went to several input partitions, so which three users
    # reached the phone first (and were linked) is up to the broker; every
    # later one keeps a journey of its own, and no event is lost.
    users = [f"chatbot_user_id:bot:t-{i}" for i in range(8)]
    phone_id = "phone:" + normalise("phone", test_phone, KEY)

    def seen() -> list[dict[str, Any]] | None:
        bodies = [profile(second, user) for user in users]
        return None if any(b is None for b in bodies) else bodies  # type: ignore[return-value]

    bodies = eventually(seen, timeout=60, what="every test-phone user has a journey")
    linked = [b for b in bodies if b["customer_id"] == phone_id]
    alone = [b for b in bodies if b["customer_id"] in users]
    assert (len(linked), len(alone)) == (3, 5)
    assert linked[0]["events_total"] == 3
    assert all(b["events_total"] == 1 and b["identifiers"] == [b["customer_id"]] for b in alone)
    _, metrics = http_get(f"{first.url}/metrics")
    _, metrics2 = http_get(f"{second.url}/metrics")
    text = metrics + metrics2
    assert 'journeyflow_identity_refusals_total{reason="conflict_member_id"}' in text
    assert 'journeyflow_identity_refusals_total{reason="shared"}' in text
    assert 'journeyflow_shared_identifiers_total{type="phone"} 1.0' in text


def _compact_now(namespace: Namespace, topics: list[str]) -> None:
    """Make the broker compact these topics as soon as it can (test only)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    async def go() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=namespace.bootstrap)
        await admin.start()
        try:
            await admin.alter_configs(
                [
                    ConfigResource(
                        ConfigResourceType.TOPIC,
                        topic,
                        configs={
                            "cleanup.policy": "compact",
                            "segment.ms": "200",
                            "min.cleanable.dirty.ratio": "0.001",
                            "min.compaction.lag.ms": "0",
                            "delete.retention.ms": "0",
                        },
                    )
                    for topic in topics
                ]
            )
        finally:
            await admin.close()

    asyncio.run(go())


def test_forget_erases_the_person_on_every_partition_and_compacted_topic(
    namespace: Namespace, tmp_path: Any
) -> None:
    import subprocess
    import sys

    first, second = two_workers(namespace, tmp_path)
    mine, theirs = eventually(lambda: split(first, second), timeout=60, what="partitions")
    counter = itertools.count(5000)
    who = person(mine, theirs, counter)
    links = [
        event(
            "f-ab",
            "live.comment",
            1,
            {**who["A"], **who["B"]},
            channel="livestream",
            text="多少钱",
            context={"live_room_id": "r-1"},
        ),
        event(
            "f-cd",
            "order.paid",
            2,
            {**who["C"], **who["D"]},
            channel="ecommerce",
            order_id="O-f",
            amount_minor=100,
            currency="CNY",
        ),
        event(
            "f-bc",
            "chat.message",
            3,
            {**who["B"], **who["C"]},
            channel="chatbot",
            text="hi",
            sentiment=0.1,
        ),
    ]
    produce(namespace.bootstrap, namespace.topic("touchpoints"), links)
    ids = [typed(who[r]) for r in "ABCD"]
    eventually(lambda: converged([first, second], ids, 3), timeout=120, what="linked")

    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "forget", ids[1]],
        env=first.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr

    def gone() -> bool:
        return all(
            http_get(f"{w.url}/v1/customers/{i}")[0] == 404 for w in (first, second) for i in ids
        )

    eventually(gone, timeout=90, what="no worker returns anything for any identifier")

    changelogs = [f"{namespace.app_id}-journeys-changelog", f"{namespace.app_id}-aliases-changelog"]
    _compact_now(namespace, changelogs)
    # Later traffic (other people, on every partition) rolls the segments so the
    # cleaner can compact the ones that hold the person's records.
    filler = [
        event(
            f"fill-{n}",
            "page.view",
            10,
            {"device_id": f"dev-{n}", "chatbot_user_id": f"bot:f{n}"},
            channel="ecommerce",
        )
        for n in range(60)
    ]
    their_keys = [ident.encode() for ident in ids]

    def compacted() -> bool:
        produce(namespace.bootstrap, namespace.topic("touchpoints"), filler[:20])
        filler[:] = filler[20:] + filler[:20]
        for topic in changelogs:
            for record in read_topic(namespace.bootstrap, topic):
                if record.key in their_keys and record.value is not None:
                    return False
                if record.value and any(i in record.value for i in their_keys):
                    return False
        return True

    eventually(compacted, timeout=240, interval=5, what="the compacted topics forgot the person")

    # The viewer comes back: a new journey, linked to nobody.
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [event("f-back", "live.like", 30, who["A"], channel="livestream")],
    )
    body = eventually(lambda: profile(second, ids[0]), timeout=60, what="a new journey")
    assert body["identifiers"] == [ids[0]] and body["events_total"] == 1


def test_replay_gives_the_profiles_two_workers_give(namespace: Namespace, tmp_path: Any) -> None:
    """Replay equals streaming as the README defines it: final profiles are
    equal whatever the arrival order across identities (two workers and four
    partitions interleave freely), stage history aside."""
    from test_crash import accounted

    from streams.config import core_config
    from streams.core.journey import journeys_in
    from streams.core.profile import profile_view
    from streams.replay import replay
    from streams.settings import Settings
    from streams.simulate import SimulationConfig, simulate

    two_workers(namespace, tmp_path)
    config = SimulationConfig(
        seed=21, customers=300, start=NOW, events_per_second=200.0, dirty_share=0.03
    )
    records = list(itertools.islice(simulate(config), 1500))
    produce(
        namespace.bootstrap, namespace.topic("touchpoints"), [(r.key, r.value) for r in records]
    )
    eventually(lambda: accounted(namespace), timeout=240, what="all inputs accounted for")

    settings = Settings(pii_key="integration-test-key", pii_key_id="t1", partitions=4)
    scoring = core_config(settings).scoring

    def views(journeys: Any) -> dict[str, dict[str, Any]]:
        out = {}
        for state in journeys:
            view = profile_view(state, scoring)
            view["identifiers"] = sorted(view["identifiers"])
            for decided in DECIDED:  # the journeys changelog does not hold them
                view.pop(decided)
            out[state.customer_id] = view
        return out

    def live() -> dict[str, dict[str, Any]]:
        latest: dict[bytes, bytes | None] = {}
        for record in read_topic(namespace.bootstrap, namespace.changelog):
            latest[record.key] = record.value
        return views(journeys_in(latest).values())

    replayed = replay([r.value for r in records], settings)
    expected = views(replayed.journeys.values())
    assert replayed.counts["merges"] > 0
    eventually(lambda: live() == expected, timeout=120, what="live profiles equal replay's")


def test_imported_history_updates_journeys_and_triggers_nothing(
    namespace: Namespace, tmp_path: Any
) -> None:
    import subprocess
    import sys

    worker = namespace.worker(tmp_path).start()
    old = datetime.now(UTC) - timedelta(days=90)  # far beyond the too-late bound
    lines = [
        {
            "event_id": "imp-1",
            "event_type": "live.comment",
            "channel": "livestream",
            "occurred_at": old.isoformat(),
            "identities": {"member_id": "M-imp", "phone": "13700001234"},
            "context": {"live_room_id": "room-618-beauty"},
            "properties": {"text": "这个多少钱"},
        },
        {
            "event_id": "imp-2",
            "event_type": "order.paid",
            "channel": "ecommerce",
            "occurred_at": (old + timedelta(days=1)).isoformat(),
            "identities": {"phone": "13700001234"},
            "properties": {"order_id": "O-imp", "amount_minor": 12900, "currency": "CNY"},
        },
    ]
    history = tmp_path / "history.ndjson"
    history.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")

    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "import", str(history)],
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "imported 2" in done.stdout

    body = eventually(
        lambda: (p := profile(worker, "phone:13700001234")) and p["events_total"] == 2 and p,
        timeout=60,
        what="history applied",
    )
    assert body["customer_id"] == "member_id:M-imp"
    assert (body["transactions"], body["stage"]) == (1, "purchase")
    time.sleep(3)  # anything it would have triggered has had time to appear
    for topic in ("actions", "alerts", "live-triggers", "dlq"):
        assert read_topic(namespace.bootstrap, namespace.topic(topic)) == [], topic


def test_feedback_for_a_customer_merged_since_reaches_the_survivor(
    namespace: Namespace, tmp_path: Any
) -> None:
    first, second = two_workers(namespace, tmp_path)
    mine, theirs = eventually(lambda: split(first, second), timeout=60, what="partitions")
    who = person(mine, theirs, itertools.count(9000))
    viewer, member = typed(who["A"]), typed(who["D"])
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [event("fb-1", "live.comment", 1, who["A"], channel="livestream", text="多少钱")],
    )
    eventually(lambda: profile(first, viewer), timeout=60, what="the viewer's journey")
    # an action went to the viewer; meanwhile the viewer shows up as a member
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [event("fb-2", "store.check_in", 2, {**who["A"], **who["D"]}, channel="store")],
    )
    eventually(
        lambda: (p := profile(second, viewer)) and p["customer_id"] == member,
        timeout=60,
        what="the viewer merged into the member",
    )
    feedback = {
        "feedback_id": "fb-x",
        "action_id": "act-1",
        "customer_id": viewer,
        "outcome": "clicked",
        "occurred_at": (NOW + timedelta(minutes=3)).isoformat(),
    }
    produce(
        namespace.bootstrap,
        namespace.topic("feedback"),
        [(viewer.encode(), orjson.dumps(feedback))] * 2,  # delivered twice
    )

    body = eventually(
        lambda: (p := profile(first, member)) and p["feedback"] and p,
        timeout=60,
        what="the feedback on the survivor",
    )
    assert body["feedback"] == {"clicked": 1}
    time.sleep(2)  # the second copy has been handled by now: counted once
    assert profile(second, viewer)["feedback"] == {"clicked": 1}
