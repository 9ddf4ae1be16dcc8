"""Redis connections from settings, with credentials kept out of logs and errors."""

from __future__ import annotations

import re

import redis

from .embedded import resolve_redis_url
from .settings import Settings, get_settings

__all__ = ["connect", "redact_url"]

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
    return redis.Redis.from_url(
        url,
        decode_responses=decode_responses,
        socket_timeout=settings.socket_timeout,
        socket_connect_timeout=settings.socket_timeout,
        health_check_interval=30,
    )
