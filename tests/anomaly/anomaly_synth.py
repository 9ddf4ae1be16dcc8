"""Synthetic series with planted anomalies, shared by the anomaly tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIOD = 25
N = 5400
TRAIN = 800
# kind -> (first row, last row) of the planted anomaly; more than the calibration's history (1000 rows)
# apart, so each is judged against normal data only.
PLANTED = {
    "spike": (1500, 1500),
    "level_shift": (2600, 2699),
    "frequency": (3800, 3899),
    "flat_line": (5000, 5099),
}


def clean_series(seed: int = 0, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / PERIOD) + 0.05 * rng.standard_normal(n)


def planted_series(seed: int = 0) -> np.ndarray:
    v = clean_series(seed)
    a, _ = PLANTED["spike"]
    v[a] += 4.0
    a, b = PLANTED["level_shift"]
    v[a : b + 1] += 3.0
    a, b = PLANTED["frequency"]
    t = np.arange(a, b + 1)
    v[a : b + 1] = np.sin(2 * np.pi * t / (PERIOD / 3)) + 0.05 * np.random.default_rng(1).standard_normal(t.size)
    a, b = PLANTED["flat_line"]
    v[a : b + 1] = v[a - 1]
    return v


def series_frame(values: np.ndarray, freq: str = "5min") -> pd.DataFrame:
    """``timestamp,value`` rows every ``freq`` from 2026-01-01."""
    return pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=len(values), freq=freq), "value": values})
