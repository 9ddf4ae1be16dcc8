"""Changing a loaded :class:`~vectorstore.index.ItemIndex` in place: items added or updated, items deleted.

hnswlib does the graph work (``add_items`` inserts a new label or updates an existing one's vector, and
brings back one marked deleted; ``mark_deleted`` hides a label from every search; ``resize_index`` grows
the capacity, here by half again, so that growing is rare). None of it may run while ``knn_query`` reads the
graph: each change holds the index's write lock, queries its read lock.

The exact-search copy of the vectors (:meth:`ItemIndex._exact_data`) is kept in step: rows updated in
place, new labels appended to a buffer with spare capacity (readers slice it to the length they captured).

An augmented inner-product index (``mips="augmented"``) adds ``sqrt(R^2 - |x|^2)`` to each vector, R the
largest norm at build time: a vector added later with a larger norm gets 0 there and is ranked as if its
score were ``q.x - (|x|^2 - R^2) / 2``, lower than it is. Such additions are counted
(``params["over_radius"]``); the next full build fixes them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .exceptions import InvalidModelData

# ``index`` below is a vectorstore.index.ItemIndex (not imported: index.py imports this module).

__all__ = ["add_items", "mark_deleted"]

log = logging.getLogger(__name__)


def _labels(ids: Any, n: int | None = None) -> np.ndarray:
    labels = np.asarray(ids)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (n is not None and labels.shape[0] != n):
        raise InvalidModelData(f"ids must be {n if n is not None else 'a list of'} integers, got shape "
                               f"{labels.shape} dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InvalidModelData(f"ids must be >= 0, got {int(labels.min())}")
    if np.unique(labels).size != labels.size:
        raise InvalidModelData("ids must be unique")
    return labels.astype(np.int64)


def add_items(index: Any, arr: np.ndarray, ids: Any, exact_rows: np.ndarray) -> None:
    """Insert the checked float32 rows ``arr`` under ``ids`` (a label already present gets its vector replaced
    and is live again); ``exact_rows`` are the rows as exact search reads them (normalised for cosine).

    Raises:
        InvalidModelData: bad or repeated ids.
    """
    labels = _labels(ids, arr.shape[0])
    stored = arr
    if index._augmented:
        norms2 = np.einsum("ij,ij->i", arr.astype(np.float64), arr.astype(np.float64))
        radius2 = float(index.params["mips_radius"]) ** 2
        over = int((norms2 > radius2 * (1 + 1e-6)).sum())
        if over:
            level = logging.DEBUG if index.params.get("over_radius") else logging.WARNING  # once per index
            index.params["over_radius"] = int(index.params.get("over_radius", 0)) + over
            log.log(level, "%d added vector(s) are longer than the index's radius: ranked a little low until the "
                    "next build", over)
        extra = np.sqrt(np.maximum(radius2 - norms2, 0.0)).astype(np.float32)[:, None]
        stored = np.ascontiguousarray(np.hstack([arr, extra]))
    with index._gate.write():
        hnsw = index._index
        needed = hnsw.element_count + labels.size  # updates counted as new: the capacity grows a little early
        if needed > hnsw.get_max_elements():
            hnsw.resize_index(max(needed, hnsw.get_max_elements() * 3 // 2 + 1024))
        hnsw.add_items(stored, labels, num_threads=1)
        index._deleted.difference_update(labels.tolist())
        index.params["count"] = int(hnsw.element_count)
        _update_exact(index, labels, exact_rows)
        index._span = False
        index._dead = None


def _update_exact(index: Any, labels: np.ndarray, rows: np.ndarray) -> None:
    """Keep the exact-search copy in step with an addition (under the write lock)."""
    cached = index._exact
    if cached is None:
        return
    buffer, buffer_labels, n = cached
    pos = np.searchsorted(buffer_labels[:n], labels)
    known = (pos < n) & (buffer_labels[np.minimum(pos, max(n - 1, 0))] == labels) if n else np.zeros(len(labels), bool)
    buffer[pos[known]] = rows[known]
    new, new_rows = labels[~known], rows[~known]
    if not new.size:
        return
    order = np.argsort(new, kind="stable")
    new, new_rows = new[order], new_rows[order]
    if n and new[0] <= buffer_labels[n - 1]:  # not an append at the end: rebuild on next use
        index._exact = None
        return
    if n + new.size > buffer.shape[0]:
        capacity = max(n + new.size, buffer.shape[0] * 3 // 2 + 1024)
        grown = np.empty((capacity, buffer.shape[1]), np.float32)
        grown_labels = np.empty(capacity, np.int64)
        grown[:n], grown_labels[:n] = buffer[:n], buffer_labels[:n]
        buffer, buffer_labels = grown, grown_labels
    buffer[n : n + new.size] = new_rows
    buffer_labels[n : n + new.size] = new
    index._exact = (buffer, buffer_labels, n + new.size)  # one assignment: readers see all of it or none


def mark_deleted(index: Any, ids: Any) -> int:
    """Hide ``ids`` from every search; ids already deleted are skipped.

    Returns:
        How many ids were newly deleted.

    Raises:
        InvalidModelData: an id the index does not hold (names the first; the others are deleted).
    """
    labels = _labels(ids)
    done, missing = 0, []
    with index._gate.write():
        for label in labels.tolist():
            if label in index._deleted:
                continue
            try:
                index._index.mark_deleted(label)
            except RuntimeError:  # hnswlib: "Label not found"
                missing.append(label)
                continue
            index._deleted.add(label)
            done += 1
        index._dead = None
    if missing:
        raise InvalidModelData(f"id {missing[0]} is not in the index ({len(missing)} missing)")
    return done
