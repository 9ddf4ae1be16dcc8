"""An incident's evidence, shown: the window that alerted, its nearest normal windows, the score.

The evidence is what the detector explained when the incident opened, re-alerted or peaked (a list of
dicts kept with the incident: ``anomaly.explain``'s format: ``window`` with its ``values``, ``nearest``
windows with their timestamps and values, ``score``, ``p_value``, ``summary``). :func:`evidence_text` writes
it for a terminal; :func:`plot_evidence` draws it, as a PNG with matplotlib (the ``train`` extra) or as
text without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .exceptions import InvalidAlertSetting
from .notification import Incident

__all__ = ["evidence_text", "plot_evidence", "text_plot"]


def evidence_text(incident: Incident) -> str:
    """The incident's evidence as lines of text: per item, the row and time, the score against the
    threshold, the summary, the window and its nearest normal windows with their timestamps."""
    lines = [f"peak score {incident.peak_score:.4g} at {incident.peak_at} (threshold {incident.threshold:.4g}, "
             f"{'above' if incident.peak_score >= incident.threshold else 'below'})"]
    if not incident.evidence:
        lines.append("no evidence was recorded with this incident")
    for item in incident.evidence:
        if not isinstance(item, dict):
            lines.append(f"- {item}")
            continue
        score = item.get("score")
        verdict = "" if score is None else f"score {score:.4g} vs threshold {incident.threshold:.4g}"
        lines.append(f"- row {item.get('row')} at {item.get('timestamp')}: {verdict}"
                     f"{' (alert)' if item.get('alert') else ''}, reason {item.get('reason')}")
        if item.get("summary"):
            lines.append(f"  {item['summary']}")
        window = item.get("window") or {}
        if window:
            lines.append(f"  window rows {window.get('rows')} from {window.get('from')} to {window.get('to')}: "
                         f"{_short(window.get('values'))}")
        for near in item.get("nearest") or []:
            lines.append(f"  nearest normal window ({near.get('source')}) ending row {near.get('row')} at "
                         f"{near.get('timestamp') or 'unknown time'}, distance {_num(near.get('distance'))}: "
                         f"{_short(near.get('values'))}")
        if item.get("reason") == "value range":
            lines.append(f"  value {item.get('value')} outside the range seen before {item.get('range_before')}")
    return "\n".join(lines)


def plot_evidence(incident: Incident, path: str | Path | None = None) -> Path | str:
    """Draw the first evidence item that has a window: the window against its nearest normal windows.

    Args:
        path: a PNG file to write (``.png`` added when missing; needs matplotlib); ``None``: a text plot.

    Returns:
        The PNG's path, or the text plot.

    Raises:
        InvalidAlertSetting: a PNG was asked for and matplotlib is not installed (the ``train`` extra has it).
    """
    item = next((e for e in incident.evidence if isinstance(e, dict) and (e.get("window") or {}).get("values")),
                None)
    series = _series(item) if item else []
    title = f"{incident.model or '-'} / {incident.key}: peak {incident.peak_score:.3g} (threshold " \
            f"{incident.threshold:.3g})"
    if path is None:
        return text_plot(series, title=title)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidAlertSetting("a PNG plot needs matplotlib (pip install 'embedding-analytics[train]'); "
                                  "`--plot` without a file draws it as text") from None
    out = Path(path)
    if out.suffix.lower() != ".png":
        out = out.with_name(out.name + ".png")
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for label, values, style in series:
        ax.plot(range(len(values)), [math.nan if v is None else v for v in values], style, label=label)
    if not series:
        ax.text(0.5, 0.5, "no window in the evidence", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("row in window")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def text_plot(series: Sequence[tuple[str, Sequence[float | None], str]], *, title: str = "", height: int = 8,
              width: int = 64) -> str:
    """Series drawn with characters (one mark per series: ``*``, ``o``, ``+``), on a shared scale, each
    resampled to at most ``width`` columns."""
    marks = "*o+x#"
    cols = [_resample(v, width) for _, v, _ in series]
    finite = [x for c in cols for x in c if x is not None and math.isfinite(x)]
    out = [title] if title else []
    if not finite:
        return "\n".join([*out, "(no values to plot)"])
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    grid = [[" "] * max(len(c) for c in cols) for _ in range(height)]
    for s, values in enumerate(cols):
        for x, v in enumerate(values):
            if v is not None and math.isfinite(v):
                y = height - 1 - round((v - lo) / span * (height - 1))
                grid[y][x] = marks[s % len(marks)]
    for r, row in enumerate(grid):
        axis = f"{hi:.4g}" if r == 0 else f"{lo:.4g}" if r == height - 1 else ""
        out.append(f"{axis:>10} |{''.join(row)}")
    out.append(" " * 12 + "  ".join(f"{marks[s % len(marks)]} {label}" for s, (label, _, _) in enumerate(series)))
    return "\n".join(out)


def _series(item: dict[str, Any]) -> list[tuple[str, list[float | None], str]]:
    window = item.get("window") or {}
    found = [(f"alerting window (to {window.get('to')})", list(window.get("values") or []), "r-")]
    for near in item.get("nearest") or []:
        if near.get("values"):
            when = near.get("timestamp") or f"row {near.get('row')}"
            found.append((f"nearest normal ({near.get('source')}, {when})", list(near["values"]), "b--"))
    return found


def _resample(values: Sequence[float | None], width: int) -> list[float | None]:
    if len(values) <= width:
        return list(values)
    step = len(values) / width
    return [values[int(i * step)] for i in range(width)]


def _short(values: Any, at_most: int = 8) -> str:
    if not isinstance(values, list) or not values:
        return "-"
    shown = ", ".join(_num(v) for v in values[:at_most])
    return f"[{shown}{', ...' if len(values) > at_most else ''}] ({len(values)} values)"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, int | float) else str(v)
