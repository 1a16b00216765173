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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from models.labels import Decision, Example, merge_decisions, merge_labelled
from schemas.events import TouchpointEvent
from schemas.vocabulary import CUSTOM_BUCKET, CUSTOM_PREFIX, TRANSACTION_EVENTS
from streams.core import window
from streams.core.contacts import Contact, merge_contacts
from streams.core.identity import order_key
from streams.core.scoring import NOT_TOUCHES, Scoring, add_decayed, merge_decayed
from streams.core.stages import Counted, StageModel

#: 1: first release. 2: added ``source_offsets`` (so a redelivery is told from a
#: producer's duplicate) and ``pending`` (time-based items); v1 records load
#: with both empty. 3: every fact the journey keeps is mergeable (One-ID folds
#: journeys): recent event ids and orders carry their event time, last room
#: and store their time, ``last_ms_by_type`` records the newest event of each
#: type; ``source_offsets`` counts positions of the journey's own (internal)
#: partition. 4: decayed engagement counters, lead score, first and last
#: touch (``streams.core.scoring``); v3 records load with them empty. 5:
#: ``progress`` (exact stage entry times); v4 records keep their history as
#: it was written and go on appending (``progress`` None). 6: ``decisions``
#: and ``labelled`` (``streams.core.decisions``); v5 records load with none.
#: 7: contacts and ignored actions (``streams.core.contacts``). 8: the
#: journeys table keeps ``recent`` in pages of its own (``streams.core.window``)
#: and the record names them (``"window"``); v7 records hold it themselves.
STATE_VERSION = 8

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
    #: Identifiers one customer may hold; a link beyond it is refused.
    identifiers: int = 32
    fired: int = 64
    consents: int = 32
    stage_history: int = 16
    #: Contributions kept per counted metric for stage entry times (only as
    #: many as reach the largest threshold on it; beyond this many, the
    #: earliest two are combined at the later one's time).
    progress: int = 128
    pending: int = 16
    feedback_ids: int = 64
    #: Open decisions (scored, waiting for labels) and clock-labelled ones
    #: kept for a late transaction's correction.
    decisions: int = 4
    labelled: int = 4
    #: Actions chosen for the customer (``streams.core.contacts``), newest by
    #: delivery time; enough for a week's caps.
    contacts: int = 32


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
    last_live_room_ms: int | None = None
    last_store_id: str | None = None
    last_store_ms: int | None = None
    #: Newest event time per counter key (event type): a merge cancels pending
    #: items of one side with the other side's events, as one journey would.
    last_ms_by_type: dict[str, int] = Field(default_factory=dict)
    consent: dict[str, bool] = Field(default_factory=dict)
    #: Event time of the change behind each ``consent`` entry, so a late older
    #: event cannot undo a newer one (records written before it was added lack it).
    consent_ms: dict[str, int] = Field(default_factory=dict)
    #: Transactions ``(order_id, event ms, currency, amount_minor)``, the
    #: newest ``limits.order_ids`` by event time. An order seen twice counts
    #: once, with its earliest record.
    orders: tuple[tuple[str, int, str, int], ...] = ()
    #: The newest ``limits.recent_event_ids`` input records ``(event ms,
    #: event_id, input position)``, sorted, duplicates included: a producer's
    #: duplicate (same id, another record) is told from a redelivery of the
    #: same record by the position.
    recent: tuple[tuple[int, str, str], ...] = ()
    #: Partition -> highest position of the journey's own input (the internal,
    #: customer-keyed topic) applied. A record at or below it is a redelivery
    #: (a restart re-reading uncommitted records) unless ``recent`` proves it
    #: was never applied (read after later ones around a rebalance; see
    #: ``seen_before``).
    source_offsets: dict[str, int] = Field(default_factory=dict)
    #: Touchpoints partition -> highest offset of the records that entered
    #: One-ID at this customer's own identifier and were applied here
    #: (``streams.core.oneid``: a record the first stage admits again after a
    #: crash is known there, however many records came since). Records
    #: written before it load with it empty.
    admitted: dict[str, int] = Field(default_factory=dict)
    fired: tuple[str, ...] = ()
    pending: tuple[Pending, ...] = ()
    #: Decayed event counts, ``channel:<channel>`` and ``event:<type>`` ->
    #: ``(value, as of ms)``: "recent" engagement without an unbounded window.
    engagement: dict[str, tuple[float, int]] = Field(default_factory=dict)
    #: Sum of the scoring file's lead points over the customer's events.
    lead_score: int = 0
    #: Earliest and latest touch ``(ms, channel)``: first- and last-touch
    #: attribution of the customer's conversions.
    first_touch: tuple[int, str] | None = None
    last_touch: tuple[int, str] | None = None
    #: Outcomes marketing automation reported for this customer's actions
    #: (``journeyflow.feedback``), and the newest ids for dedupe.
    feedback_counts: dict[str, int] = Field(default_factory=dict)
    feedback_ids: tuple[str, ...] = ()
    #: Stage entry times, exact and mergeable: per counted metric a stage
    #: condition reads (``StageModel.counted``), its value when last seen
    #: and its earliest contributions ``(event ms, event id, key, amount)`` by
    #: event time, cut where they reach the largest threshold. ``key`` is the
    #: event id, or the order id for ``transactions``. None on journeys
    #: written before v5 (their history goes on by arrival).
    progress: dict[str, tuple[int, tuple[tuple[int, str, str, int], ...]]] | None = Field(
        default_factory=dict
    )
    #: Customer ids whose journeys were folded into this one (One-ID), so a
    #: fold that comes twice counts once. Bounded by ``limits.identifiers``:
    #: each was one of its identifiers.
    absorbed: tuple[str, ...] = ()
    #: Decisions recorded at decision points, waiting for their labels
    #: (``streams.core.decisions``, ``models.labels``), oldest first.
    decisions: tuple[Decision, ...] = ()
    #: Targets the clock labelled "not bought", kept (bounded) so that a late
    #: transaction can correct them.
    labelled: tuple[Example, ...] = ()
    #: Event time of the newest decision recorded (open or labelled since).
    last_decision_ms: int | None = None
    #: Actions chosen for this customer and what became of them
    #: (``streams.core.contacts``): what contact policies read.
    contacts: tuple[Contact, ...] = ()
    #: Action id -> deliveries ignored in a row (a response resets it): an
    #: action ignored ``ignored_limit`` times is suppressed.
    ignored: dict[str, int] = Field(default_factory=dict)

    @property
    def recent_event_ids(self) -> tuple[str, ...]:
        """Recent event ids, oldest first (by event time), each once."""
        return tuple(dict.fromkeys(event_id for _, event_id, _ in self.recent))

    @property
    def order_ids(self) -> tuple[str, ...]:
        """Recent order ids, oldest first (by event time)."""
        return tuple(order[0] for order in self.orders)

    def metric(self, name: str) -> Any:
        """Metrics that stage models and rules read.

        ``events_total``, ``transactions``, ``watch_seconds``, ``engagements``,
        ``duplicates``, ``events:<event_type>``, ``channel:<channel>``,
        ``spend_minor:<CUR>``, ``refunds_minor:<CUR>``, ``stage``,
        ``lead_score``. Scores that need the scoring file (decayed engagement,
        effective member, LTV, tags) are in ``streams.core.profile``.
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
    {
        "events_total",
        "transactions",
        "watch_seconds",
        "duplicates",
        "stage",
        "last_purchase_ms",
        "lead_score",
    }
)


_new_object = object.__new__
_set_slot = object.__setattr__


def evolve(state: JourneyState, update: dict[str, Any]) -> JourneyState:
    """``state.model_copy(update=update)`` at half the cost (the hot path copies
    a journey a few times per event): the same new object, fields set as given
    without validation, sharing everything not updated. Pydantic's copy also
    copies the set of explicitly set fields, which nothing here reads.

    >>> s = new_state("phone:1")
    >>> evolve(s, {"events_total": 2}) == s.model_copy(update={"events_total": 2})
    True
    """
    new = _new_object(type(state))
    fields = state.__dict__.copy()
    fields.update(update)
    _set_slot(new, "__dict__", fields)
    _set_slot(new, "__pydantic_fields_set__", state.__pydantic_fields_set__)
    _set_slot(new, "__pydantic_extra__", None)
    _set_slot(new, "__pydantic_private__", None)
    return new


def _bump(counts: dict[str, int], key: str, by: int = 1) -> dict[str, int]:
    out = dict(counts)
    out[key] = out.get(key, 0) + by
    return out


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def _nonzero(counts: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in counts.items() if n}


def _push(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    """Append, keeping the newest ``limit`` items and no duplicates."""
    if item in items:
        return items
    out = (*items, item)
    return out[-limit:] if len(out) > limit else out


def counter_key(event_type: str) -> str:
    return CUSTOM_BUCKET if event_type.startswith(CUSTOM_PREFIX) else event_type


def new_state(customer_id: str) -> JourneyState:
    """An empty journey; its customer id is its first identifier."""
    return JourneyState(customer_id=customer_id, identifiers=(customer_id,))


def parse_source(source: str) -> tuple[str, int] | None:
    """``"3:1207"`` -> ``("3", 1207)``; None when unknown."""
    partition, sep, offset = source.partition(":")
    return (partition, int(offset)) if sep and offset.isdigit() else None


def is_redelivery(state: JourneyState, position: str) -> bool:
    """Was the record at ``position`` (``partition:offset`` of the journey's
    own input) applied already?"""
    parsed = parse_source(position)
    return parsed is not None and parsed[1] <= state.source_offsets.get(parsed[0], -1)


def seen_before(
    state: JourneyState,
    event_id: str,
    source: str,
    position: str | None = None,
    occurred_ms: int | None = None,
    window: int = 0,
) -> Outcome | None:
    """``redelivered`` when this record was applied already (a restart re-reads
    uncommitted records: the same ``position``, or the same input ``source``
    for the same event id), ``duplicate`` when the event id came before in
    another input record, ``None`` when it is new.

    A record at or before the journey's furthest position counts as applied,
    unless ``recent`` (``window`` entries, newest by event time) would hold it
    if it had been: then its absence proves it never was, and it is applied
    now. That is how a record skipped around a rebalance and read again after
    later ones (``streams.transport``) still counts once.
    """
    known = False
    if event_id in _window_ids(state.recent):  # nearly every event is new: no walk
        for _, seen_id, seen_source in state.recent:
            if seen_id == event_id:
                if source and seen_source == source:
                    return "redelivered"
                known = True
    if is_redelivery(state, source if position is None else position) and not (
        source and occurred_ms is not None and _would_be_recent(state, occurred_ms, window)
    ):
        return "redelivered"
    return "duplicate" if known else None


#: Recent windows lately looked into, by identity: ``id(window) -> (window,
#: ids)``, where ``ids`` holds at least the event ids of the window (it may
#: hold ids the window no longer does). Each entry keeps its window alive, so
#: an id is never another window's while its entry lasts. Oldest entries go
#: first beyond :data:`_WINDOWS_KEPT`.
_windows: dict[int, tuple[tuple[tuple[int, str, str], ...], set[str]]] = {}
_WINDOWS_KEPT = 16_384


def _window_ids(recent: tuple[tuple[int, str, str], ...]) -> set[str]:
    """A set holding at least the event ids in ``recent``, kept with it: a
    hot customer's window (up to 256 entries) is walked in Python only when
    the event's id may be there, and a window grown by one event
    (:func:`_add_recent`) shares its predecessor's set.

    >>> w = ((1, "a", "0:1"), (2, "b", "0:2"))
    >>> sorted(_window_ids(w)), _window_ids(w) is _window_ids(w)
    (['a', 'b'], True)
    """
    entry = _windows.get(id(recent))
    if entry is not None and entry[0] is recent:
        return entry[1]
    ids = {seen[1] for seen in recent}
    _keep_window(recent, ids)
    return ids


def _keep_window(recent: tuple[tuple[int, str, str], ...], ids: set[str]) -> None:
    if len(_windows) >= _WINDOWS_KEPT:
        del _windows[next(iter(_windows))]
    _windows[id(recent)] = (recent, ids)


def _add_recent(
    recent: tuple[tuple[int, str, str], ...], seen: tuple[int, str, str], limit: int
) -> tuple[tuple[int, str, str], ...]:
    """``recent`` with ``seen`` (:func:`_with_newest`); the new window shares
    the old one's id set when the old one had a set (the id is added to it,
    which only makes it hold more than the old window), until it holds twice
    the window's ids; the old window's entry goes (asked again, it is rebuilt).

    >>> w = ((1, "a", "0:1"),)
    >>> ids = _window_ids(w)
    >>> grown = _add_recent(w, (2, "b", "0:2"), 1)
    >>> grown, _window_ids(grown) is ids, "b" in ids
    (((2, 'b', '0:2'),), True, True)
    """
    out: tuple[tuple[int, str, str], ...] = _with_newest(recent, seen, limit)
    entry = _windows.get(id(recent))
    if entry is not None and entry[0] is recent:
        del _windows[id(recent)]  # its successor is the one looked into next
        if len(entry[1]) < 2 * limit:
            entry[1].add(seen[1])
            _keep_window(out, entry[1])
    return out


def _would_be_recent(state: JourneyState, occurred_ms: int, window: int) -> bool:
    """Would ``recent`` still hold a record of this event time, had it been applied?"""
    return len(state.recent) < window or occurred_ms > state.recent[0][0]


def advance_position(offsets: dict[str, int], position: str) -> dict[str, int]:
    parsed = parse_source(position)
    return offsets if parsed is None else _admit(offsets, *parsed)


def _admit(admitted: dict[str, int], partition: str, offset: int) -> dict[str, int]:
    return {**admitted, partition: max(offset, admitted.get(partition, -1))}


def _newest(items: Any, limit: int) -> tuple[Any, ...]:
    """Sorted, keeping the ``limit`` largest (newest: tuples start with a time)."""
    ordered = sorted(items)
    return tuple(ordered[-limit:]) if len(ordered) > limit else tuple(ordered)


def _with_newest(ordered: tuple[Any, ...], item: Any, limit: int) -> tuple[Any, ...]:
    """``_newest((*ordered, item), limit)`` for the sorted ``recent`` window:
    an event newer than all it holds (nearly every one) is appended, not sorted in.

    >>> window = ((1, "a"), (3, "c"))
    >>> _with_newest(window, (4, "d"), 2), _with_newest(window, (2, "b"), 2)
    (((3, 'c'), (4, 'd')), ((2, 'b'), (3, 'c')))
    """
    if ordered and item < ordered[-1]:
        return _newest((*ordered, item), limit)
    out = (*ordered, item)
    return out[-limit:] if len(out) > limit else out


def _later(a: tuple[int, str] | None, b: tuple[int, str] | None) -> tuple[int, str] | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _pair(value: str | None, at_ms: int | None) -> tuple[int, str] | None:
    return None if value is None else (at_ms or 0, value)


def _record_order(
    orders: tuple[tuple[str, int, str, int], ...],
    order: tuple[str, int, str, int],
    limit: int,
) -> tuple[tuple[tuple[str, int, str, int], ...], tuple[str, int, str, int] | None, bool]:
    """Add one transaction to the order list: ``(orders, replaced, counted)``.

    A new order id is counted; a known one keeps the earliest record (by event
    time, then currency and amount), so the result does not depend on which
    channel reported the order first. ``replaced`` is the record it displaced.
    """
    for known in orders:
        if known[0] == order[0]:
            if order[1:] < known[1:]:
                rest = [o for o in orders if o[0] != order[0]]
                return _by_time((*rest, order), limit), known, False
            return orders, None, False
    return _by_time((*orders, order), limit), None, True


def _by_time(
    orders: tuple[tuple[str, int, str, int], ...], limit: int
) -> tuple[tuple[str, int, str, int], ...]:
    ordered = sorted(orders, key=lambda o: (o[1], o[0]))
    return tuple(ordered[-limit:]) if len(ordered) > limit else tuple(ordered)


def _consent_newer(at_ms: int, granted: bool, known_ms: int | None, known: bool | None) -> bool:
    """The newest change by event time wins; on a tie, revoking wins."""
    if known_ms is None:
        return True
    return at_ms > known_ms or (at_ms == known_ms and not granted and known is not False)


def _cancelled(item: Pending, last_ms_by_type: dict[str, int]) -> bool:
    return any(last_ms_by_type.get(t, -1) >= item.created_ms for t in item.cancel_on)


def apply_event(
    state: JourneyState | None,
    customer_id: str,
    event: TouchpointEvent,
    limits: JourneyLimits,
    occurred_ms: int | None = None,
    source: str = "",
    position: str | None = None,
    scoring: Scoring | None = None,
    entered: tuple[str, int] | None = None,
) -> tuple[JourneyState | None, Outcome]:
    """Fold one event into the journey (no stage, no decisions: see :func:`advance_stage`).

    ``source`` names the input record (``partition:offset``) and ``position``
    the record this journey read it from (the source when not given), so a
    redelivery of the same record changes nothing; ``entered``: the record
    entered One-ID at this customer's own identifier, from this touchpoints
    ``(partition, offset)``, which ``admitted`` keeps. Returns ``(None,
    "erased")`` for ``privacy.erase``: the journey is forgotten. Identifiers
    join a journey through One-ID linking (``streams.core.oneid``), not here.
    """
    if state is None:
        state = new_state(customer_id)
    position = source if position is None else position
    t_event = occurred_ms if occurred_ms is not None else int(event.occurred_at.timestamp() * 1000)
    repeat = seen_before(state, event.event_id, source, position, t_event, limits.recent_event_ids)
    if repeat == "redelivered":
        return state, repeat
    if repeat == "duplicate":
        t_dup = t_event
        update_dup = {
            "duplicates": state.duplicates + 1,
            # this record too, so that reading it again (a restart re-sending
            # it on a new position) is known as a redelivery, not counted twice
            "recent": _add_recent(
                state.recent, (t_dup, event.event_id, source), limits.recent_event_ids
            )
            if source
            else state.recent,
            "source_offsets": advance_position(state.source_offsets, position),
        }
        if entered is not None:
            update_dup["admitted"] = _admit(state.admitted, *entered)
        return evolve(state, update_dup), repeat
    if event.event_type == "privacy.erase":
        return None, "erased"
    t = t_event
    key = counter_key(event.event_type)
    newest_of_type = max(t, state.last_ms_by_type.get(key, t))
    update: dict[str, Any] = {
        "events_total": state.events_total + 1,
        "first_seen_ms": min(state.first_seen_ms, t) if state.events_total else t,
        "last_seen_ms": max(state.last_seen_ms, t),
        "channel_counts": _bump(state.channel_counts, event.channel),
        "event_counts": _bump(state.event_counts, key),
        "last_ms_by_type": {**state.last_ms_by_type, key: newest_of_type},
        "recent": _add_recent(state.recent, (t, event.event_id, source), limits.recent_event_ids),
        "source_offsets": advance_position(state.source_offsets, position),
    }
    if entered is not None:
        update["admitted"] = _admit(state.admitted, *entered)
    if scoring is not None:
        update.update(_score(state, event, key, t, scoring))
    ctx = event.context
    if ctx.live_room_id:
        known_room = _pair(state.last_live_room_id, state.last_live_room_ms)
        room = _later(known_room, (t, ctx.live_room_id))
        assert room is not None
        update["last_live_room_ms"], update["last_live_room_id"] = room
    if ctx.store_id:
        store = _later(_pair(state.last_store_id, state.last_store_ms), (t, ctx.store_id))
        assert store is not None
        update["last_store_ms"], update["last_store_id"] = store
    props = event.properties
    etype = event.event_type
    if etype == "live.view_end":
        update["watch_seconds"] = state.watch_seconds + props.watch_seconds
    elif etype in TRANSACTION_EVENTS:
        order = (props.order_id, t, props.currency, props.amount_minor)
        orders, replaced, counted = _record_order(state.orders, order, limits.order_ids)
        spend = state.spend_minor
        if counted:
            update["transactions"] = state.transactions + 1
            spend = _bump(spend, props.currency, props.amount_minor)
        elif replaced is not None:  # an earlier record of a known order
            spend = _bump(spend, replaced[2], -replaced[3])
            spend = _bump(spend, props.currency, props.amount_minor)
        update["orders"] = orders
        update["spend_minor"] = _nonzero(spend)
        update["last_purchase_ms"] = max(o[1] for o in orders)
    elif etype in ("store.return", "order.refund") and props.amount_minor:
        update["refunds_minor"] = _bump(state.refunds_minor, props.currency, props.amount_minor)
    elif etype in ("consent.granted", "consent.revoked"):
        consent_key = f"{props.channel}:{props.purpose}"
        granted = etype == "consent.granted"
        newer = _consent_newer(
            t, granted, state.consent_ms.get(consent_key), state.consent.get(consent_key)
        )
        if newer and (consent_key in state.consent or len(state.consent) < limits.consents):
            update["consent"] = {**state.consent, consent_key: granted}
            update["consent_ms"] = {**state.consent_ms, consent_key: t}
    if state.pending and any(etype in p.cancel_on for p in state.pending):
        update["pending"] = tuple(
            p for p in state.pending if not (etype in p.cancel_on and t >= p.created_ms)
        )
    return evolve(state, update), "processed"


def _score(
    state: JourneyState, event: TouchpointEvent, key: str, t: int, scoring: Scoring
) -> dict[str, Any]:
    """Engagement, lead points and touches for one event."""
    if event.event_type in NOT_TOUCHES:
        return {}
    engagement = dict(state.engagement)
    for name in (f"channel:{event.channel}", f"event:{key}"):
        engagement[name] = add_decayed(engagement.get(name), t, scoring.half_life_ms)
    touch = (t, event.channel)
    first, last = state.first_touch, state.last_touch
    return {
        "engagement": engagement,
        "lead_score": state.lead_score + scoring.points(event),
        "first_touch": touch if first is None else min(first, touch),
        "last_touch": touch if last is None else max(last, touch),
    }


def merge_states(
    survivor: JourneyState,
    absorbed: JourneyState,
    model: StageModel,
    limits: JourneyLimits,
    cause_event_id: str,
    scoring: Scoring | None = None,
) -> JourneyState:
    """Fold the journey of an absorbed customer into the survivor's (One-ID).

    Counters add, first seen is the earliest and last seen the latest, an
    order id known to both counts once, consent keeps the newest change per
    channel and purpose, recent lists keep the newest by event time, and the
    stage and its history are the union's: the earliest contributions to
    each counted metric are merged, and each stage is entered at the event
    that first met it (``advance_stage``). Where that is not known (a stage
    model with other conditions, a lapsed journey, one stored before v5) the
    furthest stage wins, histories interleave by entry time keeping only
    forward moves, and a stage only the merged metrics reach is entered at
    the later last-seen time, caused by the linking event. Merging journeys
    of disjoint event sets gives the journey of their union, field by field
    (tests/unit/test_core_merge.py).
    """
    a, b = survivor, absorbed
    orders = a.orders
    spend = _add(a.spend_minor, b.spend_minor)
    transactions = a.transactions + b.transactions
    for order in b.orders:
        with_order, replaced, counted = _record_order(orders, order, 2 * limits.order_ids)
        if not counted:  # both sides counted it: once is right, with the earliest record
            transactions -= 1
            loser = order if replaced is None else replaced
            spend = _bump(spend, loser[2], -loser[3])
        orders = with_order
    orders = _by_time(orders, limits.order_ids)
    recent_ids = {event_id for _, event_id, _ in a.recent}
    overlap = len({event_id for _, event_id, _ in b.recent if event_id in recent_ids})
    recent: dict[tuple[str, str], tuple[int, str, str]] = {}
    for seen in (*a.recent, *b.recent):
        known = recent.get(seen[1:])
        recent[seen[1:]] = seen if known is None else min(known, seen)
    consent = dict(a.consent)
    consent_ms = dict(a.consent_ms)
    for key, granted in b.consent.items():
        at = b.consent_ms.get(key, 0)
        known_ms = consent_ms.get(key)
        if key not in consent and len(consent) >= limits.consents:
            continue
        if key not in consent or _consent_newer(at, granted, known_ms, consent.get(key)):
            consent[key], consent_ms[key] = granted, at
    last_by_type = dict(a.last_ms_by_type)
    for key, at in b.last_ms_by_type.items():
        last_by_type[key] = max(at, last_by_type.get(key, at))
    pending: dict[tuple[str, str], Pending] = {}
    for item in (*a.pending, *b.pending):
        if not _cancelled(item, last_by_type):
            pending.setdefault((item.rule_id, item.cause_event_id), item)
    kept_pending = sorted(pending.values(), key=lambda p: (p.due_ms, p.rule_id, p.cause_event_id))
    entries: dict[str, StageEntry] = {}
    for entry in (*a.stage_history, *b.stage_history):
        known_entry = entries.get(entry.stage)
        if known_entry is None or (entry.entered_ms, entry.cause_event_id) < (
            known_entry.entered_ms,
            known_entry.cause_event_id,
        ):
            entries[entry.stage] = entry
    # One journey only moves forward: drop entries behind an earlier, further one.
    history: list[StageEntry] = []
    for entry in sorted(entries.values(), key=lambda e: (e.entered_ms, model.rank(e.stage))):
        if not history or model.rank(entry.stage) > model.rank(history[-1].stage):
            history.append(entry)
    stage = a.stage if model.rank(a.stage) >= model.rank(b.stage) else b.stage
    active = [j for j in (a, b) if j.events_total]
    room = _later(
        _pair(a.last_live_room_id, a.last_live_room_ms),
        _pair(b.last_live_room_id, b.last_live_room_ms),
    )
    store = _later(_pair(a.last_store_id, a.last_store_ms), _pair(b.last_store_id, b.last_store_ms))
    half_life = (scoring or Scoring()).half_life_ms
    engagement = dict(a.engagement)
    for name, counter in b.engagement.items():
        mine = engagement.get(name)
        engagement[name] = counter if mine is None else merge_decayed(mine, counter, half_life)
    touches = [x for x in (a.first_touch, b.first_touch) if x is not None]
    last_touches = [x for x in (a.last_touch, b.last_touch) if x is not None]
    merged = evolve(
        a,
        {
            "identifiers": merge_identifiers(a.identifiers, b.identifiers, limits.identifiers),
            "stage": stage,
            "stage_history": tuple(history[-limits.stage_history :]),
            "first_seen_ms": min(j.first_seen_ms for j in active) if active else 0,
            "last_seen_ms": max(j.last_seen_ms for j in active) if active else 0,
            "events_total": a.events_total + b.events_total - overlap,
            "duplicates": a.duplicates + b.duplicates + overlap,
            "channel_counts": _add(a.channel_counts, b.channel_counts),
            "event_counts": _add(a.event_counts, b.event_counts),
            "watch_seconds": a.watch_seconds + b.watch_seconds,
            "transactions": transactions,
            "spend_minor": _nonzero(spend),
            "refunds_minor": _add(a.refunds_minor, b.refunds_minor),
            "last_purchase_ms": max((o[1] for o in orders), default=None),
            "last_live_room_ms": None if room is None else room[0],
            "last_live_room_id": None if room is None else room[1],
            "last_store_ms": None if store is None else store[0],
            "last_store_id": None if store is None else store[1],
            "last_ms_by_type": last_by_type,
            "consent": consent,
            "consent_ms": consent_ms,
            "orders": orders,
            "recent": _newest(recent.values(), limits.recent_event_ids),
            "source_offsets": {
                p: max(a.source_offsets.get(p, -1), b.source_offsets.get(p, -1))
                for p in {*a.source_offsets, *b.source_offsets}
            },
            "fired": tuple(dict.fromkeys((*a.fired, *b.fired)))[-limits.fired :],
            "absorbed": tuple(dict.fromkeys((*a.absorbed, *b.absorbed)))[-limits.identifiers :],
            "feedback_counts": _add(a.feedback_counts, b.feedback_counts),
            "feedback_ids": tuple(dict.fromkeys((*a.feedback_ids, *b.feedback_ids)))[
                -limits.feedback_ids :
            ],
            "engagement": engagement,
            "lead_score": a.lead_score + b.lead_score,
            "first_touch": min(touches) if touches else None,
            "last_touch": max(last_touches) if last_touches else None,
            "pending": tuple(kept_pending[: limits.pending]),
            "decisions": merge_decisions(a.decisions, b.decisions, limits.decisions),
            "labelled": merge_labelled(a.labelled, b.labelled, limits.labelled),
            "last_decision_ms": max(
                (x for x in (a.last_decision_ms, b.last_decision_ms) if x is not None),
                default=None,
            ),
            "contacts": merge_contacts(a.contacts, b.contacts, limits.contacts),
            "ignored": {
                k: max(a.ignored.get(k, 0), b.ignored.get(k, 0)) for k in {*a.ignored, *b.ignored}
            },
        },
    )
    merged = evolve(merged, {"progress": _merge_progress(merged, a, b, model, limits)})
    decayed = any(model.decayed(entry.stage) for entry in merged.stage_history)
    if model.counted is not None and merged.progress is not None and not decayed:
        merged = _restage(merged, model.counted, limits)
    else:
        merged = advance_stage(merged, model, merged.last_seen_ms, cause_event_id, limits)
    return schedule_decay(merged, model, limits)


def merge_identifiers(a: tuple[str, ...], b: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """The union of two identifier lists, strongest first (see ``identity.order_key``)."""
    return tuple(sorted({*a, *b}, key=order_key))[:limit]


def advance_stage(
    state: JourneyState, model: StageModel, at_ms: int, cause_event_id: str, limits: JourneyLimits
) -> JourneyState:
    """Move the journey to the furthest stage its metrics reach, recording
    entry times.

    When every stage condition is a threshold on counted metrics (all shipped
    models: ``StageModel.counted``), a stage is entered at the event that
    first met its condition with the customer's events taken in event-time
    order: the same whatever order they arrived in, and what two merged
    journeys' union would give. Otherwise, and once a journey has decayed
    (``lapsed``), entries go by arrival: a decayed stage holds until a
    transaction newer than the decay; then the journey goes as far forward as
    its metrics reach.
    """
    counted = model.counted
    if counted is not None and state.progress is not None:
        progress, moved = _track(state, counted.needs, at_ms, cause_event_id, limits.progress)
        state = evolve(state, {"progress": progress})
        if not any(model.decayed(entry.stage) for entry in state.stage_history):
            return _restage(state, counted, limits) if moved or state.stage is None else state
    current = state.stage
    if model.decayed(current):
        entered = state.stage_history[-1].entered_ms if state.stage_history else 0
        if (state.last_purchase_ms or 0) <= entered:
            return state
        current = None
    stage = model.furthest(state.metric, current)
    if stage == state.stage or stage is None:
        return state
    history = (
        *state.stage_history,
        StageEntry(stage=stage, entered_ms=at_ms, cause_event_id=cause_event_id),
    )
    return evolve(state, {"stage": stage, "stage_history": history[-limits.stage_history :]})


Contribution = tuple[int, str, str, int]
Progress = dict[str, tuple[int, tuple[Contribution, ...]]]


def _cut(entries: Iterable[Contribution], need: int, limit: int) -> tuple[Contribution, ...]:
    """The earliest contributions (event time, then event id), each key once
    with its earliest, up to the one that brings their sum to ``need``."""
    best: dict[str, Contribution] = {}
    for entry in entries:
        known = best.get(entry[2])
        if known is None or entry[:2] < known[:2]:
            best[entry[2]] = entry
    out: list[Contribution] = []
    total = 0
    for entry in sorted(best.values()):
        out.append(entry)
        total += entry[3]
        if total >= need:
            break
    while len(out) > limit:  # many small ones below the threshold: combine the earliest
        first, second = out[0], out[1]
        out[:2] = [(second[0], second[1], second[2], first[3] + second[3])]
    return tuple(out)


def _track(
    state: JourneyState, needs: dict[str, int], at_ms: int, event_id: str, limit: int
) -> tuple[Progress, bool]:
    """Note what the event just applied added to each counted metric; and
    whether any earliest contribution changed (else the history did not)."""
    progress = dict(state.progress or {})
    moved = False
    for name, need in needs.items():
        value, entries = progress.get(name, (0, ()))
        if name == "transactions":  # one per order id, at its earliest record
            new = _new_orders(state.orders, entries, need, event_id)
            if new:
                cut = _cut((*entries, *new), need, limit)
                moved = moved or cut != entries
                entries = cut
            progress[name] = (state.transactions, entries)
            continue
        now = int(state.metric(name) or 0)
        if now == value:
            continue
        if now > value and not _beyond(entries, need, (at_ms, event_id)):
            cut = _cut((*entries, (at_ms, event_id, event_id, now - value)), need, limit)
            moved = moved or cut != entries
            entries = cut
        progress[name] = (now, entries)
    return progress, moved


def _restage(state: JourneyState, counted: Counted, limits: JourneyLimits) -> JourneyState:
    """Stage and history from the earliest contributions."""
    met = _exact_history(state.progress or {}, counted)
    return evolve(
        state,
        {
            "stage": met[-1].stage if met else None,
            "stage_history": tuple(met[-limits.stage_history :]),
        },
    )


def _beyond(entries: tuple[Contribution, ...], need: int, point: tuple[int, str]) -> bool:
    """Would a contribution at ``point`` fall after the cut (entries already
    reach ``need`` before it)?"""
    return bool(entries) and point > entries[-1][:2] and sum(e[3] for e in entries) >= need


def _new_orders(
    orders: tuple[tuple[str, int, str, int], ...],
    entries: tuple[Contribution, ...],
    need: int,
    event_id: str,
) -> list[Contribution]:
    """Orders whose earliest record the event just brought before the cut:
    a new order, or an earlier record of a known one (of one cut away too:
    reported late, it may now be among the first)."""
    known = {entry[2]: entry[:2] for entry in entries}
    full = sum(entry[3] for entry in entries) >= need
    cutoff = entries[-1][:2] if entries and full else None
    out: list[Contribution] = []
    for order_id, ms, _cur, _amount in orders:
        point = (ms, event_id)
        if order_id in known:
            if ms < known[order_id][0]:
                out.append((ms, event_id, order_id, 1))
        elif cutoff is None or point < cutoff:
            out.append((ms, event_id, order_id, 1))
    return out


def _merge_progress(
    merged: JourneyState, a: JourneyState, b: JourneyState, model: StageModel, limits: JourneyLimits
) -> Progress | None:
    if a.progress is None or b.progress is None:
        return None
    out: Progress = {}
    for name, need in (model.counted.needs if model.counted else {}).items():
        if name not in a.progress and name not in b.progress:
            continue
        both = (*a.progress.get(name, (0, ()))[1], *b.progress.get(name, (0, ()))[1])
        value = merged.transactions if name == "transactions" else int(merged.metric(name) or 0)
        out[name] = (value, _cut(both, need, limits.progress))
    return out


def _crossing(progress: Progress, names: tuple[str, ...], need: int) -> tuple[int, str] | None:
    """The event at which these metrics' sum first reached ``need``."""
    total = 0
    for ms, event_id, _key, amount in sorted(
        entry for name in names for entry in progress.get(name, (0, ()))[1]
    ):
        total += amount
        if total >= need:
            return ms, event_id
    return None


