"""The small condition language of stage models and decision rules.

A condition reads either a state metric (``metric``) or an event field
(``field``: ``event_type``, ``channel``, ``properties.<name>``,
``context.<name>``) and compares it with ``value``.

>>> from schemas.codec import decode_touchpoint
>>> ev = decode_touchpoint(b'{"event_id":"e","event_type":"chat.message","channel":"chatbot",'
...     b'"occurred_at":"2026-11-23T20:00:00+08:00","identities":{"device_id":"d1"},'
...     b'"properties":{"text":"bad","sentiment":-0.8}}')
>>> Condition(field="properties.sentiment", op="<=", value=-0.5).holds(None, ev)
True
>>> Condition(metric="transactions", op="==", value=0).holds({"transactions": 0}, ev)
True
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from schemas.events import TouchpointEvent

Op = Literal["==", "!=", ">", ">=", "<", "<=", "exists", "missing", "in", "contains_any"]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a is not None and a > b,
    ">=": lambda a, b: a is not None and a >= b,
    "<": lambda a, b: a is not None and a < b,
    "<=": lambda a, b: a is not None and a <= b,
    "exists": lambda a, _b: a is not None and a != "",
    "missing": lambda a, _b: a is None or a == "",
    "in": lambda a, b: a in b,
    "contains_any": lambda a, b: isinstance(a, str) and _contains_any(a.lower(), b),
}


def _contains_any(text: str, words: list[str]) -> bool:
    return any(w in text for w in words)


#: Something that yields the value of a metric name: a mapping or a callable.
Metrics = Mapping[str, Any] | Callable[[str], Any] | None


def event_field(event: TouchpointEvent, path: str) -> Any:
    """Read ``event_type``, ``channel``, ``event_id``, ``properties.x``, ``context.x``."""
    head, _, rest = path.partition(".")
    if not rest:
        return getattr(event, head, None)
    part = getattr(event, head, None)
    if part is None:
        return None
    if isinstance(part, dict):
        return part.get(rest)
    value = getattr(part, rest, None)
    if value is None and part.model_extra:
        value = part.model_extra.get(rest)
    return value


def metric_of(metrics: Metrics, name: str) -> Any:
    if metrics is None:
        return None
    if callable(metrics):
        return metrics(name)
    return metrics.get(name)


class Condition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str | list[str] | None = None
    field: str | None = None
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _one_source(self) -> Condition:
        if (self.metric is None) == (self.field is None):
            raise ValueError("a condition names exactly one of 'metric' or 'field'")
        if self.op == "contains_any":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("contains_any needs a non-empty list of words")
            object.__setattr__(self, "value", [str(w).lower() for w in self.value])
        return self

    def read(self, metrics: Metrics, event: TouchpointEvent | None) -> Any:
        if self.metric is not None:
            if isinstance(self.metric, list):
                return sum(metric_of(metrics, m) or 0 for m in self.metric)
            return metric_of(metrics, self.metric)
        assert self.field is not None
        return None if event is None else event_field(event, self.field)

    def holds(self, metrics: Metrics, event: TouchpointEvent | None) -> bool:
        try:
            return _COMPARE[self.op](self.read(metrics, event), self.value)
        except TypeError:  # e.g. a string compared with a number: the rule does not apply
            return False


def met(
    conditions: list[Condition],
    match: Literal["any", "all"],
    metrics: Metrics,
    event: TouchpointEvent | None = None,
) -> bool:
    """Do ``any`` / ``all`` of the conditions hold?

    >>> rich = [Condition(metric="transactions", op=">=", value=2)]
    >>> met([*rich, Condition(metric="events_total", op=">=", value=1)], "any", {"events_total": 1})
    True
    """
    hits = (c.holds(metrics, event) for c in conditions)
    return any(hits) if match == "any" else all(hits)


_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9_.:\-]+)\}")


def render(template: Any, resolve: Callable[[str], Any]) -> Any:
    """Fill ``{path}`` placeholders. A string that is one placeholder keeps its type.

    >>> render("room {context.room}", {"context.room": "r1"}.get)
    'room r1'
    >>> render("{state.n}", {"state.n": 3}.get)
    3
    """
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return resolve(whole.group(1))

    def _one(match: re.Match[str]) -> str:
        value = resolve(match.group(1))
        return "" if value is None else str(value)

    return _PLACEHOLDER.sub(_one, template)
