"""The base class of every task of ``workers.app``: retries of transient errors, and time limits.

* **Transient errors** (:data:`TRANSIENT_ERRORS`: Redis connection lost or timed out, Redis loading or
  read-only during a failover, the broker unreachable) are retried through Celery's ``autoretry_for``, with
  exponential backoff and full jitter (``EA_TASK_RETRY_BACKOFF``, capped at ``EA_TASK_RETRY_BACKOFF_MAX``),
  at most ``EA_TASK_MAX_RETRIES`` times; then the job fails with the error. A retry keeps the job id, so an
  idempotent task (they all are) publishes one version, not two.
* **Every other error** (bad input, a typed error of the project, wrong Redis credentials) fails the job at
  once with that error.
* **Time limits**, soft and hard, per kind of job (``EA_TRAIN_SOFT_TIME_LIMIT`` / ``EA_TRAIN_TIME_LIMIT`` for
  ``ea.train_*``, ``EA_TASK_SOFT_TIME_LIMIT`` / ``EA_TASK_TIME_LIMIT`` for the others). Celery enforces its
  own limits only in the prefork pool, and this service runs solo (training) and threads pools, so a
  watchdog enforces them in every pool: past the soft limit it raises ``SoftTimeLimitExceeded`` in the job's
  thread (delivered as soon as the job runs Python code again: after the current numba or torch call);
  past the hard limit, with the job still running, it fails the job (``TimeLimitExceeded``), records that
  beside the job, and ends the worker process (``ea worker``/``celery worker`` only: a supervisor restarts
  it; an in-process worker only logs). The broker redelivers the unacknowledged message later; the
  redelivered job finds the record and fails at once instead of running again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from typing import Any

import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import celeryd_init
from kombu.exceptions import OperationalError

from vectorstore import UNAVAILABLE_ERRORS, RedisUnavailable, Settings, connect, get_settings

from ._job_records import JobKeys

__all__ = ["PERMANENT_ERRORS", "TRANSIENT_ERRORS", "ServiceTask", "time_limits"]

log = logging.getLogger(__name__)

#: Errors a retry can cure: the connection to Redis or the broker, not the request.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
    RedisUnavailable, OperationalError, *UNAVAILABLE_ERRORS,
)
#: Subclasses of the above that no retry cures: wrong credentials or permissions.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    redis.AuthenticationError, redis.exceptions.AuthorizationError, redis.exceptions.NoPermissionError,
)
#: Exit status of a worker process ended by a hard time limit (EX_SOFTWARE).
HARD_LIMIT_EXIT = 70
#: How long the record of a job ended by its hard limit is kept (a redelivery comes within the visibility
#: timeout; a day more for slow supervisors).
_RECORD_EXTRA_TTL = 24 * 3600

# Set when this process is a worker started from the command line (`ea worker`, `celery worker`): only such
# a process may be ended by a hard time limit. In-process workers (the demo, tests) never are.
_state = {"hard_exit": False}


@celeryd_init.connect
def _worker_process(**_: Any) -> None:
    _state["hard_exit"] = True


def _limit_names(task_name: str) -> tuple[str, str]:
    kind = "TRAIN" if task_name.startswith("ea.train_") else "TASK"
    return f"EA_{kind}_SOFT_TIME_LIMIT", f"EA_{kind}_TIME_LIMIT"


def _limits(task_name: str, settings: Settings) -> tuple[float, float]:
    soft, hard = _limit_names(task_name)
    return getattr(settings, soft[3:].lower()), getattr(settings, hard[3:].lower())


def _record_key(settings: Settings, job_id: str) -> str:
    return JobKeys(settings.key_prefix).time_limit(job_id)


class _SoftLimit(SoftTimeLimitExceeded):
    """Raised asynchronously in a job's thread (the interpreter instantiates it without arguments)."""


