"""Synthetic series with planted anomalies, shared by the anomaly tests."""

from __future__ import annotations

import numpy as np

PERIOD = 25
N = 2400
TRAIN = 800
# kind -> (first row, last row) of the planted anomaly
PLANTED = {
    "spike": (1100, 1100),
    "level_shift": (1400, 1499),
    "frequency": (1700, 1799),
    "flat_line": (2000, 2099),
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
