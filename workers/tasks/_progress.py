"""Progress reporting from inside a task (``update_state("PROGRESS", meta=...)``), rate-limited."""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Task

from vectorstore import connect, get_settings

from .._job_records import JobKeys, encode_progress

__all__ = ["PROGRESS_LOG_LENGTH", "Progress"]

PROGRESS_LOG_LENGTH = 500
PROGRESS_LOG_TTL = 7 * 24 * 3600


class Progress:
    """Callable that forwards progress dicts to the job's state, at most every ``min_interval`` seconds.

    Model code calls it with ``{"stage": ..., "done": ..., "total": ..., **figures}``; a change of stage
    and the final step of a stage are always sent, and so is the last report of a stage that ends early
    (LightGCN stopping on convergence): it is held back when rate-limited and sent before the next stage's
    first report, or by :meth:`flush` when the job ends.
    """

    def __init__(self, task: Task, min_interval: float = 0.5) -> None:
        self.task = task
        self.min_interval = min_interval
        self._last = 0.0
        self._stage: str | None = None
        self._held: dict[str, Any] | None = None
        self._client: redis.Redis | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        now = time.monotonic()
        stage = info.get("stage")
        final = info.get("done") is not None and info.get("done") == info.get("total")
        if stage == self._stage and not final and now - self._last < self.min_interval:
            self._held = info
            return
        if stage != self._stage:
            self.flush()
        self._held = None
        self._stage, self._last = stage, now
        self._send(info)

    def flush(self) -> None:
        """Send the report held back by the rate limit, if any."""
        held, self._held = self._held, None
        if held is not None:
            self._send(held)

    def _send(self, info: dict[str, Any]) -> None:
        job_id = self.task.request.id
        if not job_id:  # called directly, outside a worker
            return
        meta = _jsonable(info)
        self.task.update_state(state="PROGRESS", meta=meta)
        # The result backend keeps only the latest state; the log keeps every report, so a fast job's
        # stages can still be read afterwards (`JobHandle.progress_log()`, `ea jobs ID`).
        settings = get_settings()
        try:
            self._client = self._client or connect(settings)
            key = JobKeys(settings.key_prefix).progress(job_id)
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(key, encode_progress(meta))
            pipe.ltrim(key, -PROGRESS_LOG_LENGTH, -1)
            pipe.expire(key, PROGRESS_LOG_TTL)
            pipe.execute()
        except redis.RedisError:
            pass  # progress is informative; the job itself goes on


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        out[str(key)] = value if isinstance(value, str | int | float | bool | type(None)) else str(value)
    return out
