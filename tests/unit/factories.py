"""Small factories for unit tests: touchpoint JSON, admitted events, and a
journey driven through the real core with the shipped configuration.

Every factory returns a valid object unless told otherwise; a test names
only what it is about (``make_event("live.comment", text="how much?")``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from schemas.codec import decode_touchpoint
from schemas.events import TouchpointEvent
from streams.config import core_config
from streams.core.engine import CoreConfig, StepResult, step
from streams.core.ingest import Admitted, IngestPolicy, RecordMeta, admit
from streams.core.journey import JourneyState
from streams.core.pii import PiiKey
from streams.core.rules import Output
from streams.settings import Settings

CST = timezone(timedelta(hours=8))
#: 20:00 in Shanghai: prime time for a livestream.
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=CST)
TOPIC = "journeyflow.touchpoints"

KEY = PiiKey("test-k1", b"unit-test-secret")
POLICY = IngestPolicy(KEY, max_future_skew_ms=300_000)

VIEWER = {"live_viewer_id": "douyin:88231"}
MEMBER_ID = "M-77"

_CHANNEL_OF_PREFIX = {
    "live": "livestream",
    "group": "wechat_group",
    "store": "store",
    "chat": "chatbot",
    "page": "ecommerce",
    "product": "ecommerce",
    "cart": "ecommerce",
    "order": "ecommerce",
    "ad": "ad",
    "consent": "mini_program",
    "privacy": "mini_program",
    "custom": "mini_program",
}

_PROPERTIES: dict[str, dict[str, Any]] = {
    "live.view_end": {"watch_seconds": 30},
    "live.comment": {"text": "nice"},
    "group.message": {"text": "nice"},
    "live.product_click": {"sku": "SKU-1"},
    "live.add_to_cart": {"sku": "SKU-1"},
    "product.view": {"sku": "SKU-1"},
    "cart.add": {"sku": "SKU-1"},
    "live.coupon_claim": {"coupon_id": "CP-1"},
    "chat.message": {"text": "hello", "intent": "greeting", "sentiment": 0.2},
    "live.order": {"order_id": "O-1", "amount_minor": 19900, "currency": "CNY"},
    "store.purchase": {"order_id": "O-1", "amount_minor": 19900, "currency": "CNY"},
    "order.paid": {"order_id": "O-1", "amount_minor": 19900, "currency": "CNY"},
    "store.return": {"order_id": "O-1", "amount_minor": 19900, "currency": "CNY"},
    "order.refund": {"order_id": "O-1", "amount_minor": 19900, "currency": "CNY"},
    "consent.granted": {"channel": "wechat_group", "purpose": "marketing"},
    "consent.revoked": {"channel": "wechat_group", "purpose": "marketing"},
}

_ids = itertools.count(1)


def fresh_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids)}"


def event_dict(
    event_type: str,
    *,
    event_id: str | None = None,
    at: datetime = T0,
    identities: dict[str, str] | None = None,
    context: dict[str, Any] | None = None,
    event_channel: str | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """The JSON object of a valid touchpoint; keyword arguments beyond the
    named ones are merged into ``properties`` (so ``channel=`` is the consent
    property, ``event_channel=`` the event's own channel)."""
    return {
        "event_id": event_id or fresh_id(),
        "event_type": event_type,
        "channel": event_channel or _CHANNEL_OF_PREFIX[event_type.partition(".")[0]],
        "occurred_at": at.isoformat(),
        "identities": dict(VIEWER if identities is None else identities),
        "context": dict(context or {}),
        "properties": {**_PROPERTIES.get(event_type, {}), **properties},
    }


def make_raw(event_type: str, **overrides: Any) -> bytes:
    return orjson.dumps(event_dict(event_type, **overrides))


def make_event(event_type: str, **overrides: Any) -> TouchpointEvent:
    return decode_touchpoint(make_raw(event_type, **overrides))


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def meta(offset: int = 0, *, timestamp_ms: int | None = None, partition: int = 0) -> RecordMeta:
    return RecordMeta(TOPIC, partition, offset, timestamp_ms)


_OFFSETS = itertools.count()


def make_admitted(event_type: str, *, input_partition: int = 0, **overrides: Any) -> Admitted:
    """An event through :func:`admit`, recorded by Kafka when it occurred, as
    its own input record (a fresh offset of touchpoints partition
    ``input_partition``: re-sending it is a producer duplicate; re-applying
    the returned object is a redelivery)."""
    at = overrides.get("at", T0)
    record = meta(next(_OFFSETS), timestamp_ms=epoch_ms(at), partition=input_partition)
    result = admit(make_raw(event_type, **overrides), record, POLICY)
    assert isinstance(result, Admitted), result
    return result


@dataclass
class Journey:
    """One customer's journey driven through ``engine.step`` like the agent does."""

    config: CoreConfig = field(default_factory=lambda: shipped_config())
    state: JourneyState | None = None
    last: StepResult | None = None

    def send(self, event_type: str, **overrides: Any) -> tuple[Output, ...]:
        return self.apply(make_admitted(event_type, **overrides))

    def apply(self, admitted: Admitted) -> tuple[Output, ...]:
        self.last = step(self.state, admitted, self.config)
        self.state = self.last.state
        return self.last.outputs


_SHIPPED: CoreConfig | None = None


def shipped_config() -> CoreConfig:
    """The stage model and rules journeyflow ships, as a default worker loads them
    (the settings that choose them are pinned so a developer's environment
    cannot change what the tests see)."""
    global _SHIPPED
    if _SHIPPED is None:
        _SHIPPED = core_config(Settings(stage_model="aipl", rules_file=None, dedupe_window=256))
    return _SHIPPED
