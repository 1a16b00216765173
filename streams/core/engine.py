"""One step of the journey engine: ``step(state, event) -> (state, outputs)``.

This is the function the Faust agent and ``journeyflow replay`` both call.
Time-based rules will enter through a sibling ``tick(state, now_ms)`` with
the same result shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.ingest import Admitted
from streams.core.journey import JourneyLimits, JourneyState, Outcome, advance_stage, apply_event
from streams.core.rules import Output, RuleSet, decide
from streams.core.stages import StageModel


@dataclass(frozen=True)
class CoreConfig:
    """Everything the core needs, passed in (no environment, no files)."""

    stage_model: StageModel
    rules: RuleSet
    limits: JourneyLimits = field(default_factory=JourneyLimits)


@dataclass(frozen=True)
class StepResult:
    state: JourneyState | None
    outcome: Outcome
    outputs: tuple[Output, ...] = ()


def step(state: JourneyState | None, admitted: Admitted, config: CoreConfig) -> StepResult:
    """Apply one admitted event to a customer's journey and decide what to emit.

    A duplicate (its ``event_id`` is among the customer's recent ids) changes
    only the duplicate counter and emits nothing; ``privacy.erase`` returns no
    state (the journey is forgotten).
    """
    event = admitted.event
    new, outcome = apply_event(
        state, admitted.customer_id, event, config.limits, admitted.occurred_ms
    )
    if new is None or outcome != "processed":
        return StepResult(new, outcome)
    new = advance_stage(
        new, config.stage_model, admitted.occurred_ms, event.event_id, config.limits
    )
    new, outputs = decide(config.rules, new, event, config.limits)
    return StepResult(new, outcome, tuple(outputs))
