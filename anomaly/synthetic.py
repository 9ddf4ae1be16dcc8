"""Synthetic metric series with planted anomalies, for demos and tests. Nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["synthetic_metrics"]


def synthetic_metrics(n: int = 3000, period: int = 48, seed: int = 0, freq: str = "5min") -> dict[str, dict]:
    """Three daily-seasonal metrics, each with anomalies planted after the first third.

    Returns:
        ``{name: {"frame": DataFrame(timestamp, value), "anomalies": [(kind, first_row, last_row), ...],
        "train_until": rows of the clean training prefix}}``.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    ts = pd.date_range("2026-03-01", periods=n, freq=freq, tz="UTC")
    train_until = n // 3
    out: dict[str, dict] = {}

    cpu = 50 + 20 * np.sin(2 * np.pi * t / period) + rng.normal(0, 1.5, n)
    cpu[int(n * 0.45)] += 45
    a = int(n * 0.7)
    cpu[a : a + period] += 25
    out["cpu_utilization"] = {"values": cpu, "anomalies": [("spike", int(n * 0.45), int(n * 0.45)),
                                                            ("level_shift", a, a + period - 1)]}

    lat = 120 + 30 * np.sin(2 * np.pi * t / period + 1.0) + rng.normal(0, 3, n)
    b = int(n * 0.6)
    lat[b : b + 2 * period] = 120 + 30 * np.sin(2 * np.pi * t[b : b + 2 * period] / (period / 4)) \
        + rng.normal(0, 3, 2 * period)
    out["request_latency_ms"] = {"values": lat, "anomalies": [("frequency_change", b, b + 2 * period - 1)]}

    rps = 800 + 300 * np.sin(2 * np.pi * t / period - 0.5) + rng.normal(0, 20, n)
    c = int(n * 0.8)
    rps[c : c + period] = rps[c - 1]
    out["requests_per_s"] = {"values": rps, "anomalies": [("flat_line", c, c + period - 1)]}

    for item in out.values():
        item["frame"] = pd.DataFrame({"timestamp": ts, "value": np.round(item.pop("values"), 4)})
        item["train_until"] = train_until
    return out
