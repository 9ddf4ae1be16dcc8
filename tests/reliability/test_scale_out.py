"""Scale-out: two worker *processes* on one broker (as two hosts would run them) drain a queue of mixed jobs,
on each broker (the Redis one, RabbitMQ with quorum queues).

Each of 20 jobs (``ea.train_selfcheck``, ``ea.precompute_recommendations``, ``ea.train_series`` with the raw
detector) completes, each model gets exactly one version, the work is shared by both hostnames, and
SIGKILLing one worker in the middle of the queue loses nothing: its unacknowledged job is redelivered to
the other (Redis: after the short visibility timeout; RabbitMQ: at once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from _reliability import Deployment, copy_version, on_both_brokers, wait_for
from celery.result import AsyncResult

from vectorstore import ModelRegistry, Settings


@on_both_brokers
def test_two_workers_share_a_mixed_queue_and_survive_losing_one(
    isolated: Deployment, trained_model: str, settings: Settings, tmp_path: Path
) -> None:
    registry = isolated.registry
    version = copy_version(registry, trained_model, "shop", reader=ModelRegistry(settings))
    n = 300
    series = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="min").astype(str),
                  "value": np.sin(np.arange(n) / 7) + np.random.default_rng(0).normal(0, 0.05, n)}).to_csv(
        series, index=False)

    first = isolated.start_worker("host-a", queues="train,score", wait=False)
    second = isolated.start_worker("host-b", queues="train,score", wait=False)
    isolated.wait_ready(first)
    isolated.wait_ready(second)

    jobs: list[tuple[str, str, AsyncResult]] = []
    for j in range(20):
        kind = ("selfcheck", "precompute", "series")[j % 3]
        if kind == "selfcheck":
            job = isolated.send("ea.train_selfcheck", model=f"sc{j}", items=300, dim=8, steps=8)
        elif kind == "precompute":
            job = isolated.send("ea.precompute_recommendations", name="shop", version=version, n=10)
        else:
            job = isolated.send("ea.train_series", series=str(series), name=f"det{j}", train_until=200,
                                embedding="raw")
        jobs.append((kind, f"sc{j}" if kind == "selfcheck" else f"det{j}" if kind == "series" else "shop", job))

    def hosts_done() -> set[str]:
        return {r.worker for _, _, r in jobs if r.state == "SUCCESS" and r.worker}

    wait_for(lambda: {first.hostname, second.hostname} <= hosts_done(), 120, interval=0.2,
             what="both workers to finish a job")
    first.kill()
    unfinished = [r for _, _, r in jobs if r.state != "SUCCESS"]
    assert unfinished, "the queue drained before a worker could be killed: make the jobs longer"

    for _kind, _name, job in jobs:
        job.get(timeout=150)
    states = [r.state for _, _, r in jobs]
    assert states == ["SUCCESS"] * len(jobs)
    hosts = [r.worker for _, _, r in jobs]
    assert set(hosts) == {first.hostname, second.hostname}
    # Whatever was queued or running on the killed worker was finished by the other one.
    assert {r.worker for r in unfinished} == {second.hostname}

    for kind, name, job in jobs:
        out = job.result
        if kind == "precompute":
            assert out["version"] == version and out["users"] > 0
            continue
        assert [v.version for v in registry.versions(name)] == [out["version"]] == [1], name
        meta = registry.manifest(name, 1)["meta"]
        assert meta["kind"] == ("selfcheck" if kind == "selfcheck" else "knn_detector")
    # The precomputed lists are complete and served.
    topn = registry.keys.derived("shop", version, "topn")
    assert registry.client.hlen(topn) == registry.load("shop").meta["n_users"]
    assert not list(registry.client.scan_iter(registry.keys.derived("shop", version, "topn-building*")))


def test_concurrent_precomputations_of_one_version_leave_a_complete_list(
    trained_model: str, model_name: str, settings: Settings
) -> None:
    """Two workers (or a redelivered job) precomputing the same version at once: each builds its own list
    and the one made visible is complete (they used to share one building key, deleting each other's rows)."""
    import threading

    from workers.tasks.graph import precompute_recommendations

    registry = ModelRegistry(settings)
    version = copy_version(registry, trained_model, model_name)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            precompute_recommendations.run(name=model_name, version=version, n=10, batch=1)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    users = registry.load(model_name).meta["n_users"]
    assert registry.client.hlen(registry.keys.derived(model_name, version, "topn")) == users
    assert not list(registry.client.scan_iter(registry.keys.derived(model_name, version, "topn-building*")))


def test_redelivered_precomputation_drops_the_partial_list_of_its_killed_delivery(
    trained_model: str, model_name: str, settings: Settings, celery_worker
) -> None:
    """A delivery killed mid-way leaves a partial building list; the redelivery (same job id) removes it,
    and any building list carries an expiry, so nothing half-written stays behind."""
    import uuid

    from recsys.serving.precompute import BUILDING_TTL_S
    from workers.tasks.graph import precompute_recommendations

    registry = ModelRegistry(settings)
    version = copy_version(registry, trained_model, model_name)
    job_id = str(uuid.uuid4())
    # What the killed delivery left: a registered, partly written building list of this job.
    stale = registry.derived_key(model_name, version, f"topn-building-{job_id.replace('-', '')}-deadbeef0000")
    registry.client.hset(stale, "u0", b"partial")

    result = precompute_recommendations.apply_async(kwargs={"name": model_name, "version": version, "n": 5,
                                                            "batch": 2}, task_id=job_id).get(timeout=120)
    users = registry.load(model_name).meta["n_users"]
    out = registry.keys.derived(model_name, version, "topn")
    assert result["users"] == users and registry.client.hlen(out) == users
    assert registry.client.ttl(out) == -1  # the published list does not inherit the building expiry
    assert not list(registry.client.scan_iter(registry.keys.derived(model_name, version, "topn-building*")))
    assert not [k for k in registry.client.smembers(registry.keys.derived_set(model_name, version))
                if b"building" in k]
    assert 0 < BUILDING_TTL_S <= 24 * 3600
