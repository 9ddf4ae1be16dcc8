"""One settings object, read from ``EA_*`` environment variables.

Every component takes a :class:`Settings` (or builds one with :func:`get_settings`), so a deployment is
configured in one place. The README's configuration table lists the same variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..exceptions import ConfigurationError
from .env import env_directory as _directory
from .env import env_float as _float
from .env import env_int as _int
from .env import env_switch as _switch
from .env import env_url as _url

__all__ = ["Settings", "get_settings"]

_MB = 1024 * 1024
_REDIS_SCHEMES = ("redis", "rediss", "unix")
# Celery brokers this project is tested with (Redis, RabbitMQ) and the ones kombu also speaks.
_BROKER_SCHEMES = (*_REDIS_SCHEMES, "amqp", "amqps", "pyamqp", "sentinel", "sqs")
_MILVUS_SCHEMES = ("http", "https", "tcp", "unix")


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "embedding-analytics"


@dataclass(frozen=True)
class Settings:
    """Configuration of the service.

    Attributes:
        redis_url: ``EA_REDIS_URL``; ``None`` means the embedded redis-server under ``data_dir``.
        redis_cluster: ``EA_REDIS_CLUSTER``: ``1`` when ``redis_url`` names a node of a Redis Cluster, ``0`` when
            it is a single server; unset (``None``): asked of the server at the first connection. On a cluster
            Celery's broker and result backend must be set apart (``EA_BROKER_URL``, ``EA_RESULT_BACKEND``).
        broker_url: ``EA_BROKER_URL``; Celery's broker, by default the Redis above.
        key_prefix: ``EA_KEY_PREFIX`` (default ``ea:``); every key the service writes starts with it.
        signing_key: ``EA_SIGNING_KEY``; when set, published versions are HMAC-signed and readers refuse
            unsigned or tampered ones. Never logged.
        keep_versions: ``EA_KEEP_VERSIONS`` (default 2); older versions of a model are deleted.
        chunk_bytes: ``EA_CHUNK_BYTES`` (default 8 MiB); large blobs are stored in chunks of this size.
        publish_ttl: ``EA_PUBLISH_TTL`` seconds (default 3600); parts of an unfinished publication expire
            after this, so a crashed publisher leaves no debris.
        data_dir: ``EA_DATA_DIR``; where the embedded Redis keeps its files (and the demo its outputs).
        data_root: ``EA_DATA_ROOT`` (an absolute directory; default unset): when set, workers read the input
            files that jobs name only under it; a path outside (after following ``..`` and symlinks) fails
            the job with ``InputNotAllowed`` (see :func:`vectorstore.platform.inputs.input_path`).
        visibility_timeout: ``EA_VISIBILITY_TIMEOUT`` seconds (default 21600); an unacknowledged Celery
            job is redelivered after this, so it must exceed the longest training job. Values down to 1 s
            are accepted (tests that kill workers use a few seconds); a redelivered job that had already
            published returns its version (publication token), so a too-short value costs work, not data.
        socket_timeout: ``EA_SOCKET_TIMEOUT`` seconds (default 5) for Redis commands.
        request_timeout: ``EA_REQUEST_TIMEOUT`` seconds (default 1) a serving client waits for Redis per
            request; past it Redis counts as not answering and the client's circuit breaker opens (cached users
            are answered from memory at once, the others refused at once, until Redis answers again).
        lease_ttl: ``EA_LEASE_TTL`` seconds (default 60): a serving client's lease on the versions it serves,
            renewed every third of it; version cleanup never deletes a leased version. A client that dies
            without releasing its lease holds it this long.
        result_backend: ``EA_RESULT_BACKEND``; where Celery keeps job states and results (default: the
            Redis above; e.g. the broker's Redis when the registry lives elsewhere).
        task_max_retries: ``EA_TASK_MAX_RETRIES`` (default 5): a job that meets a transient Redis or broker
            error is retried this many times before it fails.
        task_retry_backoff: ``EA_TASK_RETRY_BACKOFF`` seconds (default 2): the first retry waits up to this
            long, doubled per retry (full jitter), capped at ``EA_TASK_RETRY_BACKOFF_MAX`` (default 60).
        train_soft_time_limit, train_time_limit: ``EA_TRAIN_SOFT_TIME_LIMIT`` / ``EA_TRAIN_TIME_LIMIT`` seconds
            (default 4 h / 4 h 10 min) of a training job: past the soft limit the job is interrupted
            (``SoftTimeLimitExceeded``); past the hard one its worker process is ended and the job failed.
            0 turns a limit off.
        task_soft_time_limit, task_time_limit: ``EA_TASK_SOFT_TIME_LIMIT`` / ``EA_TASK_TIME_LIMIT`` seconds
            (default 1800 / 1900): the same for every other job (scoring, precomputation, alert delivery).
        milvus_uri: ``EA_MILVUS_URI`` (default unset): the Milvus that models published with
            ``index_backend="milvus"`` keep their items in: ``http://host:19530`` (Milvus standalone or a
            milvus-lite server) or a local milvus-lite data path ending in ``.db`` (embedded: one process at
            a time).
    """

    redis_url: str | None = None
    redis_cluster: bool | None = None
    broker_url: str | None = None
    key_prefix: str = "ea:"
    signing_key: bytes | None = field(default=None, repr=False)
    keep_versions: int = 2
    chunk_bytes: int = 8 * _MB
    publish_ttl: int = 3600
    data_dir: Path = field(default_factory=_default_data_dir)
    data_root: Path | None = None
    visibility_timeout: int = 6 * 3600
    socket_timeout: float = 5.0
    request_timeout: float = 1.0
    lease_ttl: float = 60.0
    result_backend: str | None = None
    task_max_retries: int = 5
    task_retry_backoff: int = 2
    task_retry_backoff_max: int = 60
    train_soft_time_limit: float = 4 * 3600.0
    train_time_limit: float = 4 * 3600.0 + 600
    task_soft_time_limit: float = 1800.0
    task_time_limit: float = 1900.0
    milvus_uri: str | None = None

    def __post_init__(self) -> None:
        if self.keep_versions < 1:
            raise ConfigurationError(f"keep_versions={self.keep_versions} must be >= 1")
        if self.chunk_bytes < 1024:
            raise ConfigurationError(f"chunk_bytes={self.chunk_bytes} must be >= 1024")
        if not self.key_prefix or any(c.isspace() for c in self.key_prefix):
            raise ConfigurationError(f"key_prefix={self.key_prefix!r} must be non-empty without spaces")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``EA_*`` variables (``os.environ`` by default).

        Raises:
            ConfigurationError: a variable is malformed; the message names the variable and its value
                (credentials redacted, secrets never shown).
        """
        env = dict(os.environ if environ is None else environ)
        key = env.get("EA_SIGNING_KEY") or None
        prefix = env.get("EA_KEY_PREFIX") or "ea:"
        if any(c.isspace() for c in prefix):
            raise ConfigurationError(f"EA_KEY_PREFIX={prefix!r} must not contain spaces")
        values: dict[str, Any] = dict(
            redis_url=_url(env, "EA_REDIS_URL", _REDIS_SCHEMES),
            redis_cluster=_switch(env, "EA_REDIS_CLUSTER"),
            broker_url=_url(env, "EA_BROKER_URL", _BROKER_SCHEMES),
            result_backend=_url(env, "EA_RESULT_BACKEND", _REDIS_SCHEMES),
            key_prefix=prefix,
            signing_key=key.encode() if key else None,
            keep_versions=_int(env, "EA_KEEP_VERSIONS", 2, 1),
            chunk_bytes=_int(env, "EA_CHUNK_BYTES", 8 * _MB, 1024),
            publish_ttl=_int(env, "EA_PUBLISH_TTL", 3600, 10),
            data_dir=Path(env["EA_DATA_DIR"]).expanduser() if env.get("EA_DATA_DIR") else _default_data_dir(),
            data_root=_directory(env, "EA_DATA_ROOT"),
            visibility_timeout=_int(env, "EA_VISIBILITY_TIMEOUT", 6 * 3600, 1),
            socket_timeout=_float(env, "EA_SOCKET_TIMEOUT", 5.0, 0.0, positive=True),
            request_timeout=_float(env, "EA_REQUEST_TIMEOUT", 1.0, 0.0, positive=True),
            lease_ttl=_float(env, "EA_LEASE_TTL", 60.0, 1.0),
            task_max_retries=_int(env, "EA_TASK_MAX_RETRIES", 5, 0),
            task_retry_backoff=_int(env, "EA_TASK_RETRY_BACKOFF", 2, 1),
            task_retry_backoff_max=_int(env, "EA_TASK_RETRY_BACKOFF_MAX", 60, 1),
            train_soft_time_limit=_float(env, "EA_TRAIN_SOFT_TIME_LIMIT", 4 * 3600.0, 0.0),
            train_time_limit=_float(env, "EA_TRAIN_TIME_LIMIT", 4 * 3600.0 + 600, 0.0),
            task_soft_time_limit=_float(env, "EA_TASK_SOFT_TIME_LIMIT", 1800.0, 0.0),
            task_time_limit=_float(env, "EA_TASK_TIME_LIMIT", 1900.0, 0.0),
            milvus_uri=_milvus_uri(env),
        )
        for soft, hard in (("EA_TRAIN_SOFT_TIME_LIMIT", "EA_TRAIN_TIME_LIMIT"),
                           ("EA_TASK_SOFT_TIME_LIMIT", "EA_TASK_TIME_LIMIT")):
            soft_s, hard_s = values[soft[3:].lower()], values[hard[3:].lower()]
            if soft_s and hard_s and hard_s < soft_s:
                raise ConfigurationError(f"{hard}={hard_s:g} must be >= {soft}={soft_s:g} (0 turns a limit off)")
        return cls(**values)

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (settings are immutable)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _milvus_uri(env: dict[str, str]) -> str | None:
    """``EA_MILVUS_URI``: an http(s)/tcp URL, or a milvus-lite data path (made absolute: workers and clients
    started elsewhere must name the same one)."""
    value = (env.get("EA_MILVUS_URI") or "").strip()
    if not value:
        return None
    if "://" in value:
        return _url(env, "EA_MILVUS_URI", _MILVUS_SCHEMES)
    if not value.endswith(".db"):
        raise ConfigurationError(f"EA_MILVUS_URI={value!r} must be a URL (http://host:19530) or a milvus-lite "
                                 "data path ending in .db")
    return str(Path(value).expanduser().absolute())


def get_settings() -> Settings:
    """Settings from the current environment (read anew at each call, cheap)."""
    return Settings.from_env()
