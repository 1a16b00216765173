"""Decision rules as data: next-best-actions, alerts and live triggers.

A rule names the event types it listens to, conditions over the event and
the customer's metrics (after the event is applied), and what to emit.
``once_per`` makes a rule fire at most once per customer and scope (e.g. per
live room), so a chatty viewer is not a flood. Text in ``reason``,
``params``, ``details`` and ``routing_key`` may use placeholders:
``{context.store_id}``, ``{properties.sentiment}``, ``{metric.transactions}``,
``{lookup.coupon_id}``, ``{customer_id}``, ``{stage}``, ``{event_type}``,
``{day}`` and ``{hour}`` (the event's local date, and date and hour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.events import TouchpointEvent
from schemas.outputs import Action, Alert, LiveTrigger, Severity
from schemas.vocabulary import Channel
from streams.core.conditions import Condition, event_field, render
from streams.core.errors import CoreError
from streams.core.ids import output_id
from streams.core.journey import (
    JourneyLimits,
    JourneyState,
    Pending,
    StageEntry,
    evolve,
    mark_fired,
)

Output = Action | Alert | LiveTrigger


class Lookup(BaseModel):
    """Read a value from one of the rule set's tables, keyed by an event field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    key: str
    default: Any = None


class Rule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    enabled: bool = True
    output: Literal["action", "alert", "live_trigger"]
    on: list[str] = Field(min_length=1, description="Event types this rule listens to.")
    when: list[Condition] = Field(default_factory=list, description="All must hold.")
    once_per: str | None = Field(
        default=None, description="Fire once per customer and this rendered scope."
    )
    delay_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Emit this long after the event (event time), not at once.",
    )
    cancel_on: list[str] = Field(
        default_factory=list,
        description="Event types that cancel a delayed output when they come first.",
    )
    reason: str
    lookups: dict[str, Lookup] = Field(default_factory=dict)
    # action
    action: str | None = None
    channel: Channel | None = None
    priority: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    #: With an action catalog (``streams.core.actions``), the action goes out
    #: as this catalog action: its channel, delivery identifier, consent,
    #: quiet hours and cooldown, the contact policies and the holdout apply,
    #: and ``params`` add to the catalog action's. Required of action rules
    #: when a catalog is in use (``streams.config``): no action goes out uncapped.
    catalog_action: str | None = None
    # alert
    alert_type: str | None = None
    severity: Severity = "warning"
    routing_key: str = "{customer_id}"
    # live trigger
    trigger_type: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        needed = {"action": "action", "alert": "alert_type", "live_trigger": "trigger_type"}
        if getattr(self, needed[self.output]) is None:
            raise ValueError(f"a rule with output {self.output!r} needs {needed[self.output]!r}")
        if self.cancel_on and self.delay_seconds is None:
            raise ValueError("cancel_on only applies to a rule with delay_seconds")
        if self.catalog_action is not None and self.output != "action":
            raise ValueError("catalog_action only applies to a rule with output 'action'")
        return self


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "1"
    tables: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> RuleSet:
        ids = [r.id for r in self.rules]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        for rule in self.rules:
            for lookup in rule.lookups.values():
                if lookup.table not in self.tables:
                    raise ValueError(f"rule {rule.id}: unknown table {lookup.table!r}")
        return self

    def for_event_type(self, event_type: str) -> list[Rule]:
        return [r for r in self.rules if r.enabled and event_type in r.on]

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def parse_rules(data: Any) -> RuleSet:
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise CoreError(f"invalid rules: {exc}") from None


