"""Scores and tags as data: decayed engagement, lead score points, the
effective-member rule, a lifetime-value estimate, RFM and dynamic tags.

What the journey stores is mergeable (One-ID folds journeys): engagement
counters are exponentially decayed sums kept with the time they refer to,
the lead score is a sum of points per event, first and last touch are the
earliest and latest touch by event time. Everything else here is derived
from the stored journey when read, so it needs no merge rule at all.

>>> scoring = parse_scoring({"engagement_half_life_days": 1})
>>> value, at = add_decayed(None, 0, scoring.half_life_ms)
>>> value, at = add_decayed((value, at), 86_400_000, scoring.half_life_ms)
>>> round(value, 6), at   # the first event is worth half a day later
(1.5, 86400000)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.events import TouchpointEvent
from schemas.vocabulary import TRANSACTION_EVENTS
from streams.core.conditions import Condition
from streams.core.errors import CoreError

DAY_MS = 86_400_000
#: Event types that are not touches (engagement, attribution): money and paperwork.
NOT_TOUCHES = frozenset(
    {
        *TRANSACTION_EVENTS,
        "store.return",
        "order.refund",
        "consent.granted",
        "consent.revoked",
        "privacy.erase",
    }
)

Decayed = tuple[float, int]


def add_decayed(current: Decayed | None, at_ms: int, half_life_ms: float) -> Decayed:
    """Add one event at ``at_ms`` to a decayed counter ``(value, as of ms)``.

    The counter is kept as of its newest event; an older (late) event adds
    its already-decayed weight. The result does not depend on the order of
    the events (up to float rounding).
    """
    if current is None:
        return 1.0, at_ms
    value, ref = current
    if at_ms >= ref:
        return value * _decay(at_ms - ref, half_life_ms) + 1.0, at_ms
    return value + _decay(ref - at_ms, half_life_ms), ref


def merge_decayed(a: Decayed, b: Decayed, half_life_ms: float) -> Decayed:
    """The sum of two decayed counters, as of the later of their times."""
    ref = max(a[1], b[1])
    value = a[0] * _decay(ref - a[1], half_life_ms) + b[0] * _decay(ref - b[1], half_life_ms)
    return value, ref


def decayed_at(counter: Decayed, at_ms: int, half_life_ms: float) -> float:
    value, ref = counter
    return value * _decay(max(0, at_ms - ref), half_life_ms)


def _decay(elapsed_ms: float, half_life_ms: float) -> float:
    return math.pow(2.0, -elapsed_ms / half_life_ms)


class PointRule(BaseModel):
    """Lead score points for an event (conditions read the event only, so the
    score is a plain sum: the same whatever the order)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    on: list[str] = Field(min_length=1)
    points: int
    when: list[Condition] = Field(default_factory=list)

    @model_validator(mode="after")
    def _event_only(self) -> PointRule:
        if any(c.metric is not None for c in self.when):
            raise ValueError("lead point conditions read the event (field), not metrics")
        return self


class TagRule(BaseModel):
    """A tag a customer carries while its conditions hold (computed when read)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    match: Literal["any", "all"] = "all"
    when: list[Condition] = Field(min_length=1)

    @model_validator(mode="after")
    def _metrics_only(self) -> TagRule:
        if any(c.field is not None for c in self.when):
            raise ValueError(f"tag {self.id}: tag conditions read metrics, not event fields")
        return self


class EffectiveMember(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    transactions: int = Field(default=2, ge=1)
    within_days: float = Field(default=365, gt=0)


class Scoring(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = "1"
    engagement_half_life_days: float = Field(default=14, gt=0)
    effective_member: EffectiveMember = Field(default_factory=EffectiveMember)
    ltv_horizon_days: float = Field(default=365, gt=0)
    lead_points: list[PointRule] = Field(default_factory=list)
    tags: list[TagRule] = Field(default_factory=list)

    @property
    def half_life_ms(self) -> float:
        return self.engagement_half_life_days * DAY_MS

    def points(self, event: TouchpointEvent) -> int:
        rules = self._points_by_type.get(event.event_type)
        if not rules:
            return 0
        return sum(rule.points for rule in rules if all(c.holds(None, event) for c in rule.when))

    @cached_property
    def _points_by_type(self) -> dict[str, tuple[PointRule, ...]]:
        """Event type -> the point rules on it, in file order."""
        out: dict[str, list[PointRule]] = {}
        for rule in self.lead_points:
            for event_type in dict.fromkeys(rule.on):
                out.setdefault(event_type, []).append(rule)
        return {k: tuple(v) for k, v in out.items()}


def parse_scoring(data: Any) -> Scoring:
    try:
        return Scoring.model_validate(data)
    except ValidationError as exc:
        raise CoreError(f"invalid scoring file: {exc}") from None


def is_effective_member(order_times: list[int], rule: EffectiveMember) -> bool:
    """``rule.transactions`` distinct orders within ``rule.within_days`` of each other.

    >>> is_effective_member([0, 10 * DAY_MS], EffectiveMember(within_days=30))
    True
    >>> is_effective_member([0, 40 * DAY_MS], EffectiveMember(within_days=30))
    False
    """
    times = sorted(order_times)
    span = rule.within_days * DAY_MS
    n = rule.transactions
    return any(times[i + n - 1] - times[i] <= span for i in range(len(times) - n + 1))


def ltv_estimate(
    spend_minor: int, order_times: list[int], transactions: int, horizon_days: float
) -> int:
    """Spend so far plus the average order value times the orders the customer's
    own purchase rate predicts over the horizon (no rate from one order).

    >>> ltv_estimate(20000, [0, 30 * DAY_MS], 2, 365)  # an order a month: about 12 more
    141667
    """
    if transactions == 0:
        return 0
    times = sorted(order_times)
    if len(times) < 2 or times[-1] == times[0]:
        return spend_minor
    rate_per_day = (len(times) - 1) / ((times[-1] - times[0]) / DAY_MS)
    aov = spend_minor / transactions
    return round(spend_minor + aov * rate_per_day * horizon_days)


MetricReader = Callable[[str], Any]