def _exact_history(progress: Progress, counted: Counted) -> list[StageEntry]:
    """Each stage at the event that first met its condition; a journey only
    moves forward, so one event meeting two stages enters the further."""
    met: list[tuple[tuple[int, str], int, str]] = []
    for rank, (stage_id, match, conditions) in enumerate(counted.stages):
        points = [_crossing(progress, names, n) for names, n in conditions]
        hits = [p for p in points if p is not None]
        if match == "any" and hits:
            met.append((min(hits), -rank, stage_id))
        elif match == "all" and len(hits) == len(points):
            met.append((max(hits), -rank, stage_id))
    history: list[StageEntry] = []
    furthest = -1
    for (ms, event_id), neg_rank, stage_id in sorted(met):
        if -neg_rank > furthest:
            history.append(StageEntry(stage=stage_id, entered_ms=ms, cause_event_id=event_id))
            furthest = -neg_rank
    return history


def schedule_decay(state: JourneyState, model: StageModel, limits: JourneyLimits) -> JourneyState:
    """Add the pending item that lapses the journey's stage ``after_days`` after
    its last transaction (cancelled by a newer transaction, then scheduled
    anew from it)."""
    for rule in model.decay:
        if state.stage != rule.from_stage or state.last_purchase_ms is None:
            continue
        if any(p.rule_id == rule.rule_id for p in state.pending):
            continue
        if len(state.pending) >= limits.pending:
            continue
        item = Pending(
            rule_id=rule.rule_id,
            due_ms=state.last_purchase_ms + int(rule.after_days * 86_400_000),
            created_ms=state.last_purchase_ms,
            cause_event_id=f"decay@{state.last_purchase_ms}",
            cancel_on=tuple(sorted(TRANSACTION_EVENTS)),
            output={"kind": "stage", "from": rule.from_stage, "to": rule.to},
        )
        state = evolve(state, {"pending": (*state.pending, item)})
    return state


