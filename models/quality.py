"""How good a model is, measured the honest way: the score it gave at
decision time against the label that arrived later (progressive
validation), over the newest ``window`` labelled decisions.

ROC AUC here is exact (the Mann-Whitney statistic, ties counted half), not
River's ``metrics.ROCAUC``, which approximates with a few thresholds.

>>> q = RollingQuality(window=100)
>>> for score, label in [(0.1, False), (0.4, False), (0.35, True), (0.8, True)]:
...     q.add(score, label)
>>> q.auc()
0.75
>>> round(q.log_loss(), 4)
0.4723
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

#: Scores are clipped to [EPS, 1 - EPS] for the log loss (a certain miss is not infinite).
EPS = 1e-12


def exact_auc(pairs: list[tuple[float, bool]]) -> float | None:
    """P(a random positive scores above a random negative), ties half.
    None without both a positive and a negative."""
    positives = sum(1 for _, label in pairs if label)
    negatives = len(pairs) - positives
    if not positives or not negatives:
        return None
    ordered = sorted(pairs, key=lambda p: p[0])
    rank_sum = 0.0  # sum of the positives' ranks, ties sharing their mean rank
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][0] == ordered[i][0]:
            j += 1
        mean_rank = (i + j) / 2 + 1
        rank_sum += mean_rank * sum(1 for _, label in ordered[i : j + 1] if label)
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_score: float
    positive_rate: float


class RollingQuality:
    """Scores and later labels of the newest ``window`` decisions."""

    def __init__(self, window: int = 10_000, bins: int = 10) -> None:
        if window < 1 or bins < 1:
            raise ValueError("window and bins must be at least 1")
        self.window = window
        self.bins = bins
        self._pairs: deque[tuple[float, bool]] = deque(maxlen=window)
        #: Every labelled decision ever added (not only the window).
        self.seen = 0

    def add(self, score: float, label: bool) -> None:
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"a score is a probability, not {score!r}")
        self._pairs.append((score, bool(label)))
        self.seen += 1

    def correct(self, score: float, label: bool) -> bool:
        """A label turned out the other way (a late transaction): flip the
        newest decision of this score labelled ``not label``. False when it
        has left the window (the correction is then not counted)."""
        for i in range(len(self._pairs) - 1, -1, -1):
            if self._pairs[i] == (score, not label):
                self._pairs[i] = (score, bool(label))
                return True
        return False

    def __len__(self) -> int:
        return len(self._pairs)

    def positives(self) -> int:
        return sum(1 for _, label in self._pairs if label)

    def auc(self) -> float | None:
        return exact_auc(list(self._pairs))

    def log_loss(self) -> float | None:
        if not self._pairs:
            return None
        total = 0.0
        for score, label in self._pairs:
            p = min(1 - EPS, max(EPS, score))
            total -= math.log(p if label else 1 - p)
        return total / len(self._pairs)

    def calibration(self) -> list[CalibrationBin]:
        """Equal-width score bins that hold decisions: mean score against the
        share that turned out positive (a calibrated model has them equal)."""
        sums: dict[int, list[float]] = {}
        for score, label in self._pairs:
            b = min(self.bins - 1, int(score * self.bins))
            acc = sums.setdefault(b, [0.0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += score
            acc[2] += label
        return [
            CalibrationBin(
                low=b / self.bins,
                high=(b + 1) / self.bins,
                count=int(n),
                mean_score=s / n,
                positive_rate=pos / n,
            )
            for b, (n, s, pos) in sorted(sums.items())
        ]

    def calibration_error(self) -> float | None:
        """Expected calibration error: the count-weighted gap between mean
        score and positive rate over the bins."""
        bins = self.calibration()
        n = sum(b.count for b in bins)
        if not n:
            return None
        return sum(b.count * abs(b.mean_score - b.positive_rate) for b in bins) / n
