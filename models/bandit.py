"""How often each action gets a response, learned from feedback, and the
Thompson sampling that chooses among actions with it (issue #10).

Every action in the catalog (``streams.core.actions``) has a response rate
per segment (the customer's stage when it was chosen): a Beta posterior,
its prior from the catalog, updated with each delivered action's outcome
(responded, or ignored when its response window passed without one). An
outcome travels as an :class:`~models.labels.Example` of target
``responses`` whose ``arm`` names the action and segment, through the same
examples topic, trainer and snapshots as the propensity models; this module
holds the model that counts them (:class:`ResponseModel`) and the sampler.

Sampling is deterministic: the seed comes from the decision (its id), so a
replay with the same snapshots chooses the same actions. The probability
with which the chosen action was chosen is estimated from ``DRAWS`` draws of
the same seeded generator and recorded on the action, for off-policy
evaluation later.

>>> model = ResponseModel(ModelSpec(target="responses", kind="beta", min_examples=0))
>>> for i in range(40):
...     model.learn({}, i % 4 == 0, arm="coupon|interest")
>>> model.counts("coupon", "interest")
(10, 40)
>>> a, b = model.posterior("coupon", "interest", (1.0, 19.0))
>>> a, b
(11.0, 49.0)
>>> pick = thompson([(a, b, 100.0, 1.0), (1.0, 19.0, 10.0, 1.0)], seed=7)
>>> pick.index, 0.0 < pick.probability <= 1.0
(0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.features import Features
from models.propensity import Counted, ModelSpec

#: Draws per decision to estimate the probability of the chosen action.
DRAWS = 64
#: A segment's own counts are used once it has this many outcomes; before
#: that, the action's outcomes over all segments.
SEGMENT_MIN_TRIALS = 30


def arm_key(action: str, segment: str) -> str:
    return f"{action}|{segment}"


@dataclass
class ResponseModel(Counted):
    """Responses and trials per ``action|segment``, versioned like a model
    snapshot (same container, JSON body)."""

    arms: dict[str, list[int]] = field(default_factory=dict)

    def score(self, x: Features) -> float:
        """Not a propensity model: the overall response rate so far."""
        return self.positives / self.examples if self.examples else 0.0

    def learn(
        self, x: Features, y: bool, *, arm: str | None = None, correction: bool = False
    ) -> None:
        """One outcome of ``arm``. A correction (a response after the window
        labelled it ignored) turns that earlier miss into a response."""
        if arm is None:
            return
        counts = self.arms.setdefault(arm, [0, 0])
        if correction:
            if y and counts[1] > counts[0]:
                counts[0] += 1
                self.positives += 1
            return
        counts[0] += bool(y)
        counts[1] += 1
        self.examples += 1
        self.positives += bool(y)

    def counts(self, action: str, segment: str) -> tuple[int, int]:
        """``(responses, trials)`` of the segment, or of the action over every
        segment while the segment has fewer than ``SEGMENT_MIN_TRIALS``."""
        own = self.arms.get(arm_key(action, segment))
        if own is not None and own[1] >= SEGMENT_MIN_TRIALS:
            return own[0], own[1]
        prefix = f"{action}|"
        responses = trials = 0
        for key, (r, n) in self.arms.items():
            if key.startswith(prefix):
                responses += r
                trials += n
        return responses, trials

    def posterior(
        self, action: str, segment: str, prior: tuple[float, float]
    ) -> tuple[float, float]:
        """Beta ``(alpha, beta)`` of the action's response rate in the segment."""
        responses, trials = self.counts(action, segment)
        return prior[0] + responses, prior[1] + trials - responses

    def snapshot(self, **meta: Any) -> bytes:
        return self._pack(orjson.dumps(self.arms, option=orjson.OPT_SORT_KEYS), meta)

    @classmethod
    def from_snapshot(cls, header: dict[str, Any], body: bytes) -> ResponseModel:
        arms = orjson.loads(body) if body else {}
        if not isinstance(arms, dict):
            raise ValueError("a response model's body is a JSON object")
        return cls(
            ModelSpec.model_validate(header["spec"]),
            arms={str(k): [int(v[0]), int(v[1])] for k, v in arms.items()},
            examples=int(header["examples"]),
            positives=int(header["positives"]),
            version=int(header["version"]),
            meta=dict(header.get("meta") or {}),
        )


@dataclass(frozen=True)
class Pick:
    """The action Thompson sampling chose (``index`` into the arms; None:
    none has a positive priority), the probability it is chosen with these
    posteriors and seed's draws, and the response rate sampled for each arm."""

    index: int | None
    probability: float
    sampled: tuple[float, ...]


_bits = np.random.PCG64(0)
_draw = np.random.Generator(_bits)


def thompson(arms: Sequence[tuple[float, float, float, float]], seed: int) -> Pick:
    """Arms ``(alpha, beta, weight, cost)``: priority = sampled rate × weight
    − cost. The first draw decides; ``DRAWS`` draws estimate how likely the
    decided arm was to be chosen (a draw where no priority is positive
    chooses nothing)."""
    if not arms:
        return Pick(None, 1.0, ())
    # seeding the bit generator's state directly: a new Generator per call
    # costs more than the draws
    _bits.state = {
        "bit_generator": "PCG64",
        "state": {"state": seed, "inc": 1},
        "has_uint32": 0,
        "uinteger": 0,
    }
    alpha = np.array([a[0] for a in arms])
    beta = np.array([a[1] for a in arms])
    weight = np.array([a[2] for a in arms])
    cost = np.array([a[3] for a in arms])
    theta = _draw.beta(alpha, beta, size=(DRAWS, len(arms)))
    priority = theta * weight - cost
    best = priority.argmax(axis=1)
    chosen = np.where(priority.max(axis=1) > 0, best, -1)
    first = int(chosen[0])
    probability = float(np.count_nonzero(chosen == first)) / DRAWS
    sampled = tuple(round(float(x), 6) for x in theta[0])
    return Pick(None if first < 0 else first, round(probability, 4), sampled)
