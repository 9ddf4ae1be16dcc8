"""A PNG of a detection: the series with flagged points, and the score against the threshold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["plot_detection"]


def plot_detection(df: pd.DataFrame, threshold: float, out_png: str | Path, title: str = "") -> Path:
    """Draw ``df`` (columns timestamp, value, score, is_anomaly) into ``out_png`` (matplotlib Agg).

    Top panel: the series with flagged rows marked; bottom panel: the score and the threshold line.
    Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    out = Path(out_png)
    ts = pd.to_datetime(df["timestamp"])
    flagged = df["is_anomaly"].astype(bool).to_numpy()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    try:
        top.plot(ts, df["value"], lw=0.8, color="tab:blue", label="value")
        top.scatter(ts[flagged], df["value"][flagged], color="tab:red", s=30, zorder=3, label="anomaly")
        top.legend(loc="upper left")
        top.set_title(title)
        bottom.plot(ts, df["score"], lw=0.8, color="tab:gray", label="score")
        bottom.axhline(threshold, color="tab:red", ls="--", lw=1, label=f"threshold {threshold:g}")
        bottom.legend(loc="upper left")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
    finally:
        plt.close(fig)
    return out
