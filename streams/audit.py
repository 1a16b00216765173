"""An independent check of the contact policies on what the engine sent.

Its own code, not the deciding code (``streams.core.actions``): it reads the
catalog as plain JSON, the catalog actions as they were published on
``journeyflow.actions`` and ``journeyflow.holdout`` (the holdout's contacts
count too), and the journeys changelog, and recomputes for every action the
per-channel caps per local calendar day and per rolling 7 days, the caps
over all channels, the action's cooldown, the quiet hours and the
suppression after a purchase, in the customer's local time (one time zone
for the run: the actions do not carry the customer's).

What the engine could know when it decided. An action is judged against the
contacts and purchases its customer's journey held at that moment, not
against everything the run ends with: One-ID links customers as events
reveal them, and two people's contacts made before anyone knew they were
one person may together exceed a cap without any decision breaking a
policy. So an action of customer ``c`` counts:

- ``c``'s own earlier actions (a customer decides in event-time order: only
  at its newest event);
- every action of a customer ``c`` had absorbed, once the journey record of
  ``c`` that lists it was written before the action was first emitted
  (records carry the Kafka timestamp of their write; a batch's outputs are
  emitted before its records are written, so a fold applied in the same
  batch as the decision is given the benefit of the doubt);
- purchases likewise: an order counts from the first record of ``c``'s
  journey that lists it.

After a crash an action may be published twice under its id: the first
emission is the one that counts. Deliveries reported ``failed`` count
against nothing.

The suppression after ignored deliveries is recomputed from the feedback
stream (``journeyflow.feedback``): per action, in the order the journey
learned each outcome (the first changelog record listing its feedback id),
an ``ignored`` of a contact still awaiting a response adds one, an
``unsubscribed`` reaches the limit at once, a response starts again from
zero; an action sent while the count was at ``ignored_limit`` breaks the
policy. A delivery whose response window (the catalog's
``response_window_hours`` after the delivery's time) closed before the
decision's event time without an answer is ignored too: the engine counts it
at the partition clock's tick or at the customer's next event, whichever
comes first, and this check counts it as early as it could have been (right
after the delivery was applied), so a response applied since still ends the
run: it errs on the engine's side (it can miss a breach, never invent one).
Feedback more than a week (event time) after its
contact, which the engine's bounded contact history may have let go, and
feedback on the holdout's logged contacts count for nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from streams.core.window import is_page_key

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@dataclass(frozen=True)
class Sent:
    """One catalog action as published (first emission)."""

    id: str
    customer: str
    action: str
    channel: str
    #: When it may be delivered (``not_before``): where caps count it.
    at_ms: int
    decided_ms: int
    emitted_ms: int
    holdout: bool


def sent_actions(payloads: Iterable[Mapping[str, Any]]) -> list[Sent]:
    """The catalog actions among output payloads (a rule's action sent as a
    catalog action included; alerts, triggers and rule actions without a
    catalog left out), each id once with its first emission."""
    first: dict[str, Sent] = {}
    for p in payloads:
        if p.get("kind") != "action" or not p.get("catalog_version") or not p.get("delivery"):
            continue
        sent = Sent(
            id=p["id"],
            customer=p["customer_id"],
            action=p["action"],
            channel=p["delivery"]["channel"],
            at_ms=_ms(p.get("not_before") or p["decided_at"]),
            decided_ms=_ms(p["decided_at"]),
            emitted_ms=_ms(p["emitted_at"]) if p.get("emitted_at") else 0,
            holdout=bool(p.get("holdout")),
        )
        known = first.get(sent.id)
        if known is None or sent.emitted_ms < known.emitted_ms:
            first[sent.id] = sent
    return list(first.values())


@dataclass(frozen=True)
class Reported:
    """One outcome marketing automation reported for an action (``journeyflow.feedback``)."""

    feedback_id: str
    action_id: str
    outcome: str
    at_ms: int


#: Outcomes that are a response (they end a run of ignored deliveries).
RESPONSES = frozenset({"opened", "clicked", "converted"})


def reported_outcomes(payloads: Iterable[Any]) -> dict[str, list[Reported]]:
    """Feedback payloads by the action id they name (unreadable ones skipped)."""
    out: dict[str, list[Reported]] = {}
    for p in payloads:
        if not isinstance(p, Mapping):
            continue
        try:
            item = Reported(
                str(p["feedback_id"]), str(p["action_id"]), str(p["outcome"]), _ms(p["occurred_at"])
            )
        except (KeyError, TypeError, ValueError):
            continue
        out.setdefault(item.action_id, []).append(item)
    return out


@dataclass
class Knowledge:
    """When each customer's journey first held what, from its changelog records."""

    #: customer -> absorbed customer id -> first write that listed it (ms)
    absorbed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: customer -> order id -> (order event time ms, first write that listed it)
    orders: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    #: feedback id -> first write of any journey that listed it (when it was applied)
    feedback: dict[str, int] = field(default_factory=dict)


