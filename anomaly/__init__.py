"""Time-series embeddings and kNN-distance anomaly detection.

Public surface::

    read_series, read_one_series, Series, choose_window      anomaly.series
    KnnDetector, StreamScorer                                anomaly.detector
    WindowEncoder                                            anomaly.encoder (imports torch on first use)
    knn_outliers                                             anomaly.outliers
    detect_file, DetectResult                                anomaly.detect
    AnomalyError, InvalidSeries, SeriesTooShort, InvalidParameter, NotFitted

torch is imported only when a neural encoder is used, so the raw detector works without it.
"""

from __future__ import annotations

from typing import Any

from .detect import DetectResult, detect_file
from .detector import KnnDetector, StreamScorer
from .exceptions import AnomalyError, InvalidParameter, InvalidSeries, NotFitted, SeriesTooShort
from .outliers import knn_outliers
from .series import Series, choose_window, read_one_series, read_series

__all__ = [
    "AnomalyError",
    "DetectResult",
    "InvalidParameter",
    "InvalidSeries",
    "KnnDetector",
    "NotFitted",
    "Series",
    "SeriesTooShort",
    "StreamScorer",
    "WindowEncoder",
    "choose_window",
    "detect_file",
    "knn_outliers",
    "read_one_series",
    "read_series",
]


def __getattr__(name: str) -> Any:
    if name == "WindowEncoder":
        from .encoder import WindowEncoder

        return WindowEncoder
    raise AttributeError(f"module 'anomaly' has no attribute {name!r}")
