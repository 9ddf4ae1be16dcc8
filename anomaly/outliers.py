"""Entity outliers: the kNN-distance rule over any embedding set (users, items, windows).

An entity's score is its mean distance to its ``k`` nearest peers (itself excluded) in an hnswlib index;
the threshold, unless given, is ``median + c * MAD`` of all scores (MAD scaled to a standard deviation),
a robust rule that needs no labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import ItemIndex

from .exceptions import InvalidParameter

__all__ = ["knn_outliers"]

SPACES = ("cosine", "l2")


def knn_outliers(
    vectors: np.ndarray,
    ids: Sequence[Any] | None = None,
    k: int = 10,
    space: str = "cosine",
    threshold: float | None = None,
    c: float = 8.0,
) -> pd.DataFrame:
    """Score every entity by its mean kNN distance to the others and flag outliers.

    Args:
        vectors: n x d embeddings (finite).
        ids: n entity ids (default ``0..n-1``).
        k: peers averaged (capped at n - 1).
        space: ``"cosine"`` (distance = 1 - cosine similarity) or ``"l2"`` (Euclidean distance).
        threshold: score above which an entity is an outlier; ``None``: ``median + c * MAD``.
        c: MAD multiplier of the default threshold.

    Returns:
        DataFrame with columns ``id``, ``score``, ``is_outlier``, highest score first; the threshold used
        is in ``df.attrs["threshold"]``.

    Raises:
        InvalidParameter: fewer than 2 vectors, ids of the wrong length, unknown space, k < 1,
            non-finite vectors.
    """
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] == 0:
        raise InvalidParameter(f"vectors must be an n x d array with n >= 2, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))[:5].tolist()
        raise InvalidParameter(f"vectors have NaN/inf at rows {bad}")
    if space not in SPACES:
        raise InvalidParameter(f"space={space!r} is not one of {SPACES}")
    if k < 1:
        raise InvalidParameter(f"k={k} must be >= 1")
    n = arr.shape[0]
    labels = list(range(n)) if ids is None else list(ids)
    if len(labels) != n:
        raise InvalidParameter(f"{len(labels)} ids for {n} vectors")
    k = min(int(k), n - 1)
    index = ItemIndex.build(arr, space=space, ef=max(64, 2 * k + 2))
    found, sims = index.query(arr, k=k + 1)
    # Drop each row's own id (usually first, but ties with duplicates can reorder it).
    own = found == np.arange(n)[:, None]
    extra = ~own & (np.cumsum(~own, axis=1) <= k)
    dist = np.sqrt(np.maximum(sims, 0)) if space == "l2" else 1.0 - sims
    scores = np.where(extra, dist, 0.0).sum(axis=1) / np.maximum(extra.sum(axis=1), 1)
    if threshold is None:
        med = float(np.median(scores))
        threshold = med + c * 1.4826 * float(np.median(np.abs(scores - med)))
    df = pd.DataFrame({"id": labels, "score": scores.astype(np.float64), "is_outlier": scores > threshold})
    df = df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    df.attrs["threshold"] = float(threshold)
    return df
