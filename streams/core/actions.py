"""Next-best-action: the action catalog, contact policies and arbitration
(issue #10).

At a decision point (``streams.core.decisions``) the engine asks which
action, if any, is worth sending this customer now:

1. **Eligible**: the catalog's actions whose stages, tags, decision events,
   live-room need and consent hold, and for which the customer has an
   identifier the action's channel can deliver to.
2. **Allowed** by the contact policies, checked at the time the action may
   be delivered (``not_before``: the decision time, or the end of the quiet
   hours in the customer's time zone when the action defers): caps per
   channel per local day and per rolling week, caps over all channels, a
   cooldown per action, suppression after a purchase, and suppression of an
   action ignored ``ignored_limit`` times in a row. The contact history
   (``streams.core.contacts``) follows the person through One-ID merges.
3. **Arbitrated**: priority = P(response | action, segment) × propensity ×
   value × lever − cost. P(response) is Thompson-sampled from the action's
   Beta posterior (``models.bandit``: the catalog's prior plus the outcomes
   fed back), so new actions get tried and proven ones exploited; the
   propensity is the decision's model score for the action's target
   (``convert`` or ``churn``), or, until that model has learned from enough
   labelled examples, a rule-based stand-in (the lead score for convert, the
   time since the last purchase for churn), and the reasons say which. The
   highest priority above zero wins; the action records the probability
   with which it was chosen.

Rules (``streams.core.rules``) decide some actions themselves (a coupon on a
price question, a reminder): an action rule names the catalog action it is
sent as, and :func:`send_as` checks the same consent, identifier, quiet
hours and policies for it, holds it out for the holdout and records the
contact. Over all customers, a burst budget per partition of the journeys
(``Policies.burst``, :class:`Budget`) caps the sends per minute of event time.

A deterministic share of customers (``holdout_percent``, by a salted hash
of the customer id: the same across restarts, and a merge keeps the
survivor's group) is the holdout: the engine logs what it would have sent
them (``holdout`` true, on their own topic) and sends nothing, so lift is
measured intention-to-treat. Their would-be contacts follow the same
policies.

Feedback (``journeyflow.feedback``) moves a contact on: delivered (its
response window starts), opened / clicked / converted (a response), failed
(not a contact: it counts against no cap), ignored or unsubscribed; a
delivered action with no response within its window is ignored when the
partition's event-time clock passes it, or at the customer's first event
after it, whichever comes first (so the policies judge an action by its own
event time, not by how far the clock lags). Each settled delivery is an outcome
(an :class:`~models.labels.Example` of target ``responses``) for the
per-action statistics.

Everything here is pure: the catalog is data, the response statistics and
models come in through the scorer, and sampling is seeded by the decision.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.bandit import ResponseModel, arm_key, thompson
from models.labels import Decision, Example
from schemas.events import TouchpointEvent
from schemas.outputs import Action, Delivery, Feedback
from schemas.vocabulary import Channel, DeliveryChannel, IdentityType
from streams.core.contacts import (
    DAY_MS,
    RESPONSES,
    WEEK_MS,
    Contact,
    add_contact,
    prune,
    with_status,
)
from streams.core.errors import CoreError
from streams.core.ids import output_id
from streams.core.journey import JourneyLimits, JourneyState, evolve
from streams.core.profile import tags_for
from streams.core.scoring import Scoring

HOUR_MS = 3_600_000
DEFAULT_TIMEZONE = "Asia/Shanghai"
#: The touchpoint channel an action's delivery channel belongs to (for
#: consumers that route by it; None: outside the touchpoint vocabulary).
_TOUCHPOINT_CHANNEL: dict[str, Channel | None] = {
    "wecom": None,
    "sms": None,
    "mini_program_message": "mini_program",
    "live_popup": "livestream",
    "store_task": "store",
    "group_message": "wechat_group",
}


class ConsentNeeded(BaseModel):
    """A consent the customer must have granted (newest change wins)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    purpose: str = Field(min_length=1)
    #: Touchpoint channels a grant may have come from (empty: any).
    channels: list[Channel] = Field(default_factory=list)


class CatalogAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    enabled: bool = True
    #: Chosen by arbitration at decision points; false: sent only by the
    #: rules that name it (``catalog_action``), e.g. a reminder with its own timing.
    arbitrated: bool = True
    channel: DeliveryChannel
    #: Whose propensity weighs this action: ``convert`` (will buy) or
    #: ``churn`` (is leaving; only customers who have bought have one).
    target: Literal["convert", "churn"] = "convert"
    #: Stages it is for (empty: any).
    stages: list[str] = Field(default_factory=list)
    requires_tags: list[str] = Field(default_factory=list)
    excludes_tags: list[str] = Field(default_factory=list)
    #: Decision events it is considered at (empty: any decision point).
    on: list[str] = Field(default_factory=list)
    #: Only while the customer is in a live room (the event names one).
    in_live_room: bool = False
    #: Only for customers who have been to a store (its id goes in ``params``).
    needs_store: bool = False
    consent: ConsentNeeded | None = None
    #: Identifier types the channel delivers to, preferred first.
    identifiers: list[IdentityType] = Field(min_length=1)
    #: Value of a response (CNY), its cost per send, and a business lever.
    value: float = Field(gt=0)
    cost: float = Field(default=0.0, ge=0)
    lever: float = Field(default=1.0, gt=0)
    #: Template, coupon and campaign ids for the delivery system.
    params: dict[str, Any] = Field(default_factory=dict)
    cooldown_hours: float = Field(default=72, ge=0)
    #: In quiet hours: deliver at their end (``defer``), not at all
    #: (``drop``), or at once (``exempt``: only for in-session channels such
    #: as a live-room pop-up, where the customer is there right now).
    quiet_hours: Literal["defer", "drop", "exempt"] = "defer"
    ttl_hours: float = Field(default=24, gt=0)
    response_window_hours: float = Field(default=48, gt=0)
    #: Beta prior of the response rate, ``(alpha, beta)``: mean alpha / (alpha + beta).
    prior: tuple[float, float] = (1.0, 19.0)

    @model_validator(mode="after")
    def _check(self) -> CatalogAction:
        if self.quiet_hours == "exempt" and self.channel != "live_popup":
            raise ValueError(f"action {self.id}: only a live_popup may be exempt from quiet hours")
        if min(self.prior) <= 0:
            raise ValueError(f"action {self.id}: prior alpha and beta must be positive")
        if set(self.requires_tags) & set(self.excludes_tags):
            raise ValueError(f"action {self.id}: a tag both required and excluded")
        return self


