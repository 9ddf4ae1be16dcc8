"""Shared bits of the benchmarks: a markdown table printer and the results folder."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line naming the date and the machine the figures come from."""
    import os

    when = time.strftime('%Y-%m-%d')
    return f"{when}, {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A markdown table (floats to 4 significant digits)."""

    def fmt(v: object) -> str:
        if isinstance(v, float | np.floating):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write(name: str, text: str) -> Path:
    """Save a result as ``bench/results/<name>.md`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(text + "\n")
    return path


def best_of(fn, repeat: int = 3, clock=time.perf_counter) -> float:
    """Best time of ``repeat`` calls, in seconds (the least disturbed by a noisy machine): wall time, or CPU
    time with ``clock=time.process_time``."""
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)
