"""One-ID through the worker's message protocol, in process
(``streams.runtime.LocalRuntime`` drives ``streams.core.oneid.handle``):
links in every order, the deterministic survivor, conflicts, the shared-
identifier guard rail, and messages delivered twice as after a crash."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from factories import KEY, T0, make_admitted, shipped_config
from prometheus_client import CollectorRegistry

from schemas.outputs import Alert
from streams.batch import Batch, Record
from streams.core.identity import normalise
from streams.core.ingest import Admitted
from streams.core.journey import JourneyState, apply_event
from streams.core.oneid import Fold, OneIdConfig, handle
from streams.core.profile import DECISION_PARTS as DECIDED
from streams.core.profile import profile_view
from streams.metrics import Metrics
from streams.runtime import LocalRuntime

MIN = timedelta(minutes=1)

A = {"live_viewer_id": "douyin:88231"}
B = {"wechat_openid": "wx5f:o-abc"}
C = {"chatbot_user_id": "bot:u-17"}
D = {"member_id": "M-77"}


def runtime(partitions: int = 4, **config: Any) -> LocalRuntime:
    return LocalRuntime(OneIdConfig(shipped_config(), **config), partitions, 60_000)


def run(events: list[Admitted], rt: LocalRuntime | None = None) -> LocalRuntime:
    rt = rt or runtime()
    for admitted in events:
        rt.submit(admitted)
        asyncio.run(rt.run())
    return rt


def linking(ids: dict[str, str], minute: int, event_id: str, **extra: Any) -> Admitted:
    event_type = extra.pop("event_type", "page.view")
    return make_admitted(
        event_type, event_id=event_id, identities=ids, at=T0 + minute * MIN, **extra
    )


def profile(state: JourneyState | None) -> dict[str, Any]:
    assert state is not None
    return profile_view(state, shipped_config().scoring)


# --- links in any order ---------------------------------------------------------

#: Each from a touchpoints partition of its own: records of one partition are
#: admitted in offset order, of several in any order.
LINKS = [
    linking({**A, **B}, 1, "ab", event_type="live.comment", text="多少钱", input_partition=0),
    linking(
        {**C, **D},
        2,
        "cd",
        event_type="store.check_in",
        context={"store_id": "s-1"},
        input_partition=1,
    ),
    linking(
        {**B, **C},
        3,
        "bc",
        event_type="chat.message",
        text="hi",
        sentiment=0.1,
        input_partition=2,
    ),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_links_in_any_order_end_as_one_customer_named_by_the_strongest_id(
    order: tuple[int, ...],
) -> None:
    rt = run([LINKS[i] for i in order])

    assert list(rt.customers()) == ["member_id:M-77"]
    state = rt.journey_of("live_viewer_id:douyin:88231")
    assert state is not None and state.customer_id == "member_id:M-77"
    assert set(state.identifiers) == {
        "member_id:M-77",
        "wechat_openid:wx5f:o-abc",
        "chatbot_user_id:bot:u-17",
        "live_viewer_id:douyin:88231",
    }
    for ident in state.identifiers:
        assert rt.journey_of(ident) == state
    assert state.events_total == 3
    assert state.channel_counts == {"livestream": 1, "store": 1, "chatbot": 1}


def test_the_final_profile_is_the_same_whatever_the_order() -> None:
    """Equal but for the stage history, which records when the journey moved
    as events arrived (the current stage is the same)."""
    profiles = []
    for order in itertools.permutations(range(3)):
        rt = run([LINKS[i] for i in order])
        view = profile(rt.journey_of("member_id:M-77"))
        assert view.pop("stage_history")
        profiles.append(view)
    first = profiles[0]
    for other in profiles[1:]:
        assert other == first


def test_every_merge_is_published_with_survivor_absorbed_and_cause() -> None:
    rt = run(LINKS)
    # ab makes a customer (douyin viewer, openid); cd another (member, bot);
    # bc joins them: the member id is the strongest, it survives.
    [merge] = [m for m in rt.merges if m.cause_event_id == "bc"]
    assert merge.survivor == "member_id:M-77"
    assert merge.absorbed == "wechat_openid:wx5f:o-abc"
    assert set(merge.absorbed_identifiers) == {
        "wechat_openid:wx5f:o-abc",
        "live_viewer_id:douyin:88231",
    }
    assert merge.decided_at == T0 + 3 * MIN


def test_the_same_messages_handled_again_change_nothing() -> None:
    """A crash can repeat any message: with or without its table writes."""
    baseline = run(LINKS)
    for seed in range(12):
        rt = FlakyRuntime(OneIdConfig(shipped_config()), 4, 60_000, seed=seed)
        run(LINKS, rt)
        assert rt.repeats > 0
        assert _same_but_positions(rt.customers(), baseline.customers())
        assert {m.id for m in rt.merges} == {m.id for m in baseline.merges}


def _same_but_positions(a: dict[str, JourneyState], b: dict[str, JourneyState]) -> bool:
    """Equal, but for where each journey read its records (the repeats moved offsets)."""
    strip = {"source_offsets": {}}
    return {k: v.model_copy(update=strip) for k, v in a.items()} == {
        k: v.model_copy(update=strip) for k, v in b.items()
    }


class FlakyRuntime(LocalRuntime):
    """Applies some batches twice at the same positions, the first time
    sending its effects but (sometimes) losing its table writes: a worker
    killed after the broker acked a batch's sends, before its writes."""

    def __init__(self, *args: Any, seed: int) -> None:
        super().__init__(*args)
        self.rng = random.Random(seed)
        self.repeats = 0
        self.lose_writes = False

    async def write(self, batch: Batch) -> None:
        if not self.lose_writes:
            await super().write(batch)

    async def apply(self, records: Sequence[Record]) -> None:
        if self.rng.random() < 0.5:
            self.repeats += 1
            self.lose_writes = self.rng.random() < 0.5
            await super().apply(records)
            self.lose_writes = False
        await super().apply(records)


