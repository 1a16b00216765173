"""The three shipped stage models are data that the same engine runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from factories import T0, Journey, shipped_config

from streams.config import load_stage_model
from streams.errors import JourneyflowError


def journey(model: str) -> Journey:
    return Journey(config=replace(shipped_config(), stage_model=load_stage_model(model)))


@pytest.mark.parametrize("name", ["aipl", "five_stage", "private_domain"])
def test_shipped_models_load(name: str) -> None:
    assert load_stage_model(name).name == name


def test_five_stage_journey() -> None:
    j = journey("five_stage")
    j.send("ad.click", at=T0)
    assert j.state is not None and j.state.stage == "discovery"
    j.send("live.comment", at=T0 + timedelta(minutes=1), text="nice")
    assert j.state.stage == "activation"
    j.send("live.order", at=T0 + timedelta(minutes=2), order_id="o1", amount_minor=9900)
    assert j.state.stage == "conversion"
    j.send("live.share", at=T0 + timedelta(minutes=3))
    assert j.state.stage == "use_share"
    for n in (2, 3):
        j.send("order.paid", at=T0 + timedelta(days=n), order_id=f"o{n}", amount_minor=9900)
    assert j.state.stage == "loyalty"
    assert [e.stage for e in j.state.stage_history] == [
        "discovery",
        "activation",
        "conversion",
        "use_share",
        "loyalty",
    ]


def test_private_domain_funnel() -> None:
    j = journey("private_domain")
    j.send("page.view", at=T0)
    assert j.state is not None and j.state.stage == "entry"
    j.send("group.join", at=T0 + timedelta(minutes=1), context={"group_id": "g1"})
    assert j.state.stage == "retention"
    j.send("group.message", at=T0 + timedelta(minutes=2), text="hi")
    assert j.state.stage == "retention"
    j.send("group.link_click", at=T0 + timedelta(minutes=3))
    assert j.state.stage == "activation"
    j.send("order.paid", at=T0 + timedelta(days=1), order_id="o1", amount_minor=100)
    j.send("order.paid", at=T0 + timedelta(days=9), order_id="o2", amount_minor=100)
    assert j.state.stage == "repurchase_referral"


def test_a_brand_file_is_used_and_a_bad_one_is_refused(tmp_path) -> None:
    good = tmp_path / "two.json"
    good.write_text(
        '{"name": "two", "stages": ['
        '{"id": "seen", "when": [{"metric": "events_total", "op": ">=", "value": 1}]},'
        '{"id": "buyer", "when": [{"metric": "transactions", "op": ">=", "value": 1}]}]}'
    )
    assert [s.id for s in load_stage_model(str(good)).stages] == ["seen", "buyer"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bad", "stages": []}')
    with pytest.raises(JourneyflowError, match="stage model"):
        load_stage_model(str(bad))
    with pytest.raises(JourneyflowError, match=r"no such file"):
        load_stage_model("nonexistent")


def test_a_loyal_customer_lapses_after_the_decay_period_and_a_purchase_brings_them_back() -> None:
    from datetime import timedelta

    from factories import T0, Journey, epoch_ms

    from streams.core.engine import tick

    day = timedelta(days=1)
    j = Journey()
    j.send("order.paid", order_id="O-1", at=T0)
    j.send("order.paid", order_id="O-2", at=T0 + 10 * day)
    assert j.state is not None and j.state.stage == "loyalty"
    [decay] = [p for p in j.state.pending if p.rule_id.startswith("stage_decay")]
    assert decay.due_ms == epoch_ms(T0 + 190 * day)  # 180 days after the last purchase

    j.send("page.view", at=T0 + 100 * day)  # browsing is not buying: nothing changes
    assert tick(j.state, epoch_ms(T0 + 189 * day)).state.stage == "loyalty"
    lapsed = tick(j.state, epoch_ms(T0 + 190 * day)).state
    assert lapsed.stage == "lapsed"
    assert lapsed.stage_history[-1].entered_ms == epoch_ms(T0 + 190 * day)

    j.state = lapsed
    j.send("page.view", at=T0 + 200 * day)
    assert j.state.stage == "lapsed"  # still lapsed until a transaction
    j.send("store.purchase", order_id="S-3", at=T0 + 210 * day)
    assert j.state.stage == "loyalty"
    [again] = [p for p in j.state.pending if p.rule_id.startswith("stage_decay")]
    assert again.due_ms == epoch_ms(T0 + 390 * day)


def test_a_purchase_before_the_due_time_cancels_the_decay() -> None:
    from datetime import timedelta

    from factories import T0, Journey, epoch_ms

    from streams.core.engine import tick

    day = timedelta(days=1)
    j = Journey()
    j.send("order.paid", order_id="O-1", at=T0)
    j.send("order.paid", order_id="O-2", at=T0 + 10 * day)
    j.send("order.paid", order_id="O-3", at=T0 + 100 * day)

    assert j.state is not None
    assert tick(j.state, epoch_ms(T0 + 190 * day)).state.stage == "loyalty"
    assert tick(j.state, epoch_ms(T0 + 280 * day)).state.stage == "lapsed"


@pytest.mark.parametrize("name", ["aipl", "five_stage", "private_domain"])
def test_shipped_models_have_exact_entry_times(name: str) -> None:
    assert load_stage_model(name).counted is not None


def test_a_model_with_other_conditions_enters_stages_by_arrival(tmp_path) -> None:
    """A brand's stage on the lead score (not a counted metric) is entered when
    the event that reached it arrived, as before exact entry times."""
    path = tmp_path / "leads.json"
    path.write_text(
        '{"name": "leads", "stages": ['
        '{"id": "known", "when": [{"metric": "events_total", "op": ">=", "value": 1}]},'
        '{"id": "hot", "when": [{"metric": "lead_score", "op": ">=", "value": 1}]}]}',
        encoding="utf-8",
    )
    model = load_stage_model(str(path))
    assert model.counted is None
    j = Journey(config=replace(shipped_config(), stage_model=model))
    j.send("page.view", event_id="e-late", at=T0 + timedelta(hours=2))
    j.send("page.view", event_id="e-early", at=T0)  # arrives second, happened first

    assert j.state is not None
    # page views score lead points: hot at once, at the one that arrived first
    assert [(e.stage, e.cause_event_id) for e in j.state.stage_history] == [("hot", "e-late")]
