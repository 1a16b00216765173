"""Simulated touchpoint traffic: a seeded, deterministic stream of the bytes a
brand's producers would publish to ``journeyflow.touchpoints``.

Pure Python: no Kafka, no wall clock, no I/O. Event time starts at
``config.start`` and advances by ``1 / events_per_second`` per record (with a
small uniform jitter, never backwards); all randomness comes from one
``random.Random(config.seed)``, so the same config gives a byte-identical
stream.

The world being simulated:

- ``customers`` personas with Zipf-Mandelbrot activity (a few very active
  ones, a long tail). Each has a stable set of identifiers that appear as the
  person touches channels: a live viewer id (``douyin:88231``), WeChat
  openids of the brand's mini program and official account, sometimes a
  unionid, a phone (written in varied forms), a member id (``M-00077``), a
  chatbot user id, a device id, a WeCom external user id. Events carry one to
  three of them, so identity resolution has links to find.
- Episodes interleave in event time: livestream viewing sessions in the rooms
  that are on air (with flash-sale bursts), store visits, WeChat group
  chatter, chatbot conversations, mini-program / e-commerce browsing, ad
  impressions and clicks, and the occasional consent change.
- ``buyer_share`` of the personas buy (``live.order``, ``store.purchase``,
  ``order.paid``); some orders are reported on two channels with the same
  ``order_id`` (a live order echoed by the order system). A few VIPs spend a
  lot early and later come to stores.
- A ground truth the engine has to learn (issue #10): every persona has a
  hidden ``intent`` in [0, 1] that drives how often they add to cart and
  how often a buyer buys; every catalog action has a known response rate
  and lift per segment (:data:`TRUTH`). A :class:`Simulation` closes the
  loop: :meth:`Simulation.respond` reads an action the engine sent and
  answers with feedback records (topic ``feedback``: delivered, then
  clicked or nothing) and changed behaviour (a customer who responds buys
  ``lift`` times as often for ``BOOST_HOURS`` of event time).
- ``dirty_share`` of the records are dirty input: exact re-sends
  (``duplicate``), events that arrive hours after they happened (``late``,
  still valid), bytes that are not JSON (``malformed``) and JSON that breaks
  the contract (``invalid``).

Usage::

    from itertools import islice
    for record in islice(simulate(SimulationConfig(start=start)), 10_000):
        producer.send("journeyflow.touchpoints", key=record.key, value=record.value)

``SimulatedRecord.occurred_at`` is the event time written in the record (for a
duplicate the original's, for a late event hours back); a paced producer
sleeps until it, so dirty records are sent at once. Publishing faster than
real time moves event time ahead of the Kafka record time: start in the past
(the worker rejects ``occurred_at`` too far ahead of the record time).
"""

from __future__ import annotations

import hashlib
import heapq
import random
from bisect import bisect
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal

import orjson

from schemas.vocabulary import HASHED_IDENTITY_TYPES, IDENTITY_TYPES
from streams.core.identity import normalise
from streams.core.pii import PiiKey

__all__ = ["TRUTH", "RecordKind", "SimulatedRecord", "Simulation", "SimulationConfig", "simulate"]

RecordKind = Literal["clean", "duplicate", "late", "malformed", "invalid"]

#: China Standard Time: every simulated ``occurred_at`` carries ``+08:00``.
CST: Final = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``start`` (an aware datetime) is required: the
    simulation never reads the clock."""

    seed: int = 7
    customers: int = 2000
    start: datetime = field(kw_only=True)
    events_per_second: float = 50.0
    dirty_share: float = 0.03
    buyer_share: float = 0.15

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be an aware datetime (with a UTC offset)")
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if not self.events_per_second > 0:
            raise ValueError("events_per_second must be positive")
        if not 0.0 <= self.dirty_share <= 1.0:
            raise ValueError("dirty_share must be in [0, 1]")
        if not 0.0 <= self.buyer_share <= 1.0:
            raise ValueError("buyer_share must be in [0, 1]")


@dataclass(frozen=True)
class SimulatedRecord:
    """One record for ``journeyflow.touchpoints``."""

    key: bytes | None
    value: bytes
    occurred_at: datetime
    kind: str
    #: ``touchpoints``, or ``feedback`` for the answers to actions (``Simulation.respond``).
    topic: str = "touchpoints"


def simulate(config: SimulationConfig) -> Iterator[SimulatedRecord]:
    """The infinite record stream of ``config``; slice it with ``itertools.islice``."""
    return _World(config).records()


#: What each catalog action really does, per segment (the customer's stage when
#: it was chosen): ``(P(click | delivered) at intent 0.5, lift)``. A customer
#: who clicks buys ``lift`` times as often for ``BOOST_HOURS`` (a non-buyer
#: too: ``lift - 1`` times a buyer's chance at their intent). An action or
#: segment not listed gets ``DEFAULT_TRUTH``.
TRUTH: Final[dict[str, dict[str, tuple[float, float]]]] = {
    "live_viewer_coupon": {"awareness": (0.04, 1.2), "interest": (0.15, 2.0)},
    "store_invitation": {"interest": (0.25, 2.5), "purchase": (0.15, 1.8), "loyalty": (0.1, 1.5)},
    "win_back_coupon": {"purchase": (0.06, 1.6), "loyalty": (0.1, 2.0), "lapsed": (0.05, 1.5)},
    "member_upgrade": {"purchase": (0.2, 1.3)},
    "repurchase_reminder": {"purchase": (0.08, 1.4), "loyalty": (0.12, 1.6)},
    "group_invitation": {"awareness": (0.05, 1.1), "interest": (0.1, 1.2)},
    "coupon_reminder": {"awareness": (0.06, 1.3), "interest": (0.12, 1.5)},
}
DEFAULT_TRUTH: Final = (0.03, 1.0)
BOOST_HOURS: Final = 72
#: Share of deliveries that fail (no identifier reachable, blocked, ...).
FAILED_SHARE: Final = 0.02
#: Share (percent) of unanswered deliveries that marketing automation reports
#: as ``ignored`` (seen, nothing done) 20 minutes after delivery; the others are
#: left to the engine's response window. Chosen by the action id, not the
#: simulation's random stream, so answering changes no later event.
IGNORED_REPORT_PERCENT: Final = 25
IGNORED_AFTER_US: Final = 20 * 60 * 1_000_000


class Simulation:
    """The simulated world with its loop closed: :meth:`records` is the stream
    (as :func:`simulate`), :meth:`respond` answers the engine's actions."""

    def __init__(self, config: SimulationConfig, pii_key: PiiKey | None = None) -> None:
        """``pii_key``: the deployment's key, so that an action addressed to a
        customer known only by a phone hash finds its persona."""
        self._world = _World(config, pii_key)

    def records(self) -> Iterator[SimulatedRecord]:
        return self._world.records()

    def respond(self, action: dict[str, Any]) -> str | None:
        """Answer an action from ``journeyflow.actions`` (a decoded payload):
        feedback records come out of :meth:`records` at their event time, and
        a customer who clicks buys more often. What became of it (``clicked``,
        ``delivered``, ``ignored`` (reported), ``failed``), or None when it is
        not for a simulated customer, is held out, or is not a catalog action."""
        return self._world.respond(action)

    def intent(self, identifier: str) -> float | None:
        """The hidden intent of the persona holding a typed identifier."""
        p = self._world.persona_of(identifier)
        return None if p is None else p.intent


