"""Delayed labels from event time: a decision's outcome is known only later.

A decision (the customer's features at an event-time instant, scored for
each target) stays open until the outcome of each of its targets is known:

- a transaction at or after the decision and within a target's horizon
  labels ``convert`` positive (and ``churn`` negative: the customer did not
  leave);
- once the partition's event-time clock passes a target's horizon with no
  transaction, that target is labelled the other way (also for a customer
  who never comes back: the idle tick moves the clock);
- a transaction that arrives late, after the clock labelled a target, corrects
  the label (an :class:`Example` with ``correction``); the clock-labelled
  examples are kept (``limit``) for that.

Only the decision's own features and scores go into an example: nothing
after the decision leaks in. Everything here is pure and bounded per
customer.

>>> d = Decision("d1", 0, {"lead_score": 5.0}, {"convert": 0.4, "churn": 0.2})
>>> horizons = {"convert": 72 * HOUR, "churn": 14 * 24 * HOUR}
>>> open_, labelled, examples = on_transaction((d,), (), 3_600_000, horizons)
>>> [(e.target, e.label) for e in examples], open_, labelled
([('convert', True), ('churn', False)], (), ())
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

HOUR = 3_600_000
Target = Literal["convert", "churn"]
TARGETS: tuple[Target, ...] = ("convert", "churn")

#: A model's input: feature name -> value (``models.features``).
Features = dict[str, float]
#: Target -> event-time milliseconds within which its outcome counts.
Horizons = dict[str, int]


@dataclass(frozen=True)
class Decision:
    """A scored decision waiting for its labels."""

    decision_id: str
    at_ms: int
    features: Features
    #: Target -> score given at the decision, for the targets still waiting
    #: for their label (a target leaves when labelled; the decision closes
    #: when none is left).
    scores: dict[str, float]
    #: Target -> version of the model snapshot that gave the score (0: an
    #: untrained model).
    versions: dict[str, int] = field(default_factory=dict)
    #: The customer's holdout group once next-best-action arbitrated at this
    #: decision (``streams.core.actions.grouped``): ``treated`` (an action
    #: chosen is sent) or ``holdout`` (logged, not sent); None without a
    #: catalog. Its labels say how each group converts (the lift).
    group: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Read a stored decision; fields a newer writer added are ignored
        (a worker of this version reading them during a rolling upgrade)."""
        return cls(**{k: v for k, v in data.items() if k in _DECISION_FIELDS})

    def due_ms(self, horizons: Horizons) -> tuple[int, ...]:
        """Event times at which the clock labels the open targets."""
        return tuple(sorted({self.at_ms + horizons[t] + 1 for t in self.scores if t in horizons}))


@dataclass(frozen=True)
class Example:
    """A labelled decision: what the trainer learns from and quality is measured on."""

    decision_id: str
    target: str
    at_ms: int
    features: Features
    score: float
    version: int
    label: bool
    #: Event time at which the label became known.
    labelled_ms: int
    #: Replaces an earlier label of the same decision (a late transaction).
    correction: bool = False
    #: Target ``responses`` only: the action and segment (``action|segment``,
    #: ``models.bandit``) whose delivery this is the outcome of.
    arm: str | None = None
    #: The decision's holdout group (:attr:`Decision.group`).
    group: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        """Read a stored or sent example (fields a newer writer added are ignored)."""
        return cls(**{k: v for k, v in data.items() if k in _EXAMPLE_FIELDS})


_DECISION_FIELDS = frozenset(f.name for f in fields(Decision))
_EXAMPLE_FIELDS = frozenset(f.name for f in fields(Example))


def _label(target: str, bought: bool) -> bool:
    return bought if target == "convert" else not bought


def _example(d: Decision, target: str, bought: bool, at_ms: int) -> Example:
    return Example(
        d.decision_id,
        target,
        d.at_ms,
        d.features,
        d.scores[target],
        d.versions.get(target, 0),
        _label(target, bought),
        at_ms,
        group=d.group,
    )


