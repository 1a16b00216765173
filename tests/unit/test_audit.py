"""The independent policy checker (streams.audit) finds what breaks a policy,
and only what the engine could have known when it decided."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from streams.audit import (
    Knowledge,
    Reported,
    Sent,
    audit,
    knowledge,
    reported_outcomes,
    sent_actions,
)

CST = timezone(timedelta(hours=8))
CATALOG = {
    "policies": {
        "per_channel_day": {"wecom": 1, "live_popup": 3},
        "per_channel_week": {"wecom": 3, "live_popup": 10},
        "per_day": 3,
        "per_week": 8,
        "quiet_hours": {"start": "21:00", "end": "09:00"},
        "after_purchase_hours": 24,
    },
    "actions": [
        {"id": "invite", "channel": "wecom", "cooldown_hours": 72},
        {"id": "upgrade", "channel": "wecom", "cooldown_hours": 0},
        {"id": "popup", "channel": "live_popup", "cooldown_hours": 0, "quiet_hours": "exempt"},
    ],
}
DAY0 = datetime(2026, 11, 11, 10, 0, tzinfo=CST)


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def sent(
    id: str, at: datetime, action: str = "invite", customer: str = "c", emitted: int | None = None
) -> Sent:
    channel = {"invite": "wecom", "upgrade": "wecom", "popup": "live_popup"}[action]
    t = ms(at)
    return Sent(id, customer, action, channel, t, t, t + 10 if emitted is None else emitted, False)


def rules(report) -> list[tuple[str, str]]:
    return sorted((v.action_id, v.rule) for v in report.violations)


def test_a_second_wecom_message_the_same_local_day_breaks_the_channel_cap() -> None:
    report = audit(
        CATALOG,
        [sent("a1", DAY0), sent("a2", DAY0 + timedelta(hours=2), "upgrade")],
        Knowledge(),
    )
    assert rules(report) == [("a2", "channel_day_cap")]
    # the next local day is another day, though within 24 hours
    next_day = DAY0.replace(hour=20) + timedelta(hours=14)  # 10:00 the day after
    ok = audit(
        CATALOG, [sent("a1", DAY0.replace(hour=20)), sent("a2", next_day, "upgrade")], Knowledge()
    )
    assert ok.violations == [] and ok.checked == 2


def test_quiet_hours_in_local_time_except_for_an_exempt_pop_up() -> None:
    late = DAY0.replace(hour=22, minute=30)
    report = audit(CATALOG, [sent("a1", late), sent("p1", late, "popup")], Knowledge())
    assert rules(report) == [("a1", "quiet_hours")]


def test_cooldown_and_week_caps() -> None:
    actions = [sent("a1", DAY0), sent("a2", DAY0 + timedelta(days=2))]  # invite: 72 h cooldown
    assert rules(audit(CATALOG, actions, Knowledge())) == [("a2", "cooldown")]
    week = [sent(f"u{d}", DAY0 + timedelta(days=d), "upgrade") for d in range(4)]
    assert rules(audit(CATALOG, week, Knowledge())) == [("u3", "channel_week_cap")]


def test_a_purchase_suppresses_actions_once_the_journey_held_it() -> None:
    action = sent("a1", DAY0 + timedelta(hours=5))
    order_at = ms(DAY0)
    written_before = Knowledge(orders={"c": {"o-1": (order_at, action.emitted_ms - 1)}})
    assert rules(audit(CATALOG, [action], written_before)) == [("a1", "after_purchase")]
    written_after = Knowledge(orders={"c": {"o-1": (order_at, action.emitted_ms + 1)}})
    assert audit(CATALOG, [action], written_after).violations == []


def test_contacts_follow_a_merge_from_the_write_that_folded_them_in() -> None:
    before = sent("b1", DAY0, customer="b")
    survivor = sent("c1", DAY0 + timedelta(hours=3), "upgrade", customer="c")
    folded_first = Knowledge(absorbed={"c": {"b": survivor.emitted_ms - 5}})
    report = audit(CATALOG, [before, survivor], folded_first)
    assert rules(report) == [("c1", "channel_day_cap")]
    assert report.with_merged_history == 1
    # the fold was written after the survivor's action: not known when it decided
    folded_later = Knowledge(absorbed={"c": {"b": survivor.emitted_ms + 5}})
    assert audit(CATALOG, [before, survivor], folded_later).violations == []
    # absorbed in turn: d was absorbed into b before b into c
    chain = Knowledge(absorbed={"c": {"b": survivor.emitted_ms - 5}, "b": {"d": 0}})
    moved = sent("d1", DAY0, customer="d")
    assert rules(audit(CATALOG, [moved, survivor], chain)) == [("c1", "channel_day_cap")]


def test_failed_deliveries_count_against_nothing() -> None:
    actions = [sent("a1", DAY0), sent("a2", DAY0 + timedelta(hours=2), "upgrade")]
    assert audit(CATALOG, actions, Knowledge(), failed={"a1"}).violations == []


def test_published_actions_are_read_once_each_at_their_first_emission() -> None:
    base = {
        "kind": "action",
        "id": "x1",
        "customer_id": "c",
        "action": "invite",
        "catalog_version": "v1",
        "delivery": {"channel": "wecom", "identifier_type": "member_id", "identifier": "M1"},
        "decided_at": "2026-11-11T10:00:00+08:00",
        "not_before": "2026-11-11T10:00:00+08:00",
    }
    payloads = [
        {**base, "emitted_at": "2026-11-11T02:00:05Z"},
        {**base, "emitted_at": "2026-11-11T02:00:01Z"},  # the repeat after a crash came first
        {**base, "id": "rule-1", "catalog_version": None},  # a rule's action: not checked here
    ]
    (only,) = sent_actions(payloads)
    assert only.id == "x1" and only.emitted_ms == ms(datetime(2026, 11, 11, 10, 0, 1, tzinfo=CST))


def test_knowledge_keeps_the_first_write_that_listed_each_fact() -> None:
    j1 = orjson.dumps({"absorbed": ["b"], "orders": [["o-1", 100, "CNY", 900]]})
    j2 = orjson.dumps({"absorbed": ["b", "d"], "orders": [["o-1", 100, "CNY", 900]]})
    known = knowledge([(b"c", j1, 10), (b"c", j2, 20), (b"c", None, 30)])
    assert known.absorbed["c"] == {"b": 10, "d": 20}
    assert known.orders["c"] == {"o-1": (100, 10)}


# --- suppression after ignored deliveries ---------------------------------------------

IGNORING = {**CATALOG, "policies": {**CATALOG["policies"], "ignored_limit": 2}}


def told(action: Sent, outcome: str, n: int, after_ms: int = 1) -> tuple[Reported, int]:
    """Feedback ``n`` on ``action`` and when its journey applied it."""
    fid = f"f-{action.id}-{n}"
    return Reported(fid, action.id, outcome, action.at_ms + 60_000), action.emitted_ms + after_ms


def judged(actions: list[Sent], feedback: list[tuple[Reported, int]], catalog=IGNORING):
    reported: dict[str, list[Reported]] = {}
    for r, _ in feedback:
        reported.setdefault(r.action_id, []).append(r)
    known = Knowledge(feedback={r.feedback_id: at for r, at in feedback})
    return audit(catalog, actions, known, reported=reported)


def test_an_action_ignored_k_times_in_a_row_is_not_sent_again() -> None:
    popups = [sent(f"p{d}", DAY0 + timedelta(days=d), "popup") for d in range(3)]
    ignored = [told(popups[0], "ignored", 0), told(popups[1], "ignored", 1)]
    assert rules(judged(popups, ignored)) == [("p2", "ignored")]
    # a response to any of its sends starts the count again
    answered = [*ignored, told(popups[0], "clicked", 2, after_ms=5)]
    assert rules(judged(popups, answered)) == []
    # unsubscribed suppresses at once; another action is not suppressed
    unsubscribed = [told(popups[1], "unsubscribed", 3)]
    assert rules(judged(popups, unsubscribed)) == [("p2", "ignored")]
    other = sent("u2", DAY0 + timedelta(days=2), "upgrade")
    assert rules(judged([*popups[:2], other], ignored)) == []


def test_ignores_count_only_once_the_journey_applied_them() -> None:
    popups = [sent(f"p{d}", DAY0 + timedelta(days=d), "popup") for d in range(3)]
    late = popups[2].emitted_ms + 1  # applied after the third was sent
    feedback = [told(popups[0], "ignored", 0), (told(popups[1], "ignored", 1)[0], late)]
    assert rules(judged(popups, feedback)) == []
    # a contact ignored twice, or ignored after it failed, counts once or not at all
    twice = [told(popups[0], "ignored", 0), told(popups[0], "ignored", 1)]
    assert rules(judged(popups, twice)) == []
    failed_first = [told(popups[0], "failed", 0), told(popups[0], "ignored", 1, after_ms=2)]
    assert rules(judged(popups, [*failed_first, told(popups[1], "ignored", 2)])) == []


def test_feedback_is_read_by_action_and_its_application_from_the_journeys() -> None:
    payloads = [
        {
            "feedback_id": "f1",
            "action_id": "a1",
            "outcome": "ignored",
            "occurred_at": "2026-11-11T10:00:00+08:00",
            "customer_id": "c",
        },
        {"feedback_id": "f2", "action_id": "a1"},  # unreadable: skipped
    ]
    assert reported_outcomes(payloads) == {"a1": [Reported("f1", "a1", "ignored", ms(DAY0))]}
    journeys = [
        (b"c", orjson.dumps({"feedback_ids": ["f1"]}), 500),
        (b"c", orjson.dumps({"feedback_ids": ["f1"]}), 400),
    ]
    assert knowledge(journeys).feedback == {"f1": 400}


def test_deliveries_whose_window_closed_before_the_decision_count_as_ignored() -> None:
    hour = {
        **IGNORING,
        "actions": [
            {**a, "response_window_hours": 1} if a["id"] == "popup" else a
            for a in IGNORING["actions"]
        ],
    }
    popups = [sent(f"p{d}", DAY0 + timedelta(days=d), "popup") for d in range(3)]
    delivered = [told(popups[0], "delivered", 0), told(popups[1], "delivered", 1)]
    [breach] = judged(popups, delivered, hour).violations
    assert (breach.action_id, breach.detail) == ("p2", "popup ignored 2 times in a row before it")
    # the default 48 h window was still open a day later: nothing ignored yet
    assert rules(judged(popups, delivered)) == []
    # a response applied before the decision ends the run, a late one too
    answered = [*delivered, told(popups[1], "clicked", 2, after_ms=5)]
    assert rules(judged(popups, answered, hour)) == []
    # a delivery also reported ignored counts once
    both = [told(popups[0], "delivered", 0), told(popups[0], "ignored", 1, after_ms=2)]
    assert rules(judged(popups, both, hour)) == []
    # a delivery applied only after the decision counts for nothing there
    unknown = [delivered[0], (delivered[1][0], popups[2].emitted_ms + 1)]
    assert rules(judged(popups, unknown, hour)) == []
