"""Decision points: where the engine scores a customer, and how the scores
recorded there get their labels (issue #10).

When an event changes what is known about a customer in a way that matters
(a stage change, a product click or add-to-cart, a price question, a coupon
claim, a store check-in or consultation, a lead, a negative chat, a
purchase), the step reads the customer's features from the journey as it
stands after the event (``models.features``; only at the customer's newest
event: one that arrives after later ones would see what came after it), scores them for each target
with the models it is given (:class:`Scorer`), and records the decision on
the journey: features, scores, model versions and event time, at most
``JourneyLimits.decisions`` open, at most one per ``spacing_ms`` of event
time per customer. Transactions and the partition's event-time clock label
them later (``models.labels``); each label is an example the trainer learns
from and model quality is measured on.

The scorer is the only thing here that is not a function of the journey and
the event: replaying with the same model snapshots gives the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from models.features import journey_features
from models.labels import (
    HOUR,
    TARGETS,
    Decision,
    Example,
    Features,
    Horizons,
    add_decision,
    on_clock,
    on_transaction,
)
from schemas.events import TouchpointEvent
from schemas.vocabulary import TRANSACTION_EVENTS
from streams.core.actions import ActionsConfig, ActionScorer
from streams.core.ids import output_id
from streams.core.journey import JourneyLimits, JourneyState, evolve
from streams.core.scoring import Scoring

#: Event types that are a decision point whatever else happens.
DECISION_EVENTS = frozenset(
    {
        "live.product_click",
        "live.add_to_cart",
        "live.coupon_claim",
        "cart.add",
        "store.check_in",
        "store.consult",
        "store.trial",
        "chat.lead_submitted",
        *TRANSACTION_EVENTS,
    }
)
#: Chat intents that are a decision point (a price question).
DECISION_INTENTS = frozenset({"price_inquiry", "price", "promotion"})
#: A chat message this negative (sentiment in [-1, 1]) is a decision point.
NEGATIVE_SENTIMENT = -0.3


class Scorer(ActionScorer, Protocol):
    """The models a step scores with (the worker's hot-swapped snapshots)."""

    def score(self, target: str, features: Features) -> tuple[float, int]:
        """``(P(target | features), version of the model snapshot)``."""


@dataclass(frozen=True)
class DecisionConfig:
    scorer: Scorer
    #: Target -> event-time ms within which its outcome counts.
    horizons_ms: Horizons = field(
        default_factory=lambda: {"convert": 72 * HOUR, "churn": 14 * 24 * HOUR}
    )
    #: A customer gets a new decision at most this often (event time): the
    #: examples of one customer stay few and far apart.
    spacing_ms: int = HOUR
    #: Choosing an action at each decision (None: decisions are only scored).
    actions: ActionsConfig | None = None


def is_decision_point(event: TouchpointEvent, stage_before: str | None, stage: str | None) -> bool:
    """A customer's first stage (their first event) is not a stage change."""
    if (stage_before is not None and stage != stage_before) or event.event_type in DECISION_EVENTS:
        return True
    if event.event_type == "chat.message":
        props = event.properties
        intent = getattr(props, "intent", None)
        sentiment = getattr(props, "sentiment", None)
        return intent in DECISION_INTENTS or (
            sentiment is not None and sentiment <= NEGATIVE_SENTIMENT
        )
    return False


def record_decision(
    state: JourneyState,
    event: TouchpointEvent,
    at_ms: int,
    stage_before: str | None,
    config: DecisionConfig,
    limits: JourneyLimits,
    scoring: Scoring,
) -> tuple[JourneyState, tuple[int, ...], Decision | None, bool]:
    """Score and record a decision if this event is a decision point:
    ``(state, due times to index, the decision recorded, whether the oldest
    open decision was dropped unlabelled to make room)``. ``convert`` is
    scored for everyone, ``churn`` for customers who have bought (only they
    can leave)."""
    if not is_decision_point(event, stage_before, state.stage):
        return state, (), None, False
    latest = state.last_decision_ms
    if latest is not None and abs(at_ms - latest) < config.spacing_ms:
        return state, (), None, False
    features = journey_features(
        state,
        at_ms,
        scoring,
        timezone=event.context.timezone,
        in_live_room=bool(event.context.live_room_id),
    )
    scores: dict[str, float] = {}
    versions: dict[str, int] = {}
    for target in TARGETS:
        if target == "churn" and not state.transactions:
            continue
        if target not in config.horizons_ms:
            continue
        score, version = config.scorer.score(target, features)
        scores[target] = round(score, 6)
        versions[target] = version
    if not scores:
        return state, (), None, False
    decision = Decision(
        output_id("decision", state.customer_id, event.event_id), at_ms, features, scores, versions
    )
    decisions, dropped = add_decision(state.decisions, decision, limits.decisions)
    if decisions is state.decisions:
        return state, (), None, False
    update = {"decisions": decisions, "last_decision_ms": max(at_ms, latest or at_ms)}
    due = decision.due_ms(config.horizons_ms)
    return evolve(state, update), due, decision, dropped is not None


def label_transaction(
    state: JourneyState,
    event: TouchpointEvent,
    at_ms: int,
    config: DecisionConfig,
    limits: JourneyLimits,
) -> tuple[JourneyState, tuple[Example, ...]]:
    """A transaction labels (or corrects) the decisions it falls within the horizon of."""
    if event.event_type not in TRANSACTION_EVENTS or not (state.decisions or state.labelled):
        return state, ()
    return _labelled(
        state,
        on_transaction(state.decisions, state.labelled, at_ms, config.horizons_ms, limits.labelled),
    )


def label_clock(
    state: JourneyState, clock_ms: int, config: DecisionConfig, limits: JourneyLimits
) -> tuple[JourneyState, tuple[Example, ...]]:
    """The partition's clock reached ``clock_ms``: label what it passed the horizon of."""
    if not state.decisions:
        return state, ()
    return _labelled(
        state,
        on_clock(state.decisions, state.labelled, clock_ms, config.horizons_ms, limits.labelled),
    )


def _labelled(
    state: JourneyState,
    result: tuple[tuple[Decision, ...], tuple[Example, ...], tuple[Example, ...]],
) -> tuple[JourneyState, tuple[Example, ...]]:
    decisions, labelled, examples = result
    if not examples:
        return state, ()
    return evolve(state, {"decisions": decisions, "labelled": labelled}), examples
