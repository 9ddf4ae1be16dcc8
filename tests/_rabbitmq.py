"""The test session's RabbitMQ: a fresh vhost on the server at ``EA_TEST_AMQP_URL``, and what ran on it.

``EA_TEST_AMQP_URL`` defaults to ``amqp://guest:guest@127.0.0.1:5672//``. When ``rabbitmqctl`` can reach
that server, the session makes a vhost of its own (``ea-test-<hex>``, the URL's user given all rights on it)
and deletes it at the end, queues and all; otherwise it uses the URL's vhost as it is and each test deletes
the queues it used.

When no RabbitMQ answers, the tests on it are skipped with a reason that says so (``RABBITMQ NOT TESTED``), and
the session's header and summary repeat it in capitals: never a silent skip. ``EA_TEST_REQUIRE_RABBITMQ=1``
fails them instead (for a CI that has a RabbitMQ).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from urllib.parse import unquote, urlsplit

import pytest

BASE_URL = os.environ.get("EA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
REQUIRED = os.environ.get("EA_TEST_REQUIRE_RABBITMQ", "").strip().lower() in ("1", "true", "yes", "on")
NOT_TESTED = "RABBITMQ NOT TESTED"


def shown(url: str) -> str:
    """``url`` with its password hidden."""
    scheme, _, rest = url.partition("://")
    user, at, host = rest.rpartition("@")
    return f"{scheme}://{user.split(':', 1)[0]}:***@{host}" if at else url


def unreachable(url: str = BASE_URL) -> str | None:
    """None when a RabbitMQ answers at ``url``, else why not (one line)."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.connect()
    except Exception as exc:  # refused, timed out, wrong credentials: all mean "not tested"
        return f"no RabbitMQ answers at {shown(url)} ({type(exc).__name__}: {exc})"
    return None


def _ctl(*args: str) -> bool:
    try:
        return subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SessionBroker:
    """The session's RabbitMQ: :meth:`url` (made on first use), :meth:`close` at the end."""

    def __init__(self) -> None:
        self._url: str | None = None
        self._reason: str | None = None
        self.vhost: str | None = None  # set when the session made its own vhost

    def url(self) -> str:
        """The URL of the session's vhost; skips (fails with ``EA_TEST_REQUIRE_RABBITMQ=1``) the calling test
        when no RabbitMQ answers."""
        if self._url is None and self._reason is None:
            self._reason = unreachable()
            if self._reason is None:
                self._url = self._own_vhost() or BASE_URL
        if self._url is None:
            message = f"{NOT_TESTED}: {self._reason}"
            if REQUIRED:
                pytest.fail(f"{message} (EA_TEST_REQUIRE_RABBITMQ=1)")
            pytest.skip(message)
        return self._url

    def _own_vhost(self) -> str | None:
        parts = urlsplit(BASE_URL)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not shutil.which("rabbitmqctl"):
            return None
        name = f"ea-test-{uuid.uuid4().hex[:8]}"
        if not (_ctl("add_vhost", name) and _ctl("set_permissions", "-p", name, unquote(parts.username or "guest"),
                                                  ".*", ".*", ".*")):
            _ctl("delete_vhost", name)
            return None
        self.vhost = name
        return f"{parts.scheme}://{parts.netloc}/{name}"

    def close(self) -> None:
        if self.vhost:
            _ctl("delete_vhost", self.vhost)
            self.vhost = None

    def header(self) -> str:
        """One line for the session's header."""
        reason = unreachable()
        if reason:
            return f"rabbitmq: {NOT_TESTED}: {reason}: the amqp broker tests will be skipped"
        return f"rabbitmq: {shown(BASE_URL)} answers: the amqp broker tests run (on a vhost of this session)"


SESSION = SessionBroker()


def summary(stats: dict[str, list]) -> list[str]:
    """Lines for the session's summary: how many amqp tests ran, or that none did and why.

    Under pytest-xdist the reports come from the workers (each with a vhost of its own; a test id may end in
    ``@group``), and this process made no vhost: it names the server."""
    def amqp(outcome: str) -> list:
        return [r for r in stats.get(outcome, []) if "[amqp]" in getattr(r, "nodeid", "")]

    ran = [r for r in amqp("passed") + amqp("failed") if r.when == "call"]
    skipped = [r for r in amqp("skipped") if NOT_TESTED in str(getattr(r, "longrepr", ""))]
    if skipped:
        reason = SESSION._reason or unreachable() or "see the skip reasons"
        return [f"{NOT_TESTED}: {len(skipped)} broker test(s) on RabbitMQ were SKIPPED: {reason}",
                "(start a RabbitMQ on 127.0.0.1:5672, or set EA_TEST_AMQP_URL; EA_TEST_REQUIRE_RABBITMQ=1 fails "
                "instead of skipping)"]
    if ran:
        where = shown(SESSION._url) if SESSION._url else f"{shown(BASE_URL)} (a vhost per test session)"
        return [f"rabbitmq: {len(ran)} broker test(s) ran on {where}"]
    return []
