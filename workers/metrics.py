"""The workers' metrics for Prometheus, kept in Redis so that every process and machine adds to one set.

Celery workers run many processes (prefork children, several hosts): counters in each process's memory would
need ``PROMETHEUS_MULTIPROC_DIR`` on every host and a scrape per host. Instead each process adds to one
Redis hash as it works (HINCRBY, one round trip per job), and ``ea metrics serve --port N`` (any number of
them, anywhere) reads it at each scrape:

* ``ea_jobs_total{task, state}``: jobs by task and state (``started``, ``succeeded``, ``failed``, ``retried``);
* ``ea_job_duration_seconds{task}``: job durations (histogram);
* ``ea_points_scored_total{detector}``: points scored by the score tasks;
* ``ea_incidents_total{event}``: incidents ``opened`` and ``resolved`` by scoring;
* ``ea_notifications_total{outcome}``: deliveries ``delivered``, ``retried``, ``dead`` (dead-lettered), from the
  alert layer's counters (:func:`alerts.outbox_status`);
* ``ea_outbox_backlog`` (undelivered notifications) and ``ea_outbox_oldest_age_seconds``;
* ``ea_incidents_open``: incidents firing now.

This module owns the record ``{prefix}metrics:workers`` (HASH: ``<metric>|<label>|<label>`` -> count, or
seconds for a histogram's ``sum``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from vectorstore import Settings, connect, get_settings

__all__ = ["BUCKETS", "WorkerMetrics", "count_points", "count_incidents", "install_signals", "serve"]

log = logging.getLogger(__name__)

#: Buckets of the job duration histogram (seconds).
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
_SEP = "|"
_started: dict[str, tuple[str, float]] = {}
_started_lock = threading.Lock()


def metrics_key(prefix: str) -> str:
    """The hash of the workers' metrics under ``prefix``."""
    return f"{prefix}metrics:workers"


def _add(client: Any, key: str, counts: Mapping[str, float]) -> None:
    """Add ``counts`` to the hash, in one round trip; a metric is never worth failing a job for."""
    try:
        pipe = client.pipeline(transaction=False)
        for name, by in counts.items():
            if isinstance(by, int):
                pipe.hincrby(key, name, by)
            else:
                pipe.hincrbyfloat(key, name, by)
        pipe.execute()
    except Exception as exc:  # Redis away: the job's own work decides, not its metrics
        log.warning("metrics not recorded (%s): %s", type(exc).__name__, exc)


_clients: dict[tuple[str | None, str], Any] = {}


def _record(counts: Mapping[str, float], settings: Settings | None = None, client: Any = None) -> None:
    """Add ``counts`` (a client per Redis URL is kept: a job's events must not open connections each)."""
    try:
        settings = settings or get_settings()
        if client is None:
            where = (settings.redis_url, settings.key_prefix)
            client = _clients.get(where)
            if client is None:
                client = _clients.setdefault(where, connect(settings))
    except Exception as exc:  # no Redis configured or reachable: the job decides, not its metrics
        log.warning("metrics not recorded (%s): %s", type(exc).__name__, exc)
        return
    _add(client, metrics_key(settings.key_prefix), counts)


def count_points(detector: str, points: int, *, settings: Settings | None = None, client: Any = None) -> None:
    """Count points a detector scored."""
    if points:
        _record({_SEP.join(("points", detector)): int(points)}, settings, client)


def count_incidents(opened: int, resolved: int, *, settings: Settings | None = None, client: Any = None) -> None:
    """Count incidents opened and resolved."""
    counts = {k: v for k, v in ((f"incidents{_SEP}opened", opened), (f"incidents{_SEP}resolved", resolved)) if v}
    if counts:
        _record(counts, settings, client)


# --- Celery's side: jobs by task and state, and their durations ------------------------------------------------


def install_signals() -> None:
    """Count every job of this process's Celery worker (connected once, by :mod:`workers.app`)."""
    from celery import signals

    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_success.connect(_on_success, weak=False)
    signals.task_failure.connect(_on_failure, weak=False)
    signals.task_retry.connect(_on_retry, weak=False)


def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    with _started_lock:
        _started[str(task_id)] = (getattr(task, "name", "?"), time.perf_counter())
    _record({_SEP.join(("job", getattr(task, "name", "?"), "started")): 1})


