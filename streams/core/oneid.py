"""One-ID: which customer an identifier belongs to, and merging customers
when an event links their identifiers. Pure: the worker and ``journeyflow
replay`` drive :func:`handle` with their own tables and message transport.

The protocol
============

Keys and ownership. Every key is a typed identifier (``phone:<hash>``,
``member_id:M-77``). Two tables hold the state, both partitioned like the
internal topic that carries the messages, so the worker that owns a key's
partition owns everything about that key:

- ``aliases[i]``: :class:`Alias` of identifier ``i``: the customer it belongs
  to (``root``), whether it is being merged (``moving_to``), requests waiting
  for that merge to end (``parked``), and its link partners (the shared-
  identifier guard rail). No record means: its own customer, never linked.
- ``journeys[c]``: the journey of customer ``c``. A customer id is the
  smallest identifier (``identity.order_key``: strongest type first, then
  value) linked to it, its *root*; the journey lists every identifier the
  customer holds.

Every message is addressed to one key, travels on the internal topic keyed
by it, and its handler reads and writes only that key's records. No step is
serial across keys: traffic spreads over the partitions like the keys do.

Messages (``→ k``: sent to key ``k``):

``route`` → strongest identifier of an event not yet ruled out. Counts the
    event's other identifiers as this one's partners. If it is *shared* (more
    partners of one type than ``max_partners``), the next identifier is
    tried (``route`` again), so a shop's tablet or a test phone number links
    nobody and the event still finds a customer. Otherwise this identifier
    is the event's anchor: the event is applied here if the anchor is its own
    customer, else ``apply`` → its root.
``apply`` → a root: the engine steps the journey (actions, alerts, triggers).
    A key that is no longer a root forwards to its root (roots only ever
    point at smaller keys, so forwarding ends). The event's other identifiers
    that the journey does not hold yet get ``link`` → each.
``link`` → identifier ``j`` (from root ``r``). Guard rail as in ``route``.
    With ``s`` the root of ``j``: if ``s == r`` nothing; else the larger of
    the two must join the smaller: ``absorb`` → max(r, s).
``absorb`` → root ``b`` (join ``a``, ``a < b``). If ``b`` is no longer a root
    the request is re-aimed at its root; if ``b`` is already merging it is
    parked; otherwise ``b`` locks itself (``moving_to = a``) and sends
    ``propose`` → ``a`` with the identifiers it holds.
``propose`` → ``a``. Forwarded if ``a`` is not a root, parked if ``a`` is
    itself merging. Otherwise ``a`` decides, knowing both sides exactly (``b``
    is locked): a customer never holds two ``member_id`` or two
    ``wechat_unionid`` values, nor more than ``limits.identifiers``
    identifiers. Refused: ``refused`` → ``b`` and an ``identity_link_refused``
    alert. Accepted: ``a`` adds ``b``'s identifiers, publishes a
    :class:`~schemas.outputs.Merge` when ``b`` had a journey, and sends
    ``accepted`` → ``b``.
``accepted`` → ``b`` (naming the root that decided, which is ``a`` or, if the
    proposal was forwarded, ``a``'s root): sends its journey in ``fold`` → ``a``, points its alias
    at ``a`` (events for ``b`` now forward there), drops its journey, tells
    its other identifiers ``repoint`` → each (a shortcut: forwarding alone is
    correct), and re-handles what it had parked (those now forward to ``a``).
``refused`` → ``b``: unlocks and re-handles what it had parked.
``fold`` → ``a`` (forwarded to ``a``'s root if ``a`` moved on meanwhile):
    merges the journeys (``journey.merge_states``) unless this customer was
    folded in before (a redelivery).
``repoint`` → ``m``: ``m``'s root becomes the survivor if it was the absorbed.
``feedback`` → the customer id an action named: counted on that customer's
    journey, or forwarded to its root if it has been merged since (feedback
    follows the survivor); a feedback id is counted once.
``forget`` → ``m``: a ``privacy.erase`` reached ``m``'s root, which dropped its
    journey and alias; ``m`` drops its alias if it still points there. Later
    events for any of them start a new, unlinked customer. A root erased
    while it was merging also tells the root it proposed to, which drops the
    identifiers it had accepted for it (its journey had not come yet).

Convergence. A merge only moves a customer to a smaller key, and a root
locks itself only while it waits for a smaller one, so waits cannot form a
cycle and every merge ends. When all messages are handled, each linked set
of identifiers is one customer whose id is its smallest member, whatever the
order of events, partitions or workers: the same identities always give the
same customer id. Events applied to a customer before it was merged travel
with its journey; the fold adds them in (counters add, see
``merge_states``).

Crashes. The worker sends a message's effects (messages, outputs) and waits
for the broker's acks before it writes the tables, so a crash repeats work,
never loses it. Each handler tolerates its message twice: ``route``,
``link`` and ``repoint`` are idempotent; a second ``absorb`` for a merge in
progress is ignored; a second ``propose`` is answered the same way (same
merge id); a second ``accepted`` or ``refused`` finds the lock gone; a
second ``fold`` finds the absorbed id in ``journey.absorbed``; an ``apply``
seen again is a redelivery (``journey.seen_before``); ``forget`` is
idempotent. A worker killed
half-way through a merge leaves a locked root or a message in the topic;
the next owner of the partition resumes from there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from models.labels import Example
from schemas.codec import encode, validate_touchpoint
from schemas.events import TouchpointEvent
from schemas.outputs import Alert, DeadLetter, Feedback, FieldError, Merge
from streams.core.actions import Budget, on_feedback
from streams.core.engine import CoreConfig, step
from streams.core.identity import order_key, typed_identifiers
from streams.core.ids import output_id
from streams.core.ingest import Admitted, RecordMeta, dead_letter, epoch_ms
from streams.core.journey import (
    JourneyState,
    Outcome,
    apply_feedback,
    decode_state,
    encode_state,
    is_redelivery,
    merge_identifiers,
    merge_states,
    new_state,
    parse_source,
)
from streams.core.rules import Output

#: At most one of each per customer: a link that would add a second is refused.
EXCLUSIVE_TYPES = ("member_id", "wechat_unionid")
#: Requests an identifier keeps while it is merging; more wait in the topic.
MAX_PARKED = 64


@dataclass(frozen=True)
class OneIdConfig:
    core: CoreConfig
    #: An identifier seen with more distinct partners of one type than this is
    #: shared (a shop tablet, a test phone): it stops linking.
    max_partners: int = 20
    #: An event this much older than its customer's partition clock is late:
    #: it updates the journey but decides nothing (no actions, no alerts).
    late_after_ms: int = 3_600_000
    #: Beyond this it is dead-lettered (``too_late``) instead.
    too_late_ms: int = 30 * 86_400_000
    #: Named in the dead letters of events found too late.
    input_topic: str = "journeyflow.touchpoints"


class Alias(BaseModel):
    """What one identifier knows about itself (the ``aliases`` table)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = 1
    #: The customer this identifier belongs to; None: itself.
    root: str | None = None
    #: Set while this root waits to join a smaller one.
    moving_to: str | None = None
    parked: tuple[dict[str, Any], ...] = ()
    #: Partner type -> short digests of distinct identifiers seen with this one
    #: (at most ``max_partners + 1`` kept per type).
    partners: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    shared: bool = False
    #: Touchpoints partition -> highest offset of the records that entered
    #: One-ID here and went on elsewhere (forwarded to the root, routed on
    #: from a shared identifier; and, once this root joined another, what its
    #: journey had applied here). See :func:`_admitted_before`.
    admitted: dict[str, int] = Field(default_factory=dict)


