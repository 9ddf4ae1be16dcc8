"""The cluster suite: a real local Redis Cluster (three masters, three replicas) for the session, and every
test of this package run with the service pointed at it (``EA_REDIS_URL`` a cluster node, ``EA_REDIS_CLUSTER=1``).

Celery's broker and result backend stay on the session's single Redis (``EA_BROKER_URL``, ``EA_RESULT_BACKEND``):
kombu and Celery's Redis result backend do not speak the cluster protocol (see the README's deploy section).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from _cluster import LocalCluster, on_cluster, start_cluster
from _rerun import fixtures

# The fixtures of the suites re-run here (pytest looks for conftest.py fixtures only above a test's folder).
globals().update(fixtures("recsys/conftest.py"))
globals().update(fixtures("alerts/conftest.py"))
globals().update({k: v for k, v in fixtures("reliability/conftest.py").items() if k != "trained_model"})


@pytest.fixture(scope="session")
def redis_cluster():
    """A local Redis Cluster for the session (its files in a temporary folder), stopped at the end."""
    cluster = start_cluster(Path(tempfile.mkdtemp(prefix="ea-test-cluster-")))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_url(redis_cluster: LocalCluster) -> str:
    """A node of the session's cluster (the service follows the others from it)."""
    return redis_cluster.url


@pytest.fixture(autouse=True)
def _on_the_cluster(redis_cluster: LocalCluster):
    """Every test here (and the Celery worker's tasks while it runs) use the cluster as the service's Redis."""
    with on_cluster(redis_cluster):
        yield


@pytest.fixture(scope="session")
def trained_model(interactions_csv, redis_cluster: LocalCluster) -> str:
    """The reliability suite's model, published on the cluster (a session fixture is set up before the
    per-test switch to the cluster, so it switches itself)."""
    from _reliability import FAST_NODE2VEC

    from recsys.training import train_and_publish

    name = f"src{uuid.uuid4().hex[:8]}"
    with on_cluster(redis_cluster):
        train_and_publish(interactions_csv, name=name, algorithm="node2vec", params=FAST_NODE2VEC)
    return name


@pytest.fixture
def redis_client(redis_cluster: LocalCluster):
    """A cluster client (binary-safe) on the session's cluster."""
    client = redis_cluster.client()
    yield client
    client.close()
