"""The model registry: immutable, versioned models in Redis, activated atomically.

:class:`ModelRegistry` is the one class callers use. Its body is built from one module per concern:

* :mod:`.publishing`: a new version written, committed and (by default) activated in one script;
* :mod:`.reading`: models, versions, manifests, parts and tables, every one checked before it is trusted;
* :mod:`.lifecycle`: activation and rollback, derived data, leases, deletion and cleanup;
* :mod:`._core`: the settings, the Redis client, the keys (:mod:`.keys`) and Redis failures as typed errors.

The stored formats have their own owners: the manifest (:mod:`._manifest`), the parts (:mod:`._parts`), the
per-row signatures (:mod:`.rows`) and the leases (:mod:`.leases`).
"""

from __future__ import annotations

from .publishing import RegistryPublishing
from .reading import ModelVersion, VersionInfo

__all__ = ["ModelRegistry", "ModelVersion", "VersionInfo"]


class ModelRegistry(RegistryPublishing):
    """Publish, activate, list, load and roll back model versions in Redis.

    Args:
        settings: service settings (``get_settings()`` by default): key prefix, versions to keep,
            chunk size, signing key.
        client: a binary-safe ``redis.Redis`` (``connect(settings)`` by default).

    Attributes:
        settings, client: as given (or made).
        keys: the :class:`~vectorstore.store.registry.keys.ModelKeys` of ``settings.key_prefix``.

    Every method raises :class:`RedisUnavailable` when Redis does not answer.
    """
