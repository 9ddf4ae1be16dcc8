"""Jobs through a real Celery worker and Redis: progress, result, failures, JSON only."""

from __future__ import annotations

import time
import uuid

import pytest
from kombu import Connection

from vectorstore import ModelRegistry
from workers.app import app
from workers.exceptions import JobFailed, JobTimeout
from workers.jobs import JobHandle, list_jobs, submit


def test_job_reports_progress_and_returns_a_published_version(celery_worker, model_name, settings):
    handle = submit("ea.train_selfcheck", model=model_name, items=500, dim=8, steps=4)
    seen = []
    result = handle.wait(timeout=60, interval=0.02, on_progress=seen.append)
    assert handle.state == "SUCCESS" and handle.done
    assert result["model"] == model_name and result["recall@10"] > 0.9
    assert {"stage": "build", "done": 4, "total": 4} in seen or any(p.get("stage") == "build" for p in seen)
    assert ModelRegistry(settings).active_version(model_name) == result["version"]
    assert any(r.id == handle.id and r.state == "SUCCESS" for r in list_jobs(50))


def test_failed_job_raises_job_failed(celery_worker):
    handle = submit("ea.train_selfcheck", model="bad name with spaces", items=10, dim=2, steps=1)
    with pytest.raises(JobFailed, match="bad name"):
        handle.wait(timeout=60)


def test_wait_times_out_while_job_is_pending():
    handle = JobHandle(str(uuid.uuid4()))
    with pytest.raises(JobTimeout):
        handle.wait(timeout=0.2)
    assert handle.state == "PENDING" and handle.progress is None


def test_non_json_arguments_are_refused_before_sending():
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        submit("ea.train_selfcheck", model=object())


def test_pickled_message_is_refused_by_the_worker(celery_worker, model_name, settings, redis_client):
    """A message serialised with pickle never runs: the worker accepts JSON only."""
    task_id = str(uuid.uuid4())
    with Connection(app.conf.broker_url, transport_options=app.conf.broker_transport_options) as conn:
        producer = conn.Producer(serializer="pickle")
        producer.publish(
            [[], {"model": model_name, "items": 10, "dim": 2, "steps": 1}, {}],
            routing_key="train", exchange="", serializer="pickle",
            headers={"lang": "py", "task": "ea.train_selfcheck", "id": task_id, "root_id": task_id,
                     "parent_id": None, "group": None, "argsrepr": "", "kwargsrepr": "", "origin": "test"},
            declare=[],
        )
    # A JSON job sent after it runs, so the worker has consumed (and rejected) the pickled one by then.
    submit("ea.train_selfcheck", model=model_name + "x", items=10, dim=2, steps=1).wait(timeout=60)
    time.sleep(0.5)
    assert JobHandle(task_id).state == "PENDING"
    assert ModelRegistry(settings).active_version(model_name) is None
    # It was delivered (the queue is drained), not lost on the way: the worker refused it.
    assert redis_client.llen(f"{settings.key_prefix}celery:train") == 0


def test_config_is_json_only_with_late_acks():
    conf = app.conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] >= 3600
    assert {q.name for q in conf.task_queues} == {"train", "score", "alerts"}


def test_train_graph_helper_submits_the_job(celery_worker, tmp_path, model_name, settings):
    from workers.jobs import train_graph

    data = tmp_path / "i.csv"
    data.write_text("user,item\n" + "".join(f"u{u},i{(u + j) % 7}\n" for u in range(30) for j in range(3)))
    params = {"dim": 8, "walks_per_node": 2, "walk_length": 5, "window": 2, "workers": 1}
    handle = train_graph(str(data), model="node2vec", name=model_name, params=params)
    assert handle.task == "ea.train_graph"
    assert handle.wait(timeout=120)["version"] == ModelRegistry(settings).active_version(model_name)