def _finished(task_id: Any, name: str | None, state: str) -> None:
    with _started_lock:
        began = _started.pop(str(task_id), None)
    name = name or (began[0] if began else "?")
    counts: dict[str, float] = {_SEP.join(("job", name, state)): 1}
    if began is not None:
        took = time.perf_counter() - began[1]
        le = next((str(b) for b in BUCKETS if took <= b), "+Inf")
        counts[_SEP.join(("duration_bucket", name, le))] = 1
        counts[_SEP.join(("duration_count", name))] = 1
        counts[_SEP.join(("duration_sum", name))] = float(took)
    _record(counts)


def _on_success(sender: Any = None, **_: Any) -> None:
    request = getattr(sender, "request", None)
    _finished(getattr(request, "id", None), getattr(sender, "name", None), "succeeded")


def _on_failure(sender: Any = None, task_id: Any = None, **_: Any) -> None:
    _finished(task_id, getattr(sender, "name", None), "failed")


def _on_retry(sender: Any = None, request: Any = None, **_: Any) -> None:
    _finished(getattr(request, "id", None), getattr(sender, "name", None), "retried")


# --- the scrape side ----------------------------------------------------------------------------------------


class WorkerMetrics:
    """A ``prometheus_client`` collector of the workers' metrics, read from Redis at each scrape.

    Args:
        settings, client: the service's settings and a Redis client (default: from the environment).
    """

    def __init__(self, settings: Settings | None = None, client: Any = None) -> None:
        self.settings = settings or get_settings()
        self.client = client or connect(self.settings)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from alerts import AlertKeys, outbox_status

        raw = {k.decode(): float(v) for k, v in self.client.hgetall(metrics_key(self.settings.key_prefix)).items()}
        jobs = CounterMetricFamily("ea_jobs", "Jobs by task and state", labels=["task", "state"])
        points = CounterMetricFamily("ea_points_scored", "Points scored, by detector", labels=["detector"])
        incidents = CounterMetricFamily("ea_incidents", "Incidents opened and resolved", labels=["event"])
        durations: dict[str, dict[str, float]] = {}
        for name, value in sorted(raw.items()):
            kind, *parts = name.split(_SEP)
            if kind == "job" and len(parts) == 2:
                jobs.add_metric(parts, value)
            elif kind == "points" and len(parts) == 1:
                points.add_metric(parts, value)
            elif kind == "incidents" and len(parts) == 1:
                incidents.add_metric(parts, value)
            elif kind.startswith("duration_"):
                durations.setdefault(parts[0], {})[_SEP.join([kind, *parts[1:]])] = value
        hist = HistogramMetricFamily("ea_job_duration_seconds", "Job durations", labels=["task"])
        for task, values in sorted(durations.items()):
            running, buckets = 0.0, []
            for b in [*(str(x) for x in BUCKETS), "+Inf"]:
                running += values.get(f"duration_bucket{_SEP}{b}", 0.0)
                buckets.append((b, running))
            hist.add_metric([task], buckets, values.get("duration_sum", 0.0))
        status = outbox_status(settings=self.settings, client=self.client)
        notes = CounterMetricFamily("ea_notifications", "Notification deliveries by outcome", labels=["outcome"])
        for outcome, count in status["outcomes"].items():
            notes.add_metric([outcome], count)
        yield from (jobs, hist, points, incidents, notes)
        yield GaugeMetricFamily("ea_outbox_backlog", "Notifications not yet delivered", value=status["undelivered"])
        yield GaugeMetricFamily("ea_outbox_oldest_age_seconds", "Age of the oldest undelivered notification",
                                value=status["oldest_age_s"])
        yield GaugeMetricFamily("ea_incidents_open", "Incidents firing now",
                                value=self.client.hlen(AlertKeys(self.settings.key_prefix).open))


def serve(port: int, addr: str = "0.0.0.0", *, settings: Settings | None = None) -> Any:
    """Serve the workers' metrics on ``http://addr:port/metrics`` (a thread); returns the server (its
    ``shutdown()`` stops it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(WorkerMetrics(settings))
    server, _thread = start_http_server(port, addr, registry=registry)
    return server