# --- messages ------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    event: TouchpointEvent
    source: str
    tried: tuple[str, ...] = ()
    #: History being imported: update journeys, decide nothing.
    quiet: bool = False
    kind: Literal["route"] = "route"


@dataclass(frozen=True)
class Apply:
    event: TouchpointEvent
    source: str
    anchor: str
    links: tuple[str, ...] = ()
    quiet: bool = False
    kind: Literal["apply"] = "apply"


@dataclass(frozen=True)
class Link:
    root: str
    via: str
    cause: str
    at_ms: int
    kind: Literal["link"] = "link"


@dataclass(frozen=True)
class Absorb:
    into: str
    cause: str
    at_ms: int
    kind: Literal["absorb"] = "absorb"


@dataclass(frozen=True)
class Propose:
    sender: str
    #: The root the sender asked (and locked for); a forward may reach another.
    target: str
    identifiers: tuple[str, ...]
    has_journey: bool
    cause: str
    at_ms: int
    kind: Literal["propose"] = "propose"


@dataclass(frozen=True)
class Accepted:
    #: The root that decided (the proposal's target, or where it was forwarded).
    into: str
    target: str
    cause: str
    kind: Literal["accepted"] = "accepted"


@dataclass(frozen=True)
class Refused:
    into: str
    target: str
    kind: Literal["refused"] = "refused"


