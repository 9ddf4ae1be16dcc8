"""``CatalogueWriter``: deltas on a model's active version for applications that update inline.

::

    writer = CatalogueWriter("shop", redis_url)
    writer.upsert_items([{"id": "sku-9", "vector": v}, {"id": "sku-10", "users": ["u1", "u7"]}])
    writer.delete_items(["sku-3"])                      # never recommended again, at once
    writer.update_users({"u1": ["sku-9", "sku-4"]})     # vector folded in, seen items extended
    writer.update_metadata({"sku-9": {"in_stock": False}})

A version whose items are a Milvus collection (``index_backend="milvus"``) has its deletions and field updates
written to the collection too, before the log entry (:mod:`recsys._delta_milvus`); item upserts raise
:class:`~recsys.exceptions.UnsupportedDelta`.

Each call checks its input against the version as its log leaves it, then appends one entry to the log
and notifies clients in one Redis script (:mod:`recsys.deltas` has the format). A write with a ``token``
that was already written returns the first write's receipt (Celery redeliveries write once). A write aimed
at the active version that finds another version active (a training finished meanwhile) is checked again
against that version and written there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from vectorstore import (
    ModelNotFound,
    ModelRegistry,
    RedisUnavailable,
    RowSeal,
    Settings,
    VersionNotFound,
    get_settings,
)

from . import _delta_milvus as _milvus
from ._delta_apply import Catalogue
from ._delta_checks import delta_ids as _ids
from ._delta_checks import field_values as _metadata
from ._delta_checks import positive as _positive
from ._delta_checks import vector as _vector
from .data.ids import check_id
from .deltas import (
    DELTA_TOKENS,
    DELTA_USERS,
    DELTAS,
    decode_user_row,
    delta_seals,
    encode_user_row,
    read_log,
    sign_body,
)
from .exceptions import InvalidDelta, ModelUnavailable, UnknownItem, UnknownUser
from .publish.wire import decode_ids, decode_vector

__all__ = ["CatalogueWriter", "DeltaReceipt"]

log = logging.getLogger(__name__)

# KEYS: stream, tokens, manifest, active, users. ARGV: version, body, tag, token, channel, notice prefix,
# pinned ('1': the version was named, '' : it must be the active one), then (user, row it was computed from
# or '', new row) triples. One round trip per write; a user row another writer changed meanwhile (-3) or a
# new active version (-2) sends the writer back to read and compute again (writers never lose an update).
_APPEND = """
if ARGV[4] ~= '' then
  local done = redis.call('HGET', KEYS[2], ARGV[4])
  if done then return {0, done} end
end
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, ''} end
local active = redis.call('GET', KEYS[4]) or ''
if ARGV[7] == '' and active ~= ARGV[1] then return {-2, active} end
for i = 8, #ARGV, 3 do
  if (redis.call('HGET', KEYS[5], ARGV[i]) or '') ~= ARGV[i + 1] then return {-3, ARGV[i]} end
end
local id = redis.call('XADD', KEYS[1], '*', 'body', ARGV[2], 'tag', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], id) end
for i = 8, #ARGV, 3 do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 2]) end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. id .. '"}')
return {1, id}
"""


@dataclass(frozen=True)
class DeltaReceipt:
    """A written delta: which version's log holds it, its entry id, what it did, whether it was a repeat."""

    model: str
    version: int
    id: str
    op: str
    count: int
    duplicate: bool = False


@dataclass
class _Version:
    version: int
    catalogue: Catalogue
    stream: str
    tokens: str
    users: str
    cosine: bool  # scoring vectors (items' and users') are stored L2-normalised
    milvus: dict | None  # its Milvus collection's spec: deletions and field updates go there too
    seals: tuple[RowSeal, RowSeal, RowSeal, RowSeal]  # log entries, rewritten users, published vectors, seen

    def scoring(self, vector: Any) -> np.ndarray:
        """A scoring vector as the version stores them."""
        vector = np.asarray(vector, dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12) if self.cosine else vector


