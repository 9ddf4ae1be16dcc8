"""Submitting jobs and following them: the data engineer's API.

``train_graph(...)``, ``train_series(...)`` and friends send a Celery task and return a
:class:`JobHandle`; the handle tells the state, the live progress the task reports, and the result.
Submitted jobs are also recorded in a Redis sorted set so that ``ea jobs`` can list them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from vectorstore import RedisUnavailable, Settings, connect, get_settings, redact_url

from ._job_records import JobEntry, JobKeys, encode_job_entry
from ._job_records import job_entry as _entry
from ._job_records import progress_report as _report
from ._progress_view import ProgressView
from .app import app
from .exceptions import JobFailed, JobTimeout, UnknownJob

__all__ = ["JobHandle", "JobRecord", "delete_items", "get_job", "input_path", "list_jobs", "score_series", "submit",
           "train_graph", "train_series", "update_metadata", "update_users", "upsert_items"]

_FINISHED = {"SUCCESS", "FAILURE", "REVOKED"}
_KEEP_JOBS = 1000
log = logging.getLogger(__name__)


def _jobs_key(settings: Settings) -> str:
    return JobKeys(settings.key_prefix).jobs


@dataclass(frozen=True)
class JobRecord:
    """A submitted job as ``ea jobs`` lists it."""

    id: str
    task: str
    submitted_at: float
    state: str
    progress: dict[str, Any] | None


class JobHandle:
    """A submitted Celery job.

    Attributes:
        id: the Celery task id.
    """

    def __init__(self, job_id: str, task: str | None = None) -> None:
        self.id = job_id
        self.task = task
        self._result = AsyncResult(job_id, app=app)
        self._client: redis.Redis | None = None  # for the progress log, opened on first use

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, task={self.task!r}, state={self.state!r})"

    @property
    def state(self) -> str:
        """``PENDING``, ``STARTED``, ``PROGRESS``, ``RETRY``, ``SUCCESS`` or ``FAILURE``."""
        return self._result.state

    @property
    def progress(self) -> dict[str, Any] | None:
        """The latest progress report (``stage``, ``done``, ``total``, and task-specific figures)."""
        if self._result.state == "PROGRESS" and isinstance(self._result.info, dict):
            return dict(self._result.info)
        return None

    @property
    def done(self) -> bool:
        """Whether the job has finished (successfully or not)."""
        return self._result.state in _FINISHED

    @property
    def result(self) -> Any:
        """The job's return value.

        Raises:
            JobFailed: the job raised; the message names the task's exception.
            JobTimeout: the job has not finished yet.
        """
        state = self._result.state
        if state == "SUCCESS":
            return self._result.result
        if state in ("FAILURE", "REVOKED"):
            exc = self._result.result
            raise JobFailed(f"job {self.id} failed: {type(exc).__name__}: {exc}", self.id, exc)
        raise JobTimeout(f"job {self.id} is {state}, not finished")

    def wait(
        self,
        timeout: float | None = None,
        *,
        interval: float = 0.25,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        show_progress: bool = False,
    ) -> Any:
        """Block until the job finishes and return its result.

        Every progress report the job made is passed on, in order, even those made between two polls (they
        are read from the job's progress log, not only from its latest state).

        Args:
            timeout: seconds to wait at most (``None``: forever).
            interval: polling period.
            on_progress: called with each progress report.
            show_progress: draw the reports on stderr: progress bars on a terminal, log lines otherwise.

        Raises:
            JobTimeout: still running after ``timeout`` seconds (the job itself goes on).
            JobFailed: the job raised.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        view = ProgressView() if show_progress else None
        seen = 0.0
        try:
            while True:
                done = self.done  # read before the log, so that the log holds every report of a finished job
                for info in self._reports_since(seen):
                    seen = info["at"]
                    report = {k: v for k, v in info.items() if k != "at"}
                    if on_progress:
                        on_progress(report)
                    if view:
                        view.update(report)
                if done:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise JobTimeout(f"job {self.id} still {self.state} after {timeout} s")
                time.sleep(interval)
        finally:
            if view:
                view.close(finished=self._result.state == "SUCCESS")
        return self.result

    def _reports_since(self, at: float) -> list[dict[str, Any]]:
        try:
            return [r for r in self.progress_log() if r.get("at", 0) > at]
        except redis.RedisError:  # progress is informative: the job's state decides
            return []

    def progress_log(self, settings: Settings | None = None) -> list[dict[str, Any]]:
        """Every progress report the job made, oldest first (the last 500), each with its time ``at``."""
        if settings is not None:
            client = connect(settings)
        else:
            settings = get_settings()
            self._client = client = self._client or connect(settings)
        raw = client.lrange(JobKeys(settings.key_prefix).progress(self.id), 0, -1)
        reports = [_report(r) for r in raw]
        if None in reports:  # garbage written into Redis: progress is informative, the rest still shows
            log.warning("job %s: %d progress report(s) that are not reports skipped", self.id, reports.count(None))
        return [r for r in reports if r is not None]

    def revoke(self) -> None:
        """Ask workers not to run (or to stop) this job."""
        self._result.revoke(terminate=False)


def submit(task: str, *, settings: Settings | None = None, queue: str | None = None, **kwargs: Any) -> JobHandle:
    """Send task ``task`` (e.g. ``"ea.train_graph"``) with JSON keyword arguments.

    Large inputs go by reference (a path or URL the worker can read), never in the message.

    Raises:
        TypeError: an argument is not JSON-serialisable (names it).
        RedisUnavailable: the broker did not answer; nothing was queued.
    """
    for name, value in kwargs.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise TypeError(f"argument {name}={type(value).__name__} is not JSON-serialisable; "
                            "pass data by reference (a path or URL)") from None
    options = {"queue": queue} if queue else {}
    settings = settings or get_settings()
    client = connect(settings)
    # Fail fast and clearly when Redis is down: Celery would otherwise retry its result store for ~20 s and
    # end in a RuntimeError that names neither the job nor the server.
    try:
        client.ping()
        result = app.send_task(task, kwargs=kwargs, **options)
    except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
        where = redact_url(settings.redis_url) if settings.redis_url else "the embedded Redis"
        raise RedisUnavailable(f"cannot submit {task}: {where} did not answer ({type(exc).__name__}); "
                               "the job was not queued") from None
    key = _jobs_key(settings)
    pipe = client.pipeline(transaction=True)
    pipe.zadd(key, {encode_job_entry(result.id, task): time.time()})
    pipe.zremrangebyrank(key, 0, -_KEEP_JOBS - 1)
    pipe.execute()
    return JobHandle(result.id, task)


def _submitted(limit: int, settings: Settings) -> list[tuple[JobEntry, float]]:
    rows: list[tuple[bytes, float]] = connect(settings).zrevrange(
        _jobs_key(settings), 0, limit - 1, withscores=True)
    found = [(entry, float(ts)) for raw, ts in rows if (entry := _entry(raw)) is not None]
    if len(found) < len(rows):
        log.warning("%d job record(s) that are not job records skipped (in %s)", len(rows) - len(found),
                    _jobs_key(settings))
    return found


def list_jobs(limit: int = 20, settings: Settings | None = None) -> list[JobRecord]:
    """The most recently submitted jobs, newest first, with their current state."""
    out = []
    for entry, ts in _submitted(limit, settings or get_settings()):
        handle = JobHandle(entry.id, entry.task)
        out.append(JobRecord(entry.id, entry.task, ts, handle.state, handle.progress))
    return out


def get_job(job_id: str, settings: Settings | None = None) -> JobHandle:
    """The handle of a job submitted through :func:`submit`, by its id or a unique start of it (4+ characters).

    Raises:
        UnknownJob: no such job id was submitted here (or it has aged out of the list), or the start given
            matches several jobs.
    """
    job_id = job_id.strip()
    # Only the submission records are scanned: no result-backend lookup per listed job.
    entries = [entry for entry, _ in _submitted(_KEEP_JOBS, settings or get_settings())]
    matches = [e for e in entries if e.id == job_id]
    if not matches and len(job_id) >= 4:
        matches = list({e.id: e for e in entries if e.id.startswith(job_id)}.values())
    if len(matches) > 1:
        raise UnknownJob(f"{job_id!r} is the start of {len(matches)} job ids; give more of it")
    if matches:
        return JobHandle(matches[0].id, matches[0].task)
    raise UnknownJob(f"no job {job_id!r} (ea jobs lists the last {_KEEP_JOBS})")


def input_path(path: str | os.PathLike[str], what: str, *, check: bool = True) -> str:
    """``path`` as a job carries it: absolute, and (``check``) a readable file on this machine.

    Jobs read their inputs by reference, in the worker: a relative path would be read from the worker's
    directory, and a missing file found only there. With ``check=False`` the path names a file on the
    workers' file system (not this machine's); it must then be absolute.

    Raises:
        FileNotFoundError, PermissionError: ``check`` and the file is missing or unreadable (names ``what``).
        ValueError: ``check=False`` and the path is relative.
    """
    raw = os.fspath(path)
    if not check:
        if not os.path.isabs(raw):
            raise ValueError(f"{what} {raw!r}: a path on the workers' file system must be absolute")
        return raw
    full = os.path.abspath(os.path.expanduser(raw))
    if not os.path.isfile(full):
        raise FileNotFoundError(f"{what} {raw!r}: no such file ({full}); jobs read their inputs from files the "
                                "workers can read")
    if not os.access(full, os.R_OK):
        raise PermissionError(f"{what} {raw!r}: not readable ({full})")
    return full


def train_graph(interactions: str, *, model: str | None = None, name: str = "default", params: dict | None = None,
                valid: str | None = None, test: str | None = None, item_metadata: str | None = None,
                precompute: int = 0, read_options: dict | None = None, check_paths: bool = True,
                settings: Settings | None = None, index_backend: str = "hnswlib") -> JobHandle:
    """Submit ``ea.train_graph``: train a graph model on an interaction file and publish it as ``name``.

    Args:
        interactions: a path the worker can read (CSV/Parquet ``user,item[,weight,timestamp]``, MovieLens).
        model: a key of ``recsys.MODELS`` (None: ``recsys.DEFAULT_MODEL``).
        params: the model's hyper-parameters.
        valid, test: held-out interactions (to stop LightGCN on; published metrics).
        item_metadata: CSV with an ``item`` column whose other columns are returned with recommendations.
        precompute: then write every user's top-N (N) for the client.
        read_options: keywords of ``recsys.Interactions.read`` for the interaction files: ``columns`` (the
            file's names of user, item, weight, timestamp) and ``encoding``.
        check_paths: paths are made absolute and checked on this machine before the job is queued; False:
            they are absolute paths on the workers' file system (see :func:`input_path`).
        index_backend: ``"hnswlib"`` (default) or ``"milvus"``: the version's items go into a Milvus collection
            (the workers' ``EA_MILVUS_URI``) that clients search.

    Raises:
        FileNotFoundError, PermissionError, ValueError: a path is missing, unreadable or relative; nothing
            was queued.
    """
    paths = {key: input_path(value, key.replace("_", " "), check=check_paths)
             for key, value in (("interactions", interactions), ("valid", valid), ("test", test),
                                ("item_metadata", item_metadata)) if value is not None}
    return submit("ea.train_graph", settings=settings, **{"valid": None, "test": None, "item_metadata": None, **paths},
                  model=model, name=name, params=params or {}, precompute=precompute, read_options=read_options or {},
                  index_backend=index_backend)


def train_series(series: str, *, name: str, train_until: int | None = None, embedding: str | None = None,
                 params: dict | None = None, read_options: Mapping[str, Any] | None = None,
                 series_id: str | None = None,
                 check_paths: bool = True, settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.train_series``: fit a kNN-distance detector on a ``timestamp,value`` file and publish it.

    ``embedding``: one of ``anomaly.detector.EMBEDDINGS``; ``None``: the detector's default
    (``anomaly.detector.DEFAULT_EMBEDDING``). ``read_options``: column names and the duplicate policy
    (``anomaly.series.read_series``'s keywords: timestamp_col, value_col, duplicates). ``series_id``: the id
    of the series trained on (default: its id in the file); scoring that id continues after the training rows,
    any other id warms up first. ``check_paths``: as in :func:`train_graph`.
    """
    series = input_path(series, "series", check=check_paths)
    return submit("ea.train_series", settings=settings, series=series, name=name, train_until=train_until,
                  embedding=embedding, params=params or {}, read_options=dict(read_options or {}), series_id=series_id)


def score_series(name: str, series_id: str, timestamps: list[Any], values: list[float | None], *,
                 labels: dict[str, Any] | None = None, settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.score_series``: score newly arrived points of one series with the active detector of
    ``name``, learning from them (state kept in Redis) and raising incidents.

    A batch is small and travels in the message (timestamps as ISO 8601 text or epoch numbers; ``None`` for a
    missing value); the job's result is ``workers.scoring.score_series``'s.
    """
    return submit("ea.score_series", settings=settings, name=name, series_id=series_id,
                  timestamps=[_text_time(t) for t in timestamps], values=list(values), labels=labels)


def upsert_items(name: str, items: list[dict[str, Any]], *, settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.catalogue_upsert_items``: add items to ``name``'s active version or replace their vectors
    (``recsys.CatalogueWriter.upsert_items``: ``{"id", "vector"}`` or ``{"id", "users"}``, optional
    ``"metadata"``; vectors as lists of numbers). The job id is the write's idempotency token."""
    return submit("ea.catalogue_upsert_items", settings=settings, name=name, items=[_plain(i) for i in items])


def delete_items(name: str, items: list[str], *, settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.catalogue_delete_items``: no client recommends ``items`` from then on."""
    return submit("ea.catalogue_delete_items", settings=settings, name=name, items=[str(i) for i in items])


def update_users(name: str, interactions: Mapping[str, list[str]], *,
                 weights: Mapping[str, list[float]] | None = None, settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.catalogue_update_users``: users' new interactions (``{user: [item, ...]}``) fold into their
    vectors and seen items now, and into the next training."""
    return submit("ea.catalogue_update_users", settings=settings, name=name,
                  interactions={str(u): [str(i) for i in v] for u, v in interactions.items()},
                  weights={str(u): list(w) for u, w in weights.items()} if weights else None)


def update_metadata(name: str, items: Mapping[str, Mapping[str, Any]], *,
                    settings: Settings | None = None) -> JobHandle:
    """Submit ``ea.catalogue_update_metadata``: set item fields (``{item: {field: value}}``)."""
    return submit("ea.catalogue_update_metadata", settings=settings, name=name,
                  items={str(i): dict(v) for i, v in items.items()})


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item spec as JSON carries it (numpy vectors as lists)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in item.items()}


def _text_time(t: Any) -> Any:
    """A timestamp as JSON carries it: numbers and text as they are, datetimes as ISO 8601 text."""
    if isinstance(t, int | float | str) or t is None:
        return t
    return t.isoformat() if hasattr(t, "isoformat") else str(t)
