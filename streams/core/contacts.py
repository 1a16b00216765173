"""A customer's contact history: the actions chosen for them and what became
of each (issue #10). Contact policies (``streams.core.actions``) read it;
feedback and the response window write it. Pure and bounded.

A contact counts against caps and cooldowns from its ``at_ms`` (when it may
be delivered: the action's ``not_before``) unless delivery failed; a
holdout customer's contacts (``holdout``: logged, never sent) count the same
way, so what the holdout would have received follows the same policies as
what the treated group receives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["sent", "holdout", "delivered", "responded", "ignored", "failed"]
#: Outcomes of ``journeyflow.feedback`` that are a response to an action.
RESPONSES = frozenset({"opened", "clicked", "converted"})
#: A contact in one of these states counts against caps and cooldowns.
COUNTS = frozenset({"sent", "holdout", "delivered", "responded", "ignored"})
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


@dataclass(frozen=True)
class Contact:
    #: The action's output id (what feedback names as ``action_id``).
    id: str
    action: str
    #: Delivery channel (``schemas.vocabulary.DeliveryChannel``).
    channel: str
    #: The customer's stage when it was chosen (the response statistics' segment).
    segment: str
    #: When it may be delivered (``not_before``), event time.
    at_ms: int
    expires_ms: int
    #: How long after delivery a response counts; none by then is "ignored".
    window_ms: int
    #: Response rate expected when chosen (the posterior mean): the score the
    #: response statistics' quality is measured with.
    score: float
    status: Status = "sent"
    status_ms: int = 0

    @property
    def counts(self) -> bool:
        return self.status in COUNTS

    @property
    def awaiting_ms(self) -> int | None:
        """When an unanswered delivery becomes "ignored" (None: not waiting)."""
        return self.status_ms + self.window_ms if self.status == "delivered" else None


def with_status(contact: Contact, status: Status, at_ms: int) -> Contact:
    return replace(contact, status=status, status_ms=at_ms)


def add_contact(contacts: tuple[Contact, ...], contact: Contact, limit: int) -> tuple[Contact, ...]:
    """Add, keeping the newest ``limit`` by ``at_ms`` (a contact still awaiting
    a response is kept over an older settled one)."""
    return _bounded((*contacts, contact), limit)


def merge_contacts(
    a: tuple[Contact, ...], b: tuple[Contact, ...], limit: int
) -> tuple[Contact, ...]:
    """Both customers' histories (One-ID): caps and cooldowns follow the
    person. The same contact on both sides keeps its later status."""
    by_id: dict[str, Contact] = {}
    for contact in (*a, *b):
        known = by_id.get(contact.id)
        if known is None or contact.status_ms > known.status_ms:
            by_id[contact.id] = contact
    return _bounded(by_id.values(), limit)


def _bounded(contacts: Iterable[Contact], limit: int) -> tuple[Contact, ...]:
    ordered = sorted(contacts, key=lambda c: (c.at_ms, c.id))
    if len(ordered) <= limit:
        return tuple(ordered)
    waiting = [c for c in ordered if c.status == "delivered"]
    settled = [c for c in ordered if c.status != "delivered"]
    keep = {c.id for c in waiting[-limit:]}
    keep.update(c.id for c in settled[len(settled) - max(0, limit - len(keep)) :])
    return tuple(c for c in ordered if c.id in keep)


def prune(contacts: tuple[Contact, ...], now_ms: int, keep_ms: int) -> tuple[Contact, ...]:
    """Drop settled contacts older than ``keep_ms`` (no cap or cooldown reads them)."""
    kept = tuple(c for c in contacts if c.status == "delivered" or c.at_ms > now_ms - keep_ms)
    return contacts if len(kept) == len(contacts) else kept