@dataclass(frozen=True)
class Fold:
    sender: str
    journey: JourneyState
    cause: str
    kind: Literal["fold"] = "fold"


@dataclass(frozen=True)
class Repoint:
    old: str
    new: str
    kind: Literal["repoint"] = "repoint"


@dataclass(frozen=True)
class FeedbackMsg:
    """Feedback on an action, looking for its customer (who may have been merged
    into another since the action was decided)."""

    feedback: Feedback
    kind: Literal["feedback"] = "feedback"


@dataclass(frozen=True)
class Forget:
    root: str
    #: Set when sent to the root an erased customer was merging into: the
    #: identifiers that root may already hold for it.
    identifiers: tuple[str, ...] = ()
    kind: Literal["forget"] = "forget"


Message = (
    Route
    | Apply
    | Link
    | Absorb
    | Propose
    | Accepted
    | Refused
    | Fold
    | Repoint
    | Forget
    | FeedbackMsg
)

_TYPES: dict[str, type[Any]] = {
    "route": Route,
    "apply": Apply,
    "link": Link,
    "absorb": Absorb,
    "propose": Propose,
    "accepted": Accepted,
    "refused": Refused,
    "fold": Fold,
    "repoint": Repoint,
    "forget": Forget,
    "feedback": FeedbackMsg,
}


def message_to_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in msg.__dataclass_fields__:
        value = getattr(msg, name)
        if isinstance(value, JourneyState):
            value = orjson.Fragment(encode_state(value))
        elif isinstance(value, BaseModel):
            value = orjson.Fragment(encode(value))
        out[name] = value
    return out


def encode_message(msg: Message) -> bytes:
    """The internal topic's record value (JSON)."""
    return orjson.dumps(message_to_dict(msg))


def message_from_dict(data: dict[str, Any]) -> Message:
    kind = data["kind"]
    cls = _TYPES[kind]
    fields = dict(data)
    if "event" in fields:
        fields["event"] = validate_touchpoint(fields["event"])
    if kind == "fold":
        fields["journey"] = decode_state(orjson.dumps(fields["journey"]))
    if kind == "feedback":
        fields["feedback"] = Feedback.model_validate(fields["feedback"])
    for name in ("tried", "links", "identifiers"):
        if name in fields:
            fields[name] = tuple(fields[name])
    msg: Message = cls(**fields)
    return msg


def decode_message(raw: bytes) -> Message:
    return message_from_dict(orjson.loads(raw))


def message_event_ms(msg: Message) -> int | None:
    """Event time of the touchpoint a message carries (``route``, ``apply``)."""
    event = getattr(msg, "event", None)
    return None if event is None else epoch_ms(event)


def route_event(admitted: Admitted, *, quiet: bool = False) -> tuple[str, Route]:
    """Where an admitted event enters identity resolution: its strongest
    identifier. ``quiet``: history being imported (decides nothing)."""
    first = typed_identifiers(admitted.event.identities)[0]
    return first, Route(admitted.event, admitted.source, quiet=quiet)


# --- effects -------------------------------------------------------------------

Refusal = Literal["conflict_member_id", "conflict_wechat_unionid", "too_many_identifiers", "shared"]


