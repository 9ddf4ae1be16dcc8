"""Alert decisions and point-by-point scoring that reproduces batch scoring exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .detector import KnnDetector

__all__ = ["THRESHOLD", "StreamScorer", "decide_alerts"]

# Scores are distances divided by the calibrated threshold distance, so the threshold is always 1.
THRESHOLD = 1.0


class StreamScorer:
    """Scores points as they arrive, giving exactly the batch :meth:`KnnDetector.score` values and alerts.

    Holds the last ``window - 1`` values, the row position of the next value and the last alert row.

    Args:
        detector: a fitted detector.
        position: row number of the next value (default: right after the training prefix).
        tail: the ``window - 1`` values before ``position`` (default: the end of the training prefix).
    """

    def __init__(self, detector: KnnDetector, position: int | None = None, tail: np.ndarray | None = None):
        detector._check_fitted()
        self.detector = detector
        self.position = detector.n_train if position is None else int(position)
        self.tail = np.asarray(detector.tail if tail is None else tail, dtype=np.float64)[-(detector.window - 1) :]
        self.last_alert: int | None = None
        self.armed = True

    def update(self, new_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, is_anomaly)`` of ``new_values``; advances the state."""
        new = np.asarray(new_values, dtype=np.float64).ravel()
        if new.size == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        buf = np.concatenate([self.tail, new])
        scores = self.detector.score(buf, start_index=self.position - self.tail.size)[self.tail.size :]
        # Rows with no full window yet (a short tail) are not alerts, as in batch scoring.
        flags, self.last_alert, self.armed = decide_alerts(
            scores, THRESHOLD, self.detector.refractory_rows, self.last_alert, self.position,
            self.detector.rearm, self.armed,
        )
        self.tail = buf[-(self.detector.window - 1) :] if self.detector.window > 1 else buf[:0]
        self.position += new.size
        return scores, flags


def decide_alerts(
    scores: np.ndarray,
    threshold: float,
    refractory: int,
    last_alert: int | None = None,
    start: int = 0,
    rearm: bool = False,
    armed: bool = True,
) -> tuple[np.ndarray, int | None, bool]:
    """Flag rows whose score exceeds ``threshold`` unless a row was flagged in the previous ``refractory``.

    With ``rearm``, a new alert also needs the score to have fallen to the threshold or below since the
    previous alert (one alert per excursion, however long it lasts). ``scores[i]`` is row ``start + i``;
    ``last_alert`` (row of the previous alert or ``None``) and ``armed`` carry the state between calls.
    Returns the flags and the new ``(last_alert, armed)``.
    """
    s = np.asarray(scores, dtype=np.float64)
    flags = np.zeros(s.size, dtype=bool)
    above = s > threshold
    if not rearm:
        for i in np.flatnonzero(above):
            row = start + int(i)
            if last_alert is None or row - last_alert > refractory:
                flags[i] = True
                last_alert = row
        return flags, last_alert, True
    for i in range(s.size):  # only the rows near alerts need this loop; series are short enough
        row = start + i
        if not above[i]:
            armed = True
        elif armed and (last_alert is None or row - last_alert > refractory):
            flags[i] = True
            last_alert, armed = row, False
    return flags, last_alert, armed