def apply_feedback(
    state: JourneyState, feedback_id: str, outcome: str, limits: JourneyLimits
) -> JourneyState | None:
    """Count an action's outcome once (None: this feedback id was counted)."""
    if feedback_id in state.feedback_ids:
        return None
    return evolve(
        state,
        {
            "feedback_counts": _bump(state.feedback_counts, outcome),
            "feedback_ids": _push(state.feedback_ids, feedback_id, limits.feedback_ids),
        },
    )


def mark_fired(state: JourneyState, key: str, limits: JourneyLimits) -> JourneyState:
    return evolve(state, {"fired": _push(state.fired, key, limits.fired)})


def encode_state(state: JourneyState) -> bytes:
    """The table record of a journey (JSON, so it can be read by any tool).

    Fields at their defaults (empty lists and maps, zeros, nulls) are left
    out, as a reader fills them in (:func:`decode_state`): a journey is
    written on every change, and most customers use few of its fields.
    ``version`` is always written first.
    """
    body = state.__pydantic_serializer__.to_json(state, exclude_defaults=True)
    if state.version != STATE_VERSION:  # not a default: the serializer wrote it
        return body
    return b'{"version":%d,%s' % (STATE_VERSION, body[1:])


#: The journey's decision fields: a table of their own in the worker
#: (``streams.batch``), written only when they change, so the features of a
#: decision are not rewritten with every counter.
DECISION_FIELDS = frozenset({"decisions", "labelled", "last_decision_ms", "contacts", "ignored"})
DECISIONS_VERSION = 1


