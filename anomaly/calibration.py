"""From raw kNN distances to a calibrated reading: how improbable, and how large, recent distances are.

For each channel of a detector, a :class:`TailCalibrator` keeps the distribution of its recent
distances, in the spirit of HTM's anomaly likelihood (NAB's leader for years), made robust:

* the reading at row ``t`` is ``a_t``, the mean of the last ``averaging`` distances (one odd window is
  noise, several in a row are an event);
* every ``refit`` rows (at row numbers that are multiples of ``refit``, so batch and streaming refit at
  the same rows) the calibrator fits the upper tail of the last ``history`` readings: an exponential tail
  above their ``quantile`` (the peaks-over-threshold model of extreme-value theory), whose scale is the
  *median* excess (over ln 2), so one huge transient in the history does not blind it to the next
  anomaly, as a mean and a variance would;
* ``p_t``, the tail probability of ``a_t`` under that fit, says how improbable the reading is, and
  ``r_t = a_t / median(history)`` how large it is against the typical distance;
* readings that were anomalous (improbable *and* large) are kept out of the history, up to a budget: a
  lasting change leaves a trail of large distances until its windows have joined the references, and
  learning that trail as normal would hide the next anomaly for ``history`` rows. Extremes that come back
  more often than the budget allows are learned: they are the series' normal.

Distances that are NaN (no reference yet, a missing value) are skipped. Scales have a floor (``floor``,
in the distance's own units): a noise-free periodic series has distances of about 0, and its tiny
numerical jitter must not read as improbable.
"""

from __future__ import annotations

import math

import numpy as np

from .exceptions import InvalidParameter

__all__ = ["TailCalibrator"]

LONG_RUN = 80


