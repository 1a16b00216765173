"""Journey stage models as data: ordered stages, each entered when its
conditions over the journey's metrics hold. Stages only move forward here;
decay (e.g. Loyalty -> lapsed after 180 days without a transaction) is
scheduled as a pending item and happens on event-time ticks.

>>> model = parse_stage_model({"name": "two", "stages": [
...     {"id": "seen", "when": [{"metric": "events_total", "op": ">=", "value": 1}]},
...     {"id": "bought", "when": [{"metric": "transactions", "op": ">=", "value": 1}]}]})
>>> model.furthest({"events_total": 1, "transactions": 1}, current=None)
'bought'
>>> model.furthest({"events_total": 1, "transactions": 0}, current="bought")
'bought'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streams.core.conditions import Condition, Metrics, met
from streams.core.errors import CoreError


class Stage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = ""
    match: Literal["any", "all"] = "any"
    when: list[Condition] = Field(min_length=1)

    def reached(self, metrics: Metrics) -> bool:
        return met(self.when, self.match, metrics)


#: Metrics that only grow, one event (or, for ``transactions``, one order)
#: at a time: when a threshold on them was first crossed in event-time order
#: can be kept in bounded, mergeable state (``streams.core.journey``).
COUNTED = frozenset({"events_total", "engagements", "watch_seconds", "transactions"})
COUNTED_PREFIXES = ("events:", "channel:")


@dataclass(frozen=True)
class Counted:
    """A stage model whose conditions are all thresholds on counted metrics:
    the largest threshold per metric, and per stage (in order) its id, match
    and conditions as ``(metric names, n)``."""

    needs: dict[str, int]
    stages: tuple[tuple[str, str, tuple[tuple[tuple[str, ...], int], ...]], ...]


def threshold(condition: Condition) -> tuple[tuple[str, ...], int] | None:
    """``(metric names, n)`` when the condition reads "the sum of these counted
    metrics is at least n" (n >= 1); None for any other condition.

    >>> threshold(Condition(metric="transactions", op=">=", value=2))
    (('transactions',), 2)
    >>> threshold(Condition(metric=["events:live.share", "events:group.message"], op=">", value=1))
    (('events:live.share', 'events:group.message'), 2)
    >>> threshold(Condition(metric="lead_score", op=">=", value=10)) is None
    True
    """
    if condition.metric is None or condition.op not in (">=", ">"):
        return None
    value = condition.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    names = (condition.metric,) if isinstance(condition.metric, str) else tuple(condition.metric)
    if not all(n in COUNTED or n.startswith(COUNTED_PREFIXES) for n in names):
        return None
    n = math.ceil(value) if condition.op == ">=" else math.floor(value) + 1
    return (names, n) if n >= 1 else None


class Decay(BaseModel):
    """A stage that lapses: ``from`` becomes ``to`` once ``after_days`` of
    event time pass without a transaction (evaluated on event-time ticks).
    A new transaction takes the journey forward again."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_stage: str = Field(alias="from")
    to: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = ""
    after_days: float = Field(gt=0)

    @property
    def rule_id(self) -> str:
        return f"stage_decay_{self.from_stage}_{self.to}"


class StageModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    stages: list[Stage] = Field(min_length=1)
    decay: list[Decay] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> StageModel:
        ids = [s.id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise ValueError("stage ids must be unique")
        for stage in self.stages:
            if any(c.field is not None for c in stage.when):
                raise ValueError(f"stage {stage.id}: stage conditions read metrics, not fields")
        for rule in self.decay:
            if rule.from_stage not in ids:
                raise ValueError(f"decay from unknown stage {rule.from_stage!r}")
            if rule.to in ids:
                raise ValueError(f"decay target {rule.to!r} must not be a forward stage")
        return self

    def decayed(self, stage_id: str | None) -> bool:
        """Is this a stage a journey decays into (outside the forward order)?"""
        return stage_id in self._decay_targets

    @cached_property
    def _decay_targets(self) -> frozenset[str]:
        return frozenset(rule.to for rule in self.decay)

    def rank(self, stage_id: str | None) -> int:
        for i, stage in enumerate(self.stages):
            if stage.id == stage_id:
                return i
        return -1

    @cached_property
    def counted(self) -> Counted | None:
        """The model as thresholds on counted metrics, when every stage
        condition is one (then entry times are exact, see
        ``journey.advance_stage``); else None."""
        needs: dict[str, int] = {}
        stages: list[tuple[str, str, tuple[tuple[tuple[str, ...], int], ...]]] = []
        for stage in self.stages:
            conditions = []
            for condition in stage.when:
                found = threshold(condition)
                if found is None:
                    return None
                names, n = found
                for name in names:
                    needs[name] = max(n, needs.get(name, 0))
                conditions.append(found)
            stages.append((stage.id, stage.match, tuple(conditions)))
        return Counted(needs, tuple(stages))

    def furthest(self, metrics: Metrics, current: str | None) -> str | None:
        """The furthest stage reached, never behind ``current``."""
        best = self.rank(current)
        for i in range(len(self.stages) - 1, best, -1):
            if self.stages[i].reached(metrics):
                return self.stages[i].id
        return current


def parse_stage_model(data: Any) -> StageModel:
    try:
        return StageModel.model_validate(data)
    except ValidationError as exc:
        raise CoreError(f"invalid stage model: {exc}") from None
