"""The alert rule: calibrated channel readings and value-range novelty into one score, scores into alerts.

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

**Alerts** (``is_anomaly``): an anomalous row alerts unless the series is still warming up or a row
alerted in the previous ``refractory`` rows: one alert per incident, not a storm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .exceptions import InvalidParameter

__all__ = ["THRESHOLD", "AlertRule", "ValueRange", "channel_score", "incident_spans"]

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


@dataclass
class AlertRule:
    """Readings into alerts and incidents: one alert per incident (see the module docstring).

    Each source of readings (every kNN channel, and value-range novelty) is watched on its own. A row
    alerts when some source reads at least the threshold while *armed*, no row alerted in the previous
    ``refractory`` rows, and the row is not before ``armed_from``. The alert opens an incident: every
    source reading the threshold within ``refractory`` rows of it belongs to it and is disarmed, and a
    disarmed source re-arms after ``rearm`` consecutive rows below the threshold. The incident lasts while
    a source it disarmed has not re-armed. So a lasting change alerts once, however long it takes to
    become normal, while an anomaly after it (once its source has calmed) alerts again.

    Attributes:
        refractory: rows after an alert during which no other alert is raised.
        rearm: consecutive rows below the threshold after which a source may alert again.
        armed_from: first row that may alert (the end of the training prefix or of a new series' warm-up).
        last_alert: row of the last alert (``None`` before any).
        calm: per source, consecutive rows below the threshold since it was disarmed (``None``: armed
            since the start).
        open: whether an incident is open (from an alert until every source it disarmed has re-armed; an
            excursion after that, without an alert, does not reopen it).
    """

    refractory: int = 200
    rearm: int = 20
    armed_from: int = 0
    last_alert: int | None = None
    calm: list[int | None] = field(default_factory=list)
    open: bool = False

    def __post_init__(self) -> None:
        if self.refractory < 0 or self.rearm < 0:
            raise InvalidParameter(f"refractory={self.refractory} and rearm={self.rearm} must be >= 0")

    def update(self, readings: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(is_anomaly, in_incident)`` (bool) of consecutive rows from each source's readings (sources x
        rows, NaN = none); advances the state."""
        r = np.nan_to_num(np.atleast_2d(np.asarray(readings, np.float64)), nan=0.0)
        rows = np.asarray(rows, np.int64)
        if len(self.calm) != r.shape[0]:
            self.calm = [None] * r.shape[0]
        flags = np.zeros(r.shape[1], dtype=bool)
        open_ = np.zeros(r.shape[1], dtype=bool)
        above = r >= THRESHOLD
        busy = np.flatnonzero(above.any(axis=0))
        # Rows where no source reads the threshold only lengthen every calm streak: count them in one go.
        prev = 0
        for i in busy:
            self._calm_for(prev, int(i), open_)
            prev = int(i) + 1
            row = int(rows[i])
            hot = np.flatnonzero(above[:, i])
            armed = [s for s in hot if self.calm[s] is None or self.calm[s] >= self.rearm]
            ready = self.last_alert is None or row - self.last_alert > self.refractory
            if armed and ready and row >= self.armed_from:
                flags[i] = True
                self.last_alert = row
                self.open = True
            # A source reading the threshold while an incident is open and young belongs to it; one that
            # had alerted before starts its calm streak again either way.
            joins = self.open and self.last_alert is not None and row - self.last_alert <= self.refractory
            for s in range(r.shape[0]):
                streak = self.calm[s]
                if above[s, i]:
                    if joins or streak is not None:
                        self.calm[s] = 0
                elif streak is not None:
                    self.calm[s] = streak + 1
            self.open = self.open and self._pending()
            open_[i] = self.open
        self._calm_for(prev, r.shape[1], open_)
        return flags, open_

    def _pending(self) -> bool:
        """Whether a disarmed source has not re-armed yet (what keeps an open incident open)."""
        return any(c is not None and c < self.rearm for c in self.calm)

    def _calm_for(self, a: int, b: int, open_: np.ndarray) -> None:
        """Rows ``a..b-1`` read nothing: every calm streak grows; an open incident stays open until the most
        recently disarmed source has re-armed."""
        n = b - a
        if n <= 0:
            return
        if self.open:
            waiting = [self.rearm - 1 - c for c in self.calm if c is not None and c < self.rearm]
            if waiting:
                open_[a : a + min(n, max(waiting) + 1)] = True
        self.calm = [None if c is None else c + n for c in self.calm]
        self.open = self.open and self._pending()


def incident_spans(in_incident: np.ndarray) -> list[tuple[int, int]]:
    """``(first_row, last_row)`` of each run of rows within an incident."""
    flags = np.asarray(in_incident, bool)
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return [(int(a), int(b) - 1) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