def _without(d: Decision, done: set[str]) -> Decision | None:
    """The decision with ``done`` targets labelled (None: nothing left open)."""
    if not done:
        return d
    scores = {t: s for t, s in d.scores.items() if t not in done}
    if not scores:
        return None
    versions = {t: v for t, v in d.versions.items() if t in scores}
    return replace(d, scores=scores, versions=versions)


def add_decision(
    open_: tuple[Decision, ...], decision: Decision, limit: int
) -> tuple[tuple[Decision, ...], Decision | None]:
    """Open a decision; beyond ``limit`` the oldest is dropped (returned),
    unlabelled, so the state stays bounded."""
    if any(d.decision_id == decision.decision_id for d in open_):
        return open_, None  # the same decision again (a redelivery)
    ordered = tuple(sorted((*open_, decision), key=lambda d: (d.at_ms, d.decision_id)))
    if len(ordered) > limit:
        return ordered[1:], ordered[0]
    return ordered, None


def on_transaction(
    open_: tuple[Decision, ...],
    labelled: tuple[Example, ...],
    at_ms: int,
    horizons: Horizons,
    limit: int = 4,
) -> tuple[tuple[Decision, ...], tuple[Example, ...], tuple[Example, ...]]:
    """A transaction at ``at_ms``: ``(still open, clock-labelled kept, new examples)``.

    Open targets it falls within the horizon of are labelled; targets the
    clock already labelled as not bought, that it falls within, are
    corrected (and leave ``labelled``: a transaction's label is final).
    """
    examples: list[Example] = []
    still: list[Decision] = []
    for d in open_:
        done = {t for t in d.scores if t in horizons and d.at_ms <= at_ms <= d.at_ms + horizons[t]}
        examples.extend(_example(d, t, True, at_ms) for t in d.scores if t in done)
        left = _without(d, done)
        if left is not None:
            still.append(left)
    kept: list[Example] = []
    for e in labelled:
        bought = _label(e.target, True)
        horizon = horizons.get(e.target)
        if horizon is not None and e.label != bought and e.at_ms <= at_ms <= e.at_ms + horizon:
            examples.append(replace(e, label=bought, labelled_ms=at_ms, correction=True))
        else:
            kept.append(e)
    return tuple(still), tuple(kept[-limit:]), tuple(examples)


def on_clock(
    open_: tuple[Decision, ...],
    labelled: tuple[Example, ...],
    clock_ms: int,
    horizons: Horizons,
    limit: int = 4,
) -> tuple[tuple[Decision, ...], tuple[Example, ...], tuple[Example, ...]]:
    """The partition's event-time clock reached ``clock_ms``: targets whose
    horizon has passed without a transaction are labelled ``not bought``."""
    examples: list[Example] = []
    still: list[Decision] = []
    for d in open_:
        done = {t for t in d.scores if t in horizons and d.at_ms + horizons[t] < clock_ms}
        examples.extend(_example(d, t, False, clock_ms) for t in d.scores if t in done)
        left = _without(d, done)
        if left is not None:
            still.append(left)
    if not examples:
        return open_, labelled, ()
    return tuple(still), (*labelled, *examples)[-limit:], tuple(examples)


def merge_decisions(
    a: tuple[Decision, ...], b: tuple[Decision, ...], limit: int
) -> tuple[Decision, ...]:
    """Two customers' open decisions as one's (One-ID): the newest ``limit``."""
    known = {d.decision_id: d for d in a}
    for d in b:
        known.setdefault(d.decision_id, d)
    ordered = sorted(known.values(), key=lambda d: (d.at_ms, d.decision_id))
    return tuple(ordered[-limit:])


def merge_labelled(
    a: tuple[Example, ...], b: tuple[Example, ...], limit: int
) -> tuple[Example, ...]:
    """Two customers' clock-labelled examples as one's: the newest ``limit``."""
    known = {(e.decision_id, e.target): e for e in a}
    for e in b:
        known.setdefault((e.decision_id, e.target), e)
    ordered = sorted(known.values(), key=lambda e: (e.labelled_ms, e.decision_id, e.target))
    return tuple(ordered[-limit:])
