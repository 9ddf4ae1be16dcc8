"""Errors of the job API.

::

    WorkerError
    ├── JobFailed     the task raised (carries the task's exception)
    ├── JobTimeout    waited longer than the caller allowed; the job goes on
    └── UnknownJob    no job with that id
"""

from __future__ import annotations


class WorkerError(Exception):
    """Base class of the job API's errors."""


class JobFailed(WorkerError):
    """The job raised; ``cause`` is the task's exception as Celery reconstructed it."""

    def __init__(self, message: str, job_id: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.cause = cause


class JobTimeout(WorkerError, TimeoutError):
    """The job did not finish within the time the caller allowed."""


class UnknownJob(WorkerError, LookupError):
    """No job with that id is known."""
