"""What every part of the registry stands on: its settings, its Redis client and keys, and Redis failures as
typed errors. :class:`~vectorstore.ModelRegistry` is built up from here (reading, lifecycle, publishing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis

from ...exceptions import RedisAuthFailed, RedisFull, RedisRefused, RedisUnavailable
from ...platform.connection import UNAVAILABLE_ERRORS, connect, redact_url
from ...platform.settings import Settings, get_settings
from .keys import ModelKeys, check_name

__all__ = ["RegistryCore"]

T = TypeVar("T")


class RegistryCore:
    """The registry's settings (``settings``), binary-safe Redis client (``client``) and key builder (``keys``).

    Args:
        settings: service settings (``get_settings()`` by default).
        client: a binary-safe ``redis.Redis`` (``connect(settings)`` by default).
    """

    def __init__(self, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = client if client is not None else connect(self.settings)
        self.keys = ModelKeys(self.settings.key_prefix)

    def channel(self, model: str) -> str:
        """The pub/sub channel on which activations of ``model`` are announced."""
        return self.keys.events(check_name("model", model))

    def _redis(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, a Redis failure raised as :meth:`typed_error`."""
        try:
            return fn(*args, **kwargs)
        except (redis.RedisError, *UNAVAILABLE_ERRORS) as exc:
            raise self.typed_error(exc) from None

    def _where(self) -> str:
        pool = getattr(self.client, "connection_pool", None)  # a cluster client has one pool per node
        return redact_url(str(pool.connection_kwargs.get("host", "redis"))) if pool is not None else "the cluster"

    def typed_error(self, exc: Exception, doing: str = "") -> Exception:
        """The typed error for a Redis failure: refused (memory, credentials, read-only) is told apart from
        did not answer; messages name the reason, never the command (its arguments may be binary data)."""
        where = f"Redis at {self._where()}"
        doing = f"{doing}: " if doing else ""
        if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
            return RedisAuthFailed(f"{doing}{where} refused the credentials or permission ({type(exc).__name__})")
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return RedisFull(f"{doing}{where} is out of memory (maxmemory reached, policy noeviction): "
                             "free memory or raise maxmemory")
        if isinstance(exc, redis.exceptions.ReadOnlyError):
            return RedisRefused(f"{doing}{where} is a read-only replica")
        if isinstance(exc, UNAVAILABLE_ERRORS):  # on a cluster also a failover under way
            return RedisUnavailable(f"{doing}{where} did not answer: {type(exc).__name__}")
        if isinstance(exc, redis.ResponseError):
            # redis-py prefixes a pipeline's error with the command and its arguments: keep Redis's reason only.
            reason = str(exc).rsplit("caused error: ", 1)[-1][:120]
            return RedisRefused(f"{doing}{where} refused the command: {reason!r}")
        return RedisUnavailable(f"{doing}{where} failed: {type(exc).__name__}")
