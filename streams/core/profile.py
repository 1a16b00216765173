"""The customer profile that people read (API and CLI): the journey with
readable times. Identifiers are shown as stored (phone numbers hashed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streams.core.journey import JourneyState


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


def profile_view(state: JourneyState) -> dict[str, Any]:
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
        "state_version": state.version,
    }
