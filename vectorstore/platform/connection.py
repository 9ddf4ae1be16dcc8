"""Redis connections from settings, with credentials kept out of logs and errors."""

from __future__ import annotations

import os
import re
import threading
import weakref
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from ..exceptions import ConfigurationError
from .embedded import resolve_redis_url
from .settings import Settings, get_settings

__all__ = ["UNAVAILABLE_ERRORS", "celery_broker_url", "celery_transport_options", "connect", "is_cluster",
           "redact_url"]

#: Redis errors that mean "no answer now, ask again soon": a lost connection or a timeout, and on a cluster a
#: failover under way (the slot's master is down and no replica has taken over yet, or a slot is moving).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError, redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError,
)

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z+]+://)(?P<cred>[^@/]*@)")


def redact_url(url: str) -> str:
    """``url`` with any user/password replaced by ``***``: safe to log or put in an error message."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('scheme')}***@", url)


def connect(settings: Settings | None = None, *, decode_responses: bool = False) -> redis.Redis:
    """A Redis client for the configured URL (the embedded server when none is set): the one factory of the
    service's connections.

    When the URL names a node of a Redis Cluster (``EA_REDIS_CLUSTER=1``, or the server says so when the
    switch is unset) the client is a ``redis.cluster.RedisCluster``: the same commands, each sent to the
    master of its key's slot, the topology followed through failovers. Every multi-key command, transaction
    and script of the service keeps its keys in one slot (hash tags, see docs/architecture.md).

    Binary-safe by default (``decode_responses=False``): vectors and index blobs travel as raw bytes.

    Raises:
        ConfigurationError: the URL names a cluster node with a database other than 0 (a cluster has only 0).
    """
    settings = settings or get_settings()
    url = resolve_redis_url(settings)
    options: dict[str, Any] = dict(decode_responses=decode_responses, socket_timeout=settings.socket_timeout,
                                   socket_connect_timeout=settings.socket_timeout)
    if is_cluster(settings):
        return cast(redis.Redis, _cluster_client(url, options))  # duck-typed: RedisCluster has Redis's commands
    client = redis.Redis.from_url(url, health_check_interval=30, **options)
    _pools.add(client.connection_pool)
    return client


def is_cluster(settings: Settings | None = None) -> bool:
    """Whether the service's Redis is a cluster: ``EA_REDIS_CLUSTER`` when set, else what the server's
    ``INFO cluster`` says (asked once per URL and process; the embedded server never is one)."""
    settings = settings or get_settings()
    if settings.redis_cluster is not None:
        return settings.redis_cluster
    if not settings.redis_url:
        return False
    url = settings.redis_url
    known = _detected.get(url)
    if known is None:
        # A short probe: a server that hangs must not hold up every connect() for the whole socket timeout
        # (set EA_REDIS_CLUSTER to skip the probe).
        wait = min(settings.socket_timeout, 1.0)
        probe = redis.Redis.from_url(url, socket_timeout=wait, socket_connect_timeout=wait)
        try:
            known = bool(probe.info("cluster").get("cluster_enabled"))
        except redis.ResponseError:  # INFO refused (an ACL without it): only the switch can say
            known = False
        except (redis.ConnectionError, redis.TimeoutError):
            return False  # not answering now: the plain client reports that; ask again next time
        finally:
            probe.close()
        _detected[url] = known
    return known


_detected: dict[str, bool] = {}


def _cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    db = int(redis.connection.parse_url(url).get("db", 0))
    if db != 0:
        raise ConfigurationError(f"EA_REDIS_URL={redact_url(url)!r} names database {db}; a Redis Cluster has only "
                                 "database 0")
    # A master that dies is replaced by its replica after the cluster's node timeout: retry for a few seconds
    # (the client reloads the slot map between tries) before the error reaches the caller.
    client = RedisCluster.from_url(url, retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), 8),
                                   **options)
    _clusters.add(client)
    return client


# A fork copies a pool's locks as they were: one held by another thread at that moment stays held for good in
# the child, whose first command then waits 5 s and fails (redis-py's ChildDeadlockedError). The child is
# single-threaded right after the fork: give each pool new locks there, before any thread uses it.
_pools: weakref.WeakSet[redis.ConnectionPool] = weakref.WeakSet()
_clusters: weakref.WeakSet[RedisCluster] = weakref.WeakSet()


def _new_locks_after_fork() -> None:
    pools = list(_pools)
    for cluster in list(_clusters):
        # A cluster client has locks of its own (slot map, initialisation) and one pool per node.
        manager = getattr(cluster, "nodes_manager", None)
        lock = threading.RLock()
        if manager is not None and getattr(manager, "_lock", None) is getattr(cluster, "_lock", None):
            manager._lock = lock
        elif manager is not None:
            manager._lock = threading.RLock()
        cluster._lock = lock
        if manager is not None:
            manager._initialization_lock = threading.RLock()
            pools += [node.redis_connection.connection_pool for node in list(manager.nodes_cache.values())
                      if node.redis_connection is not None]
    for pool in pools:
        for name in ("_lock", "_fork_lock"):
            if hasattr(pool, name):
                setattr(pool, name, threading.RLock())


os.register_at_fork(after_in_child=_new_locks_after_fork)


def celery_broker_url(settings: Settings) -> str:
    """Celery's broker: ``EA_BROKER_URL``, else the service's Redis, unless that is a cluster.

    Raises:
        ConfigurationError: the service's Redis is a cluster and ``EA_BROKER_URL`` is unset (kombu's Redis
            transport speaks no cluster protocol: its commands span slots).
    """
    if settings.broker_url:
        return settings.broker_url
    if is_cluster(settings):
        raise ConfigurationError("EA_REDIS_URL names a Redis Cluster, which Celery cannot use as its broker: set "
                                 "EA_BROKER_URL (RabbitMQ, or a single Redis)")
    return resolve_redis_url(settings)


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