# --------------------------------------------------------------------------------------
# Vocabulary of the simulated brand (a beauty brand selling on Douyin, Kuaishou,
# Taobao Live, WeChat Channels, in a mini program, an app and in stores).

_PLATFORMS: Final = (("douyin", 60), ("kuaishou", 22), ("taobao", 10), ("wxchannels", 8))
_ORDER_PREFIX: Final = {"douyin": "DY", "kuaishou": "KS", "taobao": "TB", "wxchannels": "WXC"}
_MINI_APPID: Final = "wx5f2a9c3e7b1d4a60"  # the brand's mini program
_OA_APPID: Final = "wx9d81c0b2e4f6a317"  # the brand's official account (公众号)
_PHONE_PREFIXES: Final = (
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151",
    "152", "155", "157", "158", "159", "166", "177", "180", "181", "182", "186",
    "187", "188", "189", "191", "199",
)  # fmt: skip

#: (sku, unit price in fen)
_SKUS: Final = (
    ("SKU-SERUM-30ML", 39900),
    ("SKU-SERUM-50ML", 59900),
    ("SKU-CREAM-50G", 45900),
    ("SKU-EYE-15ML", 32900),
    ("SKU-TONER-200ML", 22900),
    ("SKU-CLEANSER-120G", 12900),
    ("SKU-MASK-5PC", 9900),
    ("SKU-SUNSCREEN-50ML", 16900),
    ("SKU-LIPSTICK-03", 29900),
    ("SKU-LIPSTICK-07", 29900),
    ("SKU-CUSHION-21", 38900),
    ("SKU-PERFUME-50ML", 89900),
    ("SKU-GIFTSET-618", 129900),
    ("SKU-TRAVEL-KIT", 19900),
)
_VIP_BUNDLES: Final = (
    ("SKU-VIP-ANNUAL-SET", 899900),
    ("SKU-VIP-SKINCARE-BOX", 499900),
    ("SKU-PERFUME-COLLECTION", 299900),
)
_ROOMS: Final = (
    ("room-618-beauty", "cmp-618-live"),
    ("room-daily-skincare", "cmp-daily-live"),
    ("room-brand-flagship", "cmp-flagship-live"),
    ("room-newarrivals-fragrance", "cmp-fragrance-launch"),
    ("room-double11-preheat", "cmp-double11-preheat"),
)
_STORES: Final = (
    "store-sh-001",
    "store-sh-002",
    "store-bj-001",
    "store-gz-003",
    "store-sz-001",
    "store-hz-002",
    "store-cd-001",
)
_GROUPS: Final = (
    "grp-sh-vip-01",
    "grp-sh-fans-02",
    "grp-bj-fans-01",
    "grp-gz-fans-01",
    "grp-newcomer-618",
    "grp-skincare-club",
)
_CAMPAIGNS: Final = ("cmp-618-preheat", "cmp-member-day", "cmp-newcomer-gift", "cmp-double11")
_AD_PLACEMENTS: Final = (
    "douyin_feed",
    "kuaishou_feed",
    "wechat_moments",
    "xiaohongshu_feed",
    "baidu_search",
)
_CONSENT_CHANNELS: Final = ("wechat_group", "chatbot", "mini_program", "store", "ecommerce")
_PAGES: Final = (
    "/pages/index/index",
    "/pages/campaign/618",
    "/pages/member/center",
    "/pages/category/skincare",
    "/pages/coupon/list",
)

_PRICE_ASKS: Final = (
    "这个多少钱",
    "有优惠吗",
    "how much is this",
    "价格多少",
    "多少钱啊主播",
    "能便宜点吗",
    "price?",
    "直播间有专属价吗",
    "买二送一吗",
    "is there a discount?",
)
_LIVE_COMMENTS: Final = (
    "主播好美",
    "已下单",
    "上链接",
    "3号链接还有吗",
    "敏感肌能用吗",
    "发货快吗",
    "love this color",
    "主播试一下色号",
    "666",
    "求讲解一下成分",
    "干皮适合吗",
    "什么时候开抢",
    "can you ship to Hong Kong?",
    "回购第三次了",
    "质量怎么样",
    "刚进来,讲的是哪款",
    "保质期多久",
    "does it work for oily skin?",
    "抢到了!",
    "库存还有吗",
    "赠品是什么",
)
_GROUP_MESSAGES: Final = (
    "群里有人用过吗",
    "今晚几点直播",
    "@小助手 我的快递到哪了",
    "有没有拼单的",
    "这个活动截止到什么时候",
    "谢谢分享",
    "收到",
    "new arrivals look great",
    "会员日有什么福利",
    "已经下单了,坐等发货",
    "链接打不开",
    "早上好",
    "求推荐适合干皮的面霜",
    "上次买的很好用,回购了",
    "有优惠券吗",
    "这个多少钱",
)
#: intent -> (customer messages, sentiment range)
_CHAT_INTENTS: Final[dict[str, tuple[tuple[str, ...], tuple[float, float]]]] = {
    "greeting": (("你好", "在吗", "hi", "hello, anyone there?"), (0.0, 0.4)),
    "price_inquiry": (
        ("这款精华多少钱?", "有没有满减活动", "how much is the 50ml one?", "会员价是多少"),
        (0.0, 0.5),
    ),
    "product_question": (
        ("敏感肌可以用吗", "保质期多久", "does it contain alcohol?", "孕妇能用吗"),
        (-0.1, 0.5),
    ),
    "order_status": (
        ("我的订单什么时候发货", "物流三天没更新了", "where is my order?"),
        (-0.5, 0.1),
    ),
    "store_location": (("上海哪家门店有货", "离我最近的门店在哪", "周末门店几点关门"), (0.0, 0.4)),
    "return_request": (
        ("我想退货", "收到的颜色不对,能换吗", "how do I return this?"),
        (-0.6, -0.05),
    ),
    "complaint": (
        (
            "收到的货是破的,太失望了",
            "客服一直不回复,差评",
            "this is the worst service ever",
            "退款还没到账,怎么回事",
            "用了过敏,要求赔偿",
        ),
        (-1.0, -0.4),
    ),
}
_CHAT_TOPICS: Final = (
    ("price_inquiry", 30),
    ("product_question", 25),
    ("order_status", 14),
    ("store_location", 8),
    ("return_request", 8),
    ("complaint", 15),
)

