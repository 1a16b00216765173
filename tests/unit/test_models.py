"""Online models (``models/``): features at a decision, propensity models and
their snapshots, and quality measured from recorded scores and later labels."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from factories import T0, Journey, epoch_ms

from models.bandit import ResponseModel
from models.features import NEVER_DAYS, journey_features
from models.labels import (
    HOUR,
    Decision,
    Example,
    add_decision,
    merge_decisions,
    on_clock,
    on_transaction,
)
from models.propensity import ModelSpec, SnapshotError, build, load, snapshot_header
from models.quality import RollingQuality, exact_auc
from models.trainer import ModelScorer, Trainer, default_specs

# --- features -------------------------------------------------------------------


def test_features_are_what_the_journey_held_at_the_decision() -> None:
    j = Journey()
    j.send("live.view_start", context={"live_room_id": "room-1"})
    j.send("live.comment", text="多少钱", at=T0 + timedelta(minutes=1))
    assert j.state is not None
    decided_at = epoch_ms(T0 + timedelta(minutes=1))
    recorded = journey_features(j.state, decided_at, j.config.scoring, in_live_room=True)
    before = dict(recorded)

    # the customer buys later: the journey changes, the recorded features do not
    j.send("live.order", order_id="O-1", amount_minor=19900, at=T0 + timedelta(hours=2))
    assert j.state is not None
    assert recorded == before
    assert recorded["transactions"] == 0.0 and recorded["recency_days"] == NEVER_DAYS
    later = journey_features(j.state, epoch_ms(T0 + timedelta(hours=2)), j.config.scoring)
    assert later["transactions"] == 1.0 and later["recency_days"] == 0.0
    # an order is not a touch: the livestream engagement only decayed since
    assert later["eng:channel:livestream"] < recorded["eng:channel:livestream"]


def test_hour_and_weekday_are_the_customers_local_time() -> None:
    j = Journey()
    j.send("live.comment", text="hi")  # T0 is 20:00 in Shanghai, a Monday
    assert j.state is not None
    at = epoch_ms(T0)
    shanghai = journey_features(j.state, at)
    assert shanghai["dow=mon"] == 1.0
    assert shanghai["hour_sin"] == -0.866  # 20:00 (features keep four decimals)
    london = journey_features(j.state, at, timezone="Europe/London")  # 12:00 there
    assert london["hour_sin"] == pytest.approx(0.0, abs=1e-9) and london["hour_cos"] == -1.0


# --- propensity models ----------------------------------------------------------


def _stream(n: int, seed: int) -> list[tuple[dict[str, float], bool]]:
    """Customers who engage more and asked about price buy more often."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        engaged = rng.random() * 10
        asked = rng.random() < 0.3
        p = 0.05 + 0.08 * engaged + (0.2 if asked else 0.0)
        x = {"eng:channel:livestream": engaged, "asked_price": float(asked), "noise": rng.random()}
        out.append((x, rng.random() < min(0.95, p)))
    return out


def test_a_model_learns_who_buys_and_is_ready_only_after_enough_examples() -> None:
    model = build(ModelSpec(target="convert", min_examples=500))
    quality = RollingQuality(window=2_000)
    for i, (x, y) in enumerate(_stream(3_000, seed=1)):
        if i == 499:
            assert not model.ready
        quality.add(model.score(x), y)  # scored before the label is known
        model.learn(x, y)
    assert model.ready and model.examples == 3_000
    assert 0 < model.positives < 3_000
    auc = quality.auc()
    assert auc is not None and auc > 0.75  # far above chance on this stream
    calibration = quality.calibration_error()
    assert calibration is not None and calibration < 0.1


def test_the_same_examples_give_the_same_model() -> None:
    examples = _stream(400, seed=2)
    a, b = build(ModelSpec(target="churn")), build(ModelSpec(target="churn"))
    for x, y in examples:
        a.learn(x, y)
        b.learn(x, y)
    assert a.snapshot() == b.snapshot()


def test_a_snapshot_scores_exactly_as_the_model_and_carries_its_counts() -> None:
    model = build(ModelSpec(target="convert", min_examples=10))
    for x, y in _stream(200, seed=3):
        model.learn(x, y)
    raw = model.snapshot(event_time_ms=123)
    again = model.snapshot()
    header = snapshot_header(again)
    assert header["version"] == 2 and header["examples"] == 200
    loaded = load(raw)
    assert loaded.version == 1 and loaded.examples == 200 and loaded.ready
    assert loaded.meta == {"event_time_ms": 123}
    for x, _ in _stream(50, seed=4):
        assert loaded.score(x) == model.score(x)
    assert len(raw) < 16_384  # travels in one Kafka record with room to spare


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"JFM",
        b"XYZ\x01\x00\x00\x00\x02{}",
        b"JFM\x09\x00\x00\x00\x02{}",
        b"JFM\x01\x00\x00\x00\x02{}junk",
    ],
    ids=["empty", "short", "foreign", "newer-format", "corrupt-body"],
)
def test_bytes_that_are_not_a_snapshot_are_refused_clearly(raw: bytes) -> None:
    with pytest.raises(SnapshotError):
        load(raw)