@dataclass(frozen=True)
class DecisionRecord:
    """The decision fields of a journey, as their table stores them."""

    decisions: tuple[Decision, ...] = ()
    labelled: tuple[Example, ...] = ()
    last_decision_ms: int | None = None
    contacts: tuple[Contact, ...] = ()
    ignored: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, state: JourneyState) -> DecisionRecord:
        return cls(
            state.decisions,
            state.labelled,
            state.last_decision_ms,
            state.contacts,
            state.ignored,
        )

    def same_as(self, state: JourneyState) -> bool:
        """Does the journey hold exactly these (identity first: unchanged fields
        of a ``model_copy`` are the same objects)?"""
        return (
            (state.decisions is self.decisions or state.decisions == self.decisions)
            and (state.labelled is self.labelled or state.labelled == self.labelled)
            and state.last_decision_ms == self.last_decision_ms
            and (state.contacts is self.contacts or state.contacts == self.contacts)
            and state.ignored == self.ignored
        )

    @property
    def empty(self) -> bool:
        return (
            not self.decisions
            and not self.labelled
            and self.last_decision_ms is None
            and not self.contacts
            and not self.ignored
        )

    def applied_to(self, state: JourneyState) -> JourneyState:
        if self.same_as(state):
            return state
        return evolve(
            state,
            {
                "decisions": self.decisions,
                "labelled": self.labelled,
                "last_decision_ms": self.last_decision_ms,
                "contacts": self.contacts,
                "ignored": self.ignored,
            },
        )


