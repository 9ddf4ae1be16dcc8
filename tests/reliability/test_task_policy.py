"""Celery task policy against real worker processes and real Redis servers: transient errors retried with
backoff, permanent errors failed at once with their typed error, soft and hard time limits in the solo pool.

The transient error is real: the worker's registry Redis (``EA_REDIS_URL``) is a dedicated server that is
down when the job starts and comes up a few seconds later, while the broker and the result backend
(``EA_BROKER_URL``, ``EA_RESULT_BACKEND``) stay on the session's Redis.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from _reliability import FAST_NODE2VEC, Deployment, make_app, on_both_brokers, redis_answers, wait_for
from celery.result import AsyncResult

from vectorstore import ModelRegistry, start_redis_server
from workers._task_policy import HARD_LIMIT_EXIT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_transient_redis_error_is_retried_with_backoff_until_redis_is_back(
    isolated: Deployment, model_name: str, tmp_path: Path
) -> None:
    port = _free_port()
    registry_url = f"redis://127.0.0.1:{port}/0"
    session_url = isolated.settings.redis_url
    isolated.env.update({"EA_REDIS_URL": registry_url, "EA_BROKER_URL": session_url, "EA_RESULT_BACKEND": session_url,
                         "EA_TASK_MAX_RETRIES": "40", "EA_TASK_RETRY_BACKOFF": "1", "EA_TASK_RETRY_BACKOFF_MAX": "2",
                         "EA_SOCKET_TIMEOUT": "1"})
    settings = isolated.settings.with_(redis_url=registry_url, broker_url=session_url, result_backend=session_url)
    app = make_app(settings)
    isolated.app = app
    isolated.start_worker("train-retry", queues="train")
    result = AsyncResult(isolated.send("ea.train_selfcheck", model=model_name, items=300, dim=8, steps=2).id, app=app)
    wait_for(lambda: result.state == "RETRY", 60, what="the job to be retried while its Redis is down")
    server = start_redis_server(tmp_path / "registry", port=port)
    try:
        out = result.get(timeout=90)
        assert result.state == "SUCCESS" and out["model"] == model_name
        assert result.retries >= 1
        assert ModelRegistry(settings).active_version(model_name) == out["version"]
        log = isolated.workers[0].output()
        assert "Retry in" in log and "ConnectionError" in log, log[-3000:]
    finally:
        server.stop()


def test_permanent_error_fails_at_once_with_its_typed_error(isolated: Deployment, model_name: str,
                                                              tmp_path: Path) -> None:
    isolated.start_worker("train-bad", queues="train")
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,weight\na,x,1\nb,y,heavy\n")
    started = time.monotonic()
    for path, error in ((bad, "InvalidInteractions"), (tmp_path / "missing.csv", "FileNotFoundError")):
        result = AsyncResult(isolated.send("ea.train_graph", interactions=str(path), model="node2vec",
                                           name=model_name, params=FAST_NODE2VEC).id, app=isolated.app)
        with pytest.raises(Exception) as err:
            result.get(timeout=60)
        assert type(err.value).__name__ == error, err.value
        assert result.state == "FAILURE" and not result.retries
    assert time.monotonic() - started < 30, "a permanent error must not wait for retries"


def test_soft_time_limit_interrupts_a_job_and_the_worker_goes_on(isolated: Deployment, model_name: str) -> None:
    isolated.env.update({"EA_TRAIN_SOFT_TIME_LIMIT": "1", "EA_TRAIN_TIME_LIMIT": "60"})
    isolated.start_worker("train-soft", queues="train")
    slow = AsyncResult(isolated.send("ea.train_selfcheck", model=model_name, items=200, dim=4, steps=400).id,
                       app=isolated.app)
    with pytest.raises(Exception, match="soft time limit of 1 s .EA_TRAIN_SOFT_TIME_LIMIT") as err:
        slow.get(timeout=60)
    assert type(err.value).__name__ == "SoftTimeLimitExceeded"
    assert isolated.registry.active_version(model_name) is None
    quick = AsyncResult(isolated.send("ea.train_selfcheck", model=model_name, items=200, dim=4, steps=2).id,
                        app=isolated.app)
    assert quick.get(timeout=60)["version"] == 1  # the same worker process runs the next job


@on_both_brokers
def test_hard_time_limit_ends_the_worker_and_the_redelivered_job_fails_at_once(
    isolated: Deployment, model_name: str
) -> None:
    isolated.env.update({"EA_TRAIN_SOFT_TIME_LIMIT": "0", "EA_TRAIN_TIME_LIMIT": "1", "EA_VISIBILITY_TIMEOUT": "3"})
    first = isolated.start_worker("train-hard", queues="train")
    job = AsyncResult(isolated.send("ea.train_selfcheck", model=model_name, items=200, dim=4, steps=400).id,
                      app=isolated.app)
    assert first.proc.wait(timeout=60) == HARD_LIMIT_EXIT, first.output()[-3000:]
    assert job.state == "FAILURE" and "hard time limit of 1 s (EA_TRAIN_TIME_LIMIT)" in str(job.result)
    assert "ending worker process" in first.output()

    isolated.env.update({"EA_TRAIN_TIME_LIMIT": "600"})
    second = isolated.start_worker("train-after", queues="train")
    wait_for(lambda: "not run again" in second.output(), 60, what="the redelivered job to be refused")
    time.sleep(0.5)
    assert job.state == "FAILURE" and isolated.registry.active_version(model_name) is None
    assert redis_answers(isolated.settings.redis_url)