def knowledge(records: Iterable[tuple[bytes | None, bytes | None, int]]) -> Knowledge:
    """From journeys changelog records ``(key, value, timestamp ms)``, read
    as plain JSON (``absorbed``: customer ids; ``orders``: ``[order id,
    event ms, currency, amount]``)."""
    known = Knowledge()
    for key, value, stamp in records:
        if key is None or value is None or is_page_key(key):
            continue  # a window page holds event ids only
        customer = key.decode()
        journey = orjson.loads(value)
        absorbed = known.absorbed.setdefault(customer, {})
        for other in journey.get("absorbed") or ():
            if other not in absorbed or stamp < absorbed[other]:
                absorbed[other] = stamp
        orders = known.orders.setdefault(customer, {})
        for order in journey.get("orders") or ():
            order_id, at_ms = order[0], int(order[1])
            if order_id not in orders or stamp < orders[order_id][1]:
                orders[order_id] = (at_ms, stamp)
        for feedback_id in journey.get("feedback_ids") or ():
            if stamp < known.feedback.get(feedback_id, stamp + 1):
                known.feedback[feedback_id] = stamp
    return known


@dataclass(frozen=True)
class Violation:
    action_id: str
    customer: str
    rule: str
    detail: str


@dataclass(frozen=True)
class _Rules:
    day: dict[str, int]
    week: dict[str, int]
    default_day: int
    default_week: int
    per_day: int
    per_week: int
    quiet: tuple[time, time] | None
    after_purchase_ms: int
    #: action id -> (cooldown ms, quiet-hours mode)
    actions: dict[str, tuple[int, str]]
    ignored_limit: int
    #: action id -> response window (ms after delivery)
    windows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Mapping[str, Any]) -> _Rules:
        # the defaults the README documents for a catalog that leaves a key out
        p = catalog.get("policies") or {}
        quiet = p.get("quiet_hours", {"start": "21:00", "end": "09:00"})
        return cls(
            day=dict(p.get("per_channel_day") or {}),
            week=dict(p.get("per_channel_week") or {}),
            default_day=int(p.get("default_per_channel_day", 1)),
            default_week=int(p.get("default_per_channel_week", 3)),
            per_day=int(p.get("per_day", 2)),
            per_week=int(p.get("per_week", 5)),
            quiet=None
            if quiet is None
            else (time.fromisoformat(quiet["start"]), time.fromisoformat(quiet["end"])),
            after_purchase_ms=int(float(p.get("after_purchase_hours", 24)) * HOUR_MS),
            actions={
                a["id"]: (
                    int(float(a.get("cooldown_hours", 0)) * HOUR_MS),
                    a.get("quiet_hours", "defer"),
                )
                for a in catalog.get("actions") or ()
            },
            ignored_limit=int(p.get("ignored_limit", 3)),
            windows={
                a["id"]: int(float(a.get("response_window_hours", 48)) * HOUR_MS)
                for a in catalog.get("actions") or ()
            },
        )

    def in_quiet(self, at: time) -> bool:
        if self.quiet is None:
            return False
        start, end = self.quiet
        return start <= at < end if start <= end else (at >= start or at < end)


@dataclass
class Report:
    checked: int
    customers: int
    #: Actions judged with contacts of a customer absorbed earlier.
    with_merged_history: int
    violations: list[Violation]

    def by_rule(self) -> dict[str, int]:
        return dict(Counter(v.rule for v in self.violations))


