"""Reading back the job records kept in Redis (submission records, progress reports), garbage skipped.

Anyone with write access to Redis can leave garbage in them; ``ea jobs`` must still list the rest.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["job_entry", "progress_report"]


def job_entry(raw: bytes) -> dict[str, str] | None:
    """A submission record (``{"id", "task"}``), or None when it holds garbage."""
    try:
        entry = json.loads(raw)
    except ValueError:  # UnicodeDecodeError alike
        return None
    ok = isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("id", "task"))
    return entry if ok else None


def progress_report(raw: bytes) -> dict[str, Any] | None:
    """A progress report as a task logs it, or None when it holds garbage (not a JSON object, or a time,
    count or total that is not a number)."""
    try:
        report = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(report, dict) or not isinstance(report.get("stage", ""), str):
        return None
    for name in ("at", "done", "total"):
        value = report.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not math.isfinite(value)):
            return None
    return report
