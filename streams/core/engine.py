"""The journey engine: ``step(state, event)`` and ``tick(state, now)``, each
returning the new state and the outputs to emit.

These are the functions the Faust agent and ``journeyflow replay`` both call.
Time is event time only: ``step`` first emits the customer's pending items
that fell due before the event, then applies it; ``tick`` emits what fell due
when the partition's event-time clock moved without an event of this
customer (see ``streams.core.timers``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from models.labels import Example
from schemas.outputs import Action
from streams.core.actions import DEFAULT_TIMEZONE, Budget, choose, grouped, send_as
from streams.core.actions import on_clock as settle_clock
from streams.core.decisions import DecisionConfig, label_clock, label_transaction, record_decision
from streams.core.ingest import Admitted
from streams.core.journey import (
    JourneyLimits,
    JourneyState,
    Outcome,
    advance_stage,
    apply_event,
    new_state,
    schedule_decay,
    seen_before,
)
from streams.core.rules import Output, RuleSet, decide, fire_due
from streams.core.scoring import Scoring
from streams.core.stages import StageModel


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs, passed in (no environment, no files)."""

    stage_model: StageModel
    rules: RuleSet
    limits: JourneyLimits = field(default_factory=JourneyLimits)
    scoring: Scoring = field(default_factory=Scoring)
    #: Decision points and their labels (None: the engine records no decisions).
    decisions: DecisionConfig | None = None


@dataclass(frozen=True)
class StepResult:
    state: JourneyState | None
    outcome: Outcome
    outputs: tuple[Output, ...] = ()
    #: Due times (event time, ms) of pending items this step added: the shell
    #: indexes them so a tick finds this customer without scanning everyone.
    scheduled: tuple[int, ...] = ()
    #: Decisions this event labelled (``streams.core.decisions``).
    examples: tuple[Example, ...] = ()
    #: Catalog actions arbitration left out, by reason (``streams.core.actions``).
    left_out: dict[str, int] = field(default_factory=dict)
    #: Decisions ``recorded`` here, and open ones ``dropped`` unlabelled to make
    #: room (``JourneyLimits.decisions``: learning never sees them).
    decisions: dict[str, int] = field(default_factory=dict)


def step(
    state: JourneyState | None,
    admitted: Admitted,
    config: CoreConfig,
    position: str | None = None,
    quiet: bool = False,
    entered: tuple[str, int] | None = None,
    budget: Budget | None = None,
) -> StepResult:
    """Apply one admitted event to a customer's journey and decide what to emit.

    A duplicate (its ``event_id`` is among the customer's recent ids) changes
    only the duplicate counter and emits nothing; a redelivery of the same
    record changes nothing; ``privacy.erase`` returns no state. ``position``
    is where the journey read the record (``partition:offset`` of its own
    input), the input record's position when not given. ``quiet`` (a late
    event, or history being imported) updates the journey and its stage but
    decides nothing: no outputs, nothing scheduled. ``entered``: the record
    entered One-ID at this customer's own identifier, from this touchpoints
    ``(partition, offset)`` (kept with the journey, ``JourneyState.admitted``). ``budget``: the
    partition's burst budget for the actions sent (``actions.Budget``).
    """
    event = admitted.event
    t = admitted.occurred_ms
    early: list[Output] = []
    stage_before = None if state is None else state.stage
    # a decision reads the journey as it stands: only at the customer's newest
    # event, so one that arrives after later ones cannot see what came after it
    newest = state is None or t >= state.last_seen_ms
    if state is None:
        state = new_state(admitted.customer_id)
    elif (
        not quiet
        and state.pending
        and seen_before(
            state, event.event_id, admitted.source, position, t, config.limits.recent_event_ids
        )
        is None
    ):
        state, early = fire_due(state, t - 1)  # due strictly before this event
    new, outcome = apply_event(
        state,
        admitted.customer_id,
        event,
        config.limits,
        t,
        admitted.source,
        position,
        config.scoring,
        entered,
    )
    if new is None or outcome != "processed":
        return StepResult(new, outcome)
    new = advance_stage(new, config.stage_model, t, event.event_id, config.limits)
    examples: tuple[Example, ...] = ()
    if config.decisions is not None and new.transactions > state.transactions:
        # a new order (not another report of a known one); late ones too: they correct labels
        new, examples = label_transaction(new, event, t, config.decisions, config.limits)
    if quiet:
        return StepResult(new, outcome, examples=examples)
    before = {(p.rule_id, p.cause_event_id) for p in new.pending}
    new, decided = decide(config.rules, new, event, config.limits, t)
    new = schedule_decay(new, config.stage_model, config.limits)
    scheduled = tuple(p.due_ms for p in new.pending if (p.rule_id, p.cause_event_id) not in before)
    if config.decisions is not None and config.decisions.actions is not None:
        # deliveries whose response window closed before this event are
        # ignored now, whatever the partition's clock says: the contact
        # policies judge what is sent here at this event's time
        settled = settle_clock(new, t)
        new, examples = settled.state, (*examples, *settled.examples)
    timezone = event.context.timezone or DEFAULT_TIMEZONE
    new, outputs, left_out = police((*early, *decided), new, timezone, config, budget)
    chosen: tuple[Output, ...] = ()
    recorded: dict[str, int] = {}
    if config.decisions is not None and newest:
        new, due, decision, dropped = record_decision(
            new, event, t, stage_before, config.decisions, config.limits, config.scoring
        )
        scheduled += due
        if decision is not None:
            recorded = {"recorded": 1, "dropped": 1} if dropped else {"recorded": 1}
        actions = config.decisions.actions
        if decision is not None and actions is not None:
            choice = choose(
                new,
                event,
                decision,
                actions,
                config.decisions.scorer,
                config.scoring,
                config.limits,
                budget,
            )
            new = grouped(choice.state, decision, actions.catalog)
            for why, n in choice.left_out.items():
                left_out[why] = left_out.get(why, 0) + n
            if choice.action is not None:
                chosen = (choice.action,)
    outputs = (*outputs, *chosen)
    return StepResult(new, outcome, outputs, scheduled, examples, left_out, recorded)


