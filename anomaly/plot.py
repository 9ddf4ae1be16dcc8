"""A PNG of a detection that a person can read: the series and its incidents, the score and its threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .rules import THRESHOLD

__all__ = ["plot_detection"]


def plot_detection(df: pd.DataFrame, out_png: str | Path, threshold: float = THRESHOLD, title: str = "", *,
                   train_until: int | None = None, value_label: str = "value") -> Path:
    """Draw ``df`` (columns timestamp, value, score, is_anomaly) into ``out_png`` (matplotlib Agg).

    Top panel: the series (``value_label`` on its axis), the training prefix shaded grey, each incident
    (column ``incident``, else the alert rows) shaded red, alerts marked. Bottom panel: the
    calibrated score with the alert threshold, and what the score means. ``.png`` is added to a name
    without a suffix. Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    out = Path(out_png)
    if out.suffix.lower() != ".png":
        out = out.with_name(out.name + ".png")
    ts = pd.to_datetime(df["timestamp"]).to_numpy()
    values = df["value"].to_numpy(dtype=float)
    score = df["score"].to_numpy(dtype=float)
    flagged = df["is_anomaly"].astype(bool).to_numpy()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    try:
        if train_until:
            for ax in (top, bottom):
                ax.axvspan(ts[0], ts[min(train_until, len(ts)) - 1], color="0.85", lw=0, zorder=0)
            top.text(ts[0], 1.01, " training", transform=top.get_xaxis_transform(), fontsize=8, color="0.4")
        spans = _spans(df["incident"].to_numpy(dtype=bool)) if "incident" in df else \
            [(a, a) for a in np.flatnonzero(flagged)]
        for i, (a, b) in enumerate(spans):
            for ax in (top, bottom):
                ax.axvspan(ts[a], ts[b], color="tab:red", alpha=0.18, lw=0,
                           label="incident" if i == 0 and ax is top else None)
        top.plot(ts, values, lw=0.8, color="tab:blue", label=value_label)
        top.scatter(ts[flagged], values[flagged], color="tab:red", s=30, zorder=3, label="alert")
        top.set_ylabel(value_label)
        top.legend(loc="upper left", fontsize=8)
        top.set_title(title, fontsize=10)
        bottom.plot(ts, score, lw=0.8, color="tab:gray", label="score")
        bottom.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"alert threshold {threshold:g}")
        bottom.set_ylim(-0.02, 1.05)
        bottom.set_ylabel("calibrated score")
        bottom.set_xlabel("time")
        bottom.legend(loc="upper left", fontsize=8)
        bottom.text(0.995, 0.97, "score: how improbable and how far the recent windows are from everything "
                    "seen before (0.5: odds of 1 in 1,000 and 3x the usual distance; 1: far beyond, or a value "
                    "outside the range seen)", transform=bottom.transAxes, ha="right", va="top", fontsize=7,
                    color="0.35", wrap=True)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
    finally:
        plt.close(fig)
    return out


def _spans(in_incident: np.ndarray) -> list[tuple[int, int]]:
    """``(first_row, last_row)`` of each run of rows within an incident."""
    flags = np.asarray(in_incident, bool)
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return [(int(a), int(b) - 1) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]
