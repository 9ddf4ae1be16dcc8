"""The version a :class:`~recsys.live.writer.CatalogueWriter` writes to, as the writer checks writes against it.

:meth:`TargetVersion.load` reads its items (ids, vectors, popularity, metadata: a
:class:`~recsys.live.catalogue.Catalogue`) and names its delta keys and seals once; :meth:`TargetVersion.user_rows`
reads users' rows as deltas left them. Redis not answering is ``vectorstore.RedisUnavailable`` (:func:`answered`):
nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from vectorstore import ModelNotFound, ModelRegistry, RedisUnavailable, RowSeal, VersionNotFound

from ..exceptions import ModelUnavailable, UnknownItem
from ..publish.wire import SEEN, USER_VECTORS, decode_ids, decode_vector
from .catalogue import Catalogue
from .delta_log import LogKeys, decode_user_row, delta_seals, log_keys

__all__ = ["TargetVersion", "answered"]

#: a user's ``(vector, seen dense ids)``
UserRow = tuple[np.ndarray, np.ndarray]


@dataclass
class TargetVersion:
    """Version ``version`` of ``model``: its catalogue caught up with its log (by the writer), its keys and seals."""

    registry: ModelRegistry
    model: str
    version: int
    catalogue: Catalogue
    log: LogKeys
    cosine: bool  # scoring vectors (items' and users') are stored L2-normalised
    milvus: dict | None  # its Milvus collection's spec: deletions and field updates go there too
    seals: tuple[RowSeal, RowSeal, RowSeal, RowSeal]  # log entries, rewritten users, published vectors, seen

    @classmethod
    def load(cls, registry: ModelRegistry, model: str, version: int | None) -> TargetVersion:
        """Read version ``version`` of ``model`` (``None``: the active one).

        Raises:
            ModelUnavailable: no such model or version, or not a recommendation model.
        """
        try:
            manifest = registry.manifest(model, version)
        except (ModelNotFound, VersionNotFound) as exc:
            raise ModelUnavailable(f"cannot write deltas: {exc}") from None
        number = int(manifest["version"])
        if manifest.get("meta", {}).get("kind") != "recsys":
            raise ModelUnavailable(f"{model!r} v{number} is not a recommendation model")
        parts = [p for p in ("item_ids", "item_vectors", "fold_in_vectors", "item_popularity", "item_metadata")
                 if p in manifest["parts"]]
        mv = registry.load(model, number, parts=parts)
        metadata = json.loads(mv.blobs["item_metadata"]) if "item_metadata" in mv.blobs else {}
        catalogue = Catalogue(np.asarray(json.loads(mv.blobs["item_ids"]), dtype=object), mv.arrays["item_vectors"],
                              mv.arrays.get("fold_in_vectors"), mv.arrays["item_popularity"], metadata)
        entries, rewritten = delta_seals(registry, model, number)
        vectors, seen = (registry.row_seal(model, number, table, manifest=manifest)
                         for table in (USER_VECTORS, SEEN))
        return cls(registry, model, number, catalogue, log_keys(registry, model, number, register=True),
                   cosine=manifest["meta"].get("space") == "cosine", milvus=manifest["meta"].get("milvus") or None,
                   seals=(entries, rewritten, vectors, seen))

    @property
    def where(self) -> str:
        """The version named in messages."""
        return f"model {self.model!r} v{self.version}"

    def scoring(self, vector: Any) -> np.ndarray:
        """A scoring vector as the version stores them."""
        vector = np.asarray(vector, dtype=np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12) if self.cosine else vector

    def require_live(self, items: Iterable[str]) -> None:
        """Raise :class:`UnknownItem` for the first of ``items`` the version does not hold (or deleted)."""
        for item in items:
            if self.catalogue.live(item) is None:
                raise UnknownItem(self.missing(item))

    def missing(self, item: str) -> str:
        """Why ``item`` cannot be written to: not in the version, or deleted from it."""
        pos = self.catalogue.pos.get(item)
        why = "deleted from" if pos is not None and pos in self.catalogue.deleted else "not in"
        return f"item {item!r} is {why} model {self.model!r} v{self.version}"

    def user_rows(self, users: list[str]) -> tuple[list[UserRow | None], list[bytes | None]]:
        """Each user's ``(vector, seen)`` as deltas left it, else as published, else ``None``; and the raw
        rewritten rows (what a write checks is still there)."""
        pipe = self.registry.client.pipeline(transaction=False)
        pipe.hmget(self.log.users, users)
        pipe.hmget(self.registry.table_key(self.model, self.version, USER_VECTORS), users)
        pipe.hmget(self.registry.table_key(self.model, self.version, SEEN), users)
        updated, vectors, seens = answered(pipe.execute)
        out: list[UserRow | None] = []
        for user, row, vec, seen in zip(users, updated, vectors, seens):
            if row is not None:
                out.append(decode_user_row(self.seals[1], user, row))
            elif vec is not None:
                out.append((decode_vector(self.seals[2].open(user, vec)),
                            decode_ids(self.seals[3].open(user, seen) if seen is not None else None)))
            else:
                out.append(None)
        return out, list(updated)


def answered(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, with Redis not answering raised as ``RedisUnavailable`` (nothing was written)."""
    try:
        return fn(*args, **kwargs)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailable(f"delta not written: Redis did not answer ({type(exc).__name__})") from None
