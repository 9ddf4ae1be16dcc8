"""The shared serving layer: settings, Redis model registry, hnswlib item index, embedded Redis.

Imports neither torch nor torch_geometric: an application that only serves needs redis, hnswlib, numpy.
"""

from .connection import connect, redact_url
from .embedded import EmbeddedRedis, resolve_redis_url, start_redis_server
from .exceptions import (
    ChecksumError,
    ConfigurationError,
    CorruptManifest,
    CorruptRow,
    EmbeddedRedisError,
    InputNotAllowed,
    IntegrityError,
    InvalidModelData,
    MilvusRefused,
    MilvusUnavailable,
    ModelNotFound,
    RedisAuthFailed,
    RedisFull,
    RedisRefused,
    RedisUnavailable,
    SignatureError,
    VectorStoreError,
    VersionNotFound,
)
from .index import SPACES, ItemIndex
from .registry import ModelRegistry, ModelVersion, VersionInfo
from .rows import RowSeal
from .settings import Settings, get_settings

__all__ = [
    "SPACES",
    "ChecksumError",
    "ConfigurationError",
    "CorruptManifest",
    "CorruptRow",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "InputNotAllowed",
    "IntegrityError",
    "InvalidModelData",
    "ItemIndex",
    "MilvusRefused",
    "MilvusUnavailable",
    "ModelNotFound",
    "ModelRegistry",
    "RowSeal",
    "ModelVersion",
    "RedisAuthFailed",
    "RedisFull",
    "RedisRefused",
    "RedisUnavailable",
    "Settings",
    "SignatureError",
    "VectorStoreError",
    "VersionInfo",
    "VersionNotFound",
    "connect",
    "get_settings",
    "redact_url",
    "resolve_redis_url",
    "start_redis_server",
]
