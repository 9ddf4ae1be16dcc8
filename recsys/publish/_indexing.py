"""The item indexes of a published model, each built to serve its paths at ANN recall >= 0.99.

:func:`build_indexes` samples the queries a client will ask of each path (500 seeded users' vectors and
their fold-in vectors, seen items excluded; 500 seeded items' similarity vectors, the item itself
excluded) and hands them to :func:`vectorstore.tune_index`, which chooses the graph kind and each
path's ef (or exact search) by measured recall. The report goes into the manifest (``meta["ann_recall"]``);
the client asks each path's queries with the search arguments settled for it (``report["search"]``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from vectorstore import DEFAULT_TARGET, ItemIndex, Probe, tune_index

__all__ = ["INDEX_PARAMS", "RECALL_K", "RECALL_SAMPLE", "Indexes", "build_indexes", "fold_in_queries"]

log = logging.getLogger(__name__)

# M=32 / ef_construction=200 / ef=200 reach recall@10 >= 0.99 on the models shipped so far (and on 1M
# clustered 64-d items, bench/serving.py); tune_index raises ef or changes the graph where they do not.
INDEX_PARAMS = {"M": 32, "ef_construction": 200, "ef": 200}
#: cut-off and sample size of the recall measured at publication
RECALL_K = 10
RECALL_SAMPLE = 500


@dataclass(frozen=True)
class Indexes:
    """The indexes of one version and what was measured on them.

    Attributes:
        index: the item index (recommend and fold-in queries; similar items too without ``similar``).
        similar: the index over ``similar_targets``, when the model has its own similarity vectors.
        report: ``{"k", "target", "recall": {path: r}, "search": {path: ItemIndex.query arguments},
            "indexes": {"index": ..., "similar_index": ...}}``: every path is asked with its ``search``.
    """

    index: ItemIndex
    similar: ItemIndex | None
    report: dict[str, Any]


def fold_in_queries(matrix: sp.csr_matrix, users: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The fold-in vector of each user in ``users``: the mean of their items' rows of ``fold``.

    Exactly what :meth:`recsys.RecommendationClient.recommend_for_history` computes for that history.
    """
    rows = matrix[users]
    counts = np.maximum(np.diff(rows.indptr), 1).astype(np.float32)[:, None]
    binary = sp.csr_matrix((np.ones_like(rows.data, dtype=np.float32), rows.indices, rows.indptr), shape=rows.shape)
    return np.asarray(binary @ fold, dtype=np.float32) / counts


def build_indexes(
    matrix: sp.csr_matrix,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    fold_vectors: np.ndarray,
    similar_vectors: np.ndarray | None = None,
    similar_targets: np.ndarray | None = None,
    *,
    target: float = DEFAULT_TARGET,
    sample: int = RECALL_SAMPLE,
    seed: int = 0,
    **params: Any,
) -> Indexes:
    """Build the item index (and the similar-items index, if any) at recall@``RECALL_K`` >= ``target``.

    Args:
        matrix: users x items training interactions (a user's seen items are its row's columns).
        user_vectors, item_vectors: scoring vectors (``user . item`` is the score).
        fold_vectors: the item rows whose mean is a fold-in query (as the client reads them).
        similar_vectors, similar_targets: a model's own item-similarity vectors, or ``None``.
        target: the recall every path must reach.
        sample: users (and items) sampled for the measurement, seeded by ``seed``.
        params: HNSW parameters overriding :data:`INDEX_PARAMS`.

    Returns:
        :class:`Indexes`.
    """
    rng = np.random.default_rng(seed)
    n_users, n_items = matrix.shape
    users = np.sort(rng.choice(n_users, size=min(sample, n_users), replace=False))
    items = np.sort(rng.choice(n_items, size=min(sample, n_items), replace=False))
    seen = [matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]].astype(np.int64) for u in users]
    itself = [np.array([j], dtype=np.int64) for j in items]
    probes = {"recommend": Probe(user_vectors[users], seen),
              "history": Probe(fold_in_queries(matrix, users, fold_vectors), seen)}
    if similar_vectors is None:  # an item's similar items are then its one-item fold-in's recommendations
        probes["similar"] = Probe(fold_vectors[items], itself)
    settings = {**INDEX_PARAMS, **params}
    index, main = tune_index(item_vectors, probes, space="ip", target=target, k=RECALL_K, **settings)
    report: dict[str, Any] = {"k": RECALL_K, "target": target, "recall": dict(main["recall"]),
                              "search": dict(main["search"]), "indexes": {"index": main}}
    similar = None
    if similar_vectors is not None and similar_targets is not None:
        similar, sim = tune_index(similar_targets, {"similar": Probe(similar_vectors[items], itself)}, space="ip",
                                  target=target, k=RECALL_K, **settings)
        report["recall"]["similar"] = sim["recall"]["similar"]
        report["search"]["similar"] = sim["search"]["similar"]
        report["indexes"]["similar_index"] = sim
    log.info("ANN recall@%d per path: %s", RECALL_K, {p: round(r, 4) for p, r in report["recall"].items()})
    return Indexes(index, similar, report)