class TailCalibrator:
    """Running calibration of one channel's distances (see the module docstring).

    Args:
        averaging: distances averaged into one reading.
        history: readings the tail is fitted on.
        quantile: where the fitted tail starts.
        refit: rows between fits.
        min_history: readings needed before the first fit (until then every tail probability is 1).
        floor: smallest scale and typical distance, in the distance's units.
        screen: ``(p, ratio)``: readings at most this probable and at least this large are anomalous and
            stay out of the history, so that one long anomaly does not teach the calibration that such
            distances are usual (the next anomaly would go unseen) ...
        budget: ... but at most this many per ``history`` rows: extremes that keep coming back are this
            series' normal, and are learned.

    Raises:
        InvalidParameter: a value out of range.
    """

    def __init__(self, *, averaging: int = 5, history: int = 1000, quantile: float = 0.95, refit: int = 50,
                 min_history: int = 100, floor: float = 1e-3, screen: tuple[float, float] | None = None,
                 budget: int = 0) -> None:
        if averaging < 1 or history < 10 or refit < 1 or min_history < 10 or min_history > history:
            raise InvalidParameter(f"averaging={averaging}, history={history}, refit={refit}, "
                                   f"min_history={min_history}: need averaging, refit >= 1 and "
                                   "10 <= min_history <= history")
        if not 0.5 <= quantile < 1 or not floor > 0:
            raise InvalidParameter(f"quantile={quantile} must be in [0.5, 1) and floor={floor} > 0")
        self.averaging, self.history, self.quantile = int(averaging), int(history), float(quantile)
        self.refit, self.min_history, self.floor = int(refit), int(min_history), float(floor)
        self.screen = screen
        self.budget = budget
        # The running state (saved and restored by anomaly._stream_state):
        self.screened = np.zeros(0, np.int64)  # rows whose readings were screened, within the last history
        self.recent = np.zeros(0)  # the last averaging - 1 valid distances
        self.readings = np.zeros(0)  # the last `history` readings, oldest first
        self.fit: tuple[float, float, float] | None = None  # (tail start u, scale beta, typical distance)

    def update(self, distances: np.ndarray, rows: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Readings of consecutive rows; advances the state.

        Returns:
            ``(reading, p, ratio, typical)`` per row: the averaged distance (NaN where the distance is NaN),
            its tail probability (1 where there is no reading or no fit yet), its ratio to the typical
            distance (0 likewise) and that typical distance (NaN before the first fit).
        """
        d = np.asarray(distances, np.float64)
        rows = np.asarray(rows, np.int64)
        reading = np.full(d.shape, np.nan)
        p = np.ones(d.shape)
        ratio = np.zeros(d.shape)
        typical_at = np.full(d.shape, np.nan)
        valid = np.flatnonzero(np.isfinite(d))
        # A reading depends on the valid distances before it, never on the fit: all of them in one go.
        avg = self._averages(d[valid])
        reading[valid] = avg
        # Every reading of the batch after the history (screened ones are marked in `keep` and skipped):
        # a refit takes the last `history` kept ones before its row, as the running history held them.
        hist = np.concatenate([self.readings, avg])
        base = self.readings.size
        keep: np.ndarray | None = None
        # Fit boundaries inside this batch split it into segments with one fit each.
        cuts = [0, *np.flatnonzero(rows % self.refit == 0).tolist(), d.size]
        at = np.searchsorted(valid, cuts).tolist()  # the segments' first readings in `valid` / `avg`
        # Each reading's fit (NaN: none yet); the tail probabilities are computed for all at the end (each
        # value on its own, so the same as segment by segment), the rare screened ones also on the way.
        fit_at = np.full((3, avg.size), np.nan)
        with np.errstate(over="ignore"):
            for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                if b <= a:
                    continue
                va, vb = at[i], at[i + 1]
                if rows[a] % self.refit == 0:
                    end = base + va
                    h = hist[max(0, end - self.history) : end] if keep is None else hist[:end][keep[:end]]
                    self._refit(h[-self.history :])
                if self.fit is None:
                    continue
                u, beta, typical = self.fit
                typical_at[a:b] = typical
                if vb <= va:
                    continue
                fit_at[:, va:vb] = np.array(self.fit)[:, None]
                if self.screen is None:
                    continue
                seg = avg[va:vb]
                large = np.flatnonzero(seg / typical >= self.screen[1])
                if large.size == 0:
                    continue
                p_large = np.minimum(1.0, (1.0 - self.quantile) * np.exp(-(seg[large] - u) / beta))
                for j in large[p_large <= self.screen[0]].tolist():
                    # Rare rows, one at a time so that batching cannot matter. At most `budget` screened per
                    # `history` rows: extremes that keep coming back are this series' normal, and are learned.
                    row = int(rows[valid[va + j]])
                    self.screened = self.screened[self.screened > row - self.history]
                    if self.screened.size < self.budget:
                        self.screened = np.append(self.screened, row)
                        if keep is None:
                            keep = np.ones(hist.size, bool)
                        keep[base + va + j] = False
            fitted = np.flatnonzero(~np.isnan(fit_at[0]))
            u_f, beta_f, typical_f = fit_at[:, fitted]
            p[valid[fitted]] = np.minimum(1.0, (1.0 - self.quantile) * np.exp(-(avg[fitted] - u_f) / beta_f))
            ratio[valid[fitted]] = avg[fitted] / typical_f
        kept = hist if keep is None else hist[keep]
        self.readings = kept[-self.history :].copy()
        return reading, p, ratio, typical_at

    def _averages(self, values: np.ndarray) -> np.ndarray:
        """Mean of each value and the valid distances before it (up to ``averaging`` in all), summed in one
        fixed order so that a row's reading never depends on how the rows were batched."""
        buf = np.concatenate([self.recent, values])
        n, m = values.size, buf.size
        total = np.zeros(n)
        if m - n >= self.averaging - 1:  # every value has its full run before it: the same sums, by slices
            for lag in range(self.averaging):
                total += buf[m - n - lag : m - lag]
            self.recent = buf[-(self.averaging - 1) :] if self.averaging > 1 else buf[:0]
            return total / self.averaging
        count = np.zeros(n)
        for lag in range(self.averaging):
            idx = np.arange(m - n, m) - lag
            ok = idx >= 0
            total[ok] += buf[idx[ok]]
            count[ok] += 1
        self.recent = buf[-(self.averaging - 1) :] if self.averaging > 1 else buf[:0]
        return total / count

    def _refit(self, h: np.ndarray) -> None:
        """Fit the tail of the readings ``h`` (the last ``history`` kept ones)."""
        if h.size < self.min_history:
            return
        ordered = np.sort(h)  # one sort gives the quantile, the median and the excesses' median
        u = float(_sorted_quantile(ordered, self.quantile))
        excess = ordered[np.searchsorted(ordered, u, side="right") :] - u
        beta = float(_sorted_quantile(excess, 0.5)) / math.log(2) if excess.size else 0.0
        self.fit = (u, max(beta, self.floor), max(float(_sorted_quantile(ordered, 0.5)), self.floor))


def _sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (linear interpolation) of an already sorted ``x``."""
    pos = q * (ordered.size - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))

