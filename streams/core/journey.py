"""A customer's journey: the state record and how one event changes it.

The state has a fixed upper size whatever the customer's history: counters
are keyed by the (closed) vocabulary, custom events share one bucket, and
recent lists are bounded. The record carries ``version``; a reader accepts
records from older writers (missing fields take defaults) and ignores fields
it does not know (a newer writer during a rolling upgrade).

>>> from schemas.codec import decode_touchpoint
>>> ev = decode_touchpoint(b'{"event_id":"e1","event_type":"live.comment","channel":"livestream",'
...     b'"occurred_at":"2026-11-23T20:00:00+08:00","identities":{"live_viewer_id":"douyin:1"},'
...     b'"properties":{"text":"nice"}}')
>>> state, outcome = apply_event(None, "live_viewer_id:douyin:1", ev, JourneyLimits())
>>> outcome, state.events_total, state.channel_counts
('processed', 1, {'livestream': 1})
>>> apply_event(state, "live_viewer_id:douyin:1", ev, JourneyLimits())[1]
'duplicate'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import TouchpointEvent
from schemas.vocabulary import CUSTOM_BUCKET, CUSTOM_PREFIX, TRANSACTION_EVENTS
from streams.core.identity import typed
from streams.core.stages import StageModel

#: 1: first release. 2: added ``source_offsets`` (so a redelivery is told from a
#: producer's duplicate) and ``pending`` (time-based items); v1 records load
#: with both empty.
STATE_VERSION = 2

#: Event types that show interest (AIPL's "I"): active engagement, not exposure.
ENGAGEMENT_EVENTS = frozenset(
    {
        "live.comment",
        "live.like",
        "live.share",
        "live.product_click",
        "live.add_to_cart",
        "live.coupon_claim",
        "group.message",
        "group.link_click",
        "group.mini_program_open",
        "store.consult",
        "store.trial",
        "chat.message",
        "chat.lead_submitted",
        "product.view",
        "cart.add",
        "ad.click",
    }
)

#: processed: applied. duplicate: the producer sent an event id again (counted).
#: redelivered: the same input record came again after a worker restart (not
#: counted: the first delivery already was). erased: privacy.erase.
Outcome = Literal["processed", "duplicate", "redelivered", "erased"]


@dataclass(frozen=True)
class JourneyLimits:
    """Bounds on per-customer state."""

    recent_event_ids: int = 256
    order_ids: int = 64
    identifiers: int = 16
    fired: int = 64
    consents: int = 32
    stage_history: int = 16
    pending: int = 16


class StageEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    stage: str
    entered_ms: int
    cause_event_id: str


class Pending(BaseModel):
    """A time-based output waiting for its due time (event time).

    ``output`` holds the kind-specific fields, rendered when the item was
    scheduled, so firing needs nothing but the journey.
    """

    model_config = ConfigDict(frozen=True)

    rule_id: str
    due_ms: int
    created_ms: int
    cause_event_id: str
    cancel_on: tuple[str, ...] = ()
    output: dict[str, Any] = Field(default_factory=dict)


class JourneyState(BaseModel):
    """One customer's journey. Times are epoch milliseconds of event time."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = STATE_VERSION
    customer_id: str
    identifiers: tuple[str, ...] = ()
    stage: str | None = None
    stage_history: tuple[StageEntry, ...] = ()
    first_seen_ms: int = 0
    last_seen_ms: int = 0
    events_total: int = 0
    duplicates: int = 0
    channel_counts: dict[str, int] = Field(default_factory=dict)
    event_counts: dict[str, int] = Field(default_factory=dict)
    watch_seconds: int = 0
    transactions: int = 0
    spend_minor: dict[str, int] = Field(default_factory=dict)
    refunds_minor: dict[str, int] = Field(default_factory=dict)
    last_purchase_ms: int | None = None
    last_live_room_id: str | None = None
    last_store_id: str | None = None
    consent: dict[str, bool] = Field(default_factory=dict)
    #: Event time of the change behind each ``consent`` entry, so a late older
    #: event cannot undo a newer one (records written before it was added lack it).
    consent_ms: dict[str, int] = Field(default_factory=dict)
    order_ids: tuple[str, ...] = ()
    recent_event_ids: tuple[str, ...] = ()
    #: Input partition -> highest offset applied to this journey. Records of
    #: one input partition reach a customer in offset order, so a record at or
    #: below it is a redelivery (a restart re-reading uncommitted input). One
    #: entry per input partition: bounded by the topic's partition count.
    source_offsets: dict[str, int] = Field(default_factory=dict)
    fired: tuple[str, ...] = ()
    pending: tuple[Pending, ...] = ()

    def metric(self, name: str) -> Any:
        """Metrics that stage models and rules read.

        ``events_total``, ``transactions``, ``watch_seconds``, ``engagements``,
        ``duplicates``, ``events:<event_type>``, ``channel:<channel>``,
        ``spend_minor:<CUR>``, ``refunds_minor:<CUR>``, ``stage``.
        """
        kind, sep, arg = name.partition(":")
        if sep:
            table = {
                "events": self.event_counts,
                "channel": self.channel_counts,
                "spend_minor": self.spend_minor,
                "refunds_minor": self.refunds_minor,
            }.get(kind)
            return None if table is None else table.get(arg, 0)
        if name == "engagements":
            return sum(n for t, n in self.event_counts.items() if t in ENGAGEMENT_EVENTS)
        if name in _SCALAR_METRICS:
            return getattr(self, name)
        return None