#: What a journeys table record leaves out (a set: what the serializer takes; never changed).
_NOT_RECENT: set[str] = {*DECISION_FIELDS, "recent"}


def encode_record(state: JourneyState, manifest: window.Manifest | None) -> bytes:
    """The journeys table's record of a journey: :func:`encode_state` without
    the decision fields (their own table) and without ``recent``, which is
    stored in pages (``streams.core.window``) that ``manifest`` names.

    >>> state = JourneyState(customer_id="member_id:M-1", recent=((5, "e1", "0:3"),))
    >>> encode_record(state, (0, 1, 1, 1))
    b'{"version":8,"customer_id":"member_id:M-1","window":[0,1,1,1]}'
    """
    body = state.__pydantic_serializer__.to_json(state, exclude_defaults=True, exclude=_NOT_RECENT)
    if state.version == STATE_VERSION:  # a default: the serializer left it out
        body = b'{"version":%d,%s' % (STATE_VERSION, body[1:])
    if manifest is None:
        return body
    return b'%s,"window":[%d,%d,%d,%d]}' % (body[:-1], *manifest)


def table_records(state: JourneyState) -> list[tuple[bytes, bytes]]:
    """A journey's journeys table records written from nothing: the pages of
    its window, then its record (``streams.batch`` writes changes; this is
    for tools that seed a table)."""
    key = state.customer_id.encode()
    stored = window.store(window.NO_PAGES, state.recent)
    out = [(window.page_key(key, n), window.encode_page(e)) for n, e in stored.write.items()]
    out.append((key, encode_record(state, stored.pages.manifest)))
    return out