@dataclass(slots=True)
class Effects:
    """What handling one message did: the key's new records, and what to send."""

    alias: Alias | None
    journey: JourneyState | None
    alias_changed: bool = False
    journey_changed: bool = False
    sends: list[tuple[str, Message]] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    merges: list[Merge] = field(default_factory=list)
    #: Due times the journey's new pending items need indexed.
    scheduled: list[int] = field(default_factory=list)
    #: Decisions labelled here (``streams.core.decisions``): for the trainer.
    examples: list[Example] = field(default_factory=list)
    #: Outcome of an event applied here (for the counts).
    outcome: Outcome | None = None
    #: The event applied here was late (it decided nothing).
    late: bool = False
    #: Events found too late to apply (``too_late``).
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: What became of feedback handled here: counted, repeated, or unknown
    #: (no customer by that id).
    feedback: Literal["counted", "repeated", "unknown"] | None = None
    #: A catalog action's delivery reported here: ms after its ``not_before``.
    delivered_after_ms: int | None = None
    refusals: list[Refusal] = field(default_factory=list)
    #: Catalog actions left out at decisions here, by reason.
    left_out: dict[str, int] = field(default_factory=dict)
    #: Decisions recorded here, and open ones dropped unlabelled (``StepResult.decisions``).
    decisions: dict[str, int] = field(default_factory=dict)
    #: Messages to send through the topic even when addressed to this key
    #: (``handle`` applies other messages for its own key at once).
    deferred: list[tuple[str, Message]] = field(default_factory=list)

    def set_alias(self, alias: Alias | None) -> None:
        self.alias, self.alias_changed = alias, True

    def set_journey(self, journey: JourneyState | None) -> None:
        self.journey, self.journey_changed = journey, True


def handle(
    key: str,
    msg: Message,
    alias: Alias | None,
    journey: JourneyState | None,
    config: OneIdConfig,
    position: str = "",
    clock_ms: int | None = None,
    budget: Budget | None = None,
) -> Effects:
    """Handle one message addressed to ``key`` whose records are ``alias`` and
    ``journey``. ``position`` is where it was read (``partition:offset``), so
    a redelivered record changes no journey twice; ``clock_ms`` is the
    partition's event-time clock, against which an event is late; ``budget``
    the partition's burst budget for actions (``actions.Budget``). Messages
    this produces for the same key are handled here too, in order."""
    fx = Effects(alias, journey)
    queue: list[Message] = [msg]
    first = True
    ctx = _Context(config, clock_ms, budget)
    while queue:
        current = queue.pop(0)
        sends_before = len(fx.sends)
        _HANDLERS[current.kind](key, current, fx, ctx, position if first else "")
        first = False
        fresh = fx.sends[sends_before:]
        del fx.sends[sends_before:]
        for target, out in fresh:
            if target == key:
                queue.append(out)
            else:
                fx.sends.append((target, out))
    fx.sends.extend(fx.deferred)
    fx.deferred.clear()
    return fx


@dataclass(frozen=True, slots=True)
class _Context:
    config: OneIdConfig
    clock_ms: int | None
    budget: Budget | None = None

    @property
    def core(self) -> CoreConfig:
        return self.config.core

    @property
    def max_partners(self) -> int:
        return self.config.max_partners


def root_of(key: str, alias: Alias | None) -> str:
    return key if alias is None or alias.root is None else alias.root


def _digest(identifier: str) -> str:
    return hashlib.blake2b(identifier.encode(), digest_size=6).hexdigest()


def _note_partners(
    key: str, alias: Alias | None, partners: Iterable[str], limit: int
) -> tuple[Alias | None, bool, bool]:
    """Remember partners; ``(alias, changed, newly_shared)``."""
    current = alias or Alias()
    table = dict(current.partners)
    changed = False
    for partner in partners:
        kind = partner.partition(":")[0]
        known = table.get(kind, ())
        digest = _digest(partner)
        if digest in known or len(known) > limit:
            continue
        table[kind] = (*known, digest)
        changed = True
    if not changed:
        return alias, False, False
    shared = current.shared or any(len(v) > limit for v in table.values())
    updated = current.model_copy(update={"partners": table, "shared": shared})
    return updated, True, shared and not current.shared


