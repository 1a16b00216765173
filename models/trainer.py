"""The trainer and the scorer: how labelled examples become the models every
worker decides with.

- :class:`Trainer` learns from labelled examples (``models.labels``) in the
  order they come, measures each model the honest way (the score recorded at
  decision time against the label that came later: progressive validation,
  ``models.quality``), and takes versioned snapshots (``models.propensity``)
  that carry that quality with them.
- :class:`ModelScorer` is what a worker steps with (``streams.core.decisions.
  Scorer``): the newest snapshot of each target's model, swapped in as
  snapshots arrive, without a restart.

The worker's shell moves examples and snapshots through Kafka
(``streams.learning``); ``journeyflow evaluate`` and the tests use these
classes in process.

>>> from models.labels import Example
>>> trainer = Trainer(default_specs(min_examples=1))
>>> trainer.learn(Example("d1", "convert", 0, {"lead_score": 9.0}, 0.5, 0, True, 1))
True
>>> scorer = ModelScorer(default_specs())
>>> scorer.install(trainer.snapshot("convert")), scorer.score("convert", {"lead_score": 9.0})[1]
(True, 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson

from models.bandit import ResponseModel
from models.features import Features
from models.labels import HOUR, TARGETS, Example
from models.propensity import Model, ModelSpec, build, load, snapshot_header
from models.quality import RollingQuality


def default_specs(
    *,
    min_examples: int = 200,
    convert_horizon_hours: float = 72.0,
    churn_horizon_days: float = 14.0,
) -> dict[str, ModelSpec]:
    """The shipped models: logistic regression for convert and for churn, and
    the per-action response counts (``models.bandit``)."""
    return {
        "convert": ModelSpec(
            target="convert", min_examples=min_examples, horizon_hours=convert_horizon_hours
        ),
        "churn": ModelSpec(
            target="churn", min_examples=min_examples, horizon_hours=churn_horizon_days * 24
        ),
        "responses": ModelSpec(target="responses", kind="beta", min_examples=0),
    }


def horizons_ms(specs: Mapping[str, ModelSpec]) -> dict[str, int]:
    """Target -> horizon in event-time ms (what labels decisions)."""
    return {
        target: int(spec.horizon_hours * HOUR)
        for target, spec in specs.items()
        if target in TARGETS
    }


def encode_example(example: Example) -> bytes:
    return orjson.dumps(example)


def decode_example(raw: bytes) -> Example:
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("an example is a JSON object")
    return Example.from_dict(data)


class Trainer:
    """Online models learning from labelled examples, with their quality."""

    def __init__(self, specs: Mapping[str, ModelSpec], window: int = 10_000) -> None:
        self.specs = dict(specs)
        self.models: dict[str, Model] = {t: build(spec) for t, spec in specs.items()}
        self.quality = {t: RollingQuality(window) for t in specs}
        #: Target -> corrections (late transactions) learned.
        self.corrections: Counter[str] = Counter()
        #: Examples of a target without a model here (another version's).
        self.unknown = 0
        #: Target -> examples learned since its last snapshot.
        self.unsaved: Counter[str] = Counter()

    def resume(self, raw: bytes) -> Model:
        """Go on from a snapshot (the newest on the snapshot topic), keeping its
        version line, so a restarted trainer neither starts from zero nor
        publishes versions the workers already have. The configured spec
        (``min_examples``, horizon) replaces the one the snapshot was taken with."""
        model = load(raw)
        target = model.spec.target
        model.spec = self.specs.get(target, model.spec)
        known = self.models.get(target)
        if known is None or model.version >= known.version:
            self.models[target] = model
            report = model.meta.get("quality")
            if isinstance(report, dict) and target in self.quality:
                # totals go on from the snapshot; the window is refilled by
                # :meth:`witness` from the examples the snapshot learned
                self.quality[target].seen = int(report.get("labelled") or 0)
                self.corrections[target] = int(report.get("corrections") or 0)
        return model

    def witness(self, example: Example) -> None:
        """An example the resumed model learned before this trainer took over:
        into the quality window only (not learned again, not counted again),
        so the window a take-over reports is the newest decisions, not only
        those since the take-over."""
        quality = self.quality.get(example.target)
        if quality is None:
            return
        seen = quality.seen
        _measure(quality, example)
        quality.seen = seen

    def learn(self, example: Example) -> bool:
        """Learn one labelled example (False: no model for its target)."""
        model = self.models.get(example.target)
        if model is None:
            self.unknown += 1
            return False
        if example.correction:
            self.corrections[example.target] += 1
        _measure(self.quality[example.target], example)
        model.learn(example.features, example.label, arm=example.arm, correction=example.correction)
        self.unsaved[example.target] += 1
        return True

    def snapshot(self, target: str, **meta: Any) -> bytes:
        """The target's model as bytes, its quality so far in the header's meta."""
        self.unsaved[target] = 0
        return self.models[target].snapshot(quality=self.report_quality(target), **meta)

    def report_quality(self, target: str) -> dict[str, Any]:
        q = self.quality[target]
        auc, log_loss, ece = q.auc(), q.log_loss(), q.calibration_error()
        return {
            "window": len(q),
            "labelled": q.seen,
            "positives_in_window": q.positives(),
            "corrections": self.corrections[target],
            "auc": None if auc is None else round(auc, 4),
            "log_loss": None if log_loss is None else round(log_loss, 4),
            "calibration_error": None if ece is None else round(ece, 4),
        }


def _measure(quality: RollingQuality, example: Example) -> None:
    """The decision-time score against its label; a correction flips the
    label it corrects while that is in the window, else counts as new."""
    if not (example.correction and quality.correct(example.score, example.label)):
        quality.add(example.score, example.label)


class ModelScorer:
    """The newest snapshot of each target's model (untrained until one comes)."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self.specs = dict(specs)
        self.models: dict[str, Model] = {t: build(spec) for t, spec in specs.items()}
        #: Target -> the snapshot bytes installed (for a trainer to resume from).
        self.snapshots: dict[str, bytes] = {}

    def score(self, target: str, features: Features) -> tuple[float, int]:
        model = self.models[target]
        return model.score(features), model.version

    def install(self, raw: bytes) -> bool:
        """Swap a snapshot in if it is newer than the model in use (False:
        an older or equal version, or a target this worker does not score)."""
        header = snapshot_header(raw)
        target = header["spec"]["target"]
        current = self.models.get(target)
        if current is None or int(header["version"]) <= current.version:
            return False
        model = load(raw)
        model.spec = self.specs[target]  # the configured readiness, not the trainer's then
        self.models[target] = model
        self.snapshots[target] = raw
        return True

    def ready(self, target: str) -> bool:
        model = self.models.get(target)
        return model is not None and model.ready

    def seen(self, target: str) -> tuple[int, int]:
        """``(labelled examples learned, needed before its scores are used)``."""
        model = self.models.get(target)
        return (0, 0) if model is None else (model.examples, model.spec.min_examples)

    def responses(self) -> ResponseModel:
        """The per-action response counts in use (empty until a snapshot comes)."""
        model = self.models.get("responses")
        if isinstance(model, ResponseModel):
            return model
        return ResponseModel(ModelSpec(target="responses", kind="beta", min_examples=0))
