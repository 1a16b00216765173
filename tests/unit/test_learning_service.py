"""The trainer service's choice of what to learn (``streams.learning``): no
broker here, only which examples reach the models."""

from __future__ import annotations

from models.labels import Example
from models.trainer import ModelScorer, Trainer, decode_example, default_specs, encode_example
from streams.learning import ModelFeed, TrainerService


def service() -> TrainerService:
    specs = default_specs()
    feed = ModelFeed("127.0.0.1:1", "models", ModelScorer(specs))
    return TrainerService(
        "127.0.0.1:1", "g", "examples", "models", specs, feed, every_examples=10, interval_s=1
    )


def example(decision: str, *, correction: bool = False) -> bytes:
    return encode_example(
        Example(decision, "convert", 0, {"lead_score": 1.0}, 0.5, 0, True, 1, correction)
    )


def test_examples_a_snapshot_has_and_repeats_after_a_crash_are_not_learned_again() -> None:
    svc = service()
    trainer = Trainer(default_specs())
    svc.learned_to = {"convert": 5}  # the newest snapshot learned up to offset 5
    svc._learn(trainer, 4, example("d0"))
    svc._learn(trainer, 6, example("d1"))
    svc._learn(trainer, 7, example("d1"))  # the same example, sent again by a restarted worker
    svc._learn(trainer, 8, example("d1", correction=True))  # a correction is another example
    svc._learn(trainer, 9, b"not json")
    assert trainer.models["convert"].examples == 2
    assert svc.learned_to == {"convert": 8}


def test_a_trainer_taking_over_refills_the_quality_window_without_learning_again() -> None:
    """The examples before the snapshot's offset are read again: they fill the
    quality window (as the previous trainer measured it) and are known as
    learned, and the totals go on from the snapshot's."""
    before = Trainer(default_specs())
    for n in range(6):
        before.learn(decode_example(example_of(f"d{n}", n / 10, n % 2 == 0)))
    raw = before.snapshot("convert", examples_offset=5)
    svc = service()
    trainer = Trainer(default_specs())
    trainer.resume(raw)
    svc.learned_to = {"convert": 5}
    for n in range(6):
        svc._learn(trainer, n, example_of(f"d{n}", n / 10, n % 2 == 0))
    svc._learn(trainer, 6, example_of("d0", 0.0, True))  # a repeat of a learned one
    svc._learn(trainer, 7, example_of("d6", 0.9, True))
    quality = trainer.report_quality("convert")
    assert trainer.models["convert"].examples == 7  # six from the snapshot, one new
    assert (quality["window"], quality["labelled"]) == (7, 7)
    assert quality["auc"] == before_and_after_auc()


def example_of(decision: str, score: float, label: bool) -> bytes:
    return encode_example(
        Example(decision, "convert", 0, {"lead_score": 1.0}, score, 0, label, 1, False)
    )


def before_and_after_auc() -> float:
    """The window's AUC over the seven scores, as one trainer would report it."""
    from models.quality import exact_auc

    pairs = [(n / 10, n % 2 == 0) for n in range(6)] + [(0.9, True)]
    auc = exact_auc(pairs)
    assert auc is not None
    return round(auc, 4)