def _shared_alert(key: str, cause: str, at_ms: int) -> Alert:
    return Alert(
        id=output_id("shared_identifier", key, cause),
        customer_id=key,
        cause_event_id=cause,
        rule_id="shared_identifier",
        decided_at=_at(at_ms),
        reason=(
            f"{key.partition(':')[0]} seen with too many different people: "
            "it no longer links customers (events are still processed)"
        ),
        alert_type="shared_identifier",
        severity="warning",
        routing_key="identity",
        details={"identifier": key},
    )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _route(key: str, msg: Route, fx: Effects, config: _Context, position: str) -> None:
    # routed on from a shared identifier: it was checked where it entered
    source = None if msg.tried else parse_source(msg.source)
    if source is not None and _admitted_before(fx, *source):
        fx.outcome = "redelivered"
        return
    _anchor(key, msg, fx, config, position, source)
    if source is not None and fx.outcome != "erased":
        _note_admitted(fx, *source)


def _admitted_before(fx: Effects, partition: str, offset: int) -> bool:
    """Did a record of this touchpoints partition at or after ``offset`` enter
    One-ID here before?

    The first stage sends each touchpoint to its event's strongest identifier,
    and a partition's records to a key come in offset order (one producer
    per touchpoints partition; a partition's new owner starts after what
    its last owner committed, which it had sent). So a record at or below the
    highest offset seen here is the same record admitted again: the first
    stage was stopped (kill -9, a rebalance) after sending it and before
    committing. It may come after any number of the customer's records,
    more than the journey's dedupe window holds. The highest offset is kept
    with what the record changed: the journey when it was applied here, else
    the alias (the records it sent on were acknowledged before either is
    written, ``streams.batch``)."""
    seen = fx.alias.admitted.get(partition, -1) if fx.alias is not None else -1
    if fx.journey is not None:
        seen = max(seen, fx.journey.admitted.get(partition, -1))
    return offset <= seen


def _note_admitted(fx: Effects, partition: str, offset: int) -> None:
    """Keep the offset with the alias, unless the journey applied the record
    here and keeps it (``step(entered=...)``)."""
    if fx.journey is not None and fx.journey.admitted.get(partition, -1) >= offset:
        return
    alias = fx.alias or Alias()
    fx.set_alias(alias.model_copy(update={"admitted": {**alias.admitted, partition: offset}}))


def _anchor(
    key: str,
    msg: Route,
    fx: Effects,
    config: _Context,
    position: str,
    entered: tuple[str, int] | None,
) -> None:
    event = msg.event
    ids = [i for i in typed_identifiers(event.identities) if i not in msg.tried]
    others = [i for i in ids if i != key]
    if others:
        alias, changed, newly = _note_partners(key, fx.alias, others, config.max_partners)
        if changed:
            fx.set_alias(alias)
        if newly:
            fx.outputs.append(_shared_alert(key, event.event_id, epoch_ms(event)))
            fx.refusals.append("shared")
        if fx.alias is not None and fx.alias.shared:
            fx.sends.append((others[0], Route(event, msg.source, (*msg.tried, key), msg.quiet)))
            return
    root = root_of(key, fx.alias)
    forward = Apply(event, msg.source, key, tuple(others), msg.quiet)
    if root == key:
        _apply(key, forward, fx, config, position, entered)
    else:
        fx.sends.append((root, forward))


def _apply(
    key: str,
    msg: Apply,
    fx: Effects,
    config: _Context,
    position: str,
    entered: tuple[str, int] | None = None,
) -> None:
    root = root_of(key, fx.alias)
    if root != key:
        fx.sends.append((root, msg))
        return
    event = msg.event
    at_ms = epoch_ms(event)
    late_by = 0 if msg.quiet or config.clock_ms is None else config.clock_ms - at_ms
    if late_by > config.config.too_late_ms:
        fx.dead_letters.append(_too_late(event, msg.source, late_by, config.config))
        return
    fx.late = late_by > config.config.late_after_ms
    admitted = Admitted(event, key, at_ms, msg.source)
    quiet = msg.quiet or fx.late
    result = step(
        fx.journey, admitted, config.core, position or None, quiet, entered, config.budget
    )
    fx.outcome = result.outcome
    fx.outputs.extend(result.outputs)
    fx.scheduled.extend(result.scheduled)
    fx.examples.extend(result.examples)
    for reason, n in result.left_out.items():
        fx.left_out[reason] = fx.left_out.get(reason, 0) + n
    for what, n in result.decisions.items():
        fx.decisions[what] = fx.decisions.get(what, 0) + n
    if result.outcome == "redelivered":
        return
    if result.outcome == "erased":
        _erase(key, fx)
        return
    fx.set_journey(result.state)
    held = set(result.state.identifiers) if result.state is not None else set()
    for other in msg.links:
        if other not in held:
            fx.sends.append((other, Link(key, msg.anchor, event.event_id, at_ms)))


