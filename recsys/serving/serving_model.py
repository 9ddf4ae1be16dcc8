"""An in-memory snapshot of one published recommendation model version.

The client holds one snapshot and replaces it whole on a new version (an atomic reference swap), so a
query always sees one consistent version: its index, item ids, popularity and metadata. Between versions
only the version's deltas change it, in place (:mod:`recsys.live._apply`). The bytes of the per-user rows
and top-N lists are :mod:`recsys.publish.wire`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorstore import CorruptManifest, ModelRegistry, RowSeal, VectorStoreError

from ..exceptions import InvalidRequest, ModelUnavailable, RecsysError
from ..publish.wire import SEEN, TOPN, USER_VECTORS
from .index_backends import open_index
from .version_index import VersionIndex

__all__ = ["ServingModel"]


@dataclass
class ServingModel:
    """One model version loaded for serving.

    Each client path reads its own vectors (see :mod:`recsys.publish.embeddings`): ``index`` answers users' and
    folded-in histories' queries, ``fold_in_vectors`` make the latter, ``similar_vectors`` against
    ``similar_index`` rank similar items (without a model's own: an item's fold-in vector against
    ``index``). ``search`` holds what each path's queries pass to ``ItemIndex.query`` to reach the recall
    measured at publication (a wider ef, or exact search, for a path that needs it). A version published
    before these existed serves every path from ``item_vectors`` and ``index``.

    ``backend`` is the version's :class:`~recsys.serving.version_index.VersionIndex`: it gives ``index`` and
    ``similar_index`` and answers for the version's fields, filters and searches. A backend that holds the
    items itself (Milvus) is its own ``index``, keeps the item metadata (read as its search's fields), and of
    the item vectors only one set (the fold-in ones when the version has them) is held in memory.
    """

    name: str
    version: int
    index: Any  # what the paths query (vectorstore.ItemIndex, or the backend itself): ``backend.indexes``
    item_vectors: np.ndarray
    fold_in_vectors: np.ndarray
    similar_vectors: np.ndarray
    similar_index: Any
    search: dict[str, dict[str, Any]]  # per path ("recommend", "history", "similar"): ItemIndex.query arguments
    item_ids: np.ndarray
    item_pos: dict[str, int]
    popular: np.ndarray  # dense item ids by decreasing popularity
    popularity: np.ndarray
    metadata: dict[str, list]
    meta: dict[str, Any]
    vectors_key: str  # the Redis hashes a request reads, named once per version instead of per request
    seen_key: str
    topn_key: str
    backend: VersionIndex  # where the version's item index lives (recsys.serving.version_index)
    # The version's delta log as applied (recsys.live.follower.DeltaFollower), set by the watcher. Deltas
    # change the item arrays and indexes in place (recsys.live._apply); everything else stays as loaded.
    live: Any = None
    metadata_revision: int = 0  # bumped by each delta that changes ``metadata`` in place
    # How a request opens the version's rows (their signatures checked with EA_SIGNING_KEY:
    # vectorstore.store.registry.rows), and the sizes it checks them against (recsys.publish.wire).
    vector_seal: RowSeal | None = None
    seen_seal: RowSeal | None = None
    topn_seal: RowSeal | None = None
    dim: int | None = None

    @classmethod
    def load(cls, registry: ModelRegistry, name: str, version: int | None = None) -> ServingModel:
        """Load and verify a version (default: active) from the registry.

        Raises:
            ModelUnavailable: it is not a recommendation model.
            vectorstore errors: missing, corrupt (checksum, or parts that pass it but do not decode: a
                deployment without signing) or unsigned versions.
        """
        try:
            return cls._load(registry, name, version)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            if isinstance(exc, VectorStoreError | RecsysError):
                raise
            raise CorruptManifest(f"{name!r} v{version or 'active'}: a part does not decode "
                                  f"({type(exc).__name__})") from None

    @classmethod
    def _load(cls, registry: ModelRegistry, name: str, version: int | None) -> ServingModel:
        manifest = registry.manifest(name, version)
        backend = open_index(registry.settings, manifest.get("meta", {}))
        parts = backend.serving_parts(manifest["parts"])
        if parts is not None:  # the backend holds the rest: this exact version's parts, not the active one's
            mv = registry.load(name, int(manifest["version"]), parts)
        else:
            mv = registry.load(name, version)
        if mv.meta.get("kind") != "recsys":
            raise ModelUnavailable(f"{name!r} v{mv.version} is a {mv.meta.get('kind')!r} model, not recsys")
        index, similar_index = backend.indexes(mv)
        items = mv.arrays["item_vectors"] if "item_vectors" in mv.arrays else mv.arrays["fold_in_vectors"]
        fold_in = mv.arrays.get("fold_in_vectors", items)
        item_ids = np.asarray(json.loads(mv.blobs["item_ids"]), dtype=object)
        popularity = mv.arrays["item_popularity"]
        metadata = json.loads(mv.blobs["item_metadata"]) if "item_metadata" in mv.blobs else {}
        if int(manifest["version"]) != mv.version:  # the active version moved between the two reads
            manifest = registry.manifest(name, mv.version)
        dim = mv.meta.get("dim", items.shape[1] if items.ndim == 2 else None)
        if not isinstance(dim, int) or len(item_ids) != len(popularity):
            raise CorruptManifest(f"{name!r} v{mv.version}: its dim or item ids do not match its arrays")
        return cls(
            name=name, version=mv.version, index=index, item_vectors=items,
            fold_in_vectors=fold_in, similar_vectors=mv.arrays.get("similar_vectors", fold_in),
            similar_index=similar_index,
            search={path: dict(args) for path, args in mv.meta.get("ann_recall", {}).get("search", {}).items()},
            item_ids=item_ids, item_pos={str(i): n for n, i in enumerate(item_ids)},
            popular=np.argsort(-popularity, kind="stable"), popularity=popularity,
            metadata=metadata, meta=mv.meta,
            vectors_key=registry.table_key(name, mv.version, USER_VECTORS),
            seen_key=registry.table_key(name, mv.version, SEEN),
            topn_key=registry.derived_key(name, mv.version, TOPN, register=False),
            backend=backend,
            vector_seal=registry.row_seal(name, mv.version, USER_VECTORS, manifest=manifest),
            seen_seal=registry.row_seal(name, mv.version, SEEN, manifest=manifest),
            topn_seal=registry.row_seal(name, mv.version, TOPN, derived=True, manifest=manifest), dim=dim,
        )

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def fields(self, dense: np.ndarray, names: list[str] | None) -> dict[str, list]:
        """Metadata columns ``names`` for dense item ids (``None`` where unknown)."""
        names = self.check_fields(names)
        if not names:
            return {}
        return self.backend.fields(self, dense, names)

    def check_fields(self, names: list[str] | None) -> list[str]:
        """``names`` (or ``[]``), each a metadata column of this version.

        Raises:
            InvalidRequest: an unknown field (the message lists the version's fields).
        """
        known = self.backend.field_names(self)
        missing = [n for n in names or [] if n not in known]
        if missing:
            raise InvalidRequest(f"unknown field(s) {missing}; model {self.name!r} v{self.version} has {known}")
        return list(names or [])

