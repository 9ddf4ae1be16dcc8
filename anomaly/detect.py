"""File-in, file-out detection: contract 2 of DESIGN.md (``ea detect``)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .detector import DEFAULT_EMBEDDING, KnnDetector
from .exceptions import InvalidParameter, SeriesTooShort
from .series import read_one_series

__all__ = ["DetectResult", "detect_file"]

log = logging.getLogger(__name__)


@dataclass
class DetectResult:
    """What :func:`detect_file` produced: the scores table, the fitted detector and a JSON-able summary."""

    frame: pd.DataFrame
    detector: KnnDetector
    summary: dict[str, Any] = field(default_factory=dict)


def detect_file(
    input_csv: str | Path | pd.DataFrame,
    train_until: int,
    scores_out: str | Path | None,
    plot: str | Path | None = None,
    embedding: str = DEFAULT_EMBEDDING,
    **params: Any,
) -> DetectResult:
    """Fit on the first ``train_until`` rows of a ``timestamp,value`` series and score every row.

    Writes ``scores_out`` (CSV, one row per input row in time order: ``timestamp,value,score,is_anomaly``;
    scores finite and causal, ``is_anomaly`` 0/1 from the calibrated threshold and refractory period) and,
    if ``plot`` is given, a PNG. ``params`` go to :class:`~anomaly.detector.KnnDetector`.

    Returns:
        :class:`DetectResult`; ``summary`` holds rows, train_until, embedding, window (chosen or given),
        k, threshold, threshold_distance, anomalies, fit_seconds, score_seconds.

    Raises:
        InvalidSeries: bad input (see :mod:`anomaly.series`).
        SeriesTooShort: ``train_until`` rows are too few for the model (names the minimum).
        InvalidParameter: ``train_until`` outside 1..rows, or a bad detector parameter.
    """
    series = read_one_series(input_csv)
    n = len(series)
    if not 1 <= int(train_until) <= n:
        raise InvalidParameter(f"train_until={train_until} must be between 1 and the {n} rows of the input")
    detector = KnnDetector(embedding, **params)
    if train_until < detector.min_train_length():
        raise SeriesTooShort(
            f"train_until={train_until} rows are too few; at least {detector.min_train_length()} are needed"
        )
    start = time.perf_counter()
    detector.fit(series.values[:train_until])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = detector.score(series.values)
    flags = detector.alerts(scores)
    score_s = time.perf_counter() - start
    frame = pd.DataFrame(
        {"timestamp": series.timestamps, "value": series.values, "score": scores, "is_anomaly": flags.astype(int)}
    )
    if scores_out is not None:
        Path(scores_out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(scores_out, index=False)
    summary = {
        "rows": n,
        "train_until": int(train_until),
        "embedding": embedding,
        "window": int(detector.window),
        "k": detector.k,
        "threshold": detector.threshold,
        "threshold_distance": float(detector.threshold_distance),
        "refractory": detector.refractory_rows,
        "anomalies": int(flags.sum()),
        "max_score": float(np.max(scores)),
        "fit_seconds": round(fit_s, 3),
        "score_seconds": round(score_s, 3),
    }
    if plot is not None:
        from .plot import plot_detection

        title = f"{Path(str(input_csv)).name if not isinstance(input_csv, pd.DataFrame) else 'series'}: " \
                f"{embedding} kNN, window {detector.window}"
        summary["plot"] = str(plot_detection(frame, detector.threshold, plot, title))
    log.info("detect: %s", summary)
    return DetectResult(frame, detector, summary)
