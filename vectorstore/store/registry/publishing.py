"""Publishing a version: every part written, then committed and (by default) activated in one script.

A publication writes the data keys with a TTL (so a crashed publisher leaves nothing behind for long), then,
in one script, makes them persistent, writes the manifest, adds the version to ``versions``, moves
``active`` and PUBLISHes a notice on the model's ``events`` channel. Readers go through the manifest, which
exists only for complete versions, so they never see a half-written one. With ``EA_SIGNING_KEY`` set the
manifest is signed and every row of every table carries its own tag (:mod:`.rows`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import redis

from ...exceptions import InvalidModelData, RedisUnavailable
from ...platform.connection import UNAVAILABLE_ERRORS
from ...platform.settings import Settings
from ..milvus import MilvusItems, drop_collection, follow_activation, publish_collection
from ._manifest import new_manifest
from ._parts import array_part, blob_part, table_digest
from .keys import check_name, table_label
from .lifecycle import RegistryLifecycle
from .notices import ModelNotice
from .rows import RowSeal

__all__ = ["RegistryPublishing"]

log = logging.getLogger(__name__)

# Activate a version only if it is newer than the active one: two concurrent publications of the same
# model thus end with the higher version active, whatever order their commits arrive in. A publication
# token (a job id) commits at most once: a redelivered job finds its version instead of adding another.
_COMMIT = """
if ARGV[6] ~= '' then
  local done = tonumber(redis.call('HGET', KEYS[4], ARGV[6]) or '')  -- garbage: as if not committed
  if done then return -done end
end
local active = tonumber(redis.call('GET', KEYS[1]) or '0') or 0  -- a garbage pointer counts as none
local version = tonumber(ARGV[1])
for i = 5, #KEYS do redis.call('PERSIST', KEYS[i]) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[3], version, ARGV[1])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[4], ARGV[6], ARGV[1]) end
if ARGV[3] == '1' and version > active then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 1
end
redis.call('PUBLISH', ARGV[4], ARGV[7])
return 0
"""

# The next version number: one more than the counter, and than every version stored or active, so that a lost
# (or garbage) counter never hands out a number again (which would overwrite a stored version's data).
_NEXT_VERSION = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local newest = tonumber(redis.call('ZREVRANGE', KEYS[2], 0, 0)[1] or '0') or 0
local active = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
local version = math.max(seq, newest, active) + 1
redis.call('SET', KEYS[1], version)
return version
"""


