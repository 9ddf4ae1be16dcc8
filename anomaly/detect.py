"""The scores table of a detection: what ``ea detect`` writes before the alerting layer's columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .stream import Scored

__all__ = ["scores_frame"]


def scores_frame(raw_timestamps: np.ndarray, values: np.ndarray, scored: Scored, channels: list[str]) -> pd.DataFrame:
    """One row per row, timestamps as given: ``timestamp``, ``value``, ``score`` (calibrated, in [0, 1]; NaN
    where the value is missing), ``is_anomaly`` (the decisions ``scored`` carries), ``distance``,
    ``p_value``, ``reason`` (the channel that gave the score: one of ``channels``, ``value range`` or
    empty)."""
    names = {-1: "value range", -2: "", **dict(enumerate(channels))}
    return pd.DataFrame({
        "timestamp": raw_timestamps,
        "value": values,
        "score": np.round(scored.score, 6),
        "is_anomaly": scored.is_anomaly.astype(int),
        "distance": np.round(scored.distance, 6),
        "p_value": scored.p_value,
        "reason": [names[int(c)] for c in scored.channel],
    })