# Episode kinds and their spawn weights (normal, during a flash sale, VIP after the big spend).
_EPISODES: Final = ("live", "group", "store", "chat", "browse", "ad", "consent")
_W_NORMAL: Final = (38, 16, 9, 12, 16, 8, 1)
_W_HYPE: Final = (70, 10, 5, 8, 12, 4, 1)
_W_VIP: Final = (20, 10, 38, 8, 16, 7, 1)

_LIVE, _STORE, _CHAT = 1, 2, 4  # Persona.busy bits: one session of each at a time

_DIRTY_KINDS: Final = ("duplicate", "late", "malformed", "invalid")
_DIRTY_CUM: Final = (0.4, 0.6, 0.8, 1.0)

_US: Final = 1_000_000
_B64: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

# An event spec a script yields: (event_type, channel, identities, context, properties)
_Spec = tuple[str, str, dict[str, str], dict[str, str], dict[str, Any]]
# A script yields (spec, microseconds until its next event or None when it is done).
_Script = Generator[tuple[_Spec, int | None], None, None]


class _Persona:
    """Per-customer state: identifiers (created when first needed) and a few
    counters. Bounded: no per-event growth."""

    __slots__ = (
        "boost",
        "busy",
        "buyer",
        "chatbot_id",
        "device_id",
        "group_id",
        "has_unionid",
        "home_store",
        "index",
        "intent",
        "last_order",
        "live_id",
        "member_id",
        "oa_openid",
        "openid",
        "phone",
        "platform",
        "store_order",
        "unionid",
        "vip",
        "vip_spent",
        "wecom_id",
    )

    def __init__(self, index: int, buyer: bool, vip: bool, platform: str, store: str) -> None:
        self.index = index
        self.buyer = buyer
        #: Hidden propensity to buy (the ground truth): set by the world.
        self.intent = 0.5
        #: ``(from µs, until µs, lift)`` after responding to an action.
        self.boost: tuple[int, int, float] | None = None
        self.vip = vip
        self.vip_spent = False
        self.platform = platform
        self.home_store = store
        self.busy = 0
        self.has_unionid = False
        self.live_id: str | None = None
        self.openid: str | None = None
        self.oa_openid: str | None = None
        self.unionid: str | None = None
        self.phone: str | None = None
        self.member_id: str | None = None
        self.chatbot_id: str | None = None
        self.device_id: str | None = None
        self.wecom_id: str | None = None
        self.group_id: str | None = None
        self.last_order: tuple[str, int] | None = None  # (order_id, amount) of an online order
        self.store_order: tuple[str, int, str] | None = None  # (order_id, amount, store_id)


class _Show:
    """A livestream on air in one room, with flash-sale bursts."""

    __slots__ = ("campaign", "coupon", "end_us", "hype_from", "hype_to", "room", "skus")

    def __init__(self, rng: random.Random, now_us: int, first: bool, busy: str = "") -> None:
        self.room, self.campaign = rng.choice([r for r in _ROOMS if r[0] != busy])
        self.skus = rng.sample(_SKUS, 6)
        self.coupon = f"cpn-{self.room.removeprefix('room-')}-{rng.choice((20, 30, 50, 100))}off"
        self.end_us = now_us + int(rng.uniform(1800, 7200) * _US)
        self.hype_from = now_us + int(rng.uniform(0 if first else 60, 300) * _US)
        self.hype_to = self.hype_from + int(rng.uniform(20, 60) * _US)

    def hype(self, rng: random.Random, now_us: int) -> bool:
        """Whether a flash sale (秒杀) is on; schedules the next one when it is over."""
        if now_us >= self.hype_to:
            self.hype_from = now_us + int(rng.uniform(120, 600) * _US)
            self.hype_to = self.hype_from + int(rng.uniform(20, 60) * _US)
        return self.hype_from <= now_us


#: identity type -> strength rank (0 = strongest); personal data is never a key.
_KEY_RANK: Final = {
    kind: rank for rank, kind in enumerate(IDENTITY_TYPES) if kind not in HASHED_IDENTITY_TYPES
}


def _key_of(identities: dict[str, str]) -> bytes | None:
    """The producer's key: the strongest identifier, typed (``member_id:M-00077``).
    A phone is personal data and never a key; an event with only a phone has none."""
    best = None
    best_rank = len(IDENTITY_TYPES)
    for kind in identities:
        rank = _KEY_RANK.get(kind, best_rank)
        if rank < best_rank:
            best, best_rank = kind, rank
    return None if best is None else f"{best}:{identities[best]}".encode()