def audit(
    catalog: Mapping[str, Any],
    actions: Iterable[Sent],
    known: Knowledge,
    failed: Iterable[str] = (),
    timezone: str = "Asia/Shanghai",
    reported: Mapping[str, list[Reported]] | None = None,
) -> Report:
    """Every policy, recomputed for every action that was not a failed delivery
    (``reported``: the feedback on each action id, for the suppression after
    ignored deliveries)."""
    rules = _Rules.of(catalog)
    zone = ZoneInfo(timezone)
    gone = set(failed)
    live = [a for a in actions if a.id not in gone]
    by_customer: dict[str, list[Sent]] = {}
    for a in live:
        by_customer.setdefault(a.customer, []).append(a)

    def local(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=zone)

    def members(customer: str, before_ms: int | None, seen: set[str]) -> set[str]:
        """Customers whose contacts ``customer``'s journey held (``before_ms``:
        absorbed by then; None: any time, for those absorbed in turn)."""
        out = {customer}
        seen.add(customer)
        for other, at in known.absorbed.get(customer, {}).items():
            if other in seen or (before_ms is not None and at >= before_ms):
                continue
            out |= members(other, None, seen)
        return out

    violations: list[Violation] = []
    merged = 0
    for x in live:
        order = (x.decided_ms, x.emitted_ms, x.id)
        history = [y for y in by_customer[x.customer] if (y.decided_ms, y.emitted_ms, y.id) < order]
        others = members(x.customer, x.emitted_ms, set()) - {x.customer}
        absorbed = [y for c in others for y in by_customer.get(c, ())]
        merged += bool(absorbed)
        history += absorbed

        def bad(rule: str, detail: str, x: Sent = x) -> None:
            violations.append(Violation(x.id, x.customer, rule, detail))

        at = local(x.at_ms)
        cooldown, quiet_mode = rules.actions.get(x.action, (0, "defer"))
        if quiet_mode != "exempt" and rules.in_quiet(at.time()):
            bad("quiet_hours", f"deliverable at {at.isoformat()}")
        for y in history:
            if y.action == x.action and abs(y.at_ms - x.at_ms) < cooldown:
                bad("cooldown", f"{y.id} at {local(y.at_ms).isoformat()}")
                break
        week = [y for y in history if abs(y.at_ms - x.at_ms) < WEEK_MS]
        day = [y for y in history if local(y.at_ms).date() == at.date()]
        caps = (
            ("channel_day_cap", [y for y in day if y.channel == x.channel], rules.day),
            ("channel_week_cap", [y for y in week if y.channel == x.channel], rules.week),
        )
        for rule, counted, table in caps:
            default = rules.default_day if rule == "channel_day_cap" else rules.default_week
            cap = int(table.get(x.channel, default))
            if len(counted) >= cap:
                bad(rule, f"{len(counted)} {x.channel} contacts before it, cap {cap}")
        if len(day) >= rules.per_day:
            bad("day_cap", f"{len(day)} contacts that day before it, cap {rules.per_day}")
        if len(week) >= rules.per_week:
            bad("week_cap", f"{len(week)} contacts within 7 days, cap {rules.per_week}")
        for order_id, (order_ms, seen_ms) in known.orders.get(x.customer, {}).items():
            if seen_ms < x.emitted_ms and 0 <= x.at_ms - order_ms < rules.after_purchase_ms:
                bad("after_purchase", f"order {order_id} at {local(order_ms).isoformat()}")
                break
        same = [y for y in history if y.action == x.action and not y.holdout]
        count = _ignored_in_a_row(same, reported or {}, known, x.emitted_ms, x.decided_ms, rules)
        if count >= rules.ignored_limit:
            bad("ignored", f"{x.action} ignored {count} times in a row before it")
    return Report(len(live), len(by_customer), merged, violations)


