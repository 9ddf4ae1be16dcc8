"""The model registry: immutable, versioned models in Redis, activated atomically.

Layout under ``<prefix>model:{<name>}:`` (prefix from settings, default ``ea:``)::

    seq                  INCR counter that hands out version numbers
    active               the active version number
    versions             ZSET of complete versions (score = version)
    v:<n>:manifest       JSON: parts (kind, dtype, shape, nbytes, chunks, sha256), meta, created_at, signature
    v:<n>:data           HASH "<part>:<chunk>" -> bytes (arrays as raw float32/int bytes, blobs chunked)
    v:<n>:t:<table>      HASH key -> bytes (per-row data fetched per request, e.g. one user's vector)

A publication writes the data keys with a TTL (so a crashed publisher leaves nothing behind for long),
then, in one MULTI/EXEC, makes them persistent, writes the manifest, adds the version to ``versions``,
moves ``active`` and PUBLISHes a notice on ``<prefix>model:{<name>}:events``. Readers go through the
manifest, which exists only for complete versions, so they never see a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import redis

from ...exceptions import (
    ChecksumError,
    CorruptManifest,
    IntegrityError,
    InvalidModelData,
    ModelNotFound,
    RedisAuthFailed,
    RedisFull,
    RedisRefused,
    RedisUnavailable,
    VectorStoreError,
    VersionNotFound,
)
from ...platform.connection import UNAVAILABLE_ERRORS, connect, redact_url
from ...platform.settings import Settings, get_settings
from ._manifest import DTYPES, parse_manifest, sign
from .leases import Leases
from .rows import TAG_BYTES, RowSeal

if TYPE_CHECKING:
    from ..milvus import MilvusItems

__all__ = ["ModelRegistry", "ModelVersion", "VersionInfo"]

log = logging.getLogger(__name__)

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_DTYPES = DTYPES

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

# Switch the active version and announce it in one step. A script, not MULTI/EXEC: a Redis Cluster client
# refuses PUBLISH inside a transaction (PUBLISH in a script reaches every node's subscribers).
_ACTIVATE = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
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


@dataclass(frozen=True)
class VersionInfo:
    """Summary of one stored version (from its manifest, without loading any data)."""

    model: str
    version: int
    created_at: float
    active: bool
    nbytes: int
    parts: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the version cannot be read (a corrupt manifest), else None


@dataclass(frozen=True)
class ModelVersion:
    """A loaded, checksum-verified model version.

    Attributes:
        model, version: which model and version this is.
        arrays: named numpy arrays (read-only views of the stored bytes).
        blobs: named byte strings (e.g. a serialised index or a torch state_dict).
        meta: the JSON metadata given at publication.
        tables: names of per-key tables (read with :meth:`ModelRegistry.table_get`).
        created_at: publication time (unix seconds).
    """

    model: str
    version: int
    arrays: dict[str, np.ndarray]
    blobs: dict[str, bytes]
    meta: dict[str, Any]
    tables: tuple[str, ...]
    created_at: float


def _check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS or len(name) > 200:
        raise InvalidModelData(f"{what} {name!r} must be 1-200 characters of letters, digits, '-', '_', '.'")
    return name


class ModelRegistry:
    """Publish, activate, list, load and roll back model versions in Redis.

    Args:
        settings: service settings (``get_settings()`` by default): key prefix, versions to keep,
            chunk size, signing key.
        client: a binary-safe ``redis.Redis`` (``connect(settings)`` by default).

    Every method raises :class:`RedisUnavailable` when Redis does not answer.
    """

    def __init__(self, settings: Settings | None = None, client: redis.Redis | None = None) -> None:
        self.settings = settings or get_settings()
        self.client = client if client is not None else connect(self.settings)
        self._commit = self.client.register_script(_COMMIT)
        self._next_version = self.client.register_script(_NEXT_VERSION)
        self._activate = self.client.register_script(_ACTIVATE)

    # -- keys -------------------------------------------------------------------------------------------
    def _key(self, model: str, *parts: object) -> str:
        # The {hash tag} keeps all keys of a model in one Redis Cluster slot (the commit script needs it).
        return ":".join([f"{self.settings.key_prefix}model", f"{{{model}}}", *map(str, parts)])

    def channel(self, model: str) -> str:
        """The pub/sub channel on which activations of ``model`` are announced."""
        return self._key(_check_name("model", model), "events")

    def _redis(self, fn, *args, **kwargs):
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

    # -- publication ------------------------------------------------------------------------------------
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
                (:mod:`vectorstore.store.milvus`; its spec goes into ``meta["milvus"]``); activation and rollback
                move the model's Milvus alias, deletion drops the collection.

        Returns:
            The new version number.

        Raises:
            InvalidModelData: a bad name, dtype, non-finite float array, non-bytes blob or non-JSON meta.
            RedisUnavailable: Redis failed; the active version is untouched and the partial writes expire.
        """
        _check_name("model", model)
        arrays, blobs, tables = dict(arrays or {}), dict(blobs or {}), dict(tables or {})
        meta = dict(meta or {})
        parts: dict[str, dict[str, Any]] = {}
        payload: dict[str, bytes] = {}
        for name, arr in arrays.items():
            parts[name] = self._array_part(name, arr, payload)
        for name, blob in blobs.items():
            parts[_check_name("part", name)] = self._blob_part(name, blob, payload)
        seen = set(parts)
        for name in tables:
            if _check_name("table", name) in seen:
                raise InvalidModelData(f"part name {name!r} is used twice")
        table_parts = {name: self._table_digest(name, rows) for name, rows in tables.items()}
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as exc:
            raise InvalidModelData(f"meta is not JSON-serialisable: {exc}") from None

        version = int(self._redis(self._next_version, keys=[self._key(model, "seq"), self._key(model, "versions"),
                                                            self._key(model, "active")]))
        if milvus_items is not None:
            from ..milvus import publish_collection  # imports pymilvus: only for models that ask for Milvus

            meta["milvus"] = publish_collection(self.settings, model, version, milvus_items)
        data_key = self._key(model, f"v:{version}", "data")
        table_keys = {name: self._key(model, f"v:{version}", f"t:{name}") for name in tables}
        manifest = {
            "model": model,
            "version": version,
            "created_at": time.time(),
            "parts": parts,
            "tables": table_parts,
            "meta": meta,
        }
        if self.settings.signing_key:
            manifest["row_tag"] = TAG_BYTES
            tables = {name: self._seal_rows(model, version, name, rows) for name, rows in tables.items()}
            manifest["signature"] = self._sign(manifest)
        ttl = self.settings.publish_ttl
        try:
            self._write_hash(data_key, payload, ttl)
            for name, rows in tables.items():
                self._write_hash(table_keys[name], dict(rows), ttl)
            notice = json.dumps({"model": model, "version": version, "event": "activated"})
            # A version stored without activation is announced as staged: readers can load it ahead of
            # time, so that a later activate() switches them in milliseconds however large it is.
            staged = json.dumps({"model": model, "version": version, "event": "staged"})
            activated = self._commit(
                keys=[self._key(model, "active"), self._key(model, f"v:{version}", "manifest"),
                      self._key(model, "versions"), self._key(model, "tokens"), data_key, *table_keys.values()],
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
            self._follow_milvus(meta, drop=True)
            log.info("%s: token %s was already published as v%s; nothing new committed", model, token, -activated)
            return -int(activated)
        if activated > 0:
            self._follow_milvus(meta, strict=False)
        self._redis(self.client.sadd, f"{self.settings.key_prefix}models", model)
        log.info("published %s v%s (%d parts, %.1f MB)%s", model, version, len(parts),
                 sum(len(v) for v in payload.values()) / 1e6, " and activated it" if activated > 0 else "")
        self.collect_garbage(model)
        return version

    def _array_part(self, name: str, arr: Any, payload: dict[str, bytes]) -> dict[str, Any]:
        _check_name("part", name)
        if not isinstance(arr, np.ndarray):
            raise InvalidModelData(f"array {name!r} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype.name not in _DTYPES:
            raise InvalidModelData(f"array {name!r} has dtype {arr.dtype}; supported: {sorted(_DTYPES)}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[:3].tolist()
            raise InvalidModelData(f"array {name!r} holds NaN or inf (first at {bad})")
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        part = self._blob_part(name, data, payload)
        part.update(kind="array", dtype=arr.dtype.name, shape=list(arr.shape))
        return part

    def _blob_part(self, name: str, blob: Any, payload: dict[str, bytes]) -> dict[str, Any]:
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise InvalidModelData(f"blob {name!r} must be bytes, got {type(blob).__name__}")
        blob = bytes(blob)
        size = self.settings.chunk_bytes
        chunks = max(1, -(-len(blob) // size))
        for i in range(chunks):
            payload[f"{name}:{i}"] = blob[i * size : (i + 1) * size]
        return {"kind": "blob", "nbytes": len(blob), "chunks": chunks, "sha256": hashlib.sha256(blob).hexdigest()}

    @staticmethod
    def _table_digest(name: str, rows: Mapping[str, bytes]) -> dict[str, Any]:
        digest = hashlib.sha256()
        for key in sorted(rows):
            value = rows[key]
            if not isinstance(key, str) or not isinstance(value, bytes):
                raise InvalidModelData(f"table {name!r} must map str to bytes, got {type(key).__name__} -> "
                                       f"{type(value).__name__}")
            digest.update(len(key).to_bytes(4, "little") + key.encode() + len(value).to_bytes(8, "little") + value)
        return {"kind": "table", "rows": len(rows), "sha256": digest.hexdigest()}

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

    def _sign(self, manifest: Mapping[str, Any]) -> str:
        assert self.settings.signing_key
        return sign(self.settings.signing_key, manifest)

    def _seal_rows(self, model: str, version: int, table: str, rows: Mapping[str, bytes]) -> dict[str, bytes]:
        seal = RowSeal(self.settings.signing_key, model, version, f"t:{table}", tagged=True)
        return {key: seal.seal(key, value) for key, value in rows.items()}

    def row_seal(self, model: str, version: int, name: str, *, derived: bool = False,
                 manifest: Mapping[str, Any] | None = None) -> RowSeal:
        """The :class:`~vectorstore.RowSeal` of a version's table ``name`` (or, with ``derived``, of the
        data derived from it under :meth:`derived_key` ``name``): readers open rows with it, writers of derived
        data seal them. ``manifest``: the version's (verified) manifest, when the caller has it already.

        Raises:
            as :meth:`manifest`.
        """
        if manifest is None:
            manifest = self.manifest(model, version)
        table = f"x:{_check_name('derived', name)}" if derived else f"t:{_check_name('table', name)}"
        return RowSeal(self.settings.signing_key, model, int(version), table,
                       tagged=manifest.get("row_tag") == TAG_BYTES)

    # -- reading ----------------------------------------------------------------------------------------
    def version_for_token(self, model: str, token: str) -> int | None:
        """The version committed with publication ``token``, if any (see :meth:`publish`)."""
        raw = self._redis(self.client.hget, self._key(_check_name("model", model), "tokens"), token)
        try:
            return int(raw) if raw else None
        except ValueError:
            raise CorruptManifest(f"{model!r}: publication token {token[:40]!r} maps to no version number") from None

    def models(self) -> list[str]:
        """Names of all models ever published under this prefix (sorted)."""
        names = self._redis(self.client.smembers, f"{self.settings.key_prefix}models")
        return sorted(n.decode() for n in names)

    def active_version(self, model: str) -> int | None:
        """The active version of ``model``, or ``None`` if it has none."""
        raw = self._redis(self.client.get, self._key(_check_name("model", model), "active"))
        if not raw:
            return None
        try:
            return int(raw)
        except ValueError:
            raise CorruptManifest(f"the active pointer of {model!r} is not a version number") from None

    def manifest(self, model: str, version: int | None = None) -> dict[str, Any]:
        """The manifest of ``version`` (default: active) with its signature verified when a key is set.

        Raises:
            ModelNotFound: no active version. VersionNotFound: no such version.
            SignatureError: a signing key is set and the manifest is unsigned or tampered.
        """
        _check_name("model", model)
        if version is None:
            version = self.active_version(model)
            if version is None:
                raise ModelNotFound(f"model {model!r} has no active version")
        raw = self._redis(self.client.get, self._key(model, f"v:{int(version)}", "manifest"))
        if raw is None:
            if not self._redis(self.client.exists, self._key(model, "seq"), self._key(model, "versions")):
                raise ModelNotFound(f"model {model!r} does not exist")
            raise VersionNotFound(f"model {model!r} has no version {version}")
        return parse_manifest(raw, model, int(version), self.settings.signing_key)

    def versions(self, model: str) -> list[VersionInfo]:
        """Stored versions of ``model``, newest first.

        Raises:
            ModelNotFound: the model was never published.
        """
        _check_name("model", model)
        numbers = self._version_numbers(model)
        if not numbers and not self._redis(self.client.exists, self._key(model, "seq")):
            raise ModelNotFound(f"model {model!r} does not exist")
        active = self.active_version(model)
        keys = [self._key(model, f"v:{n}", "manifest") for n in numbers]
        raws = self._redis(self.client.mget, keys) if keys else []
        out = []
        for number, raw in zip(numbers, raws):
            if raw is None:
                continue
            try:
                m = parse_manifest(raw, model, number, self.settings.signing_key)
            except IntegrityError as exc:  # listed, so that an operator sees it and can roll back past it
                out.append(VersionInfo(model, number, 0.0, number == active, 0, (), {}, problem=str(exc)))
                continue
            nbytes = sum(p["nbytes"] for p in m["parts"].values())
            out.append(VersionInfo(model, number, m["created_at"], number == active, nbytes,
                                   tuple(m["parts"]) + tuple(m.get("tables", {})), m.get("meta", {})))
        return out

    def _version_numbers(self, model: str) -> list[int]:
        """Stored version numbers, newest first (a member that is not a number is skipped, with a warning)."""
        out = []
        for raw in self._redis(self.client.zrevrange, self._key(model, "versions"), 0, -1):
            try:
                out.append(int(raw))
            except ValueError:
                log.warning("%s: the versions set holds a member that is not a version number", model)
        return out

    def load(self, model: str, version: int | None = None, parts: Iterable[str] | None = None) -> ModelVersion:
        """Load ``version`` (default: active) of ``model``, verifying every part's sha256.

        Args:
            parts: names of arrays/blobs to load (default: all). Tables are read with :meth:`table_get`.

        Raises:
            ModelNotFound, VersionNotFound: nothing to load, or the version asked for was deleted while
                being read (the active version is then read again).
            ChecksumError: a part is missing, truncated or altered (the version is refused as a whole).
            SignatureError: see :meth:`manifest`.
        """
        # A newer version became active and the one being read was collected meanwhile: read the active
        # version again. A version asked for by number is simply gone.
        for _ in range(1 if version is not None else 3):
            try:
                return self._load(model, version, parts)
            except _Collected as exc:
                gone = exc.version
        raise VersionNotFound(f"model {model!r} v{gone} was deleted while being read")

    def _load(self, model: str, version: int | None, parts: Iterable[str] | None) -> ModelVersion:
        manifest = self.manifest(model, version)
        version = int(manifest["version"])
        wanted = list(manifest["parts"]) if parts is None else list(parts)
        unknown = [p for p in wanted if p not in manifest["parts"]]
        if unknown:
            raise InvalidModelData(f"{model!r} v{version} has no part {unknown[0]!r}; it has {list(manifest['parts'])}")
        data_key = self._key(model, f"v:{version}", "data")
        fields = [f"{name}:{i}" for name in wanted for i in range(manifest["parts"][name]["chunks"])]
        values = self._redis(self.client.hmget, data_key, fields) if fields else []
        chunks = dict(zip(fields, values))
        arrays: dict[str, np.ndarray] = {}
        blobs: dict[str, bytes] = {}
        for name in wanted:
            spec = manifest["parts"][name]
            pieces = [chunks[f"{name}:{i}"] for i in range(spec["chunks"])]
            if any(p is None for p in pieces):
                if not self._redis(self.client.exists, self._key(model, f"v:{version}", "manifest")):
                    raise _Collected(version)
                raise ChecksumError(f"{model!r} v{version}: part {name!r} is missing chunks")
            blob = b"".join(pieces)
            if len(blob) != spec["nbytes"] or hashlib.sha256(blob).hexdigest() != spec["sha256"]:
                raise ChecksumError(f"{model!r} v{version}: part {name!r} fails its sha256 check")
            if spec.get("kind") == "array":
                arr = np.frombuffer(blob, dtype=np.dtype(spec["dtype"]).newbyteorder("<"))
                arrays[name] = arr.reshape(spec["shape"])
            else:
                blobs[name] = blob
        return ModelVersion(model, version, arrays, blobs, manifest.get("meta", {}),
                            tuple(manifest.get("tables", {})), manifest["created_at"])

    def table_get(self, model: str, version: int, table: str, keys: Sequence[str]) -> list[bytes | None]:
        """Values of ``keys`` in a per-key table of a version (``None`` for a missing key), one round trip."""
        if not keys:
            return []
        seal = self.row_seal(model, version, table)
        raws = self._redis(self.client.hmget, self.table_key(model, version, table), list(keys))
        return [None if raw is None else seal.open(key, raw) for key, raw in zip(keys, raws)]

    def table_key(self, model: str, version: int, table: str) -> str:
        """The Redis hash holding a version's per-key table (for readers that batch their own commands)."""
        return self._key(_check_name("model", model), f"v:{int(version)}", f"t:{table}")

    def read_table(self, model: str, version: int, table: str) -> dict[str, bytes]:
        """A whole per-key table of a version (all rows in one HGETALL: for copies, audits, batch jobs).

        Raises:
            InvalidModelData: the version has no such table.
        """
        manifest = self.manifest(model, version)
        spec = manifest.get("tables", {}).get(table)
        if spec is None:
            raise InvalidModelData(f"{model!r} v{version} has no table {table!r}")
        seal = self.row_seal(model, version, table, manifest=manifest)
        raw = self._redis(self.client.hgetall, self.table_key(model, version, table))
        # An empty table is stored as one placeholder field "_".
        rows = {k.decode(): v for k, v in raw.items() if not (k == b"_" and spec["rows"] == 0)}
        return {key: seal.open(key, value) for key, value in rows.items()}

    def verify_table(self, model: str, version: int, table: str) -> None:
        """Check a whole table against its sha256 (reads all of it; for audits and tests).

        Raises:
            ChecksumError: rows missing, extra or altered.
        """
        spec = self.manifest(model, version)["tables"].get(table)
        if self._table_digest(table, self.read_table(model, version, table)) != spec:
            raise ChecksumError(f"{model!r} v{version}: table {table!r} fails its sha256 check")

    # -- activation and housekeeping -----------------------------------------------------------------
    def activate(self, model: str, version: int) -> None:
        """Make ``version`` the active one (also backwards: this is how a rollback happens) and notify.

        Raises:
            VersionNotFound: the version is not complete or was collected.
        """
        manifest = self.manifest(model, version)  # exists, complete and (with a key) correctly signed
        self._follow_milvus(manifest.get("meta", {}))  # the Milvus alias first: if it fails, nothing switched
        notice = json.dumps({"model": model, "version": int(version), "event": "activated"})
        self._redis(self._activate, keys=[self._key(model, "active")], args=[int(version), self.channel(model), notice])
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
        key = self._key(_check_name("model", model), f"v:{int(version)}", f"x:{_check_name('derived', name)}")
        if register:
            self._redis(self.client.sadd, self._key(model, f"v:{int(version)}", "derived"), key)
        return key

    def derived_keys(self, model: str, version: int) -> list[str]:
        """The derived keys registered for a version (deleted with it)."""
        derived_set = self._key(_check_name("model", model), f"v:{int(version)}", "derived")
        return sorted(k.decode() for k in self._redis(self.client.smembers, derived_set))

    def unregister_derived(self, model: str, version: int, key: str) -> None:
        """Forget a derived key that no longer exists (e.g. a building key renamed into place)."""
        self._redis(self.client.srem, self._key(_check_name("model", model), f"v:{int(version)}", "derived"), key)

    def _drop(self, model: str, version: int) -> None:
        raw = self._redis(self.client.get, self._key(model, f"v:{version}", "manifest"))
        try:
            tables = [str(t) for t in json.loads(raw).get("tables", {})] if raw else []
        except (ValueError, AttributeError):  # a corrupt manifest: its tables cannot be named (they expire never)
            log.warning("%s v%s: corrupt manifest; its per-key tables are not deleted", model, version)
            tables = []
        if raw:
            self._follow_milvus(json.loads(raw).get("meta", {}), drop=True)
        derived_set = self._key(model, f"v:{version}", "derived")
        derived = self.derived_keys(model, version)
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self._key(model, "versions"), version)
        pipe.delete(self._key(model, f"v:{version}", "manifest"), self._key(model, f"v:{version}", "data"),
                    derived_set, *derived, *[self._key(model, f"v:{version}", f"t:{t}") for t in tables])
        self._redis(pipe.execute)

    def _follow_milvus(self, meta: Mapping[str, Any], *, strict: bool = True, drop: bool = False) -> None:
        """Move the model's Milvus alias to (or, with ``drop``, drop) the collection of a version's ``meta``."""
        if not isinstance(meta, Mapping) or not meta.get("milvus"):
            return  # an hnswlib version: pymilvus is never imported
        from .. import milvus

        if drop:
            milvus.drop_collection(self.settings, meta)
        else:
            milvus.follow_activation(self.settings, meta, strict=strict)

    def leases(self, model: str) -> Leases:
        """The leases clients hold on versions of ``model`` they serve (see :mod:`.leases`)."""
        return Leases(self.client, self._key(_check_name("model", model), "leases"), self._redis)

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


class _Collected(Exception):
    """Internal: the version being loaded was deleted (collected) between its manifest and its data."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version
