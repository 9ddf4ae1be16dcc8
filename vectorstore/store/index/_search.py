"""Exact-search helpers of :class:`~vectorstore.ItemIndex`: exclusion lists and blocked top-k."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ...exceptions import InvalidModelData

__all__ = ["exclusions", "top_k_columns"]


def top_k_columns(sims: np.ndarray, k: int, block: int = 64) -> np.ndarray:
    """Column indices of the ``k`` largest values of each row (unordered), faster than a full argpartition.

    The k-th largest value of a row is at least the k-th largest of its block maxima, so only values
    reaching that bound are candidates: a few per row instead of every column.
    """
    rows, n = sims.shape
    if k >= n:
        return np.tile(np.arange(n), (rows, 1))
    blocks = -(-n // block)
    if blocks <= k * 2:
        return np.argpartition(sims, n - k, axis=1)[:, n - k :]
    padded = sims
    if blocks * block != n:
        padded = np.full((rows, blocks * block), -np.inf, dtype=sims.dtype)
        padded[:, :n] = sims
    maxima = padded.reshape(rows, blocks, block).max(axis=2)
    bound = np.partition(maxima, blocks - k, axis=1)[:, blocks - k]
    out = np.empty((rows, k), dtype=np.int64)
    hit_rows, hit_cols = np.nonzero(sims >= bound[:, None])
    starts = np.searchsorted(hit_rows, np.arange(rows + 1))
    for r in range(rows):
        cols = hit_cols[starts[r] : starts[r + 1]]
        if cols.size < k:  # only when -inf (excluded) values tie the bound: fall back for this row
            out[r] = np.argpartition(sims[r], n - k)[n - k :]
        elif cols.size == k:
            out[r] = cols
        else:
            out[r] = cols[np.argpartition(sims[r, cols], cols.size - k)[cols.size - k :]]
    return out


def exclusions(exclude: Any, rows: int) -> list[np.ndarray]:
    """One int64 array of excluded ids per query row (duplicates are harmless)."""
    empty = np.empty(0, dtype=np.int64)
    if exclude is None:
        return [empty] * rows
    if isinstance(exclude, np.ndarray) and exclude.ndim == 1:
        return [exclude.astype(np.int64, copy=False)] * rows
    exclude = list(exclude)
    if exclude and all(isinstance(e, Iterable) and not isinstance(e, str | bytes) for e in exclude):
        if len(exclude) != rows:
            raise InvalidModelData(f"exclude has {len(exclude)} rows for {rows} queries")
        return [e.astype(np.int64, copy=False) if isinstance(e, np.ndarray) else np.fromiter(e, dtype=np.int64)
                for e in exclude]
    shared = np.unique(np.asarray(exclude, dtype=np.int64)) if exclude else empty
    return [shared] * rows