class QuietHours(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time = time(21, 0)
    end: time = time(9, 0)

    def holds(self, at: time) -> bool:
        if self.start <= self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end


class BurstBudget(BaseModel):
    """At most ``per_minute`` actions per minute of event time on one partition
    of the journeys (a token bucket holding up to ``burst``), whoever they are
    for: a spike (a flash sale, a viral room) cannot turn into a flood of sends."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_minute: float = Field(gt=0)
    burst: int = Field(ge=1)


class Budget:
    """One partition's :class:`BurstBudget` bucket: tokens, and the event time
    they were counted at. Mutable: the batch protocol keeps one per partition
    for a batch and writes it with the batch (``streams.batch``); records of a
    partition are applied in offset order, so replay spends it the same way."""

    __slots__ = ("at_ms", "changed", "tokens")

    def __init__(self, tokens: float, at_ms: int | None) -> None:
        self.tokens = tokens
        self.at_ms = at_ms
        self.changed = False

    @classmethod
    def from_bytes(cls, raw: bytes | None, policy: BurstBudget) -> Budget:
        if not raw:
            return cls(float(policy.burst), None)
        tokens, at_ms = orjson.loads(raw)
        return cls(min(float(tokens), float(policy.burst)), int(at_ms))

    def to_bytes(self) -> bytes:
        return orjson.dumps([round(self.tokens, 6), self.at_ms])

    def take(self, at_ms: int, policy: BurstBudget) -> bool:
        """Spend one send at event time ``at_ms``, if the bucket holds one.

        >>> b, p = Budget(1.0, 0), BurstBudget(per_minute=2, burst=3)
        >>> b.take(0, p), b.take(0, p), b.take(30_000, p), b.take(30_000, p)
        (True, False, True, False)
        """
        if self.at_ms is None or at_ms > self.at_ms:
            elapsed = 0 if self.at_ms is None else at_ms - self.at_ms
            self.tokens = min(
                float(policy.burst), self.tokens + elapsed * policy.per_minute / 60_000
            )
            self.at_ms = at_ms
        self.changed = True
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Policies(BaseModel):
    """Contact policies: every action the catalog sends obeys all of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Per delivery channel, per customer, per local calendar day / rolling 7 days.
    per_channel_day: dict[DeliveryChannel, int] = Field(default_factory=dict)
    per_channel_week: dict[DeliveryChannel, int] = Field(default_factory=dict)
    default_per_channel_day: int = Field(default=1, ge=0)
    default_per_channel_week: int = Field(default=3, ge=0)
    #: Over all channels.
    per_day: int = Field(default=2, ge=0)
    per_week: int = Field(default=5, ge=0)
    #: In the customer's time zone; None: no quiet hours.
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    #: No action for this long after a purchase.
    after_purchase_hours: float = Field(default=24, ge=0)
    #: An action ignored this many times in a row is not sent again (until a response).
    ignored_limit: int = Field(default=3, ge=1)
    #: Per partition of the journeys; None: no budget.
    burst: BurstBudget | None = None

    def day_cap(self, channel: DeliveryChannel) -> int:
        return self.per_channel_day.get(channel, self.default_per_channel_day)

    def week_cap(self, channel: DeliveryChannel) -> int:
        return self.per_channel_week.get(channel, self.default_per_channel_week)


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    #: Share of customers (percent) who receive no action: the control group.
    holdout_percent: float = Field(default=5.0, ge=0, le=50)
    #: Changing the salt reshuffles who is in the holdout.
    holdout_salt: str = "journeyflow-holdout-1"
    policies: Policies = Field(default_factory=Policies)
    actions: list[CatalogAction] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        ids = [a.id for a in self.actions]
        if len(set(ids)) != len(ids):
            raise ValueError("action ids must be unique")
        return self

    @property
    def keep_ms(self) -> int:
        """How long the contact history must remember a contact."""
        longest = max((a.cooldown_hours for a in self.actions), default=0)
        return max(WEEK_MS, int(longest * HOUR_MS)) + DAY_MS

    def action(self, action_id: str) -> CatalogAction | None:
        return next((a for a in self.actions if a.id == action_id), None)


def parse_catalog(
    data: Any, *, stages: frozenset[str] | None = None, tags: frozenset[str] | None = None
) -> Catalog:
    """Validate a catalog; ``stages`` and ``tags`` (when given) are the names
    the stage model and scoring file define, so a typo fails at start."""
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        raise CoreError(f"invalid action catalog: {exc}") from None
    for action in catalog.actions:
        unknown_stages = set(action.stages) - stages if stages is not None else set()
        unknown_tags = (
            {*action.requires_tags, *action.excludes_tags} - tags if tags is not None else set()
        )
        if unknown_stages:
            raise CoreError(f"action {action.id}: unknown stages {sorted(unknown_stages)}")
        if unknown_tags:
            raise CoreError(f"action {action.id}: unknown tags {sorted(unknown_tags)}")
    return catalog


class ActionScorer(Protocol):
    """What arbitration reads from the worker's models."""

    def ready(self, target: str) -> bool: ...

    def seen(self, target: str) -> tuple[int, int]: ...

    def responses(self) -> ResponseModel: ...


def in_holdout(customer_id: str, catalog: Catalog) -> bool:
    if catalog.holdout_percent <= 0:
        return False
    digest = hashlib.blake2b(f"{catalog.holdout_salt}\x1f{customer_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest()) % 10_000 < catalog.holdout_percent * 100


def local_time(at_ms: int, timezone: str) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, tz=ZoneInfo(timezone))


def not_before(at_ms: int, timezone: str, quiet: QuietHours | None) -> tuple[int, bool]:
    """``(earliest delivery ms, was it deferred)``: the end of the quiet hours
    when ``at_ms`` falls in them (customer's local time)."""
    if quiet is None:
        return at_ms, False
    local = local_time(at_ms, timezone)
    if not quiet.holds(local.timetz().replace(tzinfo=None)):
        return at_ms, False
    end = datetime.combine(local.date(), quiet.end, tzinfo=local.tzinfo)
    if end <= local:
        end = datetime.combine(local.date() + timedelta(days=1), quiet.end, tzinfo=local.tzinfo)
    return int(end.timestamp() * 1000), True


def local_day(at_ms: int, timezone: str) -> date:
    return local_time(at_ms, timezone).date()


def local_day_ms(at_ms: int, timezone: str) -> tuple[int, int]:
    """The local calendar day of ``at_ms`` as ``[start, end)`` in epoch ms
    (a day of a time-zone change is as long as it is).

    >>> local_day_ms(1_795_000_000_000, "Asia/Shanghai")  # 2026-11-18 19:06 in Shanghai
    (1794931200000, 1795017600000)
    """
    day = local_day(at_ms, timezone)
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def blocked_by(
    state: JourneyState,
    action: CatalogAction,
    at_ms: int,
    timezone: str,
    policies: Policies,
) -> str | None:
    """Which contact policy stops ``action`` being delivered at ``at_ms``
    (None: none does). Deferred contacts count where they will be delivered."""
    if state.last_purchase_ms is not None and (
        0 <= at_ms - state.last_purchase_ms < policies.after_purchase_hours * HOUR_MS
    ):
        return "after_purchase"
    if state.ignored.get(action.id, 0) >= policies.ignored_limit:
        return "ignored"
    cooldown = action.cooldown_hours * HOUR_MS
    day_start, day_end = local_day_ms(at_ms, timezone)
    same_day = channel_day = channel_week = week = 0
    for c in state.contacts:
        if not c.counts:
            continue
        if c.action == action.id and abs(c.at_ms - at_ms) < cooldown:
            return "cooldown"
        if abs(c.at_ms - at_ms) < WEEK_MS:
            week += 1
            channel_week += c.channel == action.channel
        if day_start <= c.at_ms < day_end:
            same_day += 1
            channel_day += c.channel == action.channel
    if channel_day >= policies.day_cap(action.channel):
        return "channel_day_cap"
    if channel_week >= policies.week_cap(action.channel):
        return "channel_week_cap"
    if same_day >= policies.per_day:
        return "day_cap"
    if week >= policies.per_week:
        return "week_cap"
    return None


def delivery_for(state: JourneyState, action: CatalogAction) -> Delivery | None:
    """The customer's identifier the action's channel delivers to (preferred first)."""
    for kind in action.identifiers:
        prefix = f"{kind}:"
        for identifier in state.identifiers:
            if identifier.startswith(prefix):
                value = identifier[len(prefix) :]
                app_id = None
                if kind == "wechat_openid" and ":" in value:
                    app_id, value = value.split(":", 1)
                return Delivery(
                    channel=action.channel, identifier_type=kind, identifier=value, app_id=app_id
                )
    return None


def consented(state: JourneyState, needed: ConsentNeeded | None) -> bool:
    """The newest consent change for the purpose (on the listed channels) is a grant."""
    if needed is None:
        return True
    suffix = f":{needed.purpose}"
    newest: tuple[int, bool] | None = None
    for key, granted in state.consent.items():
        if not key.endswith(suffix):
            continue
        if needed.channels and key[: -len(suffix)] not in needed.channels:
            continue
        at = state.consent_ms.get(key, 0)
        if newest is None or at >= newest[0]:
            newest = (at, granted)
    return newest is not None and newest[1]


def ineligible(
    state: JourneyState,
    action: CatalogAction,
    event: TouchpointEvent,
    tags: frozenset[str],
) -> str | None:
    """Why ``action`` is not for this customer at this event (None: it is)."""
    if action.stages and state.stage not in action.stages:
        return "stage"
    if action.on and event.event_type not in action.on:
        return "event"
    if action.in_live_room and not event.context.live_room_id:
        return "not_in_live_room"
    if action.needs_store and not state.last_store_id:
        return "no_store"
    if not tags.issuperset(action.requires_tags) or tags.intersection(action.excludes_tags):
        return "tags"
    if action.target == "churn" and not state.transactions:
        return "no_churn_risk"
    if not consented(state, action.consent):
        return "no_consent"
    return None


@dataclass(frozen=True)
class Propensity:
    value: float
    #: ``convert:7`` when a model gave it; None for the rule-based stand-in.
    model_version: str | None
    reason: str


def propensity(
    state: JourneyState,
    action: CatalogAction,
    decision: Decision,
    at_ms: int,
    scorer: ActionScorer,
    churn_horizon_ms: int,
) -> Propensity | None:
    target = action.target
    score = decision.scores.get(target)
    if score is not None and scorer.ready(target):
        version = decision.versions.get(target, 0)
        return Propensity(
            score, f"{target}:{version}", f"{target} propensity {score:.2f} (model v{version})"
        )
    seen, needed = scorer.seen(target)
    learning = f"{target} model learning: {seen} of {needed} labelled examples"
    if target == "convert":
        lead = max(0, state.lead_score)
        return Propensity(
            round(lead / (lead + 40), 4), None, f"lead score {lead} stands in ({learning})"
        )
    if state.last_purchase_ms is None:
        return None
    idle = max(0, at_ms - state.last_purchase_ms)
    days = idle / DAY_MS
    return Propensity(
        round(min(1.0, idle / churn_horizon_ms), 4),
        None,
        f"{days:.0f} days since the last purchase stand in ({learning})",
    )


@dataclass(frozen=True)
class ActionsConfig:
    catalog: Catalog
    #: Event-time horizon of churn (the stand-in propensity's scale).
    churn_horizon_ms: int = 14 * 24 * HOUR_MS


@dataclass
class Choice:
    """What arbitration did at one decision."""

    state: JourneyState
    action: Action | None = None
    #: Why each catalog action was left out (for the counts).
    left_out: Counter[str] = field(default_factory=Counter)


def choose(
    state: JourneyState,
    event: TouchpointEvent,
    decision: Decision,
    config: ActionsConfig,
    scorer: ActionScorer,
    scoring: Scoring,
    limits: JourneyLimits,
    budget: Budget | None = None,
) -> Choice:
    """The action for this decision, if any action is worth sending (see the
    module docstring); the chosen one enters the contact history. ``budget``:
    the partition's burst budget (the chosen action is left out when it is spent)."""
    catalog = config.catalog
    at_ms = decision.at_ms
    timezone = event.context.timezone or DEFAULT_TIMEZONE
    tags = frozenset(tags_for(state, scoring))
    segment = state.stage or "none"
    responses = scorer.responses()
    left_out: Counter[str] = Counter()
    candidates: list[tuple[CatalogAction, Delivery, int, Propensity, tuple[float, float]]] = []
    for action in catalog.actions:
        if not action.enabled or not action.arbitrated:
            continue
        why = ineligible(state, action, event, tags)
        delivery = None if why else delivery_for(state, action)
        if why is None and delivery is None:
            why = "no_identifier"
        start = at_ms
        if why is None:
            quiet = None if action.quiet_hours == "exempt" else catalog.policies.quiet_hours
            start, deferred = not_before(at_ms, timezone, quiet)
            if deferred and action.quiet_hours == "drop":
                why = "quiet_hours"
            else:
                why = blocked_by(state, action, start, timezone, catalog.policies)
        prop = None
        if why is None:
            prop = propensity(state, action, decision, at_ms, scorer, config.churn_horizon_ms)
            if prop is None:
                why = "no_propensity"
        if why is not None or prop is None or delivery is None:
            left_out[why or "none"] += 1
            continue
        posterior = responses.posterior(action.id, segment, action.prior)
        candidates.append((action, delivery, start, prop, posterior))
    if not candidates:
        return Choice(state, None, left_out)
    arms = [
        (a, b, prop.value * action.value * action.lever, action.cost)
        for action, _, _, prop, (a, b) in candidates
    ]
    seed = int.from_bytes(hashlib.blake2b(decision.decision_id.encode(), digest_size=8).digest())
    pick = thompson(arms, seed)
    if pick.index is None:
        left_out["not_worth_it"] += len(candidates)
        return Choice(state, None, left_out)
    action, delivery, start, prop, (alpha, beta) = candidates[pick.index]
    if not _within_budget(budget, at_ms, catalog.policies):
        left_out["burst_budget"] += 1
        return Choice(state, None, left_out)
    holdout = in_holdout(state.customer_id, catalog)
    expected = round(alpha / (alpha + beta), 6)
    responded, trials = responses.counts(action.id, segment)
    priority = pick.sampled[pick.index] * arms[pick.index][2] - action.cost
    reasons = [
        action.description or action.id,
        prop.reason,
        f"expected response {expected:.1%} ({responded} of {trials} delivered)",
        f"priority {priority:.2f} among {len(candidates)} eligible",
    ]
    if holdout:
        reasons.append("holdout: logged, not sent")
    params = dict(action.params)
    if event.context.live_room_id and action.channel == "live_popup":
        params.setdefault("live_room_id", event.context.live_room_id)
    if action.channel == "store_task" and state.last_store_id:
        params.setdefault("store_id", state.last_store_id)
    expires = start + int(action.ttl_hours * HOUR_MS)
    out = Action(
        id=output_id(f"nba_{action.id}", state.customer_id, event.event_id),
        customer_id=state.customer_id,
        cause_event_id=event.event_id,
        rule_id=f"catalog:{action.id}",
        decided_at=datetime.fromtimestamp(at_ms / 1000, tz=UTC),
        model_version=prop.model_version,
        reason="; ".join(reasons[:2]),
        action=action.id,
        channel=_TOUCHPOINT_CHANNEL[action.channel],
        priority=round(priority * 100),
        params=params,
        delivery=delivery,
        not_before=datetime.fromtimestamp(start / 1000, tz=UTC),
        expires_at=datetime.fromtimestamp(expires / 1000, tz=UTC),
        catalog_version=catalog.version,
        segment=segment,
        propensity=round(prop.value, 6),
        expected_response=expected,
        choice_probability=pick.probability,
        reasons=reasons,
        holdout=holdout,
    )
    state = _contacted(state, out, action, start, expected, at_ms, catalog, limits)
    return Choice(state, out, left_out)


def grouped(state: JourneyState, decision: Decision, catalog: Catalog) -> JourneyState:
    """The decision marked with its customer's group (``Decision.group``) once
    arbitration ran at it, whether or not an action was chosen: the lift
    compares all of each group's decisions, intention-to-treat (only the
    decisions an action was chosen at would leave out treated customers the
    policies stopped contacting, such as those who ignored too many, and no
    held-out customer is ever stopped so)."""
    group = "holdout" if in_holdout(state.customer_id, catalog) else "treated"
    decisions = tuple(
        replace(d, group=group) if d.decision_id == decision.decision_id else d
        for d in state.decisions
    )
    return evolve(state, {"decisions": decisions})


def _within_budget(budget: Budget | None, at_ms: int, policies: Policies) -> bool:
    """Does the partition's burst budget allow one more send (and spend it)?
    Held-out customers' would-be sends spend it too: both groups are treated alike."""
    return budget is None or policies.burst is None or budget.take(at_ms, policies.burst)


def _contacted(
    state: JourneyState,
    out: Action,
    action: CatalogAction,
    start: int,
    score: float,
    at_ms: int,
    catalog: Catalog,
    limits: JourneyLimits,
) -> JourneyState:
    """``out`` (sent or held out) enters the contact history."""
    contact = Contact(
        id=out.id,
        action=action.id,
        channel=action.channel,
        segment=out.segment or "none",
        at_ms=start,
        expires_ms=start + int(action.ttl_hours * HOUR_MS),
        window_ms=int(action.response_window_hours * HOUR_MS),
        score=score,
        status="holdout" if out.holdout else "sent",
        status_ms=at_ms,
    )
    contacts = prune(state.contacts, at_ms, catalog.keep_ms)
    contacts = add_contact(contacts, contact, limits.contacts)
    return evolve(state, {"contacts": contacts})


def send_as(
    state: JourneyState,
    out: Action,
    action: CatalogAction,
    timezone: str,
    config: ActionsConfig,
    limits: JourneyLimits,
    budget: Budget | None = None,
) -> tuple[JourneyState, Action | None, str | None]:
    """A rule's action (``streams.core.rules``, ``catalog_action``) sent as
    the catalog action ``action``: ``(state, action or None, why left out)``.

    The rule decided *whether* and *when*; the catalog decides *how* and *if
    it may*: the action's consent, an identifier its channel delivers to,
    quiet hours and the contact policies at its delivery time, as for an
    arbitrated action (the rule's stages and conditions stand in for
    eligibility). Held-out customers get it logged, not sent. It enters the
    contact history, so it counts against the caps and cooldowns of every
    later action, and feedback on it updates the action's statistics."""
    catalog = config.catalog
    at_ms = int(out.decided_at.timestamp() * 1000)
    delivery = delivery_for(state, action)
    why: str | None = None
    if not action.enabled:
        why = "disabled"
    elif not consented(state, action.consent):
        why = "no_consent"
    elif delivery is None:
        why = "no_identifier"
    quiet = None if action.quiet_hours == "exempt" else catalog.policies.quiet_hours
    start, deferred = not_before(at_ms, timezone, quiet)
    if why is None and deferred and action.quiet_hours == "drop":
        why = "quiet_hours"
    why = why or blocked_by(state, action, start, timezone, catalog.policies)
    if why is None and not _within_budget(budget, at_ms, catalog.policies):
        why = "burst_budget"
    if why is not None:
        return state, None, why
    holdout = in_holdout(state.customer_id, catalog)
    alpha, beta = action.prior
    reasons = [out.reason, f"rule {out.rule_id}, sent as catalog action {action.id}"]
    if holdout:
        reasons.append("holdout: logged, not sent")
    sent = out.model_copy(
        update={
            "action": action.id,
            "channel": _TOUCHPOINT_CHANNEL[action.channel],
            "params": {**action.params, **out.params},
            "delivery": delivery,
            "not_before": datetime.fromtimestamp(start / 1000, tz=UTC),
            "expires_at": datetime.fromtimestamp(
                (start + int(action.ttl_hours * HOUR_MS)) / 1000, tz=UTC
            ),
            "catalog_version": catalog.version,
            "segment": state.stage or "none",
            "choice_probability": 1.0,
            "reasons": reasons,
            "holdout": holdout,
        }
    )
    score = alpha / (alpha + beta)
    return _contacted(state, sent, action, start, score, at_ms, catalog, limits), sent, None


@dataclass
class Settled:
    """What feedback or the clock did to the contact history."""

    state: JourneyState
    examples: list[Example] = field(default_factory=list)
    #: Due times to index (a delivery's response window).
    scheduled: list[int] = field(default_factory=list)
    #: A delivery reported: ms from the action's ``not_before`` to its
    #: delivery (the feedback's ``occurred_at``), for the latency metrics.
    delivered_after_ms: int | None = None


def _outcome(contact: Contact, responded: bool, at_ms: int, correction: bool = False) -> Example:
    return Example(
        contact.id,
        "responses",
        contact.at_ms,
        {},
        contact.score,
        0,
        responded,
        at_ms,
        correction,
        arm_key(contact.action, contact.segment),
    )


def on_feedback(state: JourneyState, feedback: Feedback, config: ActionsConfig) -> Settled:
    """Move the contact the feedback names on (nothing when it names none:
    an action of a rule, or one the history no longer holds)."""
    index = next((i for i, c in enumerate(state.contacts) if c.id == feedback.action_id), None)
    if index is None:
        return Settled(state)
    contact = state.contacts[index]
    at_ms = int(feedback.occurred_at.timestamp() * 1000)
    outcome = feedback.outcome
    settled = Settled(state)
    ignored = dict(state.ignored)
    if contact.status == "holdout":
        return settled
    if outcome == "delivered":
        if contact.status != "sent":
            return settled
        settled.delivered_after_ms = max(0, at_ms - contact.at_ms)
        contact = with_status(contact, "delivered", at_ms)
        awaiting = contact.awaiting_ms
        if awaiting is not None:
            settled.scheduled.append(awaiting + 1)
    elif outcome in RESPONSES:
        if contact.status == "responded":
            return settled
        late = contact.status == "ignored"
        settled.examples.append(_outcome(contact, True, at_ms, correction=late))
        contact = with_status(contact, "responded", at_ms)
        ignored.pop(contact.action, None)
    elif outcome in ("ignored", "unsubscribed"):
        if contact.status not in ("sent", "delivered"):
            return settled
        settled.examples.append(_outcome(contact, False, at_ms))
        contact = with_status(contact, "ignored", at_ms)
        limit = config.catalog.policies.ignored_limit
        ignored[contact.action] = (
            limit if outcome == "unsubscribed" else ignored.get(contact.action, 0) + 1
        )
    elif outcome == "failed":
        if contact.status not in ("sent", "delivered"):
            return settled
        contact = with_status(contact, "failed", at_ms)
    else:
        return settled
    contacts = (*state.contacts[:index], contact, *state.contacts[index + 1 :])
    settled.state = evolve(state, {"contacts": contacts, "ignored": ignored})
    return settled


def on_clock(state: JourneyState, now_ms: int) -> Settled:
    """Deliveries whose response window closed before ``now_ms`` (the
    partition's clock, or the time of the customer's event) without a
    response are ignored."""
    if not any(c.status == "delivered" for c in state.contacts):
        return Settled(state)
    settled = Settled(state)
    ignored = dict(state.ignored)
    contacts = []
    for c in state.contacts:
        awaiting = c.awaiting_ms
        if awaiting is not None and awaiting < now_ms:
            settled.examples.append(_outcome(c, False, awaiting))
            ignored[c.action] = ignored.get(c.action, 0) + 1
            c = with_status(c, "ignored", awaiting)
        contacts.append(c)
    if settled.examples:
        settled.state = evolve(state, {"contacts": tuple(contacts), "ignored": ignored})
    return settled