class CatalogueWriter:
    """Write deltas to a model's active version (or to ``version``).

    Args:
        model: the model name.
        redis_url: the service's Redis (default ``EA_REDIS_URL``); ``settings`` overrides it.
        version: write to this version instead of the active one.

    Every method raises :class:`~recsys.exceptions.ModelUnavailable` when the model or version does not
    exist (naming it), and ``vectorstore.RedisUnavailable`` when Redis does not answer; nothing is written
    when an input is refused.
    """

    def __init__(self, model: str = "default", redis_url: str | None = None, *, version: int | None = None,
                 settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        if redis_url:
            settings = settings.with_(redis_url=redis_url)
        self.registry = ModelRegistry(settings)
        self.name = model
        self.pinned = version
        self._state: _Version | None = None
        self._lock = threading.Lock()  # one write at a time (a worker's threads share a writer)
        self._append = self.registry.client.register_script(_APPEND)

    # -- the version and its catalogue ---------------------------------------------------------------------
    def _load(self, version: int | None) -> _Version:
        try:
            manifest = self.registry.manifest(self.name, version)
        except (ModelNotFound, VersionNotFound) as exc:
            raise ModelUnavailable(f"cannot write deltas: {exc}") from None
        number = int(manifest["version"])
        if manifest.get("meta", {}).get("kind") != "recsys":
            raise ModelUnavailable(f"{self.name!r} v{number} is not a recommendation model")
        parts = [p for p in ("item_ids", "item_vectors", "fold_in_vectors", "item_popularity", "item_metadata")
                 if p in manifest["parts"]]
        mv = self.registry.load(self.name, number, parts=parts)
        metadata = json.loads(mv.blobs["item_metadata"]) if "item_metadata" in mv.blobs else {}
        catalogue = Catalogue(np.asarray(json.loads(mv.blobs["item_ids"]), dtype=object), mv.arrays["item_vectors"],
                              mv.arrays.get("fold_in_vectors"), mv.arrays["item_popularity"], metadata)
        stream, tokens, users = (self.registry.derived_key(self.name, number, n)
                                 for n in (DELTAS, DELTA_TOKENS, DELTA_USERS))
        entries, rewritten = delta_seals(self.registry, self.name, number)
        vectors, seen = (self.registry.row_seal(self.name, number, table, manifest=manifest)
                         for table in ("user_vectors", "seen"))
        return _Version(number, catalogue, stream, tokens, users, cosine=manifest["meta"].get("space") == "cosine",
                        milvus=manifest["meta"].get("milvus") or None, seals=(entries, rewritten, vectors, seen))

    def _current(self, refresh: bool = True) -> _Version:
        """The version written to, its catalogue caught up with its log (``refresh=False``: as last seen; the
        write script tells when that is stale)."""
        if self._state is not None and not refresh:
            return self._state
        version = self.pinned if self.pinned is not None else self.registry.active_version(self.name)
        if version is None:
            raise ModelUnavailable(f"cannot write deltas: model {self.name!r} has no active version")
        if self._state is None or self._state.version != version:
            self._state = self._load(version)
        state = self._state
        self._catch_up(state)
        return state

    def _catch_up(self, state: _Version) -> None:
        """Apply the log's entries newer than the catalogue's, in the log's order (the clients' order: a new
        item's position is its place in it, whichever writer added it)."""
        for entry in read_log(self.registry, self.name, state.version, state.catalogue.last_id, seal=state.seals[0]):
            state.catalogue.apply(entry.body)
            state.catalogue.last_id = entry.id

    @property
    def version(self) -> int:
        """The version the next write goes to."""
        return self._current().version

    def _write(self, op: str, build: Any, token: str | None) -> DeltaReceipt:
        """Check the input against the current version (``build(state) -> (payload, count, user rows)``) and
        append it; once more against the new version if another became active meanwhile."""
        with self._lock:
            return self._write_locked(op, build, token)

    def _write_locked(self, op: str, build: Any, token: str | None) -> DeltaReceipt:
        stale = False
        for _ in range(8):
            state = self._current(refresh=stale)
            done = _answered(self.registry.client.hget, state.tokens, token) if token else None
            if done is not None:  # written before (a redelivered job): checking it again could only fail
                return DeltaReceipt(self.name, state.version, done.decode(), op, 0, duplicate=True)
            if state.milvus and op == "upsert_items":
                _milvus.check(state.milvus, f"model {self.name!r} v{state.version}", op, {})
            try:
                payload, count, rows = build(state)
            except (UnknownItem, UnknownUser):
                if stale:
                    raise
                stale = True  # another writer may have added it: read the log and check again
                continue
            body = json.dumps({"op": op, "model": self.name, "version": state.version, "uid": uuid.uuid4().hex,
                               "at": time.time(), **payload}, separators=(",", ":")).encode()
            notice = json.dumps({"model": self.name, "version": state.version, "event": "delta"})[:-1] + ', "id": "'
            if state.milvus:  # the collection changed before the log says so (recsys._delta_milvus)
                _milvus.check(state.milvus, f"model {self.name!r} v{state.version}", op, payload)
                _milvus.write(self.registry.settings, state.milvus, state.catalogue, op, payload)
            manifest, active = _version_keys(self.registry, self.name, state.version)
            args: list[Any] = [state.version, body, sign_body(state.seals[0], body),
                               token or "", self.registry.channel(self.name), notice,
                               "1" if self.pinned is not None else ""]
            for user, old, row in rows:
                args += [user, old or b"", row]
            status, value = _answered(self._append, keys=[state.stream, state.tokens, manifest, active, state.users],
                                      args=args)
            if status == -1:
                raise ModelUnavailable(f"model {self.name!r} v{state.version} was deleted")
            if status in (-2, -3):  # another version is active, or another writer changed a user: again
                if status == -2:
                    log.info("%s: v%s is no longer active (v%s is); writing there", self.name, state.version,
                             value.decode() if value else None)
                stale = True
                continue
            entry = value.decode()
            if status == 1:  # read the log up to our entry: others' entries before it came first for clients too
                self._catch_up(state)
            return DeltaReceipt(self.name, state.version, entry, op, count, duplicate=status == 0)
        raise ModelUnavailable(f"model {self.name!r}: the active version or the users' rows kept changing; "
                               "write again")

    # -- operations -----------------------------------------------------------------------------------------
    def upsert_items(self, items: Iterable[Mapping[str, Any]], *, token: str | None = None) -> DeltaReceipt:
        """Add items or replace their vectors (a deleted item comes back).

        Each item is ``{"id", "vector"}`` (the scoring vector; optional ``"fold_in"``, its fold-in vector,
        for a model that has them, else the scoring vector stands in) or ``{"id", "users": [...]}``: folded
        in from the users who interacted with it (in each space, the mean over those users of their items'
        mean vector: the centre of what its users chose). Optional ``"metadata": {field: value}``.

        Raises:
            InvalidDelta: no items, an item without a vector or users, a vector of the wrong dimension or
                with NaN/inf, a bad metadata value (each names the item).
            UnknownUser: none of an item's users is known (names them).
        """
        items = list(items)
        if not items:
            raise InvalidDelta("upsert_items: no items given")

        def build(state: _Version) -> tuple[dict, int, list]:
            out = [self._item(state, item) for item in items]
            return {"items": out}, len(out), []

        return self._write("upsert_items", build, token)

    def delete_items(self, items: Iterable[str | int], *, token: str | None = None) -> DeltaReceipt:
        """Delete items: no client returns them from then on (recommendations, similar items, fold-in,
        precomputed lists, popular items).

        Raises:
            UnknownItem: an item the version does not hold, or already deleted (names it).
        """
        names = _ids(items, "item")

        def build(state: _Version) -> tuple[dict, int, list]:
            self._require_live(state, names)
            return {"items": names}, len(names), []

        return self._write("delete_items", build, token)

    def update_users(self, interactions: Mapping[str | int, Iterable[str | int]] | Mapping[str, Any],
                     *, weights: Mapping[str, Sequence[float]] | None = None,
                     token: str | None = None) -> DeltaReceipt:
        """Record new interactions: each user's vector takes the items' fold-in vectors in (a user the model
        does not know gets the mean of them) and their seen items grow; the next training learns them.

        Args:
            interactions: ``{user: [item, ...]}``.
            weights: optional ``{user: [weight per item]}`` (finite, > 0; default 1), kept for training.

        Raises:
            UnknownItem: an item the version does not hold (or deleted), naming user and item.
            InvalidDelta: no interactions, or a bad weight.
        """
        if not isinstance(interactions, Mapping) or not interactions:
            raise InvalidDelta("update_users: give {user: [item, ...]} with at least one user")
        wanted = {check_id(u, "user"): _ids(v, "item") for u, v in interactions.items()}
        given = {check_id(u, "user"): list(w) for u, w in (weights or {}).items()}
        for user, w in given.items():
            if user not in wanted or len(w) != len(wanted[user]) or not all(_positive(x) for x in w):
                raise InvalidDelta(f"update_users: weights of user {user!r} must be one finite number > 0 per item")

        def build(state: _Version) -> tuple[dict, int, list]:
            return self._users(state, wanted, given)

        return self._write("update_users", build, token)

    def update_metadata(self, items: Mapping[str | int, Mapping[str, Any]], *,
                        token: str | None = None) -> DeltaReceipt:
        """Set item fields (``{item: {field: value}}``; a new field starts empty for the other items).

        Raises:
            UnknownItem: an item the version does not hold. InvalidDelta: a value that is not a str, finite
                number, bool or None, or a field name that is not a non-empty str.
        """
        if not isinstance(items, Mapping) or not items:
            raise InvalidDelta("update_metadata: give {item: {field: value}} with at least one item")
        values: dict[str, Any] = {}
        for item, fields in items.items():
            name = check_id(item, "item")
            values[name] = _metadata(name, fields)

        def build(state: _Version) -> tuple[dict, int, list]:
            self._require_live(state, values)
            return {"items": values}, len(values), []

        return self._write("update_metadata", build, token)

    # -- checks and fold-in -----------------------------------------------------------------------------------
    def _require_live(self, state: _Version, items: Iterable[str]) -> None:
        for item in items:
            if state.catalogue.live(item) is None:
                raise UnknownItem(_missing(self.name, state, item))

    def _item(self, state: _Version, item: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(item, Mapping) or "id" not in item:
            raise InvalidDelta(f"upsert_items: each item is a mapping with an 'id', got {type(item).__name__}")
        name = check_id(item["id"], "item")
        out: dict[str, Any] = {"id": name}
        cat = state.catalogue
        if item.get("vector") is not None:
            out["vector"] = state.scoring(_vector(item["vector"], cat.dim, f"item {name!r} vector")).tolist()
            if item.get("fold_in") is not None:
                out["fold_in"] = _vector(item["fold_in"], cat.dim, f"item {name!r} fold_in")
        elif item.get("users"):
            users = _ids(item["users"], "user")
            rows = self._user_rows(state, users)[0]
            known = [(u, r) for u, r in zip(users, rows) if r is not None]
            if not known:
                raise UnknownUser(f"item {name!r}: none of its users {users[:5]} is in model {self.name!r} "
                                  f"v{state.version}")
            # The centre of the items its users chose, in each space: user vectors need not live in the items'
            # space (Node2Vec scores users' input vectors against items' context vectors).
            seen = [r[1] for _, r in known if len(r[1])]
            if not seen:
                raise InvalidDelta(f"item {name!r}: its users {users[:5]} have no items to fold it in from")
            out["vector"] = state.scoring(np.mean([cat.vectors.view()[s].mean(axis=0) for s in seen], axis=0)).tolist()
            if cat.fold_in is not cat.vectors:
                out["fold_in"] = np.mean([cat.fold_in.view()[s].mean(axis=0) for s in seen], axis=0).tolist()
            out["popularity"] = float(len(known))
        else:
            raise InvalidDelta(f"upsert_items: item {name!r} needs a 'vector' or 'users' to fold it in from")
        if item.get("metadata"):
            out["metadata"] = _metadata(name, item["metadata"])
        return out

    def _user_rows(self, state: _Version, users: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray] | None],
                                                                       list[bytes | None]]:
        """Each user's ``(vector, seen)`` as deltas left it, else as published, else ``None``; and the raw
        rewritten rows (what a write checks is still there)."""
        pipe = self.registry.client.pipeline(transaction=False)
        pipe.hmget(state.users, users)
        pipe.hmget(self.registry.table_key(self.name, state.version, "user_vectors"), users)
        pipe.hmget(self.registry.table_key(self.name, state.version, "seen"), users)
        updated, vectors, seens = _answered(pipe.execute)
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        for user, row, vec, seen in zip(users, updated, vectors, seens):
            if row is not None:
                out.append(decode_user_row(state.seals[1], user, row))
            elif vec is not None:
                out.append((decode_vector(state.seals[2].open(user, vec)),
                            decode_ids(state.seals[3].open(user, seen) if seen is not None else None)))
            else:
                out.append(None)
        return out, list(updated)

    def _users(self, state: _Version, wanted: dict[str, list[str]], given: dict[str, list[float]]):
        cat = state.catalogue
        users = list(wanted)
        current, raw = self._user_rows(state, users)
        fold = cat.fold_in.view()
        records, rows = [], []
        for user, row, old in zip(users, current, raw):
            dense = []
            for item in wanted[user]:
                pos = cat.live(item)
                if pos is None:
                    raise UnknownItem(f"user {user!r}: {_missing(self.name, state, item)}")
                dense.append(pos)
            old_vector, old_seen = row if row is not None else (None, np.empty(0, np.int32))
            new = [p for p in dict.fromkeys(dense) if p not in set(old_seen.tolist())]
            seen = np.concatenate([old_seen.astype(np.int32), np.asarray(new, np.int32)])
            if old_vector is None or not len(old_seen):
                vector = fold[seen].mean(axis=0) if len(seen) else fold[dense].mean(axis=0)
            else:  # fold the new items in beside the history the vector stands for
                n_old = len(old_seen)
                vector = (old_vector * n_old + fold[new].sum(axis=0)) / (n_old + len(new)) if new else old_vector
            rows.append((user, old, encode_user_row(state.seals[1], user, state.scoring(vector), seen)))
            records.append({"id": user, "items": wanted[user], **({"weights": given[user]} if user in given else {})})
        return {"users": records}, len(records), rows


def _answered(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, with Redis not answering raised as ``RedisUnavailable`` (nothing was written)."""
    try:
        return fn(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"delta not written: Redis did not answer ({type(exc).__name__})") from None


def _version_keys(registry: ModelRegistry, model: str, version: int) -> tuple[str, str]:
    """The manifest and active-pointer keys of a version (the registry's documented layout)."""
    base = registry.table_key(model, version, "_")[: -len(f"v:{int(version)}:t:_")]
    return f"{base}v:{int(version)}:manifest", f"{base}active"


def _missing(model: str, state: _Version, item: str) -> str:
    pos = state.catalogue.pos.get(item)
    why = "deleted from" if pos is not None and pos in state.catalogue.deleted else "not in"
    return f"item {item!r} is {why} model {model!r} v{state.version}"