def _ignored_in_a_row(
    sends: list[Sent],
    reported: Mapping[str, list[Reported]],
    known: Knowledge,
    before_ms: int,
    decided_ms: int,
    rules: _Rules,
) -> int:
    """The action's ignored count the journey held just before ``before_ms``
    (the write order) for a decision at ``decided_ms`` (event time), from the
    feedback it had applied by then and the response windows closed by then
    (see the module docstring)."""
    learned: list[tuple[int, int, Reported, Sent]] = []
    for y in sends:
        window = rules.windows.get(y.action)
        for r in reported.get(y.id, ()):
            at = known.feedback.get(r.feedback_id)
            if at is None or at >= before_ms or r.at_ms - y.at_ms > WEEK_MS:
                continue  # not applied by then, or its contact may have been let go
            # in one write, responses last: the count the engine could have ended with
            learned.append((at, r.outcome in RESPONSES, r, y))
            if r.outcome == "delivered" and window is not None and r.at_ms + window < decided_ms:
                # unanswered when its window closed: the engine counted it by
                # this decision at the latest; taken as early as it could have
                # been (right after the delivery was applied), as few count
                closed = Reported(r.feedback_id, r.action_id, "window_closed", r.at_ms + window)
                learned.append((at, 0, closed, y))
    count = 0
    state: dict[str, str] = {}  # action id -> what its contact became
    for _, _, r, y in sorted(learned, key=lambda t: (t[0], t[1], t[2].at_ms)):
        status = state.get(y.id, "open")
        if r.outcome == "delivered":
            if status == "open":
                state[y.id] = "delivered"
        elif r.outcome == "window_closed":
            if status == "delivered":
                state[y.id], count = "ignored", count + 1
        elif r.outcome in RESPONSES:
            if status != "responded":
                state[y.id], count = "responded", 0
        elif r.outcome in ("ignored", "unsubscribed") and status in ("open", "delivered"):
            state[y.id] = "ignored"
            count = rules.ignored_limit if r.outcome == "unsubscribed" else count + 1
        elif r.outcome == "failed" and status in ("open", "delivered"):
            state[y.id] = "failed"
    return count


# --- reading a run from Kafka (``journeyflow audit``) ---------------------------


async def read_all(
    bootstrap: str, topic: str, timeout_s: float = 120.0
) -> list[tuple[bytes | None, bytes | None, int]]:
    """Every record of ``topic`` up to its end offsets now: ``(key, value,
    timestamp ms)``. A topic that does not exist reads as empty."""
    from streams.admin import read_records

    return [(r.key, r.value, r.timestamp) for r in await read_records(bootstrap, topic, timeout_s)]


async def audit_run(
    bootstrap: str,
    catalog: Mapping[str, Any],
    *,
    actions_topics: Iterable[str],
    feedback_topic: str,
    journeys_changelog: str,
    timezone: str = "Asia/Shanghai",
    progress: Callable[[str], None] = lambda _: None,
) -> Report:
    """Read what a deployment published and audit it (see the module docstring).
    On compacted or expired topics the check errs on the engine's side: a fact
    counts from the oldest record still holding it, a deleted contact not at all."""
    payloads: list[Any] = []
    for topic in actions_topics:
        records = await read_all(bootstrap, topic)
        progress(f"{topic}: {len(records)} records")
        payloads.extend(orjson.loads(v) for _, v, _ in records if v is not None)
    feedback = await read_all(bootstrap, feedback_topic)
    progress(f"{feedback_topic}: {len(feedback)} records")
    items = []
    for _, value, _ in feedback:
        try:
            items.append(orjson.loads(value or b""))
        except orjson.JSONDecodeError:
            continue
    reported = reported_outcomes(items)
    failed = {a for a, rs in reported.items() if any(r.outcome == "failed" for r in rs)}
    journeys = await read_all(bootstrap, journeys_changelog)
    progress(f"{journeys_changelog}: {len(journeys)} records")
    known = knowledge(journeys)
    return audit(catalog, sent_actions(payloads), known, failed, timezone, reported)


def report_json(report: Report, examples: int = 20) -> dict[str, Any]:
    """What ``journeyflow audit`` prints."""
    return {
        "checked": report.checked,
        "customers": report.customers,
        "with_merged_history": report.with_merged_history,
        "violations": len(report.violations),
        "by_rule": report.by_rule(),
        "examples": [
            {
                "action_id": v.action_id,
                "customer_id": v.customer,
                "rule": v.rule,
                "detail": v.detail,
            }
            for v in report.violations[:examples]
        ],
    }
