"""Time-based rules fire from event time, also on partitions that go quiet,
and a far-future timestamp cannot move any clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupCoordinatorNotAvailableError
from aiokafka.partitioner import DefaultPartitioner
from conftest import Namespace, eventually, http_get, metric_samples
from kafka_io import produce, read_topic

from streams.core.ids import output_id
from streams.watermark import InputWatermark

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHINA = timezone(timedelta(hours=8))
ROOM = {"live_room_id": "room-618-beauty"}
FAST_TICKS = {"JOURNEYFLOW_TICK_INTERVAL_SECONDS": "1"}


def ago(minutes: float) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).astimezone(CHINA)


def touch(event_id: str, event_type: str, viewer: str, at: datetime, **props) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "channel": "livestream",
            "occurred_at": at.isoformat(),
            "identities": {"live_viewer_id": viewer},
            "context": ROOM,
            "properties": props,
        }
    )


def reminders(ns: Namespace) -> list[dict]:
    actions = [orjson.loads(r.value) for r in read_topic(ns.bootstrap, ns.topic("actions"))]
    return [a for a in actions if a["rule_id"] == "live_coupon_reminder"]


def partition_clocks(url: str) -> dict[int, float]:
    samples = metric_samples(url, "journeyflow_partition_event_time_seconds")
    return {int(sample.split('"')[1]): value for sample, value in samples.items()}


def clocks_reach(url: str, at: datetime) -> bool:
    """Every partition clock (a clock starts with its partition's first event) is past ``at``."""
    clocks = partition_clocks(url)
    return bool(clocks) and min(clocks.values()) >= at.timestamp()


def test_reminder_fires_for_a_viewer_who_never_comes_back(namespace: Namespace, tmp_path) -> None:
    worker = namespace.worker(tmp_path, **FAST_TICKS).start()
    claimed_at = ago(40)
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [
            (
                None,
                touch("v1-view", "live.view_start", "douyin:1", claimed_at - timedelta(minutes=1)),
            ),
            (
                None,
                touch("v1-claim", "live.coupon_claim", "douyin:1", claimed_at, coupon_id="CP-9"),
            ),
        ],
    )
    # Nothing else is ever sent: only idle ticks can move this partition's clock.
    [reminder] = eventually(lambda: reminders(namespace), timeout=60, what="the reminder")
    assert reminder["cause_event_id"] == "v1-claim"
    assert reminder["params"]["coupon_id"] == "CP-9"
    assert reminder["id"] == output_id(
        "live_coupon_reminder", "live_viewer_id:douyin:1", "v1-claim"
    )
    due = claimed_at + timedelta(minutes=30)
    assert datetime.fromisoformat(reminder["decided_at"]) == due.replace(
        microsecond=due.microsecond // 1000 * 1000
    )
    profile = http_get(f"{worker.url}/v1/customers/live_viewer_id:douyin:1")[1]
    assert profile["events_total"] == 2


def test_no_reminder_after_an_order_or_before_the_due_time(namespace: Namespace, tmp_path) -> None:
    worker = namespace.worker(tmp_path, **FAST_TICKS).start()
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [
            (None, touch("b-view", "live.view_start", "douyin:2", ago(41))),
            (None, touch("b-claim", "live.coupon_claim", "douyin:2", ago(40), coupon_id="CP-9")),
            (
                None,
                touch(
                    "b-order", "live.order", "douyin:2", ago(35), order_id="o-1", amount_minor=9900
                ),
            ),
            (None, touch("c-view", "live.view_start", "douyin:3", ago(1))),
            (None, touch("c-claim", "live.coupon_claim", "douyin:3", ago(0.5), coupon_id="CP-9")),
        ],
    )
    # every partition's clock passes the first claim's due time (40 - 30 = 10 minutes ago)
    eventually(
        lambda: clocks_reach(worker.url, ago(10)),
        timeout=60,
        what="all partition clocks past the due time",
    )
    time.sleep(3)  # a few more ticks
    assert reminders(namespace) == []  # the buyer is not reminded, the fresh claim is not due
    profile = http_get(f"{worker.url}/v1/customers/live_viewer_id:douyin:3")[1]
    assert profile["event_types"]["live.coupon_claim"] == 1


def same_partition_viewer(viewer: str, partitions: int) -> str:
    """Another live viewer id whose customer key lands on the same partition."""
    pick = DefaultPartitioner()
    target = pick(
        f"live_viewer_id:{viewer}".encode(), list(range(partitions)), list(range(partitions))
    )
    for n in range(10_000):
        other = f"douyin:x{n}"
        if (
            pick(
                f"live_viewer_id:{other}".encode(), list(range(partitions)), list(range(partitions))
            )
            == target
        ):
            return other
    raise AssertionError("no viewer found on that partition")


def test_a_far_future_timestamp_fires_no_ones_timers(namespace: Namespace, tmp_path) -> None:
    worker = namespace.worker(tmp_path, **FAST_TICKS).start()
    viewer = "douyin:4"
    neighbour = same_partition_viewer(viewer, namespace.partitions)
    produce(
        namespace.bootstrap,
        namespace.topic("touchpoints"),
        [
            (None, touch("d-view", "live.view_start", viewer, ago(21))),
            (None, touch("d-claim", "live.coupon_claim", viewer, ago(20), coupon_id="CP-9")),
            # a producer with a broken clock: a day ahead, on the same partition
            (None, touch("e-bad", "live.comment", neighbour, ago(-24 * 60), text="hi")),
        ],
    )
    letters = eventually(
        lambda: [
            orjson.loads(r.value) for r in read_topic(namespace.bootstrap, namespace.topic("dlq"))
        ],
        what="the future event dead-lettered",
    )
    assert [(d["event_id"], d["reason_code"]) for d in letters] == [("e-bad", "future_timestamp")]
    eventually(
        lambda: clocks_reach(worker.url, ago(2)),
        timeout=60,
        what="idle ticks moving the clocks",
    )
    time.sleep(3)
    assert reminders(namespace) == []  # due in 10 minutes, and no clock jumped a day
    assert max(partition_clocks(worker.url).values()) < time.time()


def test_a_backfill_holds_the_watermark_at_its_event_time(namespace: Namespace) -> None:
    """Events published long after they happened (a backfill, a producer
    catching up) hold idle time back at their own ``occurred_at``, not at the
    moment they were published: otherwise a tick would fire a reminder that an
    order further down the backlog cancels."""
    topic = namespace.topic("touchpoints")
    claim = touch("d-claim", "live.coupon_claim", "douyin:4", ago(120), coupon_id="CP-9")
    order = touch("d-order", "live.order", "douyin:4", ago(110), order_id="o-4", amount_minor=900)
    lateness_ms = 5_000

    async def read() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=namespace.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()
        await asyncio.to_thread(
            produce, namespace.bootstrap, topic, [(b"k", claim, 0), (b"k", order, 0)]
        )
        mark = InputWatermark(namespace.bootstrap, namespace.app_id, topic, lateness_ms)
        try:
            for _ in range(30):  # a fresh broker creates its offsets topic first
                try:
                    return await mark.read(int(time.time() * 1000))
                except GroupCoordinatorNotAvailableError:
                    await asyncio.sleep(1)
            raise AssertionError("no group coordinator in 30 s")
        finally:
            await mark.stop()

    mark = asyncio.run(read())
    assert mark is not None
    # nothing is committed: the head is the claim, two hours old
    assert mark <= ago(120).timestamp() * 1000 - lateness_ms
    assert mark >= ago(121).timestamp() * 1000 - lateness_ms
