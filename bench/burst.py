"""The burst phase's input and its memory watch: a flash-sale peak.

A flash sale (秒杀) is when the worker meets its worst input: a backlog that
arrived faster than it drains, a few customers far more active than the
rest, and one live room taking a large share of everything. The harness
(:func:`bench.harness.burst_run`) pre-produces :func:`generate`'s records
and only then starts a fresh worker on them.

The records come from the project's simulator (``streams.simulate``, so the
mix of event types, the dirty share and the identity links stay realistic),
rewritten:

- **Customers are Zipf-distributed** (exponent :data:`ZIPF_EXPONENT` over the
  simulator's ``customers``; rank 1 is the busiest). Every valid event gets
  one customer drawn from that distribution, and each of its identifiers is
  replaced by that customer's identifier of the same type (the scope of a
  WeChat openid kept), so all of a customer's identifiers link to one journey
  and the busiest customers become hot keys. The Kafka key is recomputed
  like the simulator's (strongest non-personal identifier).
- **One hot live room**: :data:`HOT_SHARE` of the records are fresh
  ``live.comment`` / ``live.like`` / ``live.product_click`` /
  ``live.add_to_cart`` events in :data:`HOT_ROOM` (which the shipped rules'
  ``room_coupons`` table knows), from Zipf-drawn viewers; some comments ask
  about the price, so the price-question rules fire (their live triggers are
  keyed by the room: a hot key on the output side too).
- Dirty records stay dirty: an exact re-send (``duplicate``) re-sends the
  rewritten original, malformed and invalid records pass unchanged (they are
  dead-lettered either way), ``late`` events are rewritten like clean ones.
- Event time is compressed to :data:`EVENT_TIME_RATE` events per second (the
  simulator's default is 50/s): the peak of a sale, not an evening.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from bisect import bisect
from collections import Counter, OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from schemas.vocabulary import HASHED_IDENTITY_TYPES, IDENTITY_TYPES
from streams.simulate import CST, SimulatedRecord, SimulationConfig, simulate

#: Zipf exponent of customer activity (weight of rank k: k ** -ZIPF_EXPONENT).
ZIPF_EXPONENT = 1.1
#: Share of the burst's records that are events in the hot live room.
HOT_SHARE = 0.4
#: The hot room (in the shipped rules' ``room_coupons`` table) and its campaign.
HOT_ROOM = "room-double11-skincare"
HOT_CAMPAIGN = "cmp-double11"
#: (event type, weight) of the hot room's events.
HOT_EVENTS = (
    ("live.comment", 35),
    ("live.like", 40),
    ("live.product_click", 15),
    ("live.add_to_cart", 10),
)
HOT_COMMENTS = (
    "多少钱",
    "上链接",
    "抢到了!",
    "库存还有吗",
    "3号链接还有吗",
    "how much is the set?",
    "有优惠券吗",
    "666",
    "主播试一下",
    "已下单",
)
HOT_SKUS = ("SKU-FLASH-SERUM-50ML", "SKU-FLASH-GIFTSET", "SKU-FLASH-CREAM-50G")
#: Events per second of event time (all records, hot room included).
EVENT_TIME_RATE = 1000.0
#: Live platforms of the burst's customers (their ``live_viewer_id`` scopes).
_PLATFORMS = ("douyin", "douyin", "douyin", "kuaishou", "taobao", "wxchannels")
_MINI_APPID = "wx5f2a9c3e7b1d4a60"
#: Rewritten clean records remembered for the simulator's exact re-sends
#: (it re-sends one of its last 64 clean records).
_REMEMBERED = 256

#: identity type -> strength rank (0 = strongest); personal data is never a key.
_KEY_RANK = {
    kind: rank for rank, kind in enumerate(IDENTITY_TYPES) if kind not in HASHED_IDENTITY_TYPES
}


def key_of(identities: dict[str, str]) -> bytes | None:
    """The producer's key, as the simulator makes it: the strongest identifier
    that is not personal data, typed (``member_id:M-F000007``)."""
    if not identities:
        return None
    best = min(identities, key=lambda kind: _KEY_RANK.get(kind, len(IDENTITY_TYPES)))
    if best not in _KEY_RANK:
        return None
    return f"{best}:{identities[best]}".encode()


def identifier(kind: str, customer: int, original: str) -> str:
    """Customer ``customer``'s identifier of type ``kind`` (valid for the v1
    contract; a WeChat openid keeps the app scope of ``original``)."""
    c = customer
    if kind == "live_viewer_id":
        return f"{_PLATFORMS[c % len(_PLATFORMS)]}:{50_000_000 + c}"
    if kind == "wechat_openid":
        scope = original.partition(":")[0] or _MINI_APPID
        return f"{scope}:oFlash{c:022d}"
    if kind == "wechat_unionid":
        return f"oUnion{c:022d}"
    if kind == "phone":
        return f"1{3 + c % 7}{c:09d}"  # an 11-digit mainland mobile number
    if kind == "member_id":
        return f"M-F{c:06d}"
    if kind == "chatbot_user_id":
        return f"bot-u-f{c:011x}"
    if kind == "device_id":
        return f"F1A5E000-0000-4000-8000-{c:012X}"
    if kind == "wecom_external_userid":
        return f"wmFlash{c:020d}"
    return original


def event_time_span(events: int) -> float:
    """Seconds of event time ``events`` burst records span (about)."""
    return events / EVENT_TIME_RATE


class _Zipf:
    def __init__(self, customers: int, exponent: float, rng: random.Random) -> None:
        self.rng = rng
        self.cum: list[float] = []
        total = 0.0
        for rank in range(1, customers + 1):
            total += rank**-exponent
            self.cum.append(total)
        self.total = total

    def draw(self) -> int:
        """A customer index, 0 the busiest."""
        return bisect(self.cum, self.rng.random() * self.total)


def generate(
    events: int, seed: int, customers: int, start: datetime
) -> tuple[list[SimulatedRecord], dict[str, Any]]:
    """The burst's records and their shape (kinds, hot-room share, customer skew)."""
    rng = random.Random(f"burst-{seed}")
    zipf = _Zipf(customers, ZIPF_EXPONENT, rng)
    sim_rate = EVENT_TIME_RATE * (1 - HOT_SHARE)
    sim = simulate(
        SimulationConfig(seed=seed, customers=customers, start=start, events_per_second=sim_rate)
    )
    hot_types = [t for t, _ in HOT_EVENTS]
    hot_weights = [w for _, w in HOT_EVENTS]
    rewritten: OrderedDict[bytes, SimulatedRecord] = OrderedDict()
    records: list[SimulatedRecord] = []
    kinds: Counter[str] = Counter()
    per_customer: Counter[int] = Counter()
    hot = forgotten = 0
    now = start.astimezone(CST)
    for i in range(events):
        if rng.random() < HOT_SHARE:
            c = zipf.draw()
            per_customer[c] += 1
            event_type = rng.choices(hot_types, hot_weights)[0]
            if event_type == "live.comment":
                props: dict[str, Any] = {"text": rng.choice(HOT_COMMENTS)}
            elif event_type == "live.like":
                props = {}
            else:
                props = {"sku": rng.choice(HOT_SKUS)}
            ids = {"live_viewer_id": identifier("live_viewer_id", c, "")}
            event = {
                "event_id": f"flash-{seed}-{i}",
                "event_type": event_type,
                "channel": "livestream",
                "occurred_at": now,
                "identities": ids,
                "context": {"live_room_id": HOT_ROOM, "campaign_id": HOT_CAMPAIGN},
                "properties": props,
                "schema_version": 1,
            }
            records.append(SimulatedRecord(key_of(ids), orjson.dumps(event), now, "clean"))
            kinds["clean"] += 1
            hot += 1
            continue
        r = next(sim)
        kinds[r.kind] += 1
        if r.kind == "clean":
            now = r.occurred_at
        if r.kind == "duplicate":
            original = rewritten.get(r.value)
            if original is not None:
                records.append(SimulatedRecord(original.key, original.value, r.occurred_at, r.kind))
                continue
            forgotten += 1
        elif r.kind in ("clean", "late"):
            event = orjson.loads(r.value)
            c = zipf.draw()
            per_customer[c] += 1
            ids = {k: identifier(k, c, v) for k, v in event["identities"].items()}
            event["identities"] = ids
            out = SimulatedRecord(key_of(ids), orjson.dumps(event), r.occurred_at, r.kind)
            records.append(out)
            if r.kind == "clean":
                rewritten[r.value] = out
                if len(rewritten) > _REMEMBERED:
                    rewritten.popitem(last=False)
            continue
        records.append(r)  # malformed, invalid (or a re-send of a record not remembered)
    top = per_customer.most_common(10)
    valid = sum(per_customer.values())
    size = sum(len(r.value) for r in records)
    shape = {
        "events": events,
        "by_kind": dict(sorted(kinds.items())),
        "hot_room": HOT_ROOM,
        "hot_room_events": hot,
        "hot_room_share": round(hot / max(1, events), 3),
        "hot_room_event_types": dict(HOT_EVENTS),
        "zipf_exponent": ZIPF_EXPONENT,
        "customers": customers,
        "customers_seen": len(per_customer),
        "top_customer_share": round(top[0][1] / max(1, valid), 3) if top else None,
        "top_10_customers_share": round(sum(n for _, n in top) / max(1, valid), 3),
        "event_time_seconds": round((now - start).total_seconds(), 1),
        "event_time_events_per_s": EVENT_TIME_RATE,
        "bytes": size,
        "mean_value_bytes": round(size / max(1, events), 1),
        "keyless": sum(r.key is None for r in records),
        "resends_of_records_not_remembered": forgotten,
    }
    return records, shape


def _status_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, MiB."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    return out


class RssWatch:
    """Samples a process's resident memory every ``interval`` seconds until
    stopped; the peak is the kernel's own high-water mark (VmHWM, which also
    covers the time before the first sample) or the largest sample."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[float] = []
        self.hwm: float | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        status = _status_mib(self.pid)
        if "VmRSS" in status:
            self.samples.append(status["VmRSS"])
        if "VmHWM" in status:
            self.hwm = max(self.hwm or 0.0, status["VmHWM"])

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval)

    def start(self) -> RssWatch:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample()  # the last word (a process that exited gives none)
        peak = max([*self.samples, self.hwm or 0.0], default=0.0)
        return {
            "peak_rss_mib": round(peak, 1) if peak else None,
            "peak_rss_source": "VmHWM" if self.hwm and self.hwm >= peak else "VmRSS samples",
            "rss_mib_first_sample": round(self.samples[0], 1) if self.samples else None,
            "rss_mib_last_sample": round(self.samples[-1], 1) if self.samples else None,
            "max_sampled_rss_mib": round(max(self.samples), 1) if self.samples else None,
            "samples": len(self.samples),
            "interval_s": self.interval,
        }
