"""Progress reporting from inside a task (``update_state("PROGRESS", meta=...)``), rate-limited."""

from __future__ import annotations

import time
from typing import Any

from celery import Task

__all__ = ["Progress"]


class Progress:
    """Callable that forwards progress dicts to the job's state, at most every ``min_interval`` seconds.

    Model code calls it with ``{"stage": ..., "done": ..., "total": ..., **figures}``; a change of stage
    and the final step of a stage are always sent.
    """

    def __init__(self, task: Task, min_interval: float = 0.5) -> None:
        self.task = task
        self.min_interval = min_interval
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        stage = info.get("stage")
        final = info.get("done") is not None and info.get("done") == info.get("total")
        if stage == self._stage and not final and now - self._last < self.min_interval:
            return
        self._stage, self._last = stage, now
        if self.task.request.id:  # not when called directly, outside a worker
            self.task.update_state(state="PROGRESS", meta=_jsonable(info))


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        out[str(key)] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return out
