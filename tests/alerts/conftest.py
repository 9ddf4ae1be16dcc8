"""Fixtures of the alert tests: isolated key prefixes and a real local HTTP receiver."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vectorstore import connect


@dataclass
class Received:
    key: str
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: ``answer(n, key)`` picks the status of the n-th request (0-based)."""

    url: str = ""
    answer: Callable[[int, str], int] = lambda n, key: 200
    requests: list[Received] = field(default_factory=list)
    arrived: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok_keys(self) -> Counter:
        """Idempotency keys answered with a 2xx, with how many times."""
        with self.lock:
            return Counter(r.key for r in self.requests if 200 <= r.status < 300)

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r.body) for r in self.requests if 200 <= r.status < 300]


@contextlib.contextmanager
def serve() -> Iterator[Receiver]:
    """A :class:`Receiver` listening on a free port of 127.0.0.1 until the block ends."""
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            key = self.headers.get("Idempotency-Key", "")
            with rec.lock:
                n = rec.arrived
                rec.arrived += 1
            status = rec.answer(n, key)  # outside the lock: an answer may take its time
            with rec.lock:
                rec.requests.append(Received(key, status, body, dict(self.headers.items())))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver():
    with serve() as rec:
        yield rec


@pytest.fixture
def second_receiver():
    with serve() as rec:
        yield rec


@pytest.fixture
def third_receiver():
    with serve() as rec:
        yield rec


@pytest.fixture
def alert_settings(settings):
    """Settings with a key prefix of this test's own (under the session's prefix, so it is cleaned up)."""
    return settings.with_(key_prefix=f"{settings.key_prefix}{uuid.uuid4().hex[:8]}:")


@pytest.fixture
def alert_client(alert_settings):
    client = connect(alert_settings)
    yield client
    client.close()
