"""An in-memory snapshot of one published recommendation model version.

The client holds one snapshot and replaces it whole on a new version (an atomic reference swap), so a
query always sees one consistent version: its index, item ids, popularity and metadata. Between versions
only the version's deltas change it, in place (:mod:`recsys.live._apply`). The bytes of the per-user rows
and top-N lists are :mod:`recsys.publish.wire`'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vectorstore import (
    CorruptManifest,
    IntegrityError,
    ItemIndex,
    ModelRegistry,
    ModelVersion,
    RowSeal,
    VectorStoreError,
)

from ..exceptions import InvalidRequest, ModelUnavailable, RecsysError
from ..publish.wire import SEEN, TOPN, USER_VECTORS

if TYPE_CHECKING:
    from ._milvus_index import MilvusIndex

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

    A version published with ``index_backend="milvus"`` has ``milvus`` set: ``index`` and ``similar_index``
    are that :class:`~recsys.serving._milvus_index.MilvusIndex`, the item metadata stays in the collection (read as
    its ``output_fields``), and of the item vectors only the fold-in ones are held in memory.
    """

    name: str
    version: int
    index: ItemIndex | MilvusIndex
    item_vectors: np.ndarray
    fold_in_vectors: np.ndarray
    similar_vectors: np.ndarray
    similar_index: ItemIndex | MilvusIndex
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
    milvus: MilvusIndex | None = None  # the version's Milvus collection (index_backend="milvus")
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
        spec = manifest.get("meta", {}).get("milvus")
        if spec:  # the index and the metadata live in Milvus: load the rest, and only one set of item vectors
            keep = {"item_ids", "item_popularity",
                    "fold_in_vectors" if "fold_in_vectors" in manifest["parts"] else "item_vectors"}
            mv = registry.load(name, int(manifest["version"]), [p for p in manifest["parts"] if p in keep])
        else:
            mv = registry.load(name, version)
        if mv.meta.get("kind") != "recsys":
            raise ModelUnavailable(f"{name!r} v{mv.version} is a {mv.meta.get('kind')!r} model, not recsys")
        milvus = None
        if spec:
            from ._milvus_index import MilvusIndex  # imports pymilvus: an hnswlib deployment never does

            milvus = MilvusIndex(registry.settings, spec)
        index: ItemIndex | MilvusIndex = milvus or _index(mv, "index")
        similar_index = _index(mv, "similar_index") if "similar_index" in mv.blobs else index
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
            milvus=milvus,
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
        if self.milvus is not None:
            return self.milvus.fields(dense, names)
        return {n: [self.metadata[n][int(i)] for i in dense] for n in names}

    def check_fields(self, names: list[str] | None) -> list[str]:
        """``names`` (or ``[]``), each a metadata column of this version.

        Raises:
            InvalidRequest: an unknown field (the message lists the version's fields).
        """
        known = self.milvus.field_names if self.milvus is not None else sorted(self.metadata)
        missing = [n for n in names or [] if n not in known]
        if missing:
            raise InvalidRequest(f"unknown field(s) {missing}; model {self.name!r} v{self.version} has {known}")
        return list(names or [])


def _index(mv: ModelVersion, part: str) -> ItemIndex:
    """An index part of a version; a blob that passes its checksum but is no index names the version."""
    try:
        return ItemIndex.from_bytes(mv.blobs[part])
    except IntegrityError as exc:
        raise IntegrityError(f"{mv.model!r} v{mv.version}: part {part!r}: {exc}") from None
