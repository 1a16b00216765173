"""What a model sees of a customer at a decision: a flat dict of numbers.

Features are read from the journey **as it stands at the decision** (after
the event that made it) and the decision's event time, never from anything
later, and the dict is a new object: recording it with the decision keeps
exactly what the model was shown, whatever the journey does next. Every
value is a float; names are stable (a model learns per name), and the
vocabulary is closed (channels, event types and stages of the shipped
models), so a customer cannot grow the feature space.

>>> from streams.core.journey import JourneyState
>>> j = JourneyState(customer_id="member_id:M-1", stage="interest", events_total=3,
...                  last_seen_ms=1_795_435_200_000)
>>> x = journey_features(j, 1_795_435_200_000)
>>> x["stage=interest"], x["events_log"] > 1.3, x["recency_days"] == NEVER_DAYS
(1.0, True, True)
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from models.labels import Features
from streams.core.journey import JourneyState
from streams.core.scoring import DAY_MS, Scoring, decayed_at

__all__ = ["NEVER_DAYS", "Features", "journey_features"]

#: Decimals kept: a recorded decision is stored with its features, and
#: what is stored is exactly what the model was shown.
ROUND = 4
#: Days a missing recency counts as (never bought: as if long ago).
NEVER_DAYS = 365.0
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _log(value: float) -> float:
    return math.log1p(max(0.0, value))


def journey_features(
    state: JourneyState,
    at_ms: int,
    scoring: Scoring | None = None,
    *,
    timezone: str = "Asia/Shanghai",
    in_live_room: bool = False,
) -> Features:
    """The customer's features at ``at_ms`` (event time of the decision).

    ``timezone`` is the customer's (the event's ``context.timezone``): hour
    and weekday are local. ``in_live_room``: the deciding event came from a
    live room that is on now.
    """
    scoring = scoring or Scoring()
    x: Features = {}
    if state.stage is not None:
        x[f"stage={state.stage}"] = 1.0
    x["events_log"] = _log(state.events_total)
    x["transactions"] = float(state.transactions)
    x["spend_log"] = _log(sum(state.spend_minor.values()) / 100)
    x["refunded"] = 1.0 if any(state.refunds_minor.values()) else 0.0
    x["watch_minutes_log"] = _log(state.watch_seconds / 60)
    x["lead_score"] = float(state.lead_score)
    x["channels"] = float(len(state.channel_counts))
    x["recency_days"] = (
        NEVER_DAYS
        if state.last_purchase_ms is None
        else min(NEVER_DAYS, max(0.0, (at_ms - state.last_purchase_ms) / DAY_MS))
    )
    tenure = (at_ms - state.first_seen_ms) / DAY_MS if state.events_total else 0.0
    x["tenure_days"] = max(0.0, tenure)
    half_life = scoring.half_life_ms
    for name, counter in state.engagement.items():
        x[f"eng:{name}"] = decayed_at(counter, at_ms, half_life)
    for outcome, n in state.feedback_counts.items():
        x[f"feedback:{outcome}"] = _log(n)
    local = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(_zone(timezone))
    hour = local.hour + local.minute / 60
    x["hour_sin"] = math.sin(2 * math.pi * hour / 24)
    x["hour_cos"] = math.cos(2 * math.pi * hour / 24)
    x[f"dow={_WEEKDAYS[local.weekday()]}"] = 1.0
    if in_live_room:
        x["in_live_room"] = 1.0
    return {name: round(value, ROUND) for name, value in x.items()}