# --- quality ----------------------------------------------------------------------


def _brute_auc(pairs: list[tuple[float, bool]]) -> float:
    pos = [s for s, y in pairs if y]
    neg = [s for s, y in pairs if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_is_exact_with_ties() -> None:
    rng = random.Random(5)
    pairs = [(round(rng.random(), 1), rng.random() < 0.4) for _ in range(300)]  # many ties
    assert exact_auc(pairs) == pytest.approx(_brute_auc(pairs), abs=1e-12)
    assert exact_auc([(0.3, True), (0.3, False)]) == 0.5
    assert exact_auc([(0.9, True), (0.8, True)]) is None  # no negative: undefined


def test_quality_covers_the_newest_window_only() -> None:
    q = RollingQuality(window=4, bins=2)
    for score, label in [(0.9, False), (0.9, False), (0.1, True), (0.2, False)]:
        q.add(score, label)
    assert q.auc() == 0.0  # the one buyer scored below every non-buyer
    for score, label in [(0.8, True), (0.7, True), (0.3, False), (0.1, False)]:
        q.add(score, label)
    assert len(q) == 4 and q.seen == 8 and q.auc() == 1.0
    [low, high] = q.calibration()
    assert (low.count, low.positive_rate, high.count, high.positive_rate) == (2, 0.0, 2, 1.0)
    with pytest.raises(ValueError):
        q.add(1.5, True)


# --- delayed labels ---------------------------------------------------------------

H = {"convert": HOUR * 72, "churn": HOUR * 24 * 14}


def _decision(i: int, at_h: float, *targets: str) -> Decision:
    targets = targets or ("convert",)
    return Decision(
        f"d{i}",
        int(at_h * HOUR),
        {"lead_score": float(i)},
        {t: round(0.1 * i, 6) for t in targets},
        {t: 3 for t in targets},
    )


def test_a_purchase_within_the_horizon_labels_open_decisions_positive() -> None:
    open_ = (_decision(1, 0), _decision(2, 10), _decision(3, 100))
    open_, labelled, examples = on_transaction(open_, (), int(50 * HOUR), H)
    assert [(e.decision_id, e.label) for e in examples] == [("d1", True), ("d2", True)]
    assert [d.decision_id for d in open_] == ["d3"]  # decided after the purchase: still open
    assert examples[0].features == {"lead_score": 1.0} and examples[0].score == 0.1
    assert examples[0].version == 3 and examples[0].labelled_ms == 50 * HOUR
    assert labelled == ()  # a purchase's label is final: nothing kept to correct


def test_each_target_is_labelled_on_its_own_horizon() -> None:
    both = (_decision(1, 0, "convert", "churn"),)
    open_, labelled, examples = on_clock(both, (), int(73 * HOUR), H)
    assert [(e.target, e.label) for e in examples] == [("convert", False)]
    [still] = open_
    assert still.scores == {"churn": 0.1} and still.versions == {"churn": 3}
    # a purchase on day 10: not a churner (the convert label stays as the clock set it,
    # the purchase is beyond its horizon)
    open_, labelled, examples = on_transaction(open_, labelled, int(240 * HOUR), H)
    assert [(e.target, e.label, e.correction) for e in examples] == [("churn", False, False)]
    assert open_ == () and [e.target for e in labelled] == ["convert"]


def test_the_clock_labels_a_silent_customer_and_a_late_order_corrects_it() -> None:
    open_ = (_decision(1, 0), _decision(2, 0, "churn"))
    open_, labelled, examples = on_clock(open_, (), int(71 * HOUR), H)
    assert examples == () and len(open_) == 2  # horizon not passed yet
    open_, labelled, examples = on_clock(open_, labelled, int(73 * HOUR), H)
    assert [(e.decision_id, e.label) for e in examples] == [("d1", False)]
    open_, labelled, examples = on_clock(open_, labelled, int(15 * 24 * HOUR), H)
    assert [(e.decision_id, e.target, e.label) for e in examples] == [("d2", "churn", True)]
    assert open_ == ()
    # an order of hour 60, reported late (after the clock labelled both)
    _, labelled, fixes = on_transaction(open_, labelled, int(60 * HOUR), H)
    assert [(e.decision_id, e.label, e.correction) for e in fixes] == [
        ("d1", True, True),
        ("d2", False, True),
    ]
    # the same late order again corrects nothing more
    assert on_transaction((), labelled, int(60 * HOUR), H)[2] == ()


def test_open_decisions_are_bounded_and_a_repeat_is_ignored() -> None:
    open_: tuple[Decision, ...] = ()
    dropped = []
    for i in range(5):
        open_, gone = add_decision(open_, _decision(i, i), limit=3)
        dropped.append(gone)
    assert [d.decision_id for d in open_] == ["d2", "d3", "d4"]
    assert [g.decision_id for g in dropped if g is not None] == ["d0", "d1"]
    assert add_decision(open_, _decision(4, 4), limit=3) == (open_, None)


def test_merged_customers_keep_the_newest_decisions_once() -> None:
    a = (_decision(1, 1), _decision(3, 3))
    b = (_decision(2, 2), _decision(3, 3), _decision(4, 4))
    assert [d.decision_id for d in merge_decisions(a, b, 3)] == ["d2", "d3", "d4"]


# --- trainer and scorer -----------------------------------------------------------


def _example(i: int, label: bool, *, score: float = 0.3, correction: bool = False) -> Example:
    return Example(
        f"d{i}", "convert", i, {"lead_score": float(i % 7)}, score, 0, label, i + 1, correction
    )


def test_a_correction_turns_the_provisional_label_round_in_the_quality_window() -> None:
    trainer = Trainer(default_specs(min_examples=2))
    trainer.learn(_example(1, False, score=0.9))
    trainer.learn(_example(2, True, score=0.2))
    assert trainer.quality["convert"].auc() == 0.0  # the high score went to the negative
    trainer.learn(_example(1, True, score=0.9, correction=True))  # a late order
    q = trainer.quality["convert"]
    assert len(q) == 2 and q.positives() == 2 and trainer.corrections["convert"] == 1
    assert trainer.models["convert"].examples == 3  # learned on top: it cannot unlearn


def test_snapshots_carry_on_the_version_line_with_the_configured_readiness() -> None:
    trainer = Trainer(default_specs(min_examples=1))
    trainer.learn(_example(1, True))
    raw = trainer.snapshot("convert", examples_offset=41)
    successor = Trainer(default_specs(min_examples=500))  # the setting changed since
    model = successor.resume(raw)
    assert (model.version, model.meta["examples_offset"], model.ready) == (1, 41, False)
    successor.learn(_example(2, False))
    assert snapshot_header(successor.snapshot("convert"))["version"] == 2
    scorer = ModelScorer(default_specs(min_examples=500))
    assert scorer.install(raw) and not scorer.ready("convert")
    assert not scorer.install(raw)  # the same version again changes nothing


def _outcome(contact: str, arm: str, responded: bool, correction: bool = False) -> Example:
    return Example(contact, "responses", 0, {}, 0.05, 0, responded, 1, correction, arm)


def test_action_outcomes_travel_as_a_response_snapshot_every_scorer_installs() -> None:
    trainer = Trainer(default_specs())
    for i in range(60):
        trainer.learn(_outcome(f"c{i}", "coupon|interest", i % 4 == 0))
    trainer.learn(_outcome("c1", "coupon|interest", True, correction=True))  # a late click
    trainer.learn(_outcome("x1", "sms|purchase", False))
    raw = trainer.snapshot("responses")
    assert b"\x80" not in raw[-200:]  # a JSON body, not a pickle
    scorer = ModelScorer(default_specs())
    assert scorer.responses().counts("coupon", "interest") == (0, 0)
    assert scorer.install(raw)
    assert scorer.responses().counts("coupon", "interest") == (16, 60)
    assert scorer.responses().posterior("sms", "purchase", (1.0, 19.0)) == (1.0, 20.0)
    assert not scorer.install(raw)  # the same version again changes nothing
    quality = snapshot_header(raw)["meta"]["quality"]
    assert quality["labelled"] == 61 and quality["corrections"] == 1
    with pytest.raises(SnapshotError, match="corrupt response model"):
        load(raw[:-3])


def test_a_segment_with_few_outcomes_borrows_its_action_s_overall_rate() -> None:
    trainer = Trainer(default_specs())
    for i in range(40):
        trainer.learn(_outcome(f"a{i}", "coupon|interest", i % 2 == 0))
    for i in range(5):
        trainer.learn(_outcome(f"b{i}", "coupon|loyalty", False))
    model = trainer.models["responses"]
    assert isinstance(model, ResponseModel)
    assert model.counts("coupon", "interest") == (20, 40)  # enough of its own
    assert model.counts("coupon", "loyalty") == (20, 45)  # too few: the action's overall
