"""Delayed labels from event time: a decision's outcome is known only later.

A decision (scored features at an event-time instant) stays open until its
outcome is known:

- a transaction at or after the decision and within the horizon makes a
  ``convert`` decision positive (a ``churn`` decision negative: the customer
  did not leave);
- once the partition's event-time clock passes the decision's horizon with
  no transaction, the decision is labelled the other way (also for a
  customer who never comes back: the idle tick moves the clock);
- a transaction that arrives late, after its decision was already labelled
  by the clock, corrects the label (an :class:`Example` with ``correction``).

Only the decision's own features and score go into the example: nothing
after the decision leaks in. Everything here is pure and bounded per
customer (``limit`` open decisions, ``limit`` labelled ones kept for late
corrections).

>>> open_ = (Decision("d1", "convert", 0, {"lead_score": 5.0}, 0.4),)
>>> open_, settled, examples = on_transaction(open_, (), at_ms=3_600_000, horizon_ms=HOUR * 72)
>>> [(e.decision_id, e.label) for e in examples], open_
([('d1', True)], ())
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from models.features import Features

HOUR = 3_600_000
Target = Literal["convert", "churn"]


@dataclass(frozen=True)
class Decision:
    """A scored decision waiting for its label."""

    decision_id: str
    target: Target
    at_ms: int
    features: Features
    score: float


@dataclass(frozen=True)
class Example:
    """A labelled decision: what the trainer learns from and quality is measured on."""

    decision_id: str
    target: Target
    at_ms: int
    features: Features
    score: float
    label: bool
    #: Event time at which the label became known.
    labelled_ms: int
    #: Replaces an earlier label of the same decision (a late transaction).
    correction: bool = False


def _label(target: Target, bought: bool) -> bool:
    return bought if target == "convert" else not bought


def _example(d: Decision, bought: bool, at_ms: int, correction: bool = False) -> Example:
    return Example(
        d.decision_id,
        d.target,
        d.at_ms,
        d.features,
        d.score,
        _label(d.target, bought),
        at_ms,
        correction,
    )


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
    settled: tuple[Example, ...],
    at_ms: int,
    horizon_ms: int,
    limit: int = 16,
) -> tuple[tuple[Decision, ...], tuple[Example, ...], tuple[Example, ...]]:
    """A transaction at ``at_ms``: ``(still open, settled, new examples)``.

    Open decisions it falls within the horizon of are labelled; decisions
    the clock already labelled as not bought, that it falls within, are
    corrected. ``settled`` keeps the newest ``limit`` labelled decisions for
    such corrections.
    """
    examples: list[Example] = []
    still: list[Decision] = []
    for d in open_:
        if d.at_ms <= at_ms <= d.at_ms + horizon_ms:
            examples.append(_example(d, True, at_ms))
        else:
            still.append(d)
    kept: list[Example] = []
    for e in settled:
        bought = _label(e.target, True)
        if e.label != bought and e.at_ms <= at_ms <= e.at_ms + horizon_ms:
            examples.append(replace(e, label=bought, labelled_ms=at_ms, correction=True))
        else:
            kept.append(e)
    settled_now = (*kept, *examples)[-limit:]
    return tuple(still), settled_now, tuple(examples)


def on_clock(
    open_: tuple[Decision, ...],
    settled: tuple[Example, ...],
    clock_ms: int,
    horizon_ms: int,
    limit: int = 16,
) -> tuple[tuple[Decision, ...], tuple[Example, ...], tuple[Example, ...]]:
    """The partition's event-time clock reached ``clock_ms``: decisions whose
    horizon has passed without a transaction are labelled ``not bought``."""
    examples = tuple(_example(d, False, clock_ms) for d in open_ if d.at_ms + horizon_ms < clock_ms)
    if not examples:
        return open_, settled, ()
    done = {e.decision_id for e in examples}
    still = tuple(d for d in open_ if d.decision_id not in done)
    return still, (*settled, *examples)[-limit:], examples