class time_limits:  # noqa: N801 - a context manager, used like a function
    """Enforce ``soft`` and ``hard`` seconds (0: none) on the job running in the current thread.

    Args:
        task: the running task (its request names the job; its backend records a hard-limit failure).
        soft, hard: the limits in seconds.
        names: the settings that set them, for messages.
    """

    def __init__(self, task: Task, soft: float, hard: float, names: tuple[str, str]) -> None:
        self.task, self.soft, self.hard, self.names = task, soft, hard, names
        self._lock = threading.Lock()
        self._running = False
        self._thread_id = 0
        self._timers: list[threading.Timer] = []
        self._soft_fired = False

    def __enter__(self) -> time_limits:
        self._thread_id = threading.get_ident()
        self._request = self.task.request
        self._running = True
        for seconds, action in ((self.soft, self._on_soft), (self.hard, self._on_hard)):
            if seconds:
                timer = threading.Timer(seconds, action)
                timer.daemon = True
                timer.start()
                self._timers.append(timer)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        with self._lock:
            self._running = False
            if self._soft_fired:  # clear the exception if it was scheduled but not yet delivered
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), None)
        for timer in self._timers:
            timer.cancel()
        if exc_type is not None and issubclass(exc_type, _SoftLimit):
            raise SoftTimeLimitExceeded(f"job {self._request.id} ({self.task.name}) ran past its soft time limit "
                                        f"of {self.soft:g} s ({self.names[0]})") from None

    def _on_soft(self) -> None:
        with self._lock:
            if not self._running:
                return
            log.warning("job %s (%s) passed its soft time limit of %g s (%s): interrupting it",
                        self._request.id, self.task.name, self.soft, self.names[0])
            self._soft_fired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread_id), ctypes.py_object(_SoftLimit))

    def _on_hard(self) -> None:
        with self._lock:
            if not self._running:
                return
        job_id = self._request.id
        message = (f"job {job_id} ({self.task.name}) ran past its hard time limit of {self.hard:g} s "
                   f"({self.names[1]})")
        settings = get_settings()
        try:
            client = connect(settings)
            client.set(_record_key(settings, job_id), message, ex=settings.visibility_timeout + _RECORD_EXTRA_TTL)
            self.task.backend.mark_as_failure(job_id, TimeLimitExceeded(message), request=self._request)
        except Exception as exc:  # the job is stopped regardless; its redelivery runs it again then
            log.error("could not record the hard time limit of job %s: %s", job_id, exc)
        if _state["hard_exit"]:
            log.critical("%s: ending worker process %d (its supervisor restarts it)", message, os.getpid())
            logging.shutdown()
            os._exit(HARD_LIMIT_EXIT)
        log.critical("%s: an in-process worker cannot stop it; it goes on in its thread", message)


class ServiceTask(Task):
    """Base class of the service's tasks (``workers.app``'s ``task_cls``): see the module docstring."""

    autoretry_for = TRANSIENT_ERRORS
    dont_autoretry_for = PERMANENT_ERRORS
    retry_jitter = True

    # Read when a task is registered (at worker start): the backoff is fixed then by Celery's autoretry.
    _settings = get_settings()
    retry_backoff = _settings.task_retry_backoff
    retry_backoff_max = _settings.task_retry_backoff_max
    max_retries = _settings.task_max_retries
    del _settings

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        settings = get_settings()
        job_id = self.request.id
        if job_id and not self.request.is_eager:
            try:
                ended = connect(settings).get(_record_key(settings, job_id))
            except TRANSIENT_ERRORS:
                ended = None  # the job's own first Redis call meets the same error, and is retried
            if ended:
                raise TimeLimitExceeded(f"{ended.decode()}; not run again")
        soft, hard = _limits(self.name, settings)
        if not (soft or hard) or not job_id:
            return super().__call__(*args, **kwargs)
        with time_limits(self, soft, hard, _limit_names(self.name)):
            return super().__call__(*args, **kwargs)
