"""Redis connections from settings, with credentials kept out of logs and errors."""

from __future__ import annotations

import os
import re
import threading
import weakref

import redis

from .embedded import resolve_redis_url
from .settings import Settings, get_settings

__all__ = ["celery_transport_options", "connect", "redact_url"]

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z+]+://)(?P<cred>[^@/]*@)")


def redact_url(url: str) -> str:
    """``url`` with any user/password replaced by ``***``: safe to log or put in an error message."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", url)


def connect(settings: Settings | None = None, *, decode_responses: bool = False) -> redis.Redis:
    """A Redis client for the configured URL (the embedded server when none is set).

    Binary-safe by default (``decode_responses=False``): vectors and index blobs travel as raw bytes.
    """
    settings = settings or get_settings()
    url = resolve_redis_url(settings)
    client = redis.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.socket_timeout,
        health_check_interval=30,
    )
    _pools.add(client.connection_pool)
    return client


# A fork copies a pool's locks as they were: one held by another thread at that moment stays held for good in
# the child, whose first command then waits 5 s and fails (redis-py's ChildDeadlockedError). The child is
# single-threaded right after the fork: give each pool new locks there, before any thread uses it.
_pools: weakref.WeakSet[redis.ConnectionPool] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    for pool in list(_pools):
        for name in ("_lock", "_fork_lock"):
            if hasattr(pool, name):
                setattr(pool, name, threading.RLock())


os.register_at_fork(after_in_child=_new_locks_after_fork)


def celery_transport_options(settings: Settings) -> dict[str, object]:
    """Celery's broker (and result backend) transport options for the service: every producer and worker
    must agree on them, or messages land in other queue keys."""
    return {
        "visibility_timeout": settings.visibility_timeout,
        # Queues live under the service's key prefix, so two deployments can share one Redis.
        "global_keyprefix": f"{settings.key_prefix}celery:",
        # kombu sweeps unacknowledged messages back to their queue every interval x throttle seconds
        # (10 x 10 by default): with a short visibility timeout a crashed worker's job would still wait
        # up to 100 s. Sweep every visibility_timeout / 10 (1 s to 100 s), each sweep a real scan.
        "unacked_restore_interval": max(1, min(100, settings.visibility_timeout // 10)),
        "unacked_restore_throttle": 1,
    }