_SCALAR_METRICS = frozenset(
    {"events_total", "transactions", "watch_seconds", "duplicates", "stage", "last_purchase_ms"}
)


def _bump(counts: dict[str, int], key: str, by: int = 1) -> dict[str, int]:
    out = dict(counts)
    out[key] = out.get(key, 0) + by
    return out


def _push(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    """Append, keeping the newest ``limit`` items and no duplicates."""
    if item in items:
        return items
    out = (*items, item)
    return out[-limit:] if len(out) > limit else out


def counter_key(event_type: str) -> str:
    return CUSTOM_BUCKET if event_type.startswith(CUSTOM_PREFIX) else event_type


def new_state(customer_id: str) -> JourneyState:
    return JourneyState(customer_id=customer_id)


def parse_source(source: str) -> tuple[str, int] | None:
    """``"3:1207"`` -> ``("3", 1207)``; None when unknown."""
    partition, sep, offset = source.partition(":")
    return (partition, int(offset)) if sep and offset.isdigit() else None


def seen_before(state: JourneyState, event_id: str, source: str) -> Outcome | None:
    """``redelivered`` when this input record was applied already (a restart
    re-reads uncommitted records), ``duplicate`` when the event id came before
    in another record, ``None`` when it is new."""
    position = parse_source(source)
    if position is not None and position[1] <= state.source_offsets.get(position[0], -1):
        return "redelivered"
    return "duplicate" if event_id in state.recent_event_ids else None


def _advance_source(state: JourneyState, source: str) -> dict[str, int]:
    position = parse_source(source)
    if position is None:
        return state.source_offsets
    partition, offset = position
    return {**state.source_offsets, partition: max(offset, state.source_offsets.get(partition, -1))}


def apply_event(
    state: JourneyState | None,
    customer_id: str,
    event: TouchpointEvent,
    limits: JourneyLimits,
    occurred_ms: int | None = None,
    source: str = "",
) -> tuple[JourneyState | None, Outcome]:
    """Fold one event into the journey (no stage, no decisions: see :func:`advance_stage`).

    ``source`` names the input record (``partition:offset``) so a redelivery
    of the same record changes nothing. Returns ``(None, "erased")`` for
    ``privacy.erase``: the journey is forgotten.
    """
    if state is None:
        state = new_state(customer_id)
    repeat = seen_before(state, event.event_id, source)
    if repeat == "redelivered":
        return state, repeat
    if repeat == "duplicate":
        update_dup = {
            "duplicates": state.duplicates + 1,
            "source_offsets": _advance_source(state, source),
        }
        return state.model_copy(update=update_dup), repeat
    if event.event_type == "privacy.erase":
        return None, "erased"
    t = occurred_ms if occurred_ms is not None else int(event.occurred_at.timestamp() * 1000)
    update: dict[str, Any] = {
        "events_total": state.events_total + 1,
        "first_seen_ms": min(state.first_seen_ms, t) if state.events_total else t,
        "last_seen_ms": max(state.last_seen_ms, t),
        "channel_counts": _bump(state.channel_counts, event.channel),
        "event_counts": _bump(state.event_counts, counter_key(event.event_type)),
        "recent_event_ids": _push(state.recent_event_ids, event.event_id, limits.recent_event_ids),
        "source_offsets": _advance_source(state, source),
    }
    identifiers = state.identifiers
    for kind, value in event.identities.items():
        identifiers = _push(identifiers, typed(kind, value), limits.identifiers)
    update["identifiers"] = identifiers
    ctx = event.context
    if ctx.live_room_id:
        update["last_live_room_id"] = ctx.live_room_id
    if ctx.store_id:
        update["last_store_id"] = ctx.store_id
    props = event.properties
    etype = event.event_type
    if etype == "live.view_end":
        update["watch_seconds"] = state.watch_seconds + props.watch_seconds
    elif etype in TRANSACTION_EVENTS and props.order_id not in state.order_ids:
        update["transactions"] = state.transactions + 1
        update["spend_minor"] = _bump(state.spend_minor, props.currency, props.amount_minor)
        update["order_ids"] = _push(state.order_ids, props.order_id, limits.order_ids)
        last = state.last_purchase_ms
        update["last_purchase_ms"] = t if last is None else max(last, t)
    elif etype in ("store.return", "order.refund") and props.amount_minor:
        update["refunds_minor"] = _bump(state.refunds_minor, props.currency, props.amount_minor)
    elif etype in ("consent.granted", "consent.revoked"):
        key = f"{props.channel}:{props.purpose}"
        granted = etype == "consent.granted"
        known_ms = state.consent_ms.get(key)
        # The newest change by event time wins; on a tie, revoking wins.
        newer = known_ms is None or t > known_ms or (t == known_ms and not granted)
        if newer and (key in state.consent or len(state.consent) < limits.consents):
            update["consent"] = {**state.consent, key: granted}
            update["consent_ms"] = {**state.consent_ms, key: t}
    if state.pending and any(etype in p.cancel_on for p in state.pending):
        update["pending"] = tuple(
            p for p in state.pending if not (etype in p.cancel_on and t >= p.created_ms)
        )
    return state.model_copy(update=update), "processed"


def advance_stage(
    state: JourneyState, model: StageModel, at_ms: int, cause_event_id: str, limits: JourneyLimits
) -> JourneyState:
    """Move the journey to the furthest stage its metrics reach, recording entry time."""
    stage = model.furthest(state.metric, state.stage)
    if stage == state.stage or stage is None:
        return state
    history = (
        *state.stage_history,
        StageEntry(stage=stage, entered_ms=at_ms, cause_event_id=cause_event_id),
    )
    return state.model_copy(
        update={"stage": stage, "stage_history": history[-limits.stage_history :]}
    )


def mark_fired(state: JourneyState, key: str, limits: JourneyLimits) -> JourneyState:
    return state.model_copy(update={"fired": _push(state.fired, key, limits.fired)})


def encode_state(state: JourneyState) -> bytes:
    """The table record of a journey (JSON, so it can be read by any tool)."""
    return state.__pydantic_serializer__.to_json(state)


def decode_state(raw: bytes) -> JourneyState:
    """Read a table record written by this or an older version of journeyflow.

    Missing fields take their defaults; unknown fields (from a newer writer)
    are ignored. A future version that renames or reshapes a field adds a
    step to ``_MIGRATIONS`` keyed by the version it upgrades from.
    """
    data = orjson.loads(raw)
    version = data.get("version", 1)
    while version in _MIGRATIONS:
        data = _MIGRATIONS[version](data)
        version = data["version"]
    return JourneyState.model_validate(data)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 only added fields (their defaults fit a v1 record)."""
    return {**data, "version": 2}


#: version -> function that upgrades a record of that version by one step.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}
