"""Fault: a train worker *process* is SIGKILLed in the middle of a job.

Exercised against real ``celery worker`` processes on each broker, the Redis one and RabbitMQ (quorum
queues): the unacknowledged message survives the crash (late acks), is redelivered to another worker (Redis:
after the visibility timeout; RabbitMQ: as soon as the dead worker's connection closes), and the job
completes with exactly one complete published version and no leftover partial keys. A job redelivered
after it had already committed returns the version its first run published (the publication token).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

from _reliability import FAST_NODE2VEC, Deployment, make_app, on_both_brokers, wait_for
from celery.result import AsyncResult


def _model_keys_are_complete(deployment: Deployment, model: str) -> None:
    """Every key of ``model`` is persistent and every version's data has its manifest (no half versions)."""
    client = deployment.registry.client
    keys = deployment.keys(f"model:{{{model}}}:*")
    assert keys, "the model left no keys at all"
    for key in keys:
        assert client.ttl(key) == -1, f"{key} still carries a TTL: a partial publication"
        if key.endswith(":data"):
            assert key[: -len("data")] + "manifest" in keys, f"{key} has no manifest"


@on_both_brokers
def test_killed_worker_job_is_redelivered_and_publishes_once(isolated: Deployment, model_name: str) -> None:
    first = isolated.start_worker("train-a", queues="train")
    job = isolated.send("ea.train_selfcheck", model=model_name, items=1500, dim=16, steps=40)
    result = AsyncResult(job.id, app=isolated.app)

    def mid_build() -> bool:
        info = result.info if result.state == "PROGRESS" else None
        return isinstance(info, dict) and info.get("stage") == "build" and info.get("done", 0) >= 3

    wait_for(mid_build, 60, interval=0.02, what="the job to be half-way through its build stage")
    first.kill()

    # Late ack: the message is neither acknowledged nor lost. Redis: it waits in kombu's unacked hash for the
    # visibility timeout; RabbitMQ: the closed connection put it back in its queue at once.
    if isolated.broker == "redis":
        unacked = isolated.registry.client.hvals(f"{isolated.settings.key_prefix}celery:unacked")
        assert any(job.id in raw.decode(errors="replace") for raw in unacked), "the killed job's message was lost"
    else:
        wait_for(lambda: isolated.ready_messages("train") == 1, 30, what="the killed job's message back in its queue")
    assert isolated.registry.version_for_token(model_name, job.id) is None
    assert not isolated.keys(f"model:{{{model_name}}}:v:*"), "the killed run wrote version data"

    second = isolated.start_worker("train-b", queues="train")
    out = result.get(timeout=120, propagate=True)
    assert result.state == "SUCCESS"
    assert result.worker == second.hostname, "the job was not redelivered to the surviving worker"
    registry = isolated.registry
    versions = registry.versions(model_name)
    assert [v.version for v in versions] == [out["version"]], "exactly one version must be published"
    assert registry.active_version(model_name) == out["version"]
    assert registry.version_for_token(model_name, job.id) == out["version"]
    assert out["recall@10"] > 0.9
    registry.load(model_name)  # complete and checksum-valid
    _model_keys_are_complete(isolated, model_name)

    # A redelivery after the commit (same job id) publishes nothing new: it returns the same version.
    result.forget()  # so that the result read below is the replay's, not the first run's
    again = isolated.send("ea.train_selfcheck", task_id=job.id, model=model_name, items=1500, dim=16, steps=2)
    # Read through a new app: Celery's result consumer may hold a second copy of the first run's result,
    # received after that run's get() had returned, and would hand it to a get() of the same job id.
    reader = make_app(isolated.settings)
    replay = reader.AsyncResult(again.id).get(timeout=120)
    reader.close()
    assert replay["version"] == out["version"] and replay.get("redelivered") is True
    assert [v.version for v in registry.versions(model_name)] == [out["version"]]
    _model_keys_are_complete(isolated, model_name)


def test_graph_training_with_a_committed_token_returns_the_same_version(interactions_csv, model_name, settings) -> None:
    """``train_and_publish`` run twice with one job id (a redelivered ``ea.train_graph``) publishes once."""
    from recsys.training import train_and_publish
    from vectorstore import ModelRegistry

    token = str(uuid.uuid4())
    registry = ModelRegistry(settings)
    first = train_and_publish(interactions_csv, name=model_name, algorithm="node2vec", params=FAST_NODE2VEC,
                              registry=registry, token=token)
    second = train_and_publish(interactions_csv, name=model_name, algorithm="node2vec", params=FAST_NODE2VEC,
                               registry=registry, token=token)
    assert second.version == first.version
    assert [v.version for v in registry.versions(model_name)] == [first.version]
    assert json.loads(json.dumps(second.as_dict()))["n_items"] == first.n_items


def _children(pid: int) -> list[int]:
    """Pids of the direct children of ``pid`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


@on_both_brokers
def test_prefork_child_killed_mid_job_is_requeued_not_failed(isolated: Deployment, model_name: str) -> None:
    """``task_reject_on_worker_lost``: the pool child dies, the parent requeues the message at once (no
    visibility timeout wait) instead of recording a WorkerLostError failure."""
    worker = isolated.start_worker("prefork", queues="train", pool="prefork", concurrency=1)
    job = isolated.send("ea.train_selfcheck", model=model_name, items=1000, dim=8, steps=40)
    result = AsyncResult(job.id, app=isolated.app)

    def mid_build() -> bool:
        info = result.info if result.state == "PROGRESS" else None
        return isinstance(info, dict) and info.get("stage") == "build" and info.get("done", 0) >= 3

    wait_for(mid_build, 60, interval=0.02, what="the job to be half-way through its build stage")
    children = _children(worker.proc.pid)
    assert len(children) == 1, f"expected one pool child, found {children}"
    os.kill(children[0], signal.SIGKILL)
    out = result.get(timeout=120)
    assert result.state == "SUCCESS", result.state
    assert worker.proc.poll() is None, "the worker itself should survive its child"
    registry = isolated.registry
    assert [v.version for v in registry.versions(model_name)] == [out["version"]]
    assert registry.version_for_token(model_name, job.id) == out["version"]
    _model_keys_are_complete(isolated, model_name)


def test_visibility_timeout_setting_and_redelivery_sweep() -> None:
    """A short ``EA_VISIBILITY_TIMEOUT`` is accepted, and kombu's sweep of unacked messages follows it
    (every timeout/10 s, 1..100 s), so a crashed worker's job waits about the timeout, not 100 s more."""
    import pytest

    from vectorstore import ConfigurationError, Settings
    from workers.app import celery_config

    short = Settings.from_env({"EA_VISIBILITY_TIMEOUT": "5", "EA_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert short.visibility_timeout == 5
    transport = celery_config(short)["broker_transport_options"]
    assert transport["visibility_timeout"] == 5
    assert transport["unacked_restore_interval"] == 1 and transport["unacked_restore_throttle"] == 1
    default = celery_config(Settings(redis_url="redis://127.0.0.1:1/0"))["broker_transport_options"]
    assert default["visibility_timeout"] == 6 * 3600 and default["unacked_restore_interval"] == 100
    with pytest.raises(ConfigurationError, match="EA_VISIBILITY_TIMEOUT"):
        Settings.from_env({"EA_VISIBILITY_TIMEOUT": "0"})
