"""The serving format of a graph model: what a training job publishes and the client reads.

A version of a recommendation model holds:

=================  =======  =============================================================================
part               kind     content
=================  =======  =============================================================================
item_vectors       array    float32 n_items x d scoring vectors (rows L2-normalised for cosine models)
item_popularity    array    float32 n_items: summed interaction weights (popularity fallback, fold-in)
index              blob     :class:`~vectorstore.ItemIndex` over ``item_vectors`` (inner product)
item_ids           blob     JSON list of external item ids, by dense item id
item_metadata      blob     JSON ``{column: [value per item]}`` (optional: titles, categories...)
fold_in_vectors    array    float32 n_items x d, optional: a history's mean of them is its query against
                            ``index`` (absent: ``item_vectors``)
similar_vectors    array    float32 n_items x d', optional: item x's query against ``similar_index``
similar_index      blob     optional :class:`~vectorstore.ItemIndex` over the model's ``similar_targets``
                            (both absent: item x's fold-in vector against ``index``)
user_vectors       table    external user id -> float32 scoring vector bytes
seen               table    external user id -> int32 dense ids of the user's training items
=================  =======  =============================================================================

``meta`` carries ``kind="recsys"``, the algorithm, its parameters, metrics, the index parameters and sizes,
``paths`` (which vectors serve each client path: :meth:`GraphEmbeddings.paths`), ``outliers`` (what
:func:`~recsys.publish.entities.entity_vectors` reads: ``{"users": "user_vectors" | "history",
"history_vectors": part, "items": part}``) and ``ann_recall`` (:func:`~recsys.publish._indexing.build_indexes`:
recall@10 of every path against exact search, measured on 500 sampled users and items at publication,
>= 0.99).

With ``index_backend="milvus"`` no hnswlib index is built: ``item_vectors``, the item ids and the metadata
also go into a Milvus collection of the version (:mod:`vectorstore.store.milvus`; ``meta["milvus"]`` names it,
``meta["index"]`` says ``{"backend": "milvus", ...}``), which the client searches. A model's own similarity
vectors are then not published: similar items are an item's fold-in vector's neighbours in the collection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from vectorstore import MilvusItems, ModelRegistry

from ..data.interactions import Interactions
from ..exceptions import InvalidParameter
from ..models.graph_model import GraphEmbeddings
from ._indexing import INDEX_PARAMS, build_indexes
from .wire import SEEN, USER_VECTORS, encode_ids, encode_vector

__all__ = ["INDEX_BACKENDS", "INDEX_PARAMS", "publish_embeddings"]

#: where a version's item index lives: in the serving process (hnswlib, the default) or in Milvus
INDEX_BACKENDS = ("hnswlib", "milvus")

log = logging.getLogger(__name__)


def publish_embeddings(
    registry: ModelRegistry,
    name: str,
    interactions: Interactions,
    embeddings: GraphEmbeddings,
    *,
    algorithm: str,
    metrics: Mapping[str, float] | None = None,
    item_metadata: Mapping[str, list] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    token: str | None = None,
    activate: bool = True,
    index_backend: str = "hnswlib",
) -> int:
    """Publish trained embeddings in the serving format and (by default) activate them.

    With ``activate=False`` the version is staged: clients preload it, and
    :meth:`~vectorstore.ModelRegistry.activate` switches them at once. ``index_backend="milvus"`` writes
    the items into a Milvus collection instead of building an hnswlib index (``EA_MILVUS_URI``).

    Returns:
        The new version (or the version already committed under ``token``).

    Raises:
        InvalidParameter: embeddings do not match the interactions' sizes, or an unknown ``index_backend``.
        vectorstore.ConfigurationError: Milvus asked for and ``EA_MILVUS_URI`` unset (or pymilvus missing).
        vectorstore.MilvusUnavailable: Milvus did not answer; nothing was published.
    """
    if index_backend not in INDEX_BACKENDS:
        raise InvalidParameter(f"index_backend={index_backend!r}: must be one of {', '.join(INDEX_BACKENDS)}")
    users, items = embeddings.scoring_vectors()
    if users.shape[0] != interactions.n_users or items.shape[0] != interactions.n_items:
        raise InvalidParameter(
            f"embeddings are {users.shape[0]} users x {items.shape[0]} items, "
            f"interactions {interactions.n_users} x {interactions.n_items}"
        )
    matrix = interactions.user_matrix()
    fold = embeddings.fold_in_vectors if embeddings.fold_in_vectors is not None else items
    milvus = index_backend == "milvus"
    indexes = None if milvus else build_indexes(matrix, users, items, fold, embeddings.similar_vectors,
                                                embeddings.similar_targets)
    popularity = np.asarray(matrix.sum(axis=0)).ravel().astype(np.float32)
    user_ids = interactions.user_ids.tolist()
    user_rows = {uid: encode_vector(users[u]) for u, uid in enumerate(user_ids)}
    seen_rows = {uid: encode_ids(matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]])
                 for u, uid in enumerate(user_ids)}
    blobs = {"item_ids": json.dumps(interactions.item_ids.tolist()).encode()}
    if indexes is not None:
        blobs["index"] = indexes.index.to_bytes()
    arrays = {"item_vectors": items, "item_popularity": popularity}
    if item_metadata:
        blobs["item_metadata"] = json.dumps(item_metadata).encode()
    if embeddings.fold_in_vectors is not None:
        arrays["fold_in_vectors"] = embeddings.fold_in_vectors
    if indexes is not None and indexes.similar is not None and embeddings.similar_vectors is not None:
        arrays["similar_vectors"] = embeddings.similar_vectors
        blobs["similar_index"] = indexes.similar.to_bytes()
    fold_part = "fold_in_vectors" if "fold_in_vectors" in arrays else "item_vectors"
    outliers = {"users": USER_VECTORS if embeddings.user_outliers == "user" else "history",
                "history_vectors": fold_part,
                "items": "item_vectors" if embeddings.item_outliers == "item" else fold_part}
    meta = {
        "kind": "recsys",
        "algorithm": algorithm,
        "space": embeddings.space,
        "dim": int(items.shape[1]),
        "n_users": interactions.n_users,
        "n_items": interactions.n_items,
        "n_interactions": len(interactions),
        "params": embeddings.params,
        "metrics": dict(metrics or {}),
        "index": indexes.index.params if indexes is not None else {"backend": "milvus"},
        "similar_index": indexes.similar.params if indexes is not None and indexes.similar is not None else None,
        "ann_recall": indexes.report if indexes is not None else {},
        "paths": embeddings.paths(),
        "outliers": outliers,
        "fields": sorted(item_metadata) if item_metadata else [],
        **dict(extra_meta or {}),
    }
    version = registry.publish(
        name,
        arrays=arrays,
        blobs=blobs,
        tables={USER_VECTORS: user_rows, SEEN: seen_rows},
        meta=meta,
        token=token,
        activate=activate,
        milvus_items=MilvusItems(items, interactions.item_ids.tolist(), dict(item_metadata or {})) if milvus else None,
    )
    log.info("published %s v%s: %d users, %d items, %s", name, version, interactions.n_users,
             interactions.n_items, algorithm)
    return version
