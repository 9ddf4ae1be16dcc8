"""Helpers of the reliability tests: isolated deployments, Celery worker *processes*, dedicated Redis servers.

A test that kills workers must not share queues with the session's in-process ``celery_worker`` (a
threads worker on every queue of the session prefix, with a 6 h visibility timeout): it would take the
jobs and hide the redelivery under test. :func:`isolated` therefore gives each test its own key prefix,
below the session's (so the session's clean-up still deletes everything), its own Celery app configured
for it, and starts worker processes with the same ``EA_*`` variables plus that prefix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from celery import Celery

from vectorstore import QUEUES, ModelRegistry, Settings, broker_kind, get_settings
from workers.app import celery_config

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """A ``celery worker`` OS process (its own process group, so a kill takes its children too)."""

    hostname: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker's process group: no warm shutdown, no message restored by the worker."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL after 15 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Deployment:
    """One isolated deployment: settings (own key prefix), its registry, its Celery app and workers."""

    settings: Settings
    app: Celery
    env: dict[str, str]
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.settings)

    def start_worker(self, name: str, queues: str = "train,score,alerts", pool: str = "solo",
                     concurrency: int | None = None, wait: bool = True) -> WorkerProcess:
        """Start ``celery -A workers.app worker`` as a separate process with this deployment's env."""
        hostname = f"{name}-{uuid.uuid4().hex[:6]}@reliability"
        log = self.tmp / f"{hostname.split('@')[0]}.log"
        argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queues, "-P", pool,
                "-n", hostname, "-l", "INFO", "--without-mingle", "--without-gossip"]
        if concurrency:
            argv += ["-c", str(concurrency)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        worker = WorkerProcess(hostname, proc, log)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, timeout: float = 90) -> None:
        def ready() -> bool:
            if worker.proc.poll() is not None:
                raise AssertionError(f"worker {worker.hostname} exited early:\n{worker.output()[-3000:]}")
            return bool(self.app.control.ping(destination=[worker.hostname], timeout=1.0))

        wait_for(ready, timeout, interval=0.2, what=f"worker {worker.hostname} to answer ping")

    def send(self, task: str, task_id: str | None = None, queue: str | None = None, **kwargs):
        """Send a task to this deployment's broker (JSON kwargs)."""
        options = {"queue": queue} if queue else {}
        return self.app.send_task(task, kwargs=kwargs, task_id=task_id, **options)

    @property
    def broker(self) -> str:
        """``"redis"`` or ``"amqp"``: the broker this deployment's jobs go through."""
        return broker_kind(self.app.conf.broker_url)

    def ready_messages(self, queue: str) -> int:
        """Messages waiting in ``queue`` for a worker (not those delivered and unacknowledged)."""
        with self.app.connection_for_write() as conn:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count

    def delete_queues(self) -> None:
        """Delete this deployment's queues from its broker (RabbitMQ: they outlive their workers)."""
        with contextlib.suppress(Exception), self.app.connection_for_write() as conn:
            for queue in QUEUES:
                conn.default_channel.queue_delete(queue)

    def keys(self, pattern: str = "*") -> list[str]:
        client = self.registry.client
        return sorted(k.decode() for k in client.scan_iter(f"{self.settings.key_prefix}{pattern}", count=1000))


#: Parametrizes a test's ``isolated`` deployment over both brokers: ids ``[redis]`` and ``[amqp]`` (the session's
#: RabbitMQ; skipped, loudly, when none answers).
on_both_brokers = pytest.mark.parametrize("isolated", ["redis", "amqp"], indirect=True)


def make_app(settings: Settings) -> Celery:
    """A Celery app configured for ``settings`` (``workers.app.app`` reads the environment only once)."""
    app = Celery("ea-reliability", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app



FAST_NODE2VEC = {"dim": 16, "walk_length": 20, "walks_per_node": 5, "window": 5, "workers": 1, "seed": 3}


def community_frame(users: int = 120, items: int = 60, communities: int = 3, per_user: int = 12,
                    seed: int = 0) -> pd.DataFrame:
    """Users of community c interact with items of community c (item j is in community j % c)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        own = [j for j in range(items) if j % communities == u % communities]
        picks = rng.choice(own, size=min(per_user, len(own)), replace=False).tolist()
        rows += [(f"u{u}", f"i{j}") for j in picks]
    return pd.DataFrame(rows, columns=["user", "item"])


def redis_answers(url: str, **kwargs) -> bool:
    """Whether a Redis server answers PING at ``url``."""
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1, **kwargs).ping())
    except (redis.RedisError, OSError):
        return False


def copy_version(registry: ModelRegistry, source: str, target: str, *, version: int | None = None,
                 meta: dict | None = None, token: str | None = None, reader: ModelRegistry | None = None) -> int:
    """Publish a copy of ``source``'s version (default: active) as a new version of ``target``.

    A quick stand-in for a training job's publication: same parts, tables and meta, through the public
    :meth:`ModelRegistry.publish`.
    """
    reader = reader or registry
    loaded = reader.load(source, version)
    tables = {table: reader.read_table(source, loaded.version, table) for table in loaded.tables}
    return registry.publish(target, arrays=dict(loaded.arrays), blobs=dict(loaded.blobs), tables=tables,
                            meta={**loaded.meta, **(meta or {})}, token=token)


def deployment_for(url: str, tmp: Path, **env: str) -> Deployment:
    """An isolated deployment (own key prefix) on the Redis at ``url`` (e.g. with credentials or TLS)."""
    prefix = f"rel{uuid.uuid4().hex[:8]}:"
    settings = get_settings().with_(redis_url=url, key_prefix=prefix, visibility_timeout=5)
    full_env = {**os.environ, "EA_REDIS_URL": url, "EA_KEY_PREFIX": prefix, "EA_VISIBILITY_TIMEOUT": "5",
                "PYTHONUNBUFFERED": "1", **env}
    return Deployment(settings, make_app(settings), full_env, tmp)