# --- one person, three channels ---------------------------------------------------


def test_viewer_then_chatbot_phone_then_store_member_with_the_phone_written_differently() -> None:
    events = [
        linking(A, 0, "v1", event_type="live.view_start", context={"live_room_id": "r-1"}),
        linking(
            A, 1, "v2", event_type="live.comment", text="链接在哪", context={"live_room_id": "r-1"}
        ),
        linking(
            {**A, "chatbot_user_id": "bot:u-9", "phone": "13800138000"},
            10,
            "c1",
            event_type="chat.lead_submitted",
        ),
        linking(
            {**D, "phone": "+86 138-0013-8000"},
            60,
            "s1",
            event_type="store.purchase",
            order_id="SO-1",
            amount_minor=59900,
            currency="CNY",
            context={"store_id": "store-sh-1"},
        ),
    ]
    rt = run(events)

    phone = "phone:" + normalise("phone", "13800138000", KEY)
    state = rt.journey_of(phone)
    assert state is not None
    assert state.customer_id == "member_id:M-77"
    assert set(state.identifiers) == {
        "member_id:M-77",
        phone,
        "chatbot_user_id:bot:u-9",
        "live_viewer_id:douyin:88231",
    }
    assert state.channel_counts == {"livestream": 2, "chatbot": 1, "store": 1}
    assert (state.events_total, state.transactions, state.stage) == (4, 1, "purchase")
    assert list(rt.customers()) == ["member_id:M-77"]


# --- conflicts and guard rails --------------------------------------------------------