def _too_late(event: TouchpointEvent, source: str, late_by: int, config: OneIdConfig) -> DeadLetter:
    partition, _, offset = source.partition(":")
    meta = RecordMeta(
        config.input_topic,
        int(partition) if partition.isdigit() else -1,
        int(offset) if offset.isdigit() else -1,
    )
    days = late_by / 86_400_000
    return dead_letter(
        encode(event),  # as admitted: PII already hashed
        meta,
        "too_late",
        f"occurred_at is {days:.1f} days behind its partition's event-time clock "
        f"(allowed: {config.too_late_ms / 86_400_000:.0f}); use journeyflow import for history",
        [FieldError(field="occurred_at", message="too far in the past")],
        event.event_id,
    )


def _link(key: str, msg: Link, fx: Effects, config: _Context, position: str) -> None:
    alias, changed, newly = _note_partners(key, fx.alias, [msg.via], config.max_partners)
    if changed:
        fx.set_alias(alias)
    if newly:
        fx.outputs.append(_shared_alert(key, msg.cause, msg.at_ms))
    if fx.alias is not None and fx.alias.shared:
        fx.refusals.append("shared")
        return
    mine = root_of(key, fx.alias)
    if mine == msg.root:
        return
    small, large = sorted((mine, msg.root), key=order_key)
    fx.sends.append((large, Absorb(small, msg.cause, msg.at_ms)))


def _park(fx: Effects, key: str, msg: Message) -> None:
    alias = fx.alias or Alias()
    if len(alias.parked) >= MAX_PARKED:
        # comes round again through the topic (handled here at once, it would
        # find the same full list forever)
        fx.deferred.append((key, msg))
        return
    fx.set_alias(alias.model_copy(update={"parked": (*alias.parked, message_to_dict(msg))}))


def _absorb(key: str, msg: Absorb, fx: Effects, config: _Context, position: str) -> None:
    mine = root_of(key, fx.alias)
    if mine != key:  # merged meanwhile: the request is really for my root
        if mine != msg.into:
            small, large = sorted((mine, msg.into), key=order_key)
            fx.sends.append((large, Absorb(small, msg.cause, msg.at_ms)))
        return
    if msg.into == key:
        return
    if order_key(msg.into) > order_key(key):  # aimed the wrong way: the other joins me
        fx.sends.append((msg.into, Absorb(key, msg.cause, msg.at_ms)))
        return
    alias = fx.alias or Alias()
    if alias.moving_to is not None:
        if alias.moving_to != msg.into:
            _park(fx, key, msg)
        return
    fx.set_alias(alias.model_copy(update={"moving_to": msg.into}))
    held = fx.journey.identifiers if fx.journey is not None else (key,)
    propose = Propose(key, msg.into, held, fx.journey is not None, msg.cause, msg.at_ms)
    fx.sends.append((msg.into, propose))


def _conflict(a: Iterable[str], b: Iterable[str], limit: int) -> Refusal | None:
    a, b = tuple(a), tuple(b)
    for kind in EXCLUSIVE_TYPES:
        mine = {i for i in a if i.startswith(kind + ":")}
        theirs = {i for i in b if i.startswith(kind + ":")}
        if mine and theirs and mine != theirs:
            return "conflict_member_id" if kind == "member_id" else "conflict_wechat_unionid"
    if len({*a, *b}) > limit:
        return "too_many_identifiers"
    return None


