"""The trainer service's choice of what to learn (``streams.learning``): no
broker here, only which examples reach the models."""

from __future__ import annotations

from models.labels import Example
from models.trainer import ModelScorer, Trainer, default_specs, encode_example
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
