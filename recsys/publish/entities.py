"""The vectors of a published model's users or items for entity outliers, as the model says to read them.

:mod:`recsys.publish.embeddings` owns the stored format; readers outside :mod:`recsys` (``ea outliers``, in
:mod:`anomaly.service`) go through :func:`entity_vectors` instead of reading its parts. Which vectors a
model's entities are compared by is part of the model's contract (``GraphEmbeddings.user_outliers`` and
``item_outliers``, recorded as ``meta["outliers"]``): Node2Vec's users, for one, are compared by the
centred mean of their items' input vectors, not by their own input vectors, where ten planted bots do not
stand out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from vectorstore import ModelRegistry

from ..exceptions import InvalidParameter, ModelUnavailable
from .wire import SEEN, USER_VECTORS, decode_ids, decode_vector

__all__ = ["EntityVectors", "entity_vectors", "user_rows", "user_table_keys"]

#: how a version published before ``meta["outliers"]`` existed is read
_LEGACY = {"users": USER_VECTORS, "history_vectors": "item_vectors", "items": "item_vectors"}


@dataclass(frozen=True)
class EntityVectors:
    """One vector per user or item of a model version.

    Attributes:
        version: the model version read.
        ids: external ids, aligned with ``vectors``.
        vectors: float32 ``n x d``; compare them by cosine.
        source: what they are (``"user_vectors"``, ``"history"`` or an item part name).
    """

    version: int
    ids: list[str]
    vectors: np.ndarray
    source: str


def entity_vectors(registry: ModelRegistry, name: str, kind: str = "users",
                   version: int | None = None) -> EntityVectors:
    """The vectors by which the users or items of model ``name`` are compared for outliers.

    Args:
        registry: where the model is published.
        name: a published recommendation model.
        kind: ``"users"`` or ``"items"``.
        version: the version to read (default: the active one).

    Returns:
        :class:`EntityVectors`. For ``"history"`` users, each user's vector is the mean of their seen items'
        rows of ``history_vectors`` minus the mean of all its rows (users without items get zeros).

    Raises:
        InvalidParameter: ``kind`` is not ``"users"`` or ``"items"``.
        ModelUnavailable: the model is not a recommendation model.
        vectorstore errors: no such model or version, corrupt data.
    """
    if kind not in ("users", "items"):
        raise InvalidParameter(f"kind={kind!r} must be 'users' or 'items'")
    manifest = registry.manifest(name, version)
    meta = manifest["meta"]
    if meta.get("kind") != "recsys":
        raise ModelUnavailable(f"model {name!r} is a {meta.get('kind')!r} model, not a graph model")
    version = int(manifest["version"])
    how = meta.get("outliers", _LEGACY)
    if kind == "items":
        mv = registry.load(name, version, parts=[how["items"], "item_ids"])
        return EntityVectors(version, json.loads(mv.blobs["item_ids"]), np.asarray(mv.arrays[how["items"]]),
                             how["items"])
    if how["users"] == USER_VECTORS:
        rows = registry.read_table(name, version, USER_VECTORS)
        return EntityVectors(version, list(rows), np.stack([decode_vector(v, meta.get("dim")) for v in rows.values()]),
                             USER_VECTORS)
    items = registry.load(name, version, parts=[how["history_vectors"]]).arrays[how["history_vectors"]]
    centred = (items - items.mean(axis=0)).astype(np.float32)
    seen = registry.read_table(name, version, SEEN)
    histories = [decode_ids(raw, len(items)) for raw in seen.values()]
    counts = np.fromiter((r.size for r in histories), np.int64, len(histories))
    indices = np.concatenate(histories) if histories else np.empty(0, np.int32)
    history = sp.csr_matrix((np.ones(indices.size, np.float32), indices, np.r_[0, np.cumsum(counts)]),
                            shape=(len(histories), len(items)))
    vectors = np.asarray(history @ centred, dtype=np.float32) / np.maximum(counts, 1)[:, None].astype(np.float32)
    return EntityVectors(version, list(seen), vectors, "history")


def user_rows(registry: ModelRegistry, name: str, version: int,
              users: list[str]) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Each user's published ``(vector, seen dense ids)`` in version ``version`` of ``name`` (``None``: an
    unknown user), one round trip per table; rows are checked (signatures, sizes) as the client checks them.

    Raises:
        vectorstore.SignatureError, vectorstore.CorruptRow: a row fails its signature or is malformed.
    """
    vectors = registry.table_get(name, version, USER_VECTORS, users)
    seens = registry.table_get(name, version, SEEN, users)
    return [None if vec is None else (decode_vector(vec), decode_ids(seen))
            for vec, seen in zip(vectors, seens)]


def user_table_keys(registry: ModelRegistry, name: str, version: int) -> tuple[str, ...]:
    """The Redis keys of a version's per-user tables (vectors, seen items): for measuring their memory."""
    return tuple(registry.table_key(name, version, table) for table in (USER_VECTORS, SEEN))