class RegistryPublishing(RegistryLifecycle):
    """Publication of :class:`~vectorstore.ModelRegistry` (see there)."""

    def __init__(self, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
        super().__init__(settings, client)
        self._commit = self.client.register_script(_COMMIT)
        self._next_version = self.client.register_script(_NEXT_VERSION)

    def publish(
        self,
        model: str,
        *,
        arrays: Mapping[str, np.ndarray] | None = None,
        blobs: Mapping[str, bytes] | None = None,
        tables: Mapping[str, Mapping[str, bytes]] | None = None,
        meta: Mapping[str, Any] | None = None,
        activate: bool = True,
        token: str | None = None,
        milvus_items: MilvusItems | None = None,
    ) -> int:
        """Write a new immutable version of ``model`` and (by default) make it the active one.

        Args:
            model: model name (letters, digits, ``-_.``).
            arrays: named numeric arrays, stored as raw bytes with dtype and shape.
            blobs: named byte strings, stored in chunks of ``settings.chunk_bytes``.
            tables: named mappings key -> bytes, for data read a few keys at a time.
            meta: JSON-serialisable metadata, returned as is by :meth:`load`.
            activate: switch the ``active`` pointer to this version (only if newer than the active one);
                otherwise the version is announced as ``staged`` (readers may preload it) and
                :meth:`activate` switches to it later.
            token: an idempotency token (e.g. the Celery job id): if a version was already committed with
                it, nothing new is committed and that version is returned.
            milvus_items: items written into a Milvus collection of this version before the commit
                (:mod:`vectorstore.store.milvus`; its spec goes into ``meta["milvus"]``); activation and
                rollback move the model's Milvus alias, deletion drops the collection.

        Returns:
            The new version number.

        Raises:
            InvalidModelData: a bad name, dtype, non-finite float array, non-bytes blob or non-JSON meta.
            RedisUnavailable: Redis failed; the active version is untouched and the partial writes expire.
        """
        check_name("model", model)
        arrays, blobs, tables = dict(arrays or {}), dict(blobs or {}), dict(tables or {})
        meta = dict(meta or {})
        parts: dict[str, dict[str, Any]] = {}
        payload: dict[str, bytes] = {}
        chunk_bytes = self.settings.chunk_bytes
        for name, arr in arrays.items():
            parts[name] = array_part(name, arr, payload, chunk_bytes)
        for name, blob in blobs.items():
            parts[check_name("part", name)] = blob_part(name, blob, payload, chunk_bytes)
        seen = set(parts)
        for name in tables:
            if check_name("table", name) in seen:
                raise InvalidModelData(f"part name {name!r} is used twice")
        table_parts = {name: table_digest(name, rows) for name, rows in tables.items()}
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise InvalidModelData(f"meta is not JSON-serialisable: {exc}") from None

        version = int(self._redis(self._next_version, keys=[self.keys.seq(model), self.keys.versions(model),
                                                            self.keys.active(model)]))
        if milvus_items is not None:
            meta["milvus"] = publish_collection(self.settings, model, version, milvus_items)
        data_key = self.keys.data(model, version)
        table_keys = {name: self.keys.table(model, version, name) for name in tables}
        manifest = new_manifest(model, version, parts, table_parts, meta, self.settings.signing_key)
        if self.settings.signing_key:
            tables = {name: self._seal_rows(model, version, name, rows) for name, rows in tables.items()}
        ttl = self.settings.publish_ttl
        try:
            self._write_hash(data_key, payload, ttl)
            for name, rows in tables.items():
                self._write_hash(table_keys[name], dict(rows), ttl)
            notice = ModelNotice(ModelNotice.ACTIVATED, model, version).encode()
            # A version stored without activation is announced as staged: readers can load it ahead of
            # time, so that a later activate() switches them in milliseconds however large it is.
            staged = ModelNotice(ModelNotice.STAGED, model, version).encode()
            activated = self._commit(
                keys=[self.keys.active(model), self.keys.manifest(model, version), self.keys.versions(model),
                      self.keys.tokens(model), data_key, *table_keys.values()],
                args=[version, json.dumps(manifest), int(activate), self.channel(model), notice, token or "", staged],
            )
        except UNAVAILABLE_ERRORS as exc:
            if isinstance(exc, redis.AuthenticationError):
                raise self.typed_error(exc, f"publish of {model!r} v{version} failed") from None
            log.warning("publish of %s v%s failed (%s); its partial writes expire in %ss",
                        model, version, type(exc).__name__, ttl)
            raise RedisUnavailable(f"publish of {model!r} v{version} failed: Redis did not answer") from None
        except redis.RedisError as exc:
            # Refused (out of memory, permissions): Redis still answers, so remove what this publication
            # staged now rather than leave it holding memory until it expires (blocking the next publication).
            error = self.typed_error(exc, f"publish of {model!r} v{version} failed")
            try:
                self.client.delete(data_key, *table_keys.values())
                log.warning("%s; its partial writes were removed", error)
            except redis.RedisError:
                log.warning("%s; its partial writes expire in %ss", error, ttl)
            raise error from None
        # redis-py retries a command whose connection dropped: if the commit ran but its reply was lost,
        # the retry finds this publication's own token and answers -version. That is our commit, not an
        # earlier one: its data must not be deleted.
        if activated < 0 and -int(activated) != version:
            self._redis(self.client.delete, data_key, *table_keys.values())
            drop_collection(self.settings, meta)
            log.info("%s: token %s was already published as v%s; nothing new committed", model, token, -activated)
            return -int(activated)
        if activated > 0:
            follow_activation(self.settings, meta, strict=False)
        self._redis(self.client.sadd, self.keys.models(), model)
        log.info("published %s v%s (%d parts, %.1f MB)%s", model, version, len(parts),
                 sum(len(v) for v in payload.values()) / 1e6, " and activated it" if activated > 0 else "")
        self.collect_garbage(model)
        return version

    def _write_hash(self, key: str, mapping: dict[str, bytes], ttl: int) -> None:
        # Batches bounded by bytes so that no single request to Redis grows without limit.
        pipe = self.client.pipeline(transaction=False)
        pending = 0
        batch: dict[str, bytes] = {}
        for field_name, value in mapping.items():
            batch[field_name] = value
            pending += len(value) + len(field_name)
            if pending >= 32 * 1024 * 1024 or len(batch) >= 5000:
                pipe.hset(key, mapping=batch)
                pipe.expire(key, ttl)  # with every batch: a publisher dying after this one leaves no debris
                pipe.execute()
                batch, pending = {}, 0
        if batch:
            pipe.hset(key, mapping=batch)
        if not mapping:
            pipe.hset(key, "_", b"")
        pipe.expire(key, ttl)
        pipe.execute()

    def _seal_rows(self, model: str, version: int, table: str, rows: Mapping[str, bytes]) -> dict[str, bytes]:
        seal = RowSeal(self.settings.signing_key, model, version, table_label(table), tagged=True)
        return {key: seal.seal(key, value) for key, value in rows.items()}