def test_a_second_member_id_is_refused_reported_and_the_event_still_counts() -> None:
    phone = {"phone": "13900001111"}
    rt = run(
        [
            linking({"member_id": "M-1", **phone}, 0, "m1"),
            linking(
                {"member_id": "M-2", **phone},
                1,
                "m2",
                event_type="store.check_in",
                context={"store_id": "s-9"},
            ),
        ]
    )

    customers = rt.customers()
    assert set(customers) == {"member_id:M-1", "member_id:M-2"}
    assert customers["member_id:M-2"].events_total == 1  # processed, on its own customer
    assert not any(
        "member_id:M-2" in c.identifiers for k, c in customers.items() if k != "member_id:M-2"
    )
    refusals = [
        o for o in rt.outputs if isinstance(o, Alert) and o.alert_type == "identity_link_refused"
    ]
    assert len(refusals) == 1 and refusals[0].details["refusal"] == "conflict_member_id"
    assert rt.counts["refused_conflict_member_id"] == 1


def test_two_unionids_are_refused_even_when_a_member_id_hides_one() -> None:
    rt = run(
        [
            linking({"member_id": "M-1", "wechat_unionid": "U-1"}, 0, "u1"),
            linking({"wechat_unionid": "U-2", "device_id": "d-1"}, 1, "u2"),
            linking({"member_id": "M-1", "device_id": "d-1"}, 2, "u3"),
        ]
    )

    assert set(rt.customers()) == {"member_id:M-1", "wechat_unionid:U-2"}
    assert rt.counts["refused_conflict_wechat_unionid"] == 1


def test_a_shared_test_phone_stops_linking_after_the_limit() -> None:
    limit = 3
    rt = runtime(max_partners=limit)
    events = [
        linking({"phone": "13800000000", "chatbot_user_id": f"bot:u-{i}"}, i, f"t{i}")
        for i in range(8)
    ]
    run(events, rt)

    customers = rt.customers()
    phone_customer = rt.journey_of("phone:" + normalise("phone", "13800000000", KEY))
    assert phone_customer is not None
    bots = [i for i in phone_customer.identifiers if i.startswith("chatbot_user_id:")]
    assert len(bots) == limit  # the first ones linked before the phone was known shared
    assert len(customers) == 1 + (8 - limit)  # the phone's customer, and each later person
    for i in range(limit, 8):  # later people keep their own journeys
        own = rt.journey_of(f"chatbot_user_id:bot:u-{i}")
        assert own is not None and own.events_total == 1
    assert sum(c.events_total for c in customers.values()) == 8  # no event lost
    alerts = [o for o in rt.outputs if isinstance(o, Alert) and o.alert_type == "shared_identifier"]
    assert len(alerts) == 1
    metrics = Metrics(CollectorRegistry())  # what the worker's metrics count of it
    metrics.record_batch(Batch(outputs=list(rt.outputs)), 0.0)
    shared = metrics.registry.get_sample_value(
        "journeyflow_shared_identifiers_total", {"type": "phone"}
    )
    assert shared == 1


# --- erasure -------------------------------------------------------------------------


def test_privacy_erase_forgets_the_journey_and_every_link() -> None:
    rt = run([*LINKS, linking(C, 10, "erase-1", event_type="privacy.erase")])

    assert rt.customers() == {}
    assert rt.aliases == {}  # every identifier forgot whose it was (tombstones in Kafka)

    run([linking(A, 20, "after", event_type="live.like")], rt)  # the viewer comes back

    [(customer_id, state)] = rt.customers().items()
    assert customer_id == "live_viewer_id:douyin:88231"
    assert state.identifiers == ("live_viewer_id:douyin:88231",)
    assert state.events_total == 1


# --- partitions at their own pace ------------------------------------------------------


def _simulated(n: int) -> list[Admitted]:
    from streams.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        seed=5, customers=400, start=T0, events_per_second=100.0, dirty_share=0.0
    )
    out = []
    for offset, record in enumerate(itertools.islice(simulate(config), n)):
        from factories import POLICY, meta

        from streams.core.ingest import admit

        result = admit(record.value, meta(offset), POLICY)
        if isinstance(result, Admitted):
            out.append(result)
    return out


def _views(rt: LocalRuntime) -> dict[str, dict[str, Any]]:
    views = {}
    for customer_id, state in rt.customers().items():
        view = profile_view(state, shipped_config().scoring)
        view.pop("stage_history")
        for decided in DECIDED:  # what each side knew when it decided (README, Replay)
            view.pop(decided)
        view["identifiers"] = sorted(view["identifiers"])
        views[customer_id] = view
    return views


