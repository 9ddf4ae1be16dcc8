"""The error tree of the serving layer.

::

    VectorStoreError
    ├── ConfigurationError      a setting has a value that cannot work
    ├── InputNotAllowed         a job names an input file outside the data root (EA_DATA_ROOT)
    ├── RedisUnavailable        Redis did not answer (connection refused, timeout)
    ├── RedisRefused            Redis answered but refused the command
    │   ├── RedisFull           out of memory (maxmemory with noeviction)
    │   └── RedisAuthFailed     wrong credentials, or an ACL user without the permission
    ├── ModelNotFound           no model of that name, or it has no active version
    ├── VersionNotFound         the model exists but not that version
    ├── InvalidModelData        arrays, ids or blobs handed to publish/build are malformed
    ├── IntegrityError          a stored version does not match its manifest
    │   ├── ChecksumError       a part's sha256 differs (corruption, truncation)
    │   ├── SignatureError      the manifest's or a row's HMAC is missing or wrong
    │   ├── CorruptManifest     a manifest that is not one (``{}``, wrong model or version, bad parts)
    │   └── CorruptRow          a per-key row (a user's vector, seen items, top-N list) is malformed
    ├── EmbeddedRedisError      the embedded redis-server could not be started
    ├── MilvusUnavailable       Milvus (EA_MILVUS_URI) did not answer
    └── MilvusRefused           Milvus answered but refused the request (e.g. a filter on an unknown field)
"""

from __future__ import annotations


class VectorStoreError(Exception):
    """Base class of every error raised by :mod:`vectorstore`."""


class ConfigurationError(VectorStoreError, ValueError):
    """A setting (environment variable or argument) has a value that cannot work."""


class InputNotAllowed(VectorStoreError, PermissionError):
    """A job names an input file outside ``EA_DATA_ROOT`` (after following ``..`` and symlinks); nothing of
    it was read. The message names the path and the root."""


class RedisUnavailable(VectorStoreError, ConnectionError):
    """Redis did not answer; the operation was not carried out."""


class RedisRefused(VectorStoreError):
    """Redis answered but refused the command (memory, credentials, permissions, a read-only replica); a retry
    does not cure it until an operator acts. The message names the reason, never the command's arguments."""


class RedisFull(RedisRefused):
    """Redis refused a write: it reached ``maxmemory`` and its policy (``noeviction``) evicts nothing."""


class RedisAuthFailed(RedisRefused, PermissionError):
    """Redis refused the credentials, or the ACL user lacks a permission the command needs."""


class ModelNotFound(VectorStoreError, LookupError):
    """No model of that name exists, or it has no active version."""


class VersionNotFound(VectorStoreError, LookupError):
    """The model exists, but not the requested version (never written, or collected)."""


class InvalidModelData(VectorStoreError, ValueError):
    """Arrays, ids or blobs handed to the registry or the index are malformed."""


class IntegrityError(VectorStoreError):
    """A stored version does not match its manifest; it is refused, never served."""


class ChecksumError(IntegrityError):
    """A part's sha256 differs from the one recorded at publication."""


class SignatureError(IntegrityError):
    """The manifest's HMAC signature is missing or does not verify with ``EA_SIGNING_KEY``."""


class CorruptManifest(IntegrityError):
    """A stored manifest is not a valid one for the model and version it is stored under (``{}``, garbage, a
    manifest of another model or version, parts with impossible sizes); the version is refused."""


class CorruptRow(IntegrityError, ValueError):
    """A per-key row (a user's vector, seen items, top-N list) has the wrong size or values out of range."""


class EmbeddedRedisError(VectorStoreError, RuntimeError):
    """The embedded redis-server could not be started or reached."""


class MilvusUnavailable(VectorStoreError, ConnectionError):
    """The Milvus at ``EA_MILVUS_URI`` did not answer; the operation was not carried out."""


class MilvusRefused(VectorStoreError, ValueError):
    """Milvus answered but refused the request (a filter naming an unknown field, a malformed expression, a
    missing collection); the message carries Milvus' reason."""
