"""The shared serving layer: settings, Redis model registry, hnswlib item index, embedded Redis.

Imports neither torch nor torch_geometric: an application that only serves needs redis, hnswlib, numpy.
"""

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
from .platform.broker import QUEUES, broker_kind, celery_broker_config
from .platform.connection import (
    UNAVAILABLE_ERRORS,
    celery_broker_url,
    celery_transport_options,
    connect,
    is_cluster,
    redact_url,
)
from .platform.embedded import (
    EmbeddedRedis,
    find_redis_server,
    redis_server_version,
    resolve_redis_url,
    start_redis_server,
)
from .platform.env import env_choice, env_float, env_int, env_url
from .platform.files import open_decompressed, sniff_compression
from .platform.inputs import EXCERPT_CHARS, NulGuard, excerpt, excerpt_values, input_path, plain_header
from .platform.settings import Settings, get_settings
from .store.index.filtered import AllowedIds, by_exact_search
from .store.index.filtered import search as search_allowed
from .store.index.item_index import SPACES, ItemIndex
from .store.index.recall import DEFAULT_TARGET, Probe, measure_recall, tune_index
from .store.index.synthetic import varied_norm_vectors
from .store.milvus import Hits, MilvusItems, MilvusStore
from .store.registry.notices import ModelNotice
from .store.registry.registry import ModelRegistry, ModelVersion, VersionInfo
from .store.registry.rows import RowSeal

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
    "by_exact_search",
    "celery_broker_config",
    "celery_broker_url",
    "celery_transport_options",
    "env_choice",
    "env_float",
    "env_int",
    "env_url",
    "excerpt",
    "excerpt_values",
    "find_redis_server",
    "input_path",
    "is_cluster",
    "measure_recall",
    "open_decompressed",
    "plain_header",
    "redis_server_version",
    "search_allowed",
    "sniff_compression",
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
    "ModelNotice",
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