def police(
    outputs: Sequence[Output],
    state: JourneyState,
    timezone: str,
    config: CoreConfig,
    budget: Budget | None = None,
) -> tuple[JourneyState, tuple[Output, ...], dict[str, int]]:
    """Rule actions that name a catalog action go out as that action, under
    the contact policies (``streams.core.actions.send_as``), when the engine
    has a catalog; the others and every alert and trigger pass as they are.
    Returns the state with the contacts made, the outputs, and what was left
    out by reason."""
    actions = config.decisions.actions if config.decisions is not None else None
    if actions is None or not any(isinstance(o, Action) for o in outputs):
        return state, tuple(outputs), {}
    kept: list[Output] = []
    left_out: Counter[str] = Counter()
    for output in outputs:
        rule = config.rules.rule(output.rule_id) if isinstance(output, Action) else None
        target = None
        if rule is not None and rule.catalog_action is not None:
            target = actions.catalog.action(rule.catalog_action)
        if not isinstance(output, Action) or target is None:
            kept.append(output)
            continue
        state, sent, why = send_as(state, output, target, timezone, actions, config.limits, budget)
        if sent is not None:
            kept.append(sent)
        else:
            left_out[why or "none"] += 1
    return state, tuple(kept), dict(left_out)


@dataclass(frozen=True)
class TickResult:
    state: JourneyState
    outputs: tuple[Output, ...] = ()
    examples: tuple[Example, ...] = ()
    #: Rule actions the contact policies left out, by reason (see :func:`police`).
    left_out: dict[str, int] = field(default_factory=dict)


def tick(
    state: JourneyState,
    now_ms: int,
    config: CoreConfig | None = None,
    budget: Budget | None = None,
) -> TickResult:
    """Event time reached ``now_ms`` for this customer's partition: emit what
    is due, and label the decisions whose horizon it passed."""
    new, due = fire_due(state, now_ms)
    outputs: tuple[Output, ...] = tuple(due)
    examples: tuple[Example, ...] = ()
    left_out: dict[str, int] = {}
    if config is not None and config.decisions is not None:
        ignored: tuple[Example, ...] = ()
        if config.decisions.actions is not None:
            # before the policies judge what fires now (as in ``step``)
            settled = settle_clock(new, now_ms)
            new, ignored = settled.state, tuple(settled.examples)
        # no event, no time zone of its own: the catalog's default
        new, outputs, left_out = police(outputs, new, DEFAULT_TIMEZONE, config, budget)
        new, examples = label_clock(new, now_ms, config.decisions, config.limits)
        examples = (*examples, *ignored)
    return TickResult(new, outputs, examples, left_out)
