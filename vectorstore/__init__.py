"""The shared serving layer: settings, Redis model registry, hnswlib item index, embedded Redis.

Imports neither torch nor torch_geometric: an application that only serves needs redis, hnswlib, numpy.
"""

from .broker import QUEUES, broker_kind, celery_broker_config
from .connection import UNAVAILABLE_ERRORS, celery_broker_url, celery_transport_options, connect, is_cluster, redact_url
from .embedded import EmbeddedRedis, find_redis_server, redis_server_version, resolve_redis_url, start_redis_server
from .env import env_choice, env_float, env_int, env_url
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
from .filtered import AllowedIds
from .filtered import search as search_allowed
from .index import SPACES, ItemIndex
from .inputs import EXCERPT_CHARS, NulGuard, excerpt, input_path, plain_header
from .milvus import Hits, MilvusItems, MilvusStore
from .recall import DEFAULT_TARGET, Probe, measure_recall, tune_index
from .registry import ModelRegistry, ModelVersion, VersionInfo
from .rows import RowSeal
from .settings import Settings, get_settings
from .synthetic import varied_norm_vectors

__all__ = [
    "AllowedIds",
    "DEFAULT_TARGET",
    "EXCERPT_CHARS",
    "Hits",
    "MilvusItems",
    "MilvusStore",
    "NulGuard",
    "Probe",
    "QUEUES",
    "UNAVAILABLE_ERRORS",
    "broker_kind",
    "celery_broker_config",
    "celery_broker_url",
    "celery_transport_options",
    "env_choice",
    "env_float",
    "env_int",
    "env_url",
    "excerpt",
    "find_redis_server",
    "input_path",
    "is_cluster",
    "measure_recall",
    "plain_header",
    "redis_server_version",
    "search_allowed",
    "tune_index",
    "varied_norm_vectors",
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
