"""Showing a job's progress reports: progress bars on a terminal, plain log lines anywhere else.

A report is the dict a task sends (``{"stage", "done", "total", **figures}``). On a terminal each stage
gets a bar that is redrawn in place; a stage that ends before its ``total`` (LightGCN stopping on
convergence) ends its bar at the count it reached. When the output is a file or a pipe (CI logs, ``nohup``),
redrawing with ``\\r`` would write every frame, so the view prints one line per stage start, per stage end
and at most one every ``interval`` seconds in between.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["ProgressView"]

_META = ("stage", "done", "total", "at")


def _figures(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in info.items() if k not in _META}


class ProgressView:
    """Draws progress reports on ``stream`` (default stderr).

    Args:
        stream: where to draw.
        interval: seconds between two lines of one stage when ``stream`` is not a terminal.
        bars: force bars (True) or lines (False); default: bars exactly when ``stream`` is a terminal.
    """

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 10.0, bars: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.interval = interval
        self._bar: Any = None
        self._stage: str | None = None
        self._shown: dict[str, Any] | None = None
        self._last: dict[str, Any] | None = None
        self._line_at = 0.0

    def update(self, info: dict[str, Any]) -> None:
        """Show one report."""
        stage = str(info.get("stage", "working"))
        if stage != self._stage:
            self._end_stage()
            self._stage = stage
            self._line_at = 0.0
        self._last = info
        if self.bars:
            self._draw(info)
        elif (time.monotonic() - self._line_at >= self.interval
              or (info.get("total") is not None and info.get("done") == info.get("total"))):
            self._line(info)

    def close(self, finished: bool = False) -> None:
        """End the display; ``finished``: the job succeeded, so its last stage is complete."""
        if finished and self._bar is not None and self._bar.total:
            self._bar.n = self._bar.total
        self._end_stage()

    def _end_stage(self) -> None:
        if self._bar is not None:
            if self._bar.total and self._bar.n < self._bar.total:
                self._bar.total = self._bar.n  # the stage ended here (e.g. converged before its last epoch)
            self._bar.refresh()
            self._bar.close()
            self._bar = None
        elif self._last is not None and self._last is not self._shown:
            self._line(self._last)

    def _line(self, info: dict[str, Any]) -> None:
        done, total = info.get("done"), info.get("total")
        count = f" {done}/{total}" if total is not None else (f" {done}" if done is not None else "")
        figures = " ".join(f"{k}={v}" for k, v in _figures(info).items())
        self.stream.write(f"{info.get('stage', 'working')}:{count}{'  ' + figures if figures else ''}\n")
        self.stream.flush()
        self._shown, self._line_at = info, time.monotonic()

    def _draw(self, info: dict[str, Any]) -> None:
        from tqdm import tqdm

        total = info.get("total")
        if self._bar is None:
            # No rate: progress arrives in polled jumps, so a per-second rate would only mislead.
            self._bar = tqdm(total=total, desc=self._stage, leave=True, file=self.stream,
                             bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        if total is not None and self._bar.total != total:
            self._bar.total = total
        self._bar.n = int(info.get("done", self._bar.n) or 0)
        figures = _figures(info)
        if figures:
            self._bar.set_postfix(figures, refresh=False)
        self._bar.refresh()
