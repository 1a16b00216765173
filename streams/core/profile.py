"""The customer profile that people read (API and CLI): the journey with
readable times, its scores, attribution and tags. Identifiers are shown as
stored (phone numbers hashed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.core.conditions import met
from streams.core.journey import JourneyState
from streams.core.scoring import (
    DAY_MS,
    MetricReader,
    Scoring,
    decayed_at,
    is_effective_member,
    ltv_estimate,
)

#: The parts of a profile read from the decisions table (``DECISION_FIELDS``),
#: not from the journey record: what each side of a merge or a replay knew
#: when it decided, so comparisons of journeys leave them out.
DECISION_PARTS = ("decisions", "actions", "ignored_in_a_row")


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC.

    >>> iso(0)
    '1970-01-01T00:00:00.000Z'
    """
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def customer_metrics(state: JourneyState, scoring: Scoring) -> MetricReader:
    """The journey's metrics plus the scores derived with the scoring file:
    ``effective_member``, ``engagement:<channel:x|event:type>`` (decayed, as
    of the customer's last event), ``ltv_minor:<CUR>``, ``channels_seen``."""

    def read(name: str) -> Any:
        kind, _, arg = name.partition(":")
        if name == "effective_member":
            return is_effective_member([o[1] for o in state.orders], scoring.effective_member)
        if name == "channels_seen":
            return len(state.channel_counts)
        if kind == "engagement":
            counter = state.engagement.get(arg)
            if counter is None:
                return 0.0
            return decayed_at(counter, state.last_seen_ms, scoring.half_life_ms)
        if kind == "ltv_minor":
            return _ltv(state, scoring).get(arg, 0)
        return state.metric(name)

    return read


def _ltv(state: JourneyState, scoring: Scoring) -> dict[str, int]:
    out = {}
    for currency, spend in state.spend_minor.items():
        times = [o[1] for o in state.orders if o[2] == currency]
        n = state.transactions if len(state.spend_minor) == 1 else max(1, len(times))
        out[currency] = ltv_estimate(spend, times, n, scoring.ltv_horizon_days)
    return out


def tags_for(state: JourneyState, scoring: Scoring) -> list[str]:
    """The scoring file's tags whose conditions hold now."""
    read = customer_metrics(state, scoring)
    return [rule.id for rule in scoring.tags if met(rule.when, rule.match, read)]


def _touch(touch: tuple[int, str] | None) -> dict[str, Any] | None:
    return None if touch is None else {"channel": touch[1], "at": iso(touch[0])}


def profile_view(state: JourneyState, scoring: Scoring | None = None) -> dict[str, Any]:
    """What people read about a customer. Derived scores are as of the
    customer's last event (event time), so replaying gives the same profile."""
    scoring = scoring or Scoring()
    read = customer_metrics(state, scoring)
    recency = (
        None
        if state.last_purchase_ms is None
        else round((state.last_seen_ms - state.last_purchase_ms) / DAY_MS, 2)
    )
    return {
        "customer_id": state.customer_id,
        "identifiers": list(state.identifiers),
        "stage": state.stage,
        "stage_history": [
            {"stage": e.stage, "entered_at": iso(e.entered_ms), "cause_event_id": e.cause_event_id}
            for e in state.stage_history
        ],
        "first_seen": iso(state.first_seen_ms),
        "last_seen": iso(state.last_seen_ms),
        "events_total": state.events_total,
        "duplicates_dropped": state.duplicates,
        "channels": dict(sorted(state.channel_counts.items())),
        "event_types": dict(sorted(state.event_counts.items())),
        "watch_seconds": state.watch_seconds,
        "transactions": state.transactions,
        "spend_minor": state.spend_minor,
        "refunds_minor": state.refunds_minor,
        "last_purchase": iso(state.last_purchase_ms),
        "last_live_room_id": state.last_live_room_id,
        "last_store_id": state.last_store_id,
        "consent": state.consent,
        "scores": {
            "lead_score": state.lead_score,
            "engagement": {
                name: round(read(f"engagement:{name}"), 4) for name in sorted(state.engagement)
            },
            "engagement_half_life_days": scoring.engagement_half_life_days,
            "effective_member": read("effective_member"),
            "rfm": {
                "recency_days": recency,
                "frequency": state.transactions,
                "monetary_minor": state.spend_minor,
            },
            "ltv_estimate_minor": _ltv(state, scoring),
        },
        "attribution": {
            "first_touch": _touch(state.first_touch),
            "last_touch": _touch(state.last_touch),
        },
        "tags": tags_for(state, scoring),
        "feedback": dict(sorted(state.feedback_counts.items())),
        "decisions": {
            "last": iso(state.last_decision_ms),
            "open": [
                {"at": iso(d.at_ms), "scores": d.scores, "model_versions": d.versions}
                for d in state.decisions
            ],
        },
        "actions": [
            {
                "id": c.id,
                "action": c.action,
                "channel": c.channel,
                "not_before": iso(c.at_ms),
                "status": c.status,
                "status_at": iso(c.status_ms),
            }
            for c in reversed(state.contacts)
        ],
        "ignored_in_a_row": dict(sorted(state.ignored.items())),
        "state_version": state.version,
    }