def _refused_alert(key: str, msg: Propose, reason: Refusal) -> Alert:
    what = {
        "conflict_member_id": "both hold a member_id, and they differ",
        "conflict_wechat_unionid": "both hold a wechat_unionid, and they differ",
        "too_many_identifiers": "together they would hold too many identifiers",
        "shared": "the identifier is shared",
    }[reason]
    return Alert(
        id=output_id("identity_link_refused", key, f"{msg.sender}\x1f{msg.cause}"),
        customer_id=key,
        cause_event_id=msg.cause,
        rule_id="identity_link_refused",
        decided_at=_at(msg.at_ms),
        reason=f"not linked to {msg.sender}: {what}; the event was still processed",
        alert_type="identity_link_refused",
        severity="warning",
        routing_key="identity",
        details={"refusal": reason, "other_customer": msg.sender},
    )


def _propose(key: str, msg: Propose, fx: Effects, config: _Context, position: str) -> None:
    mine = root_of(key, fx.alias)
    if mine != key:
        fx.sends.append((mine, msg))
        return
    if fx.alias is not None and fx.alias.moving_to is not None:
        _park(fx, key, msg)
        return
    journey = fx.journey or new_state(key)
    limits = config.core.limits
    if msg.sender in journey.identifiers and set(msg.identifiers) <= set(journey.identifiers):
        fx.sends.append((msg.sender, Accepted(key, msg.target, msg.cause)))  # asked again
        return
    refusal = _conflict(journey.identifiers, msg.identifiers, limits.identifiers)
    if refusal is not None:
        fx.refusals.append(refusal)
        fx.outputs.append(_refused_alert(key, msg, refusal))
        fx.sends.append((msg.sender, Refused(key, msg.target)))
        return
    held = merge_identifiers(journey.identifiers, msg.identifiers, limits.identifiers)
    fx.set_journey(journey.model_copy(update={"identifiers": held}))
    if msg.has_journey:
        fx.merges.append(
            Merge(
                id=output_id("merge", key, f"{msg.sender}\x1f{msg.cause}"),
                survivor=key,
                absorbed=msg.sender,
                absorbed_identifiers=sorted(msg.identifiers, key=order_key),
                cause_event_id=msg.cause,
                decided_at=_at(msg.at_ms),
                reason="an event carried identifiers of both customers",
            )
        )
    fx.sends.append((msg.sender, Accepted(key, msg.target, msg.cause)))


def _unpark(key: str, fx: Effects, alias: Alias) -> Alias:
    for parked in alias.parked:
        fx.sends.append((key, message_from_dict(parked)))
    return alias.model_copy(update={"parked": (), "moving_to": None})


def _accepted(key: str, msg: Accepted, fx: Effects, config: _Context, position: str) -> None:
    alias = fx.alias
    if alias is None or alias.moving_to != msg.target:
        return  # answered before (a redelivery)
    admitted = alias.admitted
    if fx.journey is not None:
        fx.sends.append((msg.into, Fold(key, fx.journey, msg.cause)))  # the decider
        for member in fx.journey.identifiers:
            if member != key:
                fx.sends.append((member, Repoint(key, msg.into)))
        # what entered here stays known here (events for this key now go on)
        admitted = dict(admitted)
        for partition, offset in fx.journey.admitted.items():
            admitted[partition] = max(offset, admitted.get(partition, -1))
        fx.set_journey(None)
    unparked = _unpark(key, fx, alias)
    fx.set_alias(unparked.model_copy(update={"root": msg.into, "admitted": admitted}))


def _refused(key: str, msg: Refused, fx: Effects, config: _Context, position: str) -> None:
    alias = fx.alias
    if alias is None or alias.moving_to != msg.target:
        return
    fx.set_alias(_unpark(key, fx, alias))


