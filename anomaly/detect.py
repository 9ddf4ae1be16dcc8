"""File-in, file-out detection: contract 2 of the design (``ea detect``)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .detector import DEFAULT_EMBEDDING, KnnDetector
from .exceptions import InvalidParameter, SeriesTooShort
from .series import ReadOptions, read_one_series
from .stream import Scored

__all__ = ["DetectResult", "detect_file", "scores_frame"]

log = logging.getLogger(__name__)


@dataclass
class DetectResult:
    """What :func:`detect_file` produced: the scores table, the fitted detector, the explanations of its
    alerts and a JSON-able summary."""

    frame: pd.DataFrame
    detector: KnnDetector
    explanations: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def detect_file(
    input_csv: str | Path | pd.DataFrame,
    train_until: int,
    scores_out: str | Path | None,
    plot: str | Path | None = None,
    embedding: str | None = None,
    *,
    read_options: ReadOptions | None = None,
    explain: str | Path | None = None,
    **params: Any,
) -> DetectResult:
    """Fit on the first ``train_until`` rows of a series and score every row causally, learning as it goes.

    Writes ``scores_out`` (CSV, one row per row of the series in time order: ``timestamp`` as given,
    ``value``, ``score`` (calibrated, in [0, 1]; empty where the value is missing), ``is_anomaly`` (the
    detector's own alerts), then ``distance``, ``p_value``, ``reason`` (the channel that gave the score) and
    ``incident`` (1 from an alert until the incident has calmed down)); with ``plot`` a PNG (``.png`` is
    added when missing); with ``explain`` one JSON line per alert (the window, its nearest reference
    windows, the score: :mod:`anomaly.explain`). ``embedding``: one of
    :data:`~anomaly.detector.EMBEDDINGS` (``None``: the default). ``read_options`` go to
    :func:`~anomaly.series.read_one_series` (column names, duplicate policy); ``params`` to
    :class:`~anomaly.detector.KnnDetector`.

    Returns:
        :class:`DetectResult`; ``summary`` holds rows, train_until, embedding, window, threshold, anomalies,
        missing and duplicate rows, timings and the files written.

    Raises:
        InvalidSeries: unreadable input (see :mod:`anomaly.series`).
        SeriesTooShort: ``train_until`` rows are too few for the detector (names the minimum).
        InvalidParameter: ``train_until`` outside 1..rows, or a bad detector parameter (names it).
    """
    embedding = embedding or DEFAULT_EMBEDDING
    series = read_one_series(input_csv, **(read_options or {}))
    n = len(series)
    if not 1 <= int(train_until) <= n:
        raise InvalidParameter(f"train_until={train_until} must be between 1 and the {n} rows of the input")
    detector = KnnDetector(embedding, **params)
    if train_until < detector.min_train_length():
        raise SeriesTooShort(
            f"train_until={train_until} rows are too few; at least {detector.min_train_length()} are needed"
        )
    start = time.perf_counter()
    scored = detector.fit_detect(series.values, int(train_until), series.timestamps.as_unit("ns").asi8)
    elapsed = time.perf_counter() - start
    frame = scores_frame(series.raw_timestamps, series.values, scored, [ch.name for ch in detector.channels])
    alerts = [e for e in scored.explanations if e.get("alert")]
    summary: dict[str, Any] = {
        "rows": n,
        "train_until": int(train_until),
        "embedding": embedding,
        "window": detector.window,
        "channels": [ch.name for ch in detector.channels],
        "threshold": detector.threshold,
        "anomalies": int(scored.is_anomaly.sum()),
        "missing_values": int(np.isnan(series.values).sum()),
        "duplicate_rows": int(series.duplicates),
        "fit_seconds": round(detector.fit_seconds, 3),
        "score_seconds": round(max(elapsed - detector.fit_seconds, 0.0), 3),
    }
    if scores_out is not None:
        Path(scores_out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(scores_out, index=False)
        summary["scores_out"] = str(scores_out)
    if explain is not None:
        path = Path(explain)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e) + "\n" for e in alerts))
        summary["explain"] = str(path)
    if plot is not None:
        from .plot import plot_detection

        name = "series" if isinstance(input_csv, pd.DataFrame) else Path(str(input_csv)).name
        title = f"{name}: kNN distance detector ({embedding}), trained on the first {train_until} rows"
        summary["plot"] = str(plot_detection(frame.assign(timestamp=series.timestamps), plot, title=title,
                                             train_until=int(train_until), value_label=_value_label(read_options)))
    log.info("detect: %s", summary)
    return DetectResult(frame, detector, alerts, summary)


def scores_frame(raw_timestamps: np.ndarray, values: np.ndarray, scored: Scored, channels: list[str]) -> pd.DataFrame:
    """The output table of ``ea detect``: one row per row, timestamps as given (see :func:`detect_file`)."""
    names = {-1: "value range", -2: "", **dict(enumerate(channels))}
    return pd.DataFrame({
        "timestamp": raw_timestamps,
        "value": values,
        "score": np.round(scored.score, 6),
        "is_anomaly": scored.is_anomaly.astype(int),
        "distance": np.round(scored.distance, 6),
        "p_value": scored.p_value,
        "reason": [names[int(c)] for c in scored.channel],
        "incident": scored.in_incident.astype(int),
    })


def _value_label(read_options: ReadOptions | None) -> str:
    return (read_options or {}).get("value_col") or "value"
