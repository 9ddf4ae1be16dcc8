"""Why a row is anomalous, in terms an on-call engineer can check: the window, its nearest normal ones.

A distance-based detector can show its evidence. For a row that alerts (or whose score crosses the
threshold) :func:`explain_row` gives a JSON-able dict::

    {"row": 3120, "timestamp": "2014-02-19T13:45:00", "score": 0.93, "alert": true,
     "reason": "window",                      # or "context", or "value range"
     "summary": "the last 16 rows are 7.4x farther from every earlier window than usual (p = 2e-07); the
                 nearest, 0.61 away, ended 2014-02-12T09:10:00 (training data)",
     "p_value": 2.1e-07, "distance": 4.52, "typical_distance": 0.61,
     "window": {"rows": [3105, 3120], "from": "...", "to": "...", "values": [...]},
     "nearest": [{"row": 1250, "timestamp": "...", "distance": 4.49, "source": "recent", "values": [...]}]}

``values`` are in the series' own units (missing values carried forward). A value-range reason names the
value and the range seen before it instead of neighbours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["explain_row", "iso"]

_NAT = np.iinfo(np.int64).min


def iso(ns: int) -> str | None:
    """ISO 8601 text of an int64-nanosecond timestamp (``None`` when unknown)."""
    if int(ns) == _NAT:
        return None
    return pd.Timestamp(int(ns)).isoformat()


def explain_row(scorer: Any, i: int, batch: dict[str, Any]) -> dict[str, Any]:
    """The explanation of row ``batch["rows"][i]`` of a batch just scored by ``scorer``
    (a :class:`~anomaly.stream.StreamScorer`); ``batch`` holds that batch's arrays."""
    row = int(batch["rows"][i])
    at = batch["offset"] + i  # index of the row in batch["values"] / ["times"]
    values, times = batch["values"], batch["times"]
    channel = int(batch["channel"][i])
    score = batch["score"][i]
    out: dict[str, Any] = {"row": row, "timestamp": iso(times[at]), "score": _num(score),
                           "alert": bool(batch["is_anomaly"][i])}
    if channel == -1:
        low, high = batch["low"][i], batch["high"][i]
        out.update(reason="value range", value=_num(values[at]), range_before=[_num(low), _num(high)],
                   summary=f"value {values[at]:.6g} is outside every value seen before ({low:.6g} to {high:.6g})")
        return out
    if channel < 0:
        out.update(reason="none", summary="no channel has a score for this row yet")
        return out
    ch = scorer.model.channels[channel]
    span = ch.span
    typical = float(batch["typical"][channel, i])
    reading, p = float(batch["reading"][channel, i]), float(batch["p"][channel, i])
    near, from_training = int(batch["near_row"][channel, i]), bool(batch["near_training"][channel, i])
    start = max(0, at - span + 1)
    out.update(reason=ch.name, p_value=_num(p), distance=_num(reading), typical_distance=_num(typical),
               window={"rows": [row - (at - start), row], "from": iso(times[start]), "to": iso(times[at]),
                       "values": _nums(values[start : at + 1])})
    nearest: list[dict[str, Any]] = []
    if near >= 0:
        item: dict[str, Any] = {"row": near, "distance": _num(batch["raw"][channel, i]),
                                "source": "training" if from_training else "recent"}
        if from_training and scorer.training is not None:
            tv, tt = scorer.training
            if 0 <= near < tv.size:
                item.update(timestamp=iso(tt[near]), values=_nums(tv[max(0, near - span + 1) : near + 1]))
        elif not from_training:
            j = near - (batch["rows"][0] - batch["offset"])  # index in batch["values"]
            if 0 <= j < values.size:
                item.update(timestamp=iso(times[j]), values=_nums(values[max(0, j - span + 1) : j + 1]))
        nearest.append(item)
    out["nearest"] = nearest
    ratio = reading / typical if typical and math.isfinite(typical) else math.nan
    what = f"the last {span} rows" if ch.name == "window" else f"the last {span} rows, in outline,"
    where = ""
    if nearest:
        when = nearest[0].get("timestamp") or f"row {near}"
        where = (f"; the nearest, {nearest[0]['distance']:.3g} away, ended {when}"
                 f" ({'training data' if from_training else 'this stream'})")
    out["summary"] = f"{what} are {ratio:.1f}x farther from every earlier window than usual (p = {p:.1g}){where}"
    return out


def _num(x: float) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _nums(xs: np.ndarray) -> list[float | None]:
    return [_num(x) for x in xs]