def decode_journey(
    raw: bytes, page: Callable[[int], bytes | None]
) -> tuple[JourneyState, window.Pages]:
    """A journeys table record and the pages of its window, read with
    ``page(number)``. A record written before windows had pages holds its
    window itself: nothing is stored in pages yet (``window.NO_PAGES``)."""
    data = orjson.loads(raw)
    manifest = data.pop("window", None)
    state = _decoded(data)
    if manifest is None:
        return state, window.NO_PAGES
    pages = window.read(manifest, page)
    return state.model_copy(update={"recent": pages.window}), pages


def journeys_in(records: Mapping[bytes, bytes | None]) -> dict[str, JourneyState]:
    """The journeys a journeys table (or the last record per key of its
    changelog) holds, by customer id, windows read from their pages
    (decision fields are in the ``decisions`` table)."""
    out = {}
    for key, raw in records.items():
        if raw is None or window.is_page_key(key):
            continue

        def page(number: int, key: bytes = key) -> bytes | None:
            return records.get(window.page_key(key, number))

        out[key.decode()] = decode_journey(raw, page)[0]
    return out


def encode_decisions(record: DecisionRecord) -> bytes:
    """The decisions table's record (JSON)."""
    return orjson.dumps(
        {
            "version": DECISIONS_VERSION,
            "decisions": record.decisions,
            "labelled": record.labelled,
            "last_decision_ms": record.last_decision_ms,
            "contacts": record.contacts,
            "ignored": record.ignored,
        }
    )


