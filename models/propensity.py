"""Online propensity models behind a small interface of journeyflow's own.

A model scores a feature dict (``models.features``) with the probability of
its target (``convert``: a transaction within the horizon; ``churn``: none
within the churn horizon), learns from one labelled example at a time, and
travels as a versioned snapshot (bytes) that any worker loads to score with
exactly the same numbers. Models are built by :func:`build` from a
:class:`ModelSpec` (configuration, validated), deterministically: the same
examples in the same order give the same model, byte for byte.

Until a model has learned from ``spec.min_examples`` labelled examples it is
not :attr:`~OnlineModel.ready`; choosing actions (issue #10, not built yet)
is to fall back to the rule-based lead score until then and say so in the
action's reason.

>>> model = build(ModelSpec(target="convert", min_examples=2))
>>> model.ready, round(model.score({"lead_score": 3.0}), 3)
(False, 0.5)
>>> for _ in range(50):
...     model.learn({"lead_score": 9.0}, True)
...     model.learn({"lead_score": 1.0}, False)
>>> model.ready, model.score({"lead_score": 9.0}) > 0.8 > 0.2 > model.score({"lead_score": 1.0})
(True, True)
>>> load(model.snapshot()).score({"lead_score": 9.0}) == model.score({"lead_score": 9.0})
True
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import orjson
from pydantic import BaseModel, ConfigDict, Field
from river import compose, linear_model, optim, preprocessing

from models.features import Features

if TYPE_CHECKING:
    from models.bandit import ResponseModel

Target = Literal["convert", "churn", "responses"]

#: Snapshot layout: magic, format version, length of the JSON header, header, pickle.
MAGIC = b"JFM"
FORMAT = 1
_HEAD = struct.Struct(">3sBI")


class SnapshotError(ValueError):
    """Bytes that are not a model snapshot this version can load."""


class ModelSpec(BaseModel):
    """One model, as configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target
    #: ``beta``: the per-action response counts of ``models.bandit`` (target
    #: ``responses``); ``logistic``: a propensity model.
    kind: Literal["logistic", "beta"] = "logistic"
    #: SGD step of the logistic regression.
    learning_rate: float = Field(default=0.05, gt=0, le=10)
    l2: float = Field(default=0.0, ge=0)
    #: Labelled examples before the model's scores are used for decisions.
    min_examples: int = Field(default=200, ge=0)
    #: Event-time hours within which the target counts (convert: a
    #: transaction; churn: none).
    horizon_hours: float = Field(default=72.0, gt=0)


@dataclass
class Counted:
    """What every model kind keeps with its snapshots: its spec, counts,
    version (the snapshots taken of it) and free-form facts."""

    spec: ModelSpec
    examples: int = 0
    positives: int = 0
    version: int = 0
    #: Free-form facts kept with the snapshot (e.g. when it was taken, event time).
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.spec.target}-{self.spec.kind}"

    @property
    def ready(self) -> bool:
        return self.examples >= self.spec.min_examples

    def _pack(self, body: bytes, meta: dict[str, Any]) -> bytes:
        """A snapshot of ``body``, version one more than the last snapshot's."""
        self.version += 1
        self.meta = {**self.meta, **meta}
        header = orjson.dumps(
            {
                "spec": self.spec.model_dump(),
                "examples": self.examples,
                "positives": self.positives,
                "version": self.version,
                "meta": self.meta,
            }
        )
        return _HEAD.pack(MAGIC, FORMAT, len(header)) + header + body


@dataclass
class OnlineModel(Counted):
    """A River pipeline (standardised features, logistic regression) with its
    counts."""

    pipeline: Any = None

    def score(self, x: Features) -> float:
        """P(target | x). Scoring changes nothing (the scaler learns in ``learn``)."""
        proba = self.pipeline.predict_proba_one(x)
        return float(proba.get(True, 0.0))

    def learn(
        self, x: Features, y: bool, *, arm: str | None = None, correction: bool = False
    ) -> None:
        """Learn one example (``arm`` is for response models; a correction is
        learned as one more example)."""
        self.pipeline.learn_one(x, bool(y))
        self.examples += 1
        self.positives += bool(y)

    def snapshot(self, **meta: Any) -> bytes:
        """The model as bytes, version one more than the last snapshot's."""
        return self._pack(pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL), meta)


#: What a trainer learns and a scorer holds per target.
Model: TypeAlias = "OnlineModel | ResponseModel"


def build(spec: ModelSpec) -> Model:
    """A new, untrained model for ``spec``."""
    if spec.kind == "beta":
        from models.bandit import ResponseModel

        return ResponseModel(spec)
    pipeline = compose.Pipeline(
        preprocessing.StandardScaler(),
        linear_model.LogisticRegression(optimizer=optim.SGD(spec.learning_rate), l2=spec.l2),
    )
    return OnlineModel(spec, pipeline=pipeline)


def snapshot_header(raw: bytes) -> dict[str, Any]:
    """What a snapshot says about itself (spec, counts, version), without
    unpickling it."""
    if len(raw) < _HEAD.size:
        raise SnapshotError("too short to be a model snapshot")
    magic, fmt, size = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        raise SnapshotError("not a journeyflow model snapshot")
    if fmt != FORMAT:
        raise SnapshotError(f"snapshot format {fmt} is not supported (this reads {FORMAT})")
    try:
        header: dict[str, Any] = orjson.loads(raw[_HEAD.size : _HEAD.size + size])
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"corrupt snapshot header: {exc}") from None
    return header


def load(raw: bytes) -> Model:
    """A model from :meth:`OnlineModel.snapshot`.

    Snapshots are pickles: load only those journeyflow's own trainer wrote
    (its compacted topic), never bytes from outside.
    """
    header = snapshot_header(raw)
    _, _, size = _HEAD.unpack_from(raw)
    if header.get("spec", {}).get("kind") == "beta":
        from models.bandit import ResponseModel

        try:
            return ResponseModel.from_snapshot(header, raw[_HEAD.size + size :])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SnapshotError(f"corrupt response model: {exc}") from None
    try:
        pipeline = pickle.loads(raw[_HEAD.size + size :])  # own snapshots only (see above)
    except Exception as exc:  # a truncated or foreign pickle
        raise SnapshotError(f"corrupt snapshot body: {exc}") from None
    return OnlineModel(
        ModelSpec.model_validate(header["spec"]),
        pipeline=pipeline,
        examples=int(header["examples"]),
        positives=int(header["positives"]),
        version=int(header["version"]),
        meta=dict(header.get("meta") or {}),
    )
