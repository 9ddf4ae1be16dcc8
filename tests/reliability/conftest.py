"""Fixtures of the reliability tests (helpers in ``_reliability.py``)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from _reliability import Deployment, community_frame, make_app

from vectorstore import get_settings, start_redis_server
from vectorstore.platform.embedded import RedisProcess


@pytest.fixture
def isolated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    """An isolated deployment on the session's Redis, with a 5 s visibility timeout for its workers.

    Its broker is that Redis, or the session's RabbitMQ when the test is parametrized so
    (``@on_both_brokers``: ``isolated`` is ``"redis"`` or ``"amqp"``); the queues it used there are deleted
    afterwards.
    """
    broker = getattr(request, "param", "redis")
    base = get_settings()
    prefix = f"{base.key_prefix}r{uuid.uuid4().hex[:8]}:"
    settings = base.with_(key_prefix=prefix, visibility_timeout=5)
    env = {**os.environ, "EA_KEY_PREFIX": prefix, "EA_VISIBILITY_TIMEOUT": "5", "PYTHONUNBUFFERED": "1"}
    if broker == "amqp":
        url = request.getfixturevalue("rabbitmq_url")
        settings = settings.with_(broker_url=url)
        env["EA_BROKER_URL"] = url
    deployment = Deployment(settings, make_app(settings), env, tmp_path)
    try:
        yield deployment
    finally:
        for worker in deployment.workers:
            worker.kill()
        if broker == "amqp":
            deployment.delete_queues()
        with contextlib.suppress(Exception):
            deployment.app.close()


@pytest.fixture(scope="session")
def rabbitmq_vhost(rabbitmq_url: str) -> str | None:
    """The name of the session's RabbitMQ vhost, or None when the session could not make one."""
    import _rabbitmq

    return _rabbitmq.SESSION.vhost


@pytest.fixture
def dedicated_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test only, with AOF on (so a restart keeps the data)."""
    server = start_redis_server(tmp_path / "redis", appendonly=True, extra_args=["--appendfsync", "always"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def interactions_csv(tmp_path_factory) -> str:
    """A small planted-community interactions CSV (user,item)."""
    path = tmp_path_factory.mktemp("interactions") / "train.csv"
    community_frame().to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="session")
def trained_model(interactions_csv) -> str:
    """A Node2Vec model trained once on :func:`interactions_csv` and published (its name); copy it with
    :func:`_reliability.copy_version` to get a model of your own."""
    from _reliability import FAST_NODE2VEC

    from recsys.training import train_and_publish

    name = f"src{uuid.uuid4().hex[:8]}"
    train_and_publish(interactions_csv, name=name, algorithm="node2vec", params=FAST_NODE2VEC)
    return name