def decode_decisions(raw: bytes) -> DecisionRecord:
    data = orjson.loads(raw)
    return DecisionRecord(
        tuple(Decision.from_dict(d) for d in data.get("decisions", ())),
        tuple(Example.from_dict(e) for e in data.get("labelled", ())),
        data.get("last_decision_ms"),
        tuple(Contact(**c) for c in data.get("contacts", ())),
        dict(data.get("ignored") or {}),
    )


def decode_state(raw: bytes) -> JourneyState:
    """Read a table record written by this or an older version of journeyflow.

    Missing fields take their defaults; unknown fields (from a newer writer)
    are ignored. A journeys table record (v8) keeps its window in pages:
    this reads it without (:func:`decode_journey` reads both). A future
    version that renames or reshapes a field adds a step to ``_MIGRATIONS``
    keyed by the version it upgrades from.
    """
    return _decoded(orjson.loads(raw))


def _decoded(data: dict[str, Any]) -> JourneyState:
    version = data.get("version", 1)
    while version in _MIGRATIONS:
        data = _MIGRATIONS[version](data)
        version = data["version"]
    return JourneyState.model_validate(data)


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 only added fields (their defaults fit a v1 record)."""
    return {**data, "version": 2}


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """v4 only added fields (scores start from nothing)."""
    return {**data, "version": 4}


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """v5 adds ``progress``; a v4 journey's history stays as written and goes
    on by arrival (None: the contributions before now are unknown)."""
    return {**data, "progress": None, "version": 5}


def _v5_to_v6(data: dict[str, Any]) -> dict[str, Any]:
    """v6 only added fields (no decisions recorded yet)."""
    return {**data, "version": 6}


def _v6_to_v7(data: dict[str, Any]) -> dict[str, Any]:
    """v7 only added fields (no actions chosen yet)."""
    return {**data, "version": 7}


def _v7_to_v8(data: dict[str, Any]) -> dict[str, Any]:
    """v8 keeps the journeys table's windows in pages; a v7 record holds its
    own (``recent``), which still reads as it is."""
    return {**data, "version": 8}


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 keeps event times with recent ids and orders. A v2 record did not
    have them: its ids take its last-seen time, its orders the last purchase
    (amounts unknown: only the order id is kept for dedupe). Its input
    positions were of the touchpoints topic, not the journey's own: dropped."""
    out = {k: v for k, v in data.items() if k not in ("recent_event_ids", "order_ids")}
    last = int(data.get("last_seen_ms") or 0)
    out["recent"] = [[last, event_id, ""] for event_id in data.get("recent_event_ids", [])]
    bought = int(data.get("last_purchase_ms") or last)
    out["orders"] = [[order_id, bought, "", 0] for order_id in data.get("order_ids", [])]
    out["source_offsets"] = {}
    out["version"] = 3
    return out


#: version -> function that upgrades a record of that version by one step.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2,
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
    7: _v7_to_v8,
}
