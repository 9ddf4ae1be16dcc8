"""A version's life after publication: activation and rollback, derived data, leases, deletion and cleanup.

Activation switches the ``active`` pointer and announces it in one script. A version is deleted with
everything that belongs to it (manifest, data, tables, derived keys) in one MULTI/EXEC; cleanup keeps the
newest ``EA_KEEP_VERSIONS``, the active one and every version a client holds a lease on. A Milvus-backed
version's collection follows: activation moves the model's alias to it, deletion drops it
(:mod:`vectorstore.store.milvus`).
"""

from __future__ import annotations

import logging

import redis

from ...exceptions import VectorStoreError, VersionNotFound
from ...platform.settings import Settings
from ..milvus import drop_collection, follow_activation
from ._manifest import unchecked_contents
from .keys import check_name
from .leases import Leases
from .notices import ModelNotice
from .reading import RegistryReads

__all__ = ["RegistryLifecycle"]

log = logging.getLogger(__name__)

# Switch the active version and announce it in one step. A script, not MULTI/EXEC: a Redis Cluster client
# refuses PUBLISH inside a transaction (PUBLISH in a script reaches every node's subscribers).
_ACTIVATE = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""


class RegistryLifecycle(RegistryReads):
    """Activation, derived keys, leases and cleanup of :class:`~vectorstore.ModelRegistry` (see there)."""

    def __init__(self, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
        super().__init__(settings, client)
        self._activate = self.client.register_script(_ACTIVATE)

    def activate(self, model: str, version: int) -> None:
        """Make ``version`` the active one (also backwards: this is how a rollback happens) and notify.

        Raises:
            VersionNotFound: the version is not complete or was collected.
        """
        manifest = self.manifest(model, version)  # exists, complete and (with a key) correctly signed
        # The Milvus alias first (a Milvus-backed version): if it fails, nothing switched.
        follow_activation(self.settings, manifest.get("meta", {}))
        notice = ModelNotice(ModelNotice.ACTIVATED, model, int(version)).encode()
        self._redis(self._activate, keys=[self.keys.active(model)], args=[int(version), self.channel(model), notice])
        log.info("activated %s v%s", model, version)

    def rollback(self, model: str, version: int | None = None) -> int:
        """Activate ``version``, or by default the newest version older than the active one.

        Returns:
            The version now active.

        Raises:
            VersionNotFound: there is no older version to roll back to.
        """
        if version is None:
            active = self.active_version(model)
            older = [v.version for v in self.versions(model)
                     if (active is None or v.version < active) and v.problem is None]
            if not older:
                raise VersionNotFound(f"model {model!r} has no version older than v{active} to roll back to")
            version = older[0]
        self.activate(model, version)
        return int(version)

    def delete_version(self, model: str, version: int) -> None:
        """Delete a stored version; the active one cannot be deleted.

        Raises:
            VectorStoreError: ``version`` is active.
        """
        if self.active_version(model) == int(version):
            raise VectorStoreError(f"{model!r} v{version} is active; activate another version first")
        self._drop(model, int(version))

    def derived_key(self, model: str, version: int, name: str, *, register: bool = True) -> str:
        """A key for data derived from a version after publication (e.g. precomputed top-N lists).

        A registered key is deleted together with the version, so derived data never outlives what it
        came from; readers ask with ``register=False``.
        """
        key = self.keys.derived(check_name("model", model), version, check_name("derived", name))
        if register:
            self._redis(self.client.sadd, self.keys.derived_set(model, version), key)
        return key

    def derived_keys(self, model: str, version: int) -> list[str]:
        """The derived keys registered for a version (deleted with it)."""
        derived_set = self.keys.derived_set(check_name("model", model), version)
        return sorted(k.decode() for k in self._redis(self.client.smembers, derived_set))

    def unregister_derived(self, model: str, version: int, key: str) -> None:
        """Forget a derived key that no longer exists (e.g. a building key renamed into place)."""
        self._redis(self.client.srem, self.keys.derived_set(check_name("model", model), version), key)

    def _drop(self, model: str, version: int) -> None:
        manifest_key = self.keys.manifest(model, version)
        raw = self._redis(self.client.get, manifest_key)
        contents = unchecked_contents(raw)
        if raw and contents is None:  # a corrupt manifest: its tables cannot be named (they expire never)
            log.warning("%s v%s: corrupt manifest; its per-key tables are not deleted", model, version)
        tables, meta = contents or ([], {})
        if raw:
            drop_collection(self.settings, meta)
        derived = self.derived_keys(model, version)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.versions(model), version)
        pipe.delete(manifest_key, self.keys.data(model, version), self.keys.derived_set(model, version), *derived,
                    *[self.keys.table(model, version, t) for t in tables])
        self._redis(pipe.execute)

    def leases(self, model: str) -> Leases:
        """The leases clients hold on versions of ``model`` they serve (see :mod:`.leases`)."""
        return Leases(self.client, self.keys.leases(check_name("model", model)), self._redis)

    def collect_garbage(self, model: str) -> list[int]:
        """Delete all but the newest ``keep_versions`` versions, never the active one nor one a client holds a
        live lease on (it is serving it, or has loaded it ahead).

        Returns:
            The versions deleted.
        """
        keep = self.settings.keep_versions
        numbers = self._version_numbers(model)
        active = self.active_version(model)
        leased = self.leases(model).leased()
        dropped = [n for n in numbers[keep:] if n != active and n not in leased]
        for n in dropped:
            self._drop(model, n)
        if dropped:
            log.info("collected %s versions %s", model, dropped)
        return dropped