@pytest.mark.parametrize("seed", range(4))
def test_partitions_handled_in_any_interleaving_give_the_same_customers(seed: int) -> None:
    """Kafka keeps order within a partition, never across: with the whole
    backlog queued and partitions served at random, the customers (and their
    profiles) are those of one-at-a-time processing. A proposal forwarded to
    a root's root is answered by that root (this once left a merge locked)."""
    events = _simulated(1500)
    sequential = run(events)
    rt = runtime()
    rt.interleave = random.Random(seed)
    for admitted in events:
        rt.submit(admitted)
    asyncio.run(rt.run())

    assert not [a for a in rt.aliases.values() if b'"moving_to":"' in a]  # no lock left
    assert _views(rt) == _views(sequential)
    assert len(sequential.merges) > 0


def test_a_customer_erased_in_the_middle_of_a_merge_leaves_no_identifier_behind() -> None:
    """b asked to join a, a accepted b's identifiers, then b's erasure came
    before b sent its journey: a must drop the identifiers it holds for b."""
    from streams.core.journey import new_state
    from streams.core.oneid import Alias, Apply, Forget

    config = OneIdConfig(shipped_config())
    a, b, b2 = "member_id:M-1", "wechat_openid:wx:o-1", "device_id:d-1"
    survivor = new_state(a).model_copy(update={"identifiers": (a, b, b2)})
    erase = linking({"wechat_openid": "wx:o-1"}, 5, "erase-9", event_type="privacy.erase")
    locked = Alias(moving_to=a)
    held = new_state(b).model_copy(update={"identifiers": (b, b2)})

    fx = handle(b, Apply(erase.event, erase.source, b), locked, held, config)

    assert (fx.journey, fx.alias) == (None, None)
    assert (a, Forget(b, (b, b2))) in fx.sends
    assert (b2, Forget(b)) in fx.sends
    at_a = handle(a, Forget(b, (b, b2)), None, survivor, config)
    assert at_a.journey is not None and at_a.journey.identifiers == (a,)


def test_a_request_beyond_the_parking_limit_goes_round_through_the_topic() -> None:
    """A root merging into another parks requests for it; once the list is
    full, one more goes back on the topic to its own key (it must not be
    handled again at once: it would find the same full list forever)."""
    from streams.core.oneid import MAX_PARKED, Absorb, Alias, message_to_dict

    config = OneIdConfig(shipped_config())
    b, a = "wechat_openid:wx:o-1", "member_id:M-1"
    parked = tuple(
        message_to_dict(Absorb(f"member_id:M-0{n}", f"e{n}", 0)) for n in range(MAX_PARKED)
    )
    full = Alias(moving_to=a, parked=parked)
    one_more = Absorb("member_id:M-00", "e-late", 0)

    fx = handle(b, one_more, full, None, config)

    assert fx.sends == [(b, one_more)]
    assert not fx.alias_changed


# --- late events and imported history --------------------------------------------------

PRICE_QUESTION = {
    "event_type": "live.comment",
    "text": "这个多少钱",
    "context": {"live_room_id": "room-618-beauty"},
}


def test_a_late_event_updates_the_journey_but_decides_nothing() -> None:
    rt = run([linking(D, 180, "now", event_type="page.view")])  # the clock: T0 + 3 h
    late = linking({"member_id": "M-77"}, 60, "late-q", **PRICE_QUESTION)  # 2 h behind

    run([late], rt)

    state = rt.journey_of("member_id:M-77")
    assert state is not None and state.events_total == 2
    assert state.event_counts["live.comment"] == 1  # applied ...
    assert [o for o in rt.outputs if o.cause_event_id == "late-q"] == []  # ... silently
    assert rt.counts["late"] == 1
    on_time = linking({"member_id": "M-77"}, 170, "on-time-q", **PRICE_QUESTION)
    run([on_time], rt)
    assert [o for o in rt.outputs if o.cause_event_id == "on-time-q"]  # the rule itself works