class _World:
    def __init__(self, config: SimulationConfig, pii_key: PiiKey | None = None) -> None:
        self.cfg = config
        self.pii_key = pii_key
        self.rng = rng = random.Random(config.seed)
        self.start = config.start.astimezone(CST)
        self.gap_us = _US / config.events_per_second
        self.t_us = 0
        self.n = 0  # events made (ids), clean or not
        self.orders = 0
        self.members = 0
        self.seq = 0
        self.heap: list[tuple[int, int, _Script]] = []
        self.cap = max(32, min(4096, config.customers))
        self.recent: deque[SimulatedRecord] = deque(maxlen=64)
        self.used: set[str] = set()  # phone numbers and live ids given out (unique per persona)

        n = config.customers
        q = max(1.0, n / 200)  # Zipf-Mandelbrot: weight 1 / (rank + q)
        cum: list[float] = []
        total = 0.0
        for rank in range(1, n + 1):
            total += 1.0 / (rank + q)
            cum.append(total)
        self.cum = cum
        self.total = total

        platforms = [p for p, _ in _PLATFORMS]
        platform_w = [w for _, w in _PLATFORMS]
        vips = set(rng.sample(range(max(1, n // 10)), max(1, n // 200)))
        self.personas = [
            _Persona(
                index=i,
                buyer=i in vips or rng.random() < config.buyer_share,
                vip=i in vips,
                platform=rng.choices(platforms, platform_w)[0],
                store=rng.choice(_STORES),
            )
            for i in range(n)
        ]
        for p in self.personas:  # VIPs are members whose phone the brand knows
            p.intent = (
                0.9 if p.vip else rng.betavariate(2, 2) if p.buyer else rng.betavariate(1.5, 4.5)
            )
            p.has_unionid = rng.random() < 0.4
            if p.vip or rng.random() < (0.6 if p.buyer else 0.3):
                p.phone = self._new_phone()
            if p.vip or rng.random() < (0.55 if p.buyer else 0.08):
                p.member_id = self._new_member()
        self.shows = [_Show(rng, 0, first=True)]
        self.show_check_us = 0
        #: Feedback records answering actions, by event time (``respond``).
        self.answers: list[tuple[int, int, SimulatedRecord]] = []
        self.by_identifier: dict[str, _Persona] = {}

    # ---------------------------------------------------------------- records

    def records(self) -> Iterator[SimulatedRecord]:
        rng = self.rng
        dirty = self.cfg.dirty_share
        recent = self.recent
        start = self.start
        answers = self.answers
        while True:
            if answers and answers[0][0] <= self.t_us:
                yield heapq.heappop(answers)[2]
                continue
            self.t_us += max(1, int(self.gap_us * (0.5 + rng.random())))
            now = start + timedelta(microseconds=self.t_us)
            if dirty and rng.random() < dirty:
                kind = _DIRTY_KINDS[bisect(_DIRTY_CUM, rng.random())]
                if kind == "duplicate" and recent:
                    original = recent[rng.randrange(len(recent))]
                    yield SimulatedRecord(original.key, original.value, original.occurred_at, kind)
                elif kind in ("duplicate", "late"):
                    yield self._late(now)
                else:
                    event = self._event(now)
                    key = _key_of(event["identities"])
                    if kind == "malformed":
                        yield SimulatedRecord(key, self._malformed(event), now, kind)
                    else:
                        yield SimulatedRecord(key, self._invalid(event), now, kind)
                continue
            event = self._event(now)
            record = SimulatedRecord(
                _key_of(event["identities"]), orjson.dumps(event), now, "clean"
            )
            recent.append(record)
            yield record

    def _event(self, now: datetime) -> dict[str, Any]:
        spec = self._next_spec()
        self.n += 1
        event_type, channel, identities, context, properties = spec
        return {
            "event_id": f"sim-{self.cfg.seed}-{self.n}",
            "event_type": event_type,
            "channel": channel,
            "occurred_at": now,
            "identities": identities,
            "context": context,
            "properties": properties,
            "schema_version": 1,
        }

    def _next_spec(self) -> _Spec:
        """Advance the episode that is due, or start a new one."""
        heap = self.heap
        while True:
            if heap and (heap[0][0] <= self.t_us or len(heap) >= self.cap):
                script = heapq.heappop(heap)[2]
            else:
                script = self._spawn()
            try:
                spec, delay = next(script)
            except StopIteration:
                continue
            if delay is not None:
                self.seq += 1
                heapq.heappush(heap, (self.t_us + delay, self.seq, script))
            return spec

    def _schedule(self, script: _Script, delay_us: int) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (self.t_us + delay_us, self.seq, script))

    def _persona(self) -> _Persona:
        return self.personas[bisect(self.cum, self.rng.random() * self.total)]

    def _buys(self, p: _Persona) -> float:
        """How likely the persona buys, relative to an average buyer (1.0):
        twice its intent for a buyer, nothing for others, times the lift of an
        action it responded to (a non-buyer gets the lift's excess)."""
        factor = 2 * p.intent if p.buyer else 0.0
        boost = p.boost
        if boost is not None and boost[0] <= self.t_us < boost[1]:
            factor = factor * boost[2] if p.buyer else 2 * p.intent * (boost[2] - 1)
        return factor

    # ---------------------------------------------------------------- the loop

    def persona_of(self, identifier: str) -> _Persona | None:
        """The persona holding a typed identifier (``live_viewer_id:douyin:1``)."""
        found = self.by_identifier.get(identifier)
        if found is None:
            for p in self.personas:
                for kind, value in (
                    ("live_viewer_id", p.live_id),
                    ("wechat_openid", p.openid),
                    ("wechat_openid", p.oa_openid),
                    ("wechat_unionid", p.unionid),
                    ("member_id", p.member_id),
                    ("chatbot_user_id", p.chatbot_id),
                    ("device_id", p.device_id),
                    ("wecom_external_userid", p.wecom_id),
                ):
                    if value is not None:
                        self.by_identifier[f"{kind}:{value}"] = p
                        self.by_identifier[f"{kind}:{value}".lower()] = p
                if p.phone is not None and self.pii_key is not None:
                    self.by_identifier[f"phone:{normalise('phone', p.phone, self.pii_key)}"] = p
            found = self.by_identifier.get(identifier) or self.by_identifier.get(identifier.lower())
        return found

    def respond(self, action: dict[str, Any]) -> str | None:
        if not action.get("catalog_version") or action.get("holdout"):
            return None
        p = self.persona_of(str(action.get("customer_id", "")))
        delivery = action.get("delivery") or {}
        if p is None and delivery:
            p = self.persona_of(f"{delivery.get('identifier_type')}:{delivery.get('identifier')}")
        if p is None:
            return None
        rng = self.rng
        start = self.start
        decided = datetime.fromisoformat(str(action["decided_at"]))
        not_before = datetime.fromisoformat(str(action.get("not_before") or action["decided_at"]))
        at_us = int((max(decided, not_before) - start) / timedelta(microseconds=1))
        at_us = max(at_us, self.t_us) + 30 * _US
        if rng.random() < FAILED_SHARE:
            self._answer(action, "failed", at_us)
            return "failed"
        self._answer(action, "delivered", at_us)
        rate, lift = TRUTH.get(str(action["action"]), {}).get(
            str(action.get("segment")), DEFAULT_TRUTH
        )
        if rng.random() >= min(1.0, rate * 2 * p.intent):
            digest = hashlib.blake2b(str(action["id"]).encode(), digest_size=4).digest()
            if int.from_bytes(digest) % 100 < IGNORED_REPORT_PERCENT:
                self._answer(action, "ignored", at_us + IGNORED_AFTER_US)
                return "ignored"
            return "delivered"
        click_us = at_us + int(rng.expovariate(1 / 600) * _US) + 1
        self._answer(action, "clicked", click_us)
        p.boost = (click_us, click_us + BOOST_HOURS * 3600 * _US, lift)
        return "clicked"

    def _answer(self, action: dict[str, Any], outcome: str, at_us: int) -> None:
        at = self.start + timedelta(microseconds=at_us)
        body = {
            "feedback_id": f"sim-fb-{action['id']}-{outcome}",
            "action_id": action["id"],
            "customer_id": action["customer_id"],
            "outcome": outcome,
            "occurred_at": at,
            "schema_version": 1,
        }
        key = str(action["customer_id"]).encode()
        record = SimulatedRecord(key, orjson.dumps(body), at, "clean", "feedback")
        self.seq += 1
        heapq.heappush(self.answers, (at_us, self.seq, record))

    def _show(self) -> _Show:
        """A show on air now (one always is; sometimes two)."""
        rng, now = self.rng, self.t_us
        if now >= self.show_check_us:
            self.show_check_us = now + 10 * _US
            self.shows = [s for s in self.shows if s.end_us > now]
            if not self.shows:
                self.shows.append(_Show(rng, now, first=False))
            if len(self.shows) == 1 and rng.random() < 0.02:  # a second room goes live
                self.shows.append(_Show(rng, now, first=False, busy=self.shows[0].room))
        shows = self.shows
        return shows[0] if len(shows) == 1 or rng.random() < 0.65 else shows[1]

    def _spawn(self) -> _Script:
        rng = self.rng
        p = self._persona()
        show = self._show()
        if p.vip and not p.vip_spent:
            kind = "live" if rng.random() < 0.6 else "browse"
        else:
            weights = _W_VIP if p.vip else (_W_HYPE if show.hype(rng, self.t_us) else _W_NORMAL)
            kind = rng.choices(_EPISODES, weights)[0]
        if kind == "live" and p.busy & _LIVE:
            kind = "browse"  # already watching: browse the mini program meanwhile
        elif kind == "store" and p.busy & _STORE:
            kind = "chat"
        if kind == "chat" and p.busy & _CHAT:
            kind = "group"
        if kind == "live":
            return self._live(p, show)
        if kind == "store":
            return self._store(p)
        if kind == "chat":
            return self._chat(p)
        if kind == "group":
            return self._group(p)
        if kind == "browse":
            return self._browse(p)
        if kind == "ad":
            return self._ad(p)
        return self._consent(p)

    # ---------------------------------------------------------------- identities

    def _new_phone(self) -> str:
        rng = self.rng
        while True:
            phone = rng.choice(_PHONE_PREFIXES) + f"{rng.randrange(100_000_000):08d}"
            if phone not in self.used:
                self.used.add(phone)
                return phone

    def _new_member(self) -> str:
        self.members += 1
        return f"M-{self.members:05d}"

    def _token(self, chars: int) -> str:
        """``chars`` random characters of the URL-safe base64 alphabet (openid style)."""
        bits = self.rng.getrandbits(6 * chars)
        return "".join(_B64[(bits >> (6 * i)) & 63] for i in range(chars))

    def _phone(self, p: _Persona) -> str:
        """The persona's phone, written the way a person or a form would."""
        if p.phone is None:
            p.phone = self._new_phone()
        d = p.phone
        r = self.rng.random()
        if r < 0.5:
            return d
        if r < 0.65:
            return f"+86 {d[:3]}-{d[3:7]}-{d[7:]}"
        if r < 0.8:
            return f"{d[:3]} {d[3:7]} {d[7:]}"
        if r < 0.9:
            return f"+86{d}"
        return f"{d[:3]}-{d[3:7]}-{d[7:]}"

    def _live_id(self, p: _Persona) -> str:
        if p.live_id is None:
            rng = self.rng
            while True:
                if p.platform == "kuaishou":
                    local = f"3x{self._token(8).lower().replace('-', 'a').replace('_', 'b')}"
                else:
                    local = str(rng.randrange(10_000, 99_999_999_999))
                ident = f"{p.platform}:{local}"
                if ident not in self.used:
                    self.used.add(ident)
                    p.live_id = ident
                    break
        return p.live_id

    def _openid(self, p: _Persona) -> str:
        if p.openid is None:
            p.openid = f"{_MINI_APPID}:o{self._token(27)}"
        return p.openid

    def _oa_openid(self, p: _Persona) -> str:
        if p.oa_openid is None:
            p.oa_openid = f"{_OA_APPID}:o{self._token(27)}"
        return p.oa_openid

    def _unionid(self, p: _Persona) -> str | None:
        if p.has_unionid and p.unionid is None:
            p.unionid = f"o{self._token(27)}"
        return p.unionid

    def _member(self, p: _Persona) -> str:
        if p.member_id is None:
            p.member_id = self._new_member()
        return p.member_id

    def _chatbot_id(self, p: _Persona) -> str:
        if p.chatbot_id is None:
            p.chatbot_id = f"bot-u-{self.rng.getrandbits(48):012x}"
        return p.chatbot_id

    def _device(self, p: _Persona) -> str:
        if p.device_id is None:
            h = f"{self.rng.getrandbits(128):032X}"
            p.device_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return p.device_id

    def _wecom(self, p: _Persona) -> str:
        if p.wecom_id is None:
            p.wecom_id = f"wm{self._token(27)}"
        return p.wecom_id

    def _ids_wechat(self, p: _Persona, official_account: bool = False) -> dict[str, str]:
        ids = {"wechat_openid": self._oa_openid(p) if official_account else self._openid(p)}
        unionid = self._unionid(p)
        if unionid is not None and self.rng.random() < 0.35:
            ids["wechat_unionid"] = unionid
        return ids

    def _ids_store(self, p: _Persona) -> dict[str, str]:
        """How a store recognises a visitor: member code, phone, or a mini-program scan."""
        rng = self.rng
        if p.vip:  # the front desk greets a VIP by member card and phone
            return {"member_id": self._member(p), "phone": self._phone(p)}
        ids: dict[str, str] = {}
        if p.member_id is not None and rng.random() < 0.8:
            ids["member_id"] = p.member_id
        if p.phone is not None and (not ids or rng.random() < 0.3):
            ids["phone"] = self._phone(p)
        if not ids:
            ids["wechat_openid"] = self._openid(p)
        return ids

    # ---------------------------------------------------------------- helpers

    def _gap(self, mean_s: float) -> int:
        return int(self.rng.expovariate(1.0 / mean_s) * _US) + 1

    def _order_id(self, prefix: str) -> str:
        self.orders += 1
        return f"{prefix}{self.cfg.seed}-{self.orders:09d}"

    def _sentiment(self, intent: str) -> float:
        lo, hi = _CHAT_INTENTS[intent][1]
        return round(self.rng.uniform(lo, hi), 3)

    # ---------------------------------------------------------------- episodes

    def _live(self, p: _Persona, show: _Show) -> _Script:
        """A viewer's session in a live room: comments, likes, clicks, orders."""
        rng = self.rng
        p.busy |= _LIVE
        ctx = {"live_room_id": show.room, "campaign_id": show.campaign}
        ids = {"live_viewer_id": self._live_id(p)}
        if p.platform == "wxchannels" and rng.random() < 0.7:
            ids["wechat_openid"] = self._openid(p)
        elif rng.random() < 0.08:
            ids["device_id"] = self._device(p)
        start_us = self.t_us
        entry = rng.choice(("feed", "follow", "share_link", "search", "group_link"))
        yield ("live.view_start", "livestream", ids, ctx, {"entry": entry}), self._gap(6.0)
        sku: tuple[str, int] | None = None
        in_cart: tuple[str, int] | None = None
        coupon: str | None = None
        ordered = False
        big_spender = p.vip and not p.vip_spent
        while True:
            big_spender = big_spender and not p.vip_spent  # not twice if they paid elsewhere
            hype = show.hype(rng, self.t_us)
            if rng.random() < (0.07 if hype or big_spender else 0.13) or self.t_us > show.end_us:
                break
            mean = 3.0 if hype else 12.0
            r = rng.random() * (1.6 if hype else 1.0)
            if r < 0.30:
                ask = rng.random() < 0.3
                text = rng.choice(_PRICE_ASKS if ask else _LIVE_COMMENTS)
                spec: _Spec = ("live.comment", "livestream", ids, ctx, {"text": text})
            elif r < 0.58:
                likes = {"count": rng.choice((1, 1, 1, 2, 3, 5, 10))}
                spec = ("live.like", "livestream", ids, ctx, likes)
                mean = 1.5  # likes come in bursts
            elif r < 0.63:
                target = rng.choice(("wechat_friend", "wechat_moments", "douyin_dm"))
                spec = ("live.share", "livestream", ids, ctx, {"target": target})
            elif r < 0.78 or sku is None:
                sku = rng.choice(show.skus)
                spec = ("live.product_click", "livestream", ids, ctx, {"sku": sku[0]})
            elif r < 0.78 + 0.2 * p.intent or (in_cart is None and not big_spender):
                in_cart = sku
                spec = ("live.add_to_cart", "livestream", ids, ctx, {"sku": sku[0], "quantity": 1})
            elif r < 0.95 or coupon is None:
                coupon = show.coupon
                spec = ("live.coupon_claim", "livestream", ids, ctx, {"coupon_id": coupon})
            elif (not ordered and rng.random() < 0.6 * self._buys(p)) or big_spender:
                ordered = True
                spec = self._live_order(
                    p, ids, ctx, in_cart or sku or show.skus[0], coupon, big_spender
                )
                big_spender = False
            else:
                spec = ("live.comment", "livestream", ids, ctx, {"text": rng.choice(_PRICE_ASKS)})
            yield spec, self._gap(mean)
        p.busy &= ~_LIVE
        watch = (self.t_us - start_us) // _US
        yield ("live.view_end", "livestream", ids, ctx, {"watch_seconds": watch}), None

    def _live_order(
        self,
        p: _Persona,
        ids: dict[str, str],
        ctx: dict[str, str],
        sku: tuple[str, int],
        coupon: str | None,
        big: bool,
    ) -> _Spec:
        rng = self.rng
        if big:
            sku = rng.choice(_VIP_BUNDLES)
            p.vip_spent = True
        quantity = 1 if big else rng.choice((1, 1, 1, 2, 3))
        amount = sku[1] * quantity
        used = None
        if coupon is not None and not big:  # 满减: the coupon needs a minimum spend
            discount = int(coupon.rsplit("-", 1)[1].removesuffix("off")) * 100
            if amount >= discount * 3:
                amount -= discount
                used = coupon
        order_id = self._order_id(_ORDER_PREFIX[p.platform])
        p.last_order = (order_id, amount)
        props: dict[str, Any] = {
            "order_id": order_id,
            "amount_minor": amount,
            "currency": "CNY",
            "sku": sku[0],
            "quantity": quantity,
        }
        if used is not None:
            props["coupon_id"] = used
        order_ids = dict(ids)
        if p.phone is not None and len(order_ids) < 3 and (big or rng.random() < 0.5):
            order_ids["phone"] = self._phone(p)  # the shipping phone
        if rng.random() < 0.4:  # the order system reports it too: one transaction, two channels
            echo = self._echo(p, order_id, amount, f"{p.platform}_shop", "ecommerce")
            self._schedule(echo, self._gap(20.0))
        return ("live.order", "livestream", order_ids, ctx, props)

    def _echo(self, p: _Persona, order_id: str, amount: int, source: str, channel: str) -> _Script:
        """The order system reporting an order already seen on another channel."""
        rng = self.rng
        ids: dict[str, str] = {}
        if p.member_id is not None:
            ids["member_id"] = p.member_id
        if p.phone is not None and rng.random() < 0.6:
            ids["phone"] = self._phone(p)
        if channel == "mini_program" or not ids:
            ids["wechat_openid"] = self._openid(p)
        props = {"order_id": order_id, "amount_minor": amount, "currency": "CNY", "source": source}
        yield ("order.paid", channel, ids, {}, props), None

    def _store(self, p: _Persona) -> _Script:
        """A store visit: check-in, a guide's consultation, trials, maybe a purchase."""
        rng = self.rng
        p.busy |= _STORE
        store = p.home_store if rng.random() < 0.85 else rng.choice(_STORES)
        rep = f"sa-{store.removeprefix('store-').replace('-', '')}-{rng.randrange(1, 13):02d}"
        ctx = {"store_id": store}
        ids = self._ids_store(p)
        method = "member_code" if "member_id" in ids else rng.choice(("phone", "scan_qr", "face"))
        yield ("store.check_in", "store", ids, ctx, {"method": method}), self._gap(90.0)
        if rng.random() < (0.9 if p.vip else 0.7):
            ctx = {"store_id": store, "sales_rep_id": rep}
            ids = dict(ids)
            if len(ids) < 3 and rng.random() < 0.5:
                ids["wecom_external_userid"] = self._wecom(p)  # the guide adds them on WeCom
            topic = rng.choice(("skincare", "makeup", "fragrance", "gift", "membership"))
            yield ("store.consult", "store", ids, ctx, {"topic": topic}), self._gap(120.0)
        tried = None
        for _ in range(rng.choice((0, 1, 1, 2))):
            tried = rng.choice(_SKUS)
            yield ("store.trial", "store", ids, ctx, {"sku": tried[0]}), self._gap(150.0)
        if p.store_order is not None and rng.random() < 0.05:
            order_id, amount, at = p.store_order
            p.store_order = None
            props = {"order_id": order_id, "amount_minor": amount, "currency": "CNY"}
            yield ("store.return", "store", ids, {"store_id": at}, props), self._gap(60.0)
        if rng.random() < (0.9 if p.vip else 0.45 * self._buys(p)):
            items = rng.sample(_SKUS, rng.choice((1, 1, 2, 3)))
            if p.vip:
                items.append(rng.choice(_VIP_BUNDLES))
            amount = sum(price for _, price in items)
            order_id = self._order_id(f"POS-{store.removeprefix('store-')}-")
            p.store_order = (order_id, amount, store)
            buy_ids = {"member_id": self._member(p)}  # joining is free at the till
            if p.phone is not None and rng.random() < 0.5:
                buy_ids["phone"] = self._phone(p)
            if "wecom_external_userid" in ids:
                buy_ids["wecom_external_userid"] = ids["wecom_external_userid"]
            props = {
                "order_id": order_id,
                "amount_minor": amount,
                "currency": "CNY",
                "items": [sku for sku, _ in items],
            }
            if rng.random() < 0.1:  # also booked through the guide's mini-program mall
                self._schedule(
                    self._echo(p, order_id, amount, "guide_mall", "mini_program"), self._gap(30.0)
                )
            p.busy &= ~_STORE
            yield ("store.purchase", "store", buy_ids, ctx, props), None
            return
        p.busy &= ~_STORE
        if tried is not None:
            yield ("store.trial", "store", ids, ctx, {"sku": tried[0], "repeat": True}), None

    def _chat(self, p: _Persona) -> _Script:
        """A chatbot conversation: intents, sentiment, hand-off, a lead."""
        rng = self.rng
        p.busy |= _CHAT
        bot_id = self._chatbot_id(p)
        ids = {"chatbot_user_id": bot_id}
        ctx: dict[str, str] = {}
        if rng.random() < 0.3:
            ctx["campaign_id"] = rng.choice(_CAMPAIGNS)
        entry = rng.choice(("mini_program", "official_account", "h5", "app"))
        yield ("chat.session_start", "chatbot", ids, ctx, {"entry": entry}), self._gap(8.0)
        if rng.random() < 0.35:
            spec = self._chat_message(ids, ctx, "greeting")
            yield spec, self._gap(10.0)
        topics, weights = zip(*_CHAT_TOPICS, strict=True)
        intent = rng.choices(topics, weights)[0]
        if p.last_order is None and intent in ("order_status", "return_request"):
            intent = "product_question"
        worst = 1.0
        for _ in range(rng.choice((1, 1, 2, 2, 3, 4))):
            spec = self._chat_message(ids, ctx, intent)
            worst = min(worst, spec[4]["sentiment"])
            yield spec, self._gap(15.0)
        if intent == "return_request" and p.last_order is not None and rng.random() < 0.3:
            order_id, amount = p.last_order
            p.last_order = None
            props = {"order_id": order_id, "amount_minor": amount, "currency": "CNY"}
            refund_ids = self._ids_wechat(p)
            self._schedule(self._single(("order.refund", "ecommerce", refund_ids, {}, props)), 1)
        if worst < -0.3 and rng.random() < 0.6:
            handoff = {"reason": "negative_sentiment", "queue": "after_sales"}
            yield ("chat.handoff", "chatbot", ids, ctx, handoff), self._gap(20.0)
        elif intent in ("price_inquiry", "product_question", "store_location"):
            if rng.random() < 0.35:
                lead_ids = {"chatbot_user_id": bot_id, "phone": self._phone(p)}
                form = rng.choice(("预约到店", "领取试用装", "会员注册"))
                lead = {"form": form, "interest": intent}
                yield ("chat.lead_submitted", "chatbot", lead_ids, ctx, lead), self._gap(5.0)
            elif rng.random() < 0.1:
                handoff = {"reason": "asked_for_human", "queue": "pre_sales"}
                yield ("chat.handoff", "chatbot", ids, ctx, handoff), self._gap(20.0)
        p.busy &= ~_CHAT
        yield self._chat_message(ids, ctx, rng.choice(("greeting", intent))), None

    def _chat_message(self, ids: dict[str, str], ctx: dict[str, str], intent: str) -> _Spec:
        props = {
            "text": self.rng.choice(_CHAT_INTENTS[intent][0]),
            "intent": intent,
            "sentiment": self._sentiment(intent),
        }
        return ("chat.message", "chatbot", ids, ctx, props)

    def _group(self, p: _Persona) -> _Script:
        """Chatter in the brand's WeChat group (社群)."""
        rng = self.rng
        if p.group_id is None:
            p.group_id = rng.choice(_GROUPS)
            ctx = {"group_id": p.group_id}
            how = {
                "source": rng.choice(("store_qr", "live_room", "friend_invite", "official_account"))
            }
            spec: _Spec = ("group.join", "wechat_group", self._ids_wechat(p), ctx, how)
            yield spec, self._gap(60.0)
        ctx = {"group_id": p.group_id}
        for _ in range(rng.choice((1, 1, 2, 3, 5))):
            text = {"text": rng.choice(_GROUP_MESSAGES)}
            spec = ("group.message", "wechat_group", self._ids_wechat(p), ctx, text)
            yield spec, self._gap(40.0)
        if rng.random() < 0.3:
            link_ctx = {"group_id": p.group_id, "campaign_id": rng.choice(_CAMPAIGNS)}
            url = f"https://m.brand.example/{rng.choice(_PAGES).split('/')[2]}"
            ids = self._ids_wechat(p)
            yield ("group.link_click", "wechat_group", ids, link_ctx, {"url": url}), self._gap(5.0)
            if rng.random() < 0.6:
                page = {"path": rng.choice(_PAGES)}
                spec = ("group.mini_program_open", "wechat_group", ids, link_ctx, page)
                yield spec, self._gap(10.0)
                sku = rng.choice(_SKUS)[0]
                yield ("product.view", "mini_program", ids, link_ctx, {"sku": sku}), None
                return
        if rng.random() < 0.03:
            group_id, p.group_id = p.group_id, None
            spec = ("group.leave", "wechat_group", self._ids_wechat(p), {"group_id": group_id}, {})
            yield spec, None

    def _browse(self, p: _Persona) -> _Script:
        """Browsing the mini program or the app: pages, products, cart, payment."""
        rng = self.rng
        mini = rng.random() < 0.6
        channel = "mini_program" if mini else "ecommerce"
        ids = self._ids_wechat(p) if mini else {"device_id": self._device(p)}
        if p.member_id is not None and len(ids) < 3 and rng.random() < 0.25:
            ids["member_id"] = p.member_id
        ctx: dict[str, str] = {}
        if rng.random() < 0.3:
            ctx["campaign_id"] = rng.choice(_CAMPAIGNS)
        yield ("page.view", channel, ids, ctx, {"path": rng.choice(_PAGES)}), self._gap(8.0)
        sku = rng.choice(_SKUS)
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            sku = rng.choice(_SKUS)
            yield ("product.view", channel, ids, ctx, {"sku": sku[0]}), self._gap(20.0)
        big = p.vip and not p.vip_spent
        if not big and rng.random() > (0.35 if p.buyer else 0.12) * (0.5 + p.intent):
            return
        quantity = rng.choice((1, 1, 2))
        cart = {"sku": sku[0], "quantity": quantity}
        yield ("cart.add", channel, ids, ctx, cart), self._gap(30.0)
        if not (big or rng.random() < 0.45 * self._buys(p)):
            return
        if big:
            sku, quantity = rng.choice(_VIP_BUNDLES), 1
            p.vip_spent = True
        amount = sku[1] * quantity
        order_id = self._order_id("MP" if mini else "EC")
        p.last_order = (order_id, amount)
        pay_ids = dict(ids)
        if big:  # a VIP order: the member account and its phone
            pay_ids = {"wechat_openid": ids["wechat_openid"]} if mini else dict(ids)
            pay_ids["member_id"] = self._member(p)
            pay_ids["phone"] = self._phone(p)
        elif len(pay_ids) < 3 and rng.random() < 0.5:
            pay_ids["phone"] = self._phone(p)
        props = {"order_id": order_id, "amount_minor": amount, "currency": "CNY", "sku": sku[0]}
        yield ("order.paid", channel, pay_ids, ctx, props), None

    def _ad(self, p: _Persona) -> _Script:
        """An ad impression, sometimes a click that lands in the mini program."""
        rng = self.rng
        ids = {"device_id": self._device(p)}
        ctx = {"campaign_id": rng.choice(_CAMPAIGNS)}
        placement = rng.choice(_AD_PLACEMENTS)
        props = {"ad_id": f"ad-{rng.randrange(1, 40):03d}", "placement": placement}
        if rng.random() > 0.15:
            yield ("ad.impression", "ad", ids, ctx, props), None
            return
        yield ("ad.impression", "ad", ids, ctx, props), self._gap(6.0)
        yield ("ad.click", "ad", ids, ctx, props), self._gap(4.0)
        if rng.random() < 0.6:  # the landing page links the device to the WeChat user
            land = {"device_id": ids["device_id"], "wechat_openid": self._openid(p)}
            yield ("page.view", "mini_program", land, ctx, {"path": "/pages/campaign/618"}), None

    def _consent(self, p: _Persona) -> _Script:
        rng = self.rng
        ids = self._ids_wechat(p, official_account=rng.random() < 0.3)
        if p.phone is not None and len(ids) < 3 and rng.random() < 0.3:
            ids["phone"] = self._phone(p)
        event_type = "consent.granted" if rng.random() < 0.85 else "consent.revoked"
        props = {
            "channel": rng.choice(_CONSENT_CHANNELS),
            "purpose": rng.choice(("marketing", "personalization", "sms_marketing")),
        }
        yield (event_type, "mini_program", ids, {}, props), None

    def _single(self, spec: _Spec) -> _Script:
        yield spec, None

    # ---------------------------------------------------------------- dirty input

    def _late(self, now: datetime) -> SimulatedRecord:
        """A valid event that reaches Kafka hours after it happened (offline POS batch,
        a phone that was offline, a delayed group-message export)."""
        rng = self.rng
        p = self._persona()
        at = now - timedelta(seconds=rng.uniform(3600, 6 * 3600))
        r = rng.random()
        ctx: dict[str, str]
        props: dict[str, Any]
        if r < 0.3:
            ctx = {"store_id": p.home_store}
            spec: _Spec = ("store.check_in", "store", self._ids_store(p), ctx, {"method": "pos"})
            if rng.random() < 0.3 * min(1.0, self._buys(p)):
                price = rng.choice(_SKUS)[1]
                order_id = self._order_id(f"POS-{p.home_store.removeprefix('store-')}-")
                props = {"order_id": order_id, "amount_minor": price, "currency": "CNY"}
                spec = ("store.purchase", "store", {"member_id": self._member(p)}, ctx, props)
        elif r < 0.6:
            props = {"sku": rng.choice(_SKUS)[0]}
            spec = ("product.view", "mini_program", self._ids_wechat(p), {}, props)
        elif r < 0.8:
            ctx = {"group_id": p.group_id or rng.choice(_GROUPS)}
            props = {"text": rng.choice(_GROUP_MESSAGES)}
            spec = ("group.message", "wechat_group", self._ids_wechat(p), ctx, props)
        else:
            ctx = {"campaign_id": rng.choice(_CAMPAIGNS)}
            props = {"ad_id": f"ad-{rng.randrange(1, 40):03d}", "placement": "wechat_moments"}
            spec = ("ad.impression", "ad", {"device_id": self._device(p)}, ctx, props)
        self.n += 1
        event_type, channel, identities, context, properties = spec
        event = {
            "event_id": f"sim-{self.cfg.seed}-{self.n}",
            "event_type": event_type,
            "channel": channel,
            "occurred_at": at,
            "identities": identities,
            "context": context,
            "properties": properties,
            "schema_version": 1,
        }
        return SimulatedRecord(_key_of(identities), orjson.dumps(event), at, "late")

    def _malformed(self, event: dict[str, Any]) -> bytes:
        """Bytes that are not UTF-8 JSON, the ways real producers get it wrong."""
        rng = self.rng
        raw = orjson.dumps(event)
        choice = rng.randrange(7)
        if choice == 0:  # cut off mid-write
            return raw[: rng.randrange(1, len(raw) - 1)]
        if choice == 1:  # a legacy producer writing GBK
            gbk = raw.decode().encode("gb18030")
            if not _is_utf8(gbk):
                return gbk
            return raw[: len(raw) // 2]
        if choice == 2:  # Python's str() of a dict instead of JSON
            return repr(orjson.loads(raw)).encode()
        if choice == 3:  # two events in one record
            return raw + raw
        if choice == 4:  # NaN from a float column
            return raw[:-1] + b',"score":NaN}'
        if choice == 5:  # a byte-order mark from a Windows tool
            return b"\xef\xbb\xbf" + raw
        return b""  # an empty payload

    def _invalid(self, event: dict[str, Any]) -> bytes:
        """Well-formed JSON that breaks the v1 contract."""
        rng = self.rng
        event = dict(event)
        event["properties"] = props = dict(event["properties"])
        options: list[Callable[[], object]] = [
            lambda: event.pop("event_id"),
            lambda: event.__setitem__("channel", rng.choice(("xiaohongshu", "tmall", "WeChat"))),
            lambda: event.__setitem__("identities", {}),
            lambda: event.__setitem__("identities", {"qq_number": "88231"}),
            lambda: event.__setitem__(
                "occurred_at", event["occurred_at"].strftime("%Y-%m-%d %H:%M:%S")
            ),
            lambda: event.__setitem__("event_type", rng.choice(("live.gift", "store.visit"))),
            lambda: event.__setitem__("schema_version", 2),
        ]
        if "live_viewer_id" in event["identities"]:
            local = event["identities"]["live_viewer_id"].partition(":")[2]
            options.append(lambda: event.__setitem__("identities", {"live_viewer_id": local}))
        if "amount_minor" in props:
            yuan = props["amount_minor"] / 100
            options.append(lambda: props.__setitem__("amount_minor", f"{yuan:.2f}"))
            options.append(lambda: props.__setitem__("amount_minor", yuan + 0.5))
            options.append(lambda: props.__setitem__("currency", "¥"))
        if "sentiment" in props:
            options.append(lambda: props.__setitem__("sentiment", rng.choice((1.5, -3.0))))
        if "text" in props:
            options.append(lambda: props.pop("text"))
        if "watch_seconds" in props:
            options.append(lambda: props.__setitem__("watch_seconds", -props["watch_seconds"] - 1))
        choice = rng.randrange(len(options) + 1)
        if choice == len(options):  # a batch wrapped in an array
            return orjson.dumps([event])
        options[choice]()
        return orjson.dumps(event)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True