def _fold(key: str, msg: Fold, fx: Effects, config: _Context, position: str) -> None:
    mine = root_of(key, fx.alias)
    if mine != key:
        fx.sends.append((mine, msg))
        return
    journey = fx.journey or new_state(key)
    core = config.core
    if msg.sender in journey.absorbed:
        return
    # at or before the furthest position, yet not among the absorbed: applied
    # only if the (bounded) list may have let it go; else it was skipped
    full = len(journey.absorbed) >= core.limits.identifiers
    if position and full and is_redelivery(journey, position):
        return
    absorbed = msg.journey.model_copy(update={"customer_id": key})
    merged = merge_states(journey, absorbed, core.stage_model, core.limits, msg.cause, core.scoring)
    absorbed_ids = (*merged.absorbed, msg.sender)[-core.limits.identifiers :]
    merged = merged.model_copy(update={"absorbed": absorbed_ids})
    before = {(p.rule_id, p.cause_event_id) for p in journey.pending}
    fx.scheduled.extend(
        p.due_ms for p in merged.pending if (p.rule_id, p.cause_event_id) not in before
    )
    if core.decisions is not None:  # the absorbed customer's decisions get labelled here
        known = {d.decision_id for d in journey.decisions}
        for decision in merged.decisions:
            if decision.decision_id not in known:
                fx.scheduled.extend(decision.due_ms(core.decisions.horizons_ms))
    fx.set_journey(merged)


def _erase(key: str, fx: Effects) -> None:
    """``privacy.erase``: the journey goes, and every identifier forgets it
    belonged to this customer (their alias records are deleted, which writes
    tombstones to the compacted changelogs). Later events start anew."""
    held = fx.journey.identifiers if fx.journey is not None else (key,)
    for member in held:
        if member != key:
            fx.sends.append((member, Forget(key)))
    if fx.alias is not None and fx.alias.moving_to is not None:  # erased mid-merge
        fx.sends.append((fx.alias.moving_to, Forget(key, held)))
    fx.set_journey(None)
    fx.set_alias(None)


def _feedback(key: str, msg: FeedbackMsg, fx: Effects, config: _Context, position: str) -> None:
    mine = root_of(key, fx.alias)
    if mine != key:  # merged since the action: the survivor gets it
        fx.sends.append((mine, msg))
        return
    if fx.journey is None:
        fx.feedback = "unknown"
        return
    fb = msg.feedback
    counted = apply_feedback(fx.journey, fb.feedback_id, fb.outcome, config.core.limits)
    if counted is None:
        fx.feedback = "repeated"
        return
    fx.feedback = "counted"
    decisions = config.core.decisions
    if decisions is not None and decisions.actions is not None:
        settled = on_feedback(counted, fb, decisions.actions)
        counted = settled.state
        fx.examples.extend(settled.examples)
        fx.scheduled.extend(settled.scheduled)
        fx.delivered_after_ms = settled.delivered_after_ms
    fx.set_journey(counted)


def _forget(key: str, msg: Forget, fx: Effects, config: _Context, position: str) -> None:
    mine = root_of(key, fx.alias)
    if mine == msg.root:
        fx.set_alias(None)
    elif msg.identifiers and mine != key:
        fx.sends.append((mine, msg))  # the merge target moved on: its root holds them
    elif msg.identifiers and fx.journey is not None and msg.root in fx.journey.identifiers:
        kept = tuple(i for i in fx.journey.identifiers if i not in msg.identifiers)
        fx.set_journey(fx.journey.model_copy(update={"identifiers": kept}))


def _repoint(key: str, msg: Repoint, fx: Effects, config: _Context, position: str) -> None:
    if fx.alias is not None and fx.alias.root == msg.old:
        fx.set_alias(fx.alias.model_copy(update={"root": msg.new}))


_HANDLERS: dict[str, Any] = {
    "route": _route,
    "apply": _apply,
    "link": _link,
    "absorb": _absorb,
    "propose": _propose,
    "accepted": _accepted,
    "refused": _refused,
    "fold": _fold,
    "repoint": _repoint,
    "forget": _forget,
    "feedback": _feedback,
}


def encode_alias(alias: Alias) -> bytes:
    return alias.__pydantic_serializer__.to_json(alias)


def decode_alias(raw: bytes) -> Alias:
    return Alias.model_validate_json(raw)


__all__ = [
    "Absorb",
    "Accepted",
    "Alias",
    "Apply",
    "Effects",
    "FeedbackMsg",
    "Fold",
    "Forget",
    "Link",
    "Message",
    "OneIdConfig",
    "Propose",
    "Refused",
    "Repoint",
    "Route",
    "decode_alias",
    "decode_message",
    "encode_alias",
    "encode_message",
    "handle",
    "message_event_ms",
    "route_event",
]
