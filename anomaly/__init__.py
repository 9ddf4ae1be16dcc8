"""Time-series embeddings and kNN-distance anomaly detection that keeps learning.

Public surface::

    read_series, read_one_series, Series, ReadOptions          anomaly.series
    choose_window (and RobustScaler, sliding_windows)          anomaly.windows
    KnnDetector, EMBEDDINGS, DEFAULT_EMBEDDING                 anomaly.detector
    StreamScorer, Scored, Readings, Decide                     anomaly.stream
    Embedder, RawWindow, PaaContext, RecurrentEmbedder         anomaly.embedders
    WindowEncoder                                              anomaly.encoder (imports torch on first use)
    knn_outliers                                               anomaly.outliers
    scores_frame                                               anomaly.detect
    THRESHOLD                                                  anomaly.rules
    label_normal, label_missed, undo_label, series_labels,     anomaly.feedback (the on-call's labels: "not
    last_point, Label                                          an anomaly" joins the normal reference)
    AnomalyError, InvalidSeries, SeriesTooShort, InvalidParameter, NotFitted

The detector scores; it does not decide which rows alert: ``decide`` functions do (``workers`` passes the
alerting layer's incident machine). torch is imported only when a recurrent embedder is used, so the
default detector works without it.
"""

from __future__ import annotations

from typing import Any

from .detect import scores_frame
from .detector import DEFAULT_EMBEDDING, EMBEDDINGS, KnnDetector
from .embedders import Embedder, PaaContext, RawWindow, RecurrentEmbedder
from .exceptions import AnomalyError, CorruptState, InvalidParameter, InvalidSeries, NotFitted, SeriesTooShort
from .feedback import Label, label_missed, label_normal, last_point, series_labels, undo_label
from .outliers import knn_outliers
from .plot import plot_detection
from .rules import THRESHOLD
from .series import ReadOptions, Series, read_one_series, read_series
from .service import load_detector, publish_detector, reset_stream, score_points, train_detector
from .stream import Decide, Readings, Scored, StreamScorer
from .synthetic import synthetic_metrics
from .windows import choose_window

__all__ = [
    "Label",
    "label_missed",
    "label_normal",
    "last_point",
    "series_labels",
    "undo_label",
    "load_detector",
    "plot_detection",
    "publish_detector",
    "reset_stream",
    "score_points",
    "synthetic_metrics",
    "train_detector",
    "DEFAULT_EMBEDDING",
    "EMBEDDINGS",
    "THRESHOLD",
    "AnomalyError",
    "CorruptState",
    "Decide",
    "Embedder",
    "InvalidParameter",
    "InvalidSeries",
    "KnnDetector",
    "NotFitted",
    "PaaContext",
    "RawWindow",
    "ReadOptions",
    "Readings",
    "RecurrentEmbedder",
    "Scored",
    "Series",
    "SeriesTooShort",
    "StreamScorer",
    "WindowEncoder",
    "choose_window",
    "knn_outliers",
    "read_one_series",
    "read_series",
    "scores_frame",
]


def __getattr__(name: str) -> Any:
    if name == "WindowEncoder":
        from .encoder import WindowEncoder

        return WindowEncoder
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
