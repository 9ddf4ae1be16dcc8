"""``ea detect``, contract 2 of the design: a detector's scores, and the alerting layer's decisions on them.

The detector (:mod:`anomaly`) fits on the training prefix and scores every row causally, learning as it goes;
the one incident machine (:class:`alerts.IncidentMachine`, the same the streaming path runs per detector and
series with its state in Redis) decides which rows alert, with the ``EA_ALERT_*`` settings: ``is_anomaly`` is
that decision, ``incident`` its incidents. So a series decides alike in a file and in a stream.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alerts import IncidentMachine, IncidentPolicy
from anomaly import (
    DEFAULT_EMBEDDING,
    THRESHOLD,
    InvalidParameter,
    KnnDetector,
    Readings,
    ReadOptions,
    SeriesTooShort,
    plot_detection,
    read_one_series,
    scores_frame,
)

__all__ = ["DetectResult", "IncidentDecider", "detect_file"]

log = logging.getLogger(__name__)


class IncidentDecider:
    """The alerting layer's incident machine of one series, in memory, as a detector's ``decide``
    (:meth:`anomaly.KnnDetector.fit_detect`, :meth:`anomaly.StreamScorer.update`).

    Args:
        policy: the machine's settings (default: the ``EA_ALERT_*`` settings).
        model, key: what the machine's incidents are keyed by.

    The machine is made at the first readings (a series the detector was not trained on warms up), so one
    decider follows one series, batch after batch.
    """

    def __init__(self, policy: IncidentPolicy | None = None, *, model: str = "detect", key: str = "series") -> None:
        self.policy = policy or IncidentPolicy.from_settings()
        self.model, self.key = model, key
        self.machine: IncidentMachine | None = None
        self._incident: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, readings: Readings) -> np.ndarray:
        if self.machine is None:
            self.machine = IncidentMachine(self.policy, threshold=THRESHOLD, model=self.model, key=self.key,
                                           new_series=readings.new_series)
        decided = self.machine.feed(readings.epoch_seconds(), readings.score, rows=readings.rows,
                                    sources=readings.sources)
        self._incident.append((readings.rows, decided.in_incident))
        return decided.alerts

    def in_incident(self, n: int) -> np.ndarray:
        """Of rows ``0 .. n-1``, those within an incident (rows never decided are not)."""
        out = np.zeros(n, bool)
        for rows, inside in self._incident:
            keep = rows < n
            out[rows[keep]] = inside[keep]
        return out


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
    policy: IncidentPolicy | None = None,
    **params: Any,
) -> DetectResult:
    """Fit on the first ``train_until`` rows of a series, score every row causally, learning as it goes, and
    decide its alerts.

    Writes ``scores_out`` (CSV, one row per row of the series in time order: ``timestamp`` as given,
    ``value``, ``score`` (calibrated, in [0, 1]; empty where the value is missing), ``is_anomaly`` (the
    alerts), then ``distance``, ``p_value``, ``reason`` (the channel that gave the score) and ``incident``
    (1 from an alert until its incident resolves)); with ``plot`` a PNG (``.png`` is added when missing);
    with ``explain`` one JSON line per alert (the window, its nearest reference windows, the score:
    :mod:`anomaly.explain`). ``embedding``: one of ``anomaly.EMBEDDINGS`` (``None``: the default).
    ``read_options`` go to :func:`anomaly.read_one_series` (column names, duplicate policy); ``policy`` is
    the incident machine's (default: the ``EA_ALERT_*`` settings); ``params`` go to
    :class:`anomaly.KnnDetector`.

    Returns:
        :class:`DetectResult`; ``summary`` holds rows, train_until, embedding, window, threshold, anomalies,
        missing and duplicate rows, timings and the files written.

    Raises:
        anomaly.InvalidSeries: unreadable input (see :mod:`anomaly.series`).
        anomaly.SeriesTooShort: ``train_until`` rows are too few for the detector (names the minimum).
        anomaly.InvalidParameter: ``train_until`` outside 1..rows, or a bad detector parameter (names it).
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
    decide = IncidentDecider(policy, key=series.id)
    start = time.perf_counter()
    scored = detector.fit_detect(series.values, int(train_until), series.timestamps.as_unit("ns").asi8, decide=decide)
    elapsed = time.perf_counter() - start
    frame = scores_frame(series.raw_timestamps, series.values, scored, [ch.name for ch in detector.channels])
    frame["incident"] = decide.in_incident(n).astype(int)
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
        name = "series" if isinstance(input_csv, pd.DataFrame) else Path(str(input_csv)).name
        title = f"{name}: kNN distance detector ({embedding}), trained on the first {train_until} rows"
        value_label = (read_options or {}).get("value_col") or "value"
        summary["plot"] = str(plot_detection(frame.assign(timestamp=series.timestamps), plot, title=title,
                                             train_until=int(train_until), value_label=value_label))
    log.info("detect: %s", summary)
    return DetectResult(frame, detector, alerts, summary)