def test_an_event_beyond_the_bound_is_dead_lettered_too_late() -> None:
    rt = run([linking(D, 60 * 24 * 40, "now", event_type="page.view")])  # 40 days on
    ancient = linking(D, 0, "ancient", event_type="page.view")

    run([ancient], rt)

    [letter] = rt.dead_letters
    assert (letter.reason_code, letter.event_id) == ("too_late", "ancient")
    assert "journeyflow import" in letter.reason
    state = rt.journey_of("member_id:M-77")
    assert state is not None and state.events_total == 1


def test_imported_history_is_applied_whatever_its_age_and_triggers_nothing() -> None:
    rt = run([linking(D, 60 * 24 * 40, "now", event_type="page.view")])
    history = [
        linking({**D, **A}, 0, "h-1", **PRICE_QUESTION),
        linking(D, 1, "h-2", event_type="order.paid", order_id="O-h"),
    ]
    for admitted in history:
        rt.submit(admitted, quiet=True)
    asyncio.run(rt.run())

    state = rt.journey_of("live_viewer_id:douyin:88231")  # linked by the history
    assert state is not None and state.customer_id == "member_id:M-77"
    assert (state.events_total, state.transactions, state.stage) == (3, 1, "purchase")
    assert [o for o in rt.outputs if o.cause_event_id.startswith("h-")] == []
    assert rt.dead_letters == []


# --- feedback follows merges ------------------------------------------------------------


def _feedback(feedback_id: str, customer_id: str, outcome: str = "clicked") -> Any:
    from schemas.outputs import Feedback

    return Feedback(
        feedback_id=feedback_id,
        action_id="a-1",
        customer_id=customer_id,
        outcome=outcome,
        occurred_at=T0 + 5 * MIN,
    )


def test_feedback_addressed_to_an_absorbed_customer_lands_on_the_survivor() -> None:
    rt = run(LINKS)  # the openid's customer was absorbed into the member's
    absorbed = "wechat_openid:wx5f:o-abc"
    assert absorbed not in rt.customers()

    rt.submit_feedback(absorbed, _feedback("f-1", absorbed))
    rt.submit_feedback(absorbed, _feedback("f-1", absorbed))  # sent twice
    rt.submit_feedback("member_id:M-77", _feedback("f-2", "member_id:M-77", "converted"))
    rt.submit_feedback("member_id:M-404", _feedback("f-3", "member_id:M-404"))
    asyncio.run(rt.run())

    state = rt.journey_of("member_id:M-77")
    assert state is not None and state.feedback_counts == {"clicked": 1, "converted": 1}
    assert profile(state)["feedback"] == {"clicked": 1, "converted": 1}
    assert (rt.counts["feedback_counted"], rt.counts["feedback_repeated"]) == (2, 1)
    assert rt.counts["feedback_unknown"] == 1


def test_a_fold_read_after_later_records_of_its_partition_is_still_applied() -> None:
    """Around a rebalance a fold can be read after later records of the
    survivor's partition (streams.transport rewinds to it): it merges then,
    and once only when read again."""
    config = OneIdConfig(shipped_config())

    def journey(customer: str, event_id: str, position: str) -> JourneyState:
        event = make_admitted("page.view", event_id=event_id).event
        state, _ = apply_event(None, customer, event, config.core.limits, position=position)
        assert state is not None
        return state

    survivor, absorbed = "member_id:M-1", "device_id:d-1"
    mine = journey(survivor, "s-1", position="2:40")
    fold = Fold(sender=absorbed, journey=journey(absorbed, "a-1", "1:7"), cause="e-link")

    first = handle(survivor, fold, None, mine, config, position="2:35")
    assert first.journey is not None and first.journey.events_total == 2
    again = handle(survivor, fold, None, first.journey, config, position="2:35")
    assert again.journey == first.journey