@dataclass(frozen=True)
class _Scope:
    """What placeholders resolve against for one (rule, event, state)."""

    rules: RuleSet
    rule: Rule
    event: TouchpointEvent
    state: JourneyState

    def resolve(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "metric":
            return self.state.metric(rest)
        if head == "lookup":
            lookup = self.rule.lookups.get(rest)
            if lookup is None:
                return None
            key = event_field(self.event, lookup.key)
            return self.rules.tables[lookup.table].get(str(key), lookup.default)
        if head == "customer_id":
            return self.state.customer_id
        if head == "stage":
            return self.state.stage
        if head in ("day", "hour"):  # the event's local calendar day / hour
            local = self.event.occurred_at.astimezone(ZoneInfo(self.event.context.timezone))
            return local.strftime("%Y-%m-%d" if head == "day" else "%Y-%m-%dT%H")
        return event_field(self.event, path)

    def fill(self, template: Any) -> Any:
        if isinstance(template, dict):
            return {k: self.fill(v) for k, v in template.items()}
        return render(template, self.resolve)


def decide(
    rules: RuleSet,
    state: JourneyState,
    event: TouchpointEvent,
    limits: JourneyLimits,
    occurred_ms: int,
) -> tuple[JourneyState, list[Output]]:
    """Evaluate the rules listening to this event type; mark ``once_per`` scopes
    fired. A rule with ``delay_seconds`` does not emit now: it adds a pending
    item that :func:`fire_due` emits when event time reaches its due time,
    unless an event named in ``cancel_on`` comes first."""
    outputs: list[Output] = []
    for rule in rules.for_event_type(event.event_type):
        if not all(c.holds(state.metric, event) for c in rule.when):
            continue
        scope = _Scope(rules, rule, event, state)
        if rule.once_per is not None:
            fired_key = f"{rule.id}|{scope.fill(rule.once_per)}"
            if fired_key in state.fired:
                continue
            state = mark_fired(state, fired_key, limits)
            scope = _Scope(rules, rule, event, state)
        fields = _FIELDS[rule.output](scope)
        if rule.delay_seconds is None:
            outputs.append(_make(rule.output, _common(scope, event.occurred_at), fields))
            continue
        item = Pending(
            rule_id=rule.id,
            due_ms=occurred_ms + rule.delay_seconds * 1000,
            created_ms=occurred_ms,
            cause_event_id=event.event_id,
            cancel_on=tuple(rule.cancel_on),
            output={"kind": rule.output, **fields},
        )
        already = any(state.last_ms_by_type.get(t, -1) >= occurred_ms for t in rule.cancel_on)
        if not already and len(state.pending) < limits.pending:  # not cancelled in advance
            state = evolve(state, {"pending": (*state.pending, item)})
    return state, outputs


def fire_due(state: JourneyState, now_ms: int) -> tuple[JourneyState, list[Output]]:
    """Emit every pending item due at or before ``now_ms`` (event time), in due order."""
    due = sorted((p for p in state.pending if p.due_ms <= now_ms), key=lambda p: p.due_ms)
    if not due:
        return state, []
    outputs: list[Output] = []
    for item in due:
        fields = dict(item.output)
        kind = fields.pop("kind")
        if kind == "stage":  # a stage decays (streams.core.stages.Decay): no output
            state = _decay_stage(state, item, fields)
            continue
        common = {
            "id": output_id(item.rule_id, state.customer_id, item.cause_event_id),
            "customer_id": state.customer_id,
            "cause_event_id": item.cause_event_id,
            "rule_id": item.rule_id,
            "decided_at": datetime.fromtimestamp(item.due_ms / 1000, tz=UTC),
        }
        outputs.append(_make(kind, common, fields))
    left = tuple(p for p in state.pending if p.due_ms > now_ms)
    return evolve(state, {"pending": left}), outputs


def _decay_stage(state: JourneyState, item: Pending, fields: dict[str, Any]) -> JourneyState:
    if state.stage != fields.get("from"):
        return state
    entry = StageEntry(stage=fields["to"], entered_ms=item.due_ms, cause_event_id=item.rule_id)
    history = (*state.stage_history, entry)[-JourneyLimits().stage_history :]
    return evolve(state, {"stage": fields["to"], "stage_history": history})


def _common(scope: _Scope, decided_at: datetime) -> dict[str, Any]:
    return {
        "id": output_id(scope.rule.id, scope.state.customer_id, scope.event.event_id),
        "customer_id": scope.state.customer_id,
        "cause_event_id": scope.event.event_id,
        "rule_id": scope.rule.id,
        "decided_at": decided_at,
    }


def _action_fields(scope: _Scope) -> dict[str, Any]:
    rule = scope.rule
    return {
        "reason": scope.fill(rule.reason),
        "action": rule.action or "",
        "channel": rule.channel,
        "priority": rule.priority,
        "params": scope.fill(rule.params),
    }


def _alert_fields(scope: _Scope) -> dict[str, Any]:
    rule = scope.rule
    routing = scope.fill(rule.routing_key)
    return {
        "reason": scope.fill(rule.reason),
        "alert_type": rule.alert_type or "",
        "severity": rule.severity,
        "routing_key": str(routing) if routing else scope.state.customer_id,
        "details": scope.fill(rule.details),
    }


def _live_trigger_fields(scope: _Scope) -> dict[str, Any]:
    rule = scope.rule
    room = scope.event.context.live_room_id or scope.state.last_live_room_id or "unknown"
    return {
        "reason": scope.fill(rule.reason),
        "trigger_type": rule.trigger_type or "",
        "live_room_id": room,
        "details": scope.fill(rule.details),
    }


_FIELDS: dict[str, Callable[[_Scope], dict[str, Any]]] = {
    "action": _action_fields,
    "alert": _alert_fields,
    "live_trigger": _live_trigger_fields,
}

_MODELS: dict[str, type[Action] | type[Alert] | type[LiveTrigger]] = {
    "action": Action,
    "alert": Alert,
    "live_trigger": LiveTrigger,
}


def _make(kind: str, common: dict[str, Any], fields: dict[str, Any]) -> Output:
    return _MODELS[kind](**common, **fields)
