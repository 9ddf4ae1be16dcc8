"""The job records kept in Redis, their one owner: keys, encoding, and reading back with garbage skipped.

==============================  ======  ====================================================================
key                             type    content
==============================  ======  ====================================================================
``<prefix>jobs``                ZSET    submitted jobs: ``{"id", "task"}`` (JSON) -> when it was submitted
``<prefix>job:<id>:progress``   LIST    the job's progress reports (JSON, ``{"at", "stage", ...}``), oldest
                                        first
``<prefix>job:<id>:time-limit`` STRING  why the job was ended by its hard time limit (a redelivery fails
                                        at once)
==============================  ======  ====================================================================

Anyone with write access to Redis can leave garbage in them; ``ea jobs`` must still list the rest.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, NamedTuple

__all__ = ["JobEntry", "JobKeys", "encode_job_entry", "encode_progress", "job_entry", "progress_report"]


class JobKeys:
    """The keys of the job records under one key prefix (``EA_KEY_PREFIX``)."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @property
    def jobs(self) -> str:
        """ZSET: the submitted jobs."""
        return f"{self.prefix}jobs"

    def progress(self, job_id: str) -> str:
        """LIST: a job's progress reports, oldest first."""
        return f"{self.prefix}job:{job_id}:progress"

    def time_limit(self, job_id: str) -> str:
        """STRING: the record of a job ended by its hard time limit."""
        return f"{self.prefix}job:{job_id}:time-limit"


def encode_job_entry(job_id: str, task: str) -> str:
    """A submission record, as :func:`job_entry` reads it."""
    return json.dumps({"id": job_id, "task": task})


def encode_progress(report: dict[str, Any]) -> str:
    """A progress report (JSON-ready values), stamped with the time ``at``, as :func:`progress_report` reads it."""
    return json.dumps({"at": time.time(), **report})


class JobEntry(NamedTuple):
    """A submission record: the job's id and task name."""

    id: str
    task: str


def job_entry(raw: bytes) -> JobEntry | None:
    """A submission record, or None when it holds garbage."""
    try:
        entry = json.loads(raw)
    except ValueError:  # UnicodeDecodeError alike
        return None
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("id", "task")):
        return None
    return JobEntry(entry["id"], entry["task"])


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
