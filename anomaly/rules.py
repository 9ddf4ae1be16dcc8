"""The score: calibrated channel readings and value-range novelty into one score per row.

**The score** of a row is in [0, 1]; a row is anomalous when it reaches :data:`THRESHOLD` (0.5):

* each kNN channel reads ``min(S(p * channels), r / (2 * effect))``, where ``p`` is the tail probability
  of its averaged distance and ``r`` the distance's ratio to its typical value
  (:mod:`anomaly.calibration`), and ``S(p) = log(p) / log(alpha^2)``: 0.5 at ``p = alpha``, 1 at
  ``alpha^2``. Multiplying ``p`` by the number of channels keeps the chance of a false reading at
  ``alpha`` per row (Bonferroni). So a channel reaches 0.5 only when its distances are both improbable
  (``p <= alpha / channels``) and large (at least ``effect`` times their typical value): a noise-only
  series can be improbable by a hair, a real event is also far;
* **value-range novelty** reads 1 when a value leaves the range of every value seen before by more than
  ``tolerance`` times that range (HTM's "spatial anomaly" in NAB): a new maximum or minimum is news
  whatever the windows say;
* the row's score is the largest reading.

Which anomalous rows alert, and how they group into incidents, is not the detector's: each source's reading
goes to the alerting layer's one incident machine (:class:`alerts.IncidentMachine`, composed by ``workers``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .exceptions import InvalidParameter

__all__ = ["THRESHOLD", "ValueRange", "channel_score"]

#: Scores at or above this are anomalous.
THRESHOLD = 0.5


def channel_score(p: np.ndarray, ratio: np.ndarray, *, channels: int, alpha: float, effect: float) -> np.ndarray:
    """A kNN channel's reading in [0, 1] from its tail probabilities and distance ratios (module docstring)."""
    with np.errstate(divide="ignore"):
        surprise = np.log(np.clip(np.asarray(p, np.float64) * channels, 1e-300, 1.0)) / math.log(alpha**2)
    size = np.asarray(ratio, np.float64) / (2.0 * effect)
    return np.clip(np.minimum(surprise, size), 0.0, 1.0)


@dataclass
class ValueRange:
    """Value-range novelty: the running minimum and maximum of every value seen, and the rule on them.

    Attributes:
        tolerance: margin, as a fraction of the range, that a value must pass to be novel.
        low, high: the range seen so far (NaN before any value).
        seen: values seen (the rule needs ``min_seen`` of them).
    """

    tolerance: float = 0.05
    low: float = math.nan
    high: float = math.nan
    seen: int = 0
    min_seen: int = 10

    def __post_init__(self) -> None:
        if not self.tolerance >= 0:
            raise InvalidParameter(f"range_tolerance={self.tolerance} must be >= 0")

    def update(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(novelty, low, high)``: 1.0 for each value outside the range ``[low, high]`` of the values before
        it (with the margin), else 0.0; missing values (NaN) read 0, have no range (NaN) and leave it as is."""
        v = np.asarray(values, np.float64)
        out = np.zeros(v.size)
        low = np.full(v.size, np.nan)
        high = np.full(v.size, np.nan)
        ok = np.isfinite(v)
        if not ok.any():
            return out, low, high
        vals = v[ok]
        # Range of everything before each value: the running extremes shifted by one.
        prev_low = np.minimum.accumulate(np.concatenate([[self.low if self.seen else np.inf], vals]))[:-1]
        prev_high = np.maximum.accumulate(np.concatenate([[self.high if self.seen else -np.inf], vals]))[:-1]
        count = self.seen + np.arange(vals.size)
        margin = self.tolerance * (prev_high - prev_low)
        with np.errstate(invalid="ignore"):
            novel = (count >= self.min_seen) & ((vals > prev_high + margin) | (vals < prev_low - margin))
        at = np.flatnonzero(ok)
        out[at[novel]] = 1.0
        low[at], high[at] = prev_low, prev_high
        self.low = float(min(prev_low[-1], vals[-1]))
        self.high = float(max(prev_high[-1], vals[-1]))
        self.seen += int(vals.size)
        low[~np.isfinite(low)] = np.nan
        high[~np.isfinite(high)] = np.nan
        return out, low, high
