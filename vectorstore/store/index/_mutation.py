"""Changing a loaded :class:`~vectorstore.ItemIndex` in place: items added or updated, items deleted.

hnswlib does the graph work (``add_items`` inserts a new label or updates an existing one's vector, and
brings back one marked deleted; ``mark_deleted`` hides a label from every search; ``resize_index`` grows
the capacity, here by half again, so that growing is rare). hnswlib's README says ``add_items`` is
thread-safe with other ``add_items`` calls "but not with ``knn_query``", and ``resize_index`` with neither;
it promises nothing for ``mark_deleted``. So every change holds the index's write lock and queries its read
lock; :func:`change` makes a batch of additions and deletions one hold of the lock (one ``add_items``
call for all the rows, then the deletions), so that a stream of deltas costs queries one short wait per
batch rather than one per item.

A new vector for an id the graph already holds is not written over the old one: hnswlib's update repairs
the neighbours' links (about 2 ms per item on 100k 65-d items at M=32, ten times an insertion). The old node
is marked deleted instead and the vector inserted as a fresh node under a label of its own (from
:data:`ALIAS_BASE` up); the index maps such labels back to the id (``index._owners``) in every answer, and
the id to its current label (``index._alias``) when it is deleted or its vector read. The stale nodes stay in
the graph (counted in ``params["superseded"]``) until the next build.

The exact-search copy of the vectors (:func:`._search.exact_data`) is kept in step: rows updated in
place, new labels appended to a buffer with spare capacity (readers slice it to the length they captured).

An augmented inner-product index (``mips="augmented"``) adds ``sqrt(R^2 - |x|^2)`` to each vector, R the
largest norm at build time: a vector added later with a larger norm cannot be placed (it gets 0 there and the
graph ranks it as if its score were ``q.x - (|x|^2 - R^2) / 2``: far too low, never found among the first k).
Such ids are kept aside (``index._outside``: id -> vector) and every graph search scores them exactly and
merges them in (:func:`._search.merge_outside`); they are counted (``params["over_radius"]``) and the next
full build places them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...exceptions import InvalidModelData

# ``index`` below is a vectorstore.ItemIndex (not imported: index.py imports this module).

__all__ = ["ALIAS_BASE", "add_items", "change", "mark_deleted"]

#: the largest id span an exclusion table is made for (ItemIndex._label_span)
SPAN_LIMIT = 262_144
#: labels of fresh nodes for ids whose vector changed start here (ids stay below it)
ALIAS_BASE = 1 << 40

log = logging.getLogger(__name__)


def _labels(ids: Any, n: int | None = None) -> np.ndarray:
    labels = np.asarray(ids)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (n is not None and labels.shape[0] != n):
        raise InvalidModelData(f"ids must be {n if n is not None else 'a list of'} integers, got shape "
                               f"{labels.shape} dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InvalidModelData(f"ids must be >= 0, got {int(labels.min())}")
    if labels.size > 1 and np.unique(labels).size != labels.size:
        raise InvalidModelData("ids must be unique")
    return labels.astype(np.int64)


def add_items(index: Any, arr: np.ndarray, ids: Any, exact_rows: np.ndarray) -> None:
    """Insert the checked float32 rows ``arr`` under ``ids`` (a label already present gets its vector replaced
    and is live again); ``exact_rows`` are the rows as exact search reads them (normalised for cosine).

    Raises:
        InvalidModelData: bad or repeated ids.
    """
    change(index, arr, ids, exact_rows, np.empty(0, np.int64))


def change(index: Any, arr: np.ndarray, ids: Any, exact_rows: np.ndarray, deleted: Any) -> int:
    """:func:`add_items` of ``arr`` under ``ids``, then :func:`mark_deleted` of ``deleted`` (ids not in the
    index skipped), in one hold of the write lock. Returns how many ids were newly deleted.

    Raises:
        InvalidModelData: bad or repeated ids.
    """
    labels = _labels(ids, arr.shape[0])
    gone = _labels(deleted)
    stored, over = _stored(index, arr) if labels.size else (arr, None)
    if labels.size and labels.max() >= ALIAS_BASE:
        raise InvalidModelData(f"ids must be < {ALIAS_BASE}, got {int(labels.max())}")
    with index._gate.write():
        if labels.size:
            hnsw = index._index
            needed = hnsw.element_count + labels.size
            if needed > hnsw.get_max_elements():
                hnsw.resize_index(max(needed, hnsw.get_max_elements() * 3 // 2 + 1024))
            hnsw.add_items(stored, _fresh_labels(index, labels), num_threads=1)
            index._deleted.difference_update(labels.tolist())
            if over is not None and (over.any() or index._outside):
                outside = dict(index._outside)  # one assignment: a reader sees the old set or the new one
                for i, row, far in zip(labels.tolist(), arr, over.tolist()):
                    if far:
                        outside[i] = row.copy()
                    else:
                        outside.pop(i, None)
                index._outside = outside
            index.params["count"] = int(hnsw.element_count)
            _update_exact(index, labels, exact_rows)
            if isinstance(index._span, int) and not isinstance(index._span, bool):  # grown in place: no id scan
                top = max(index._span, int(labels.max()) + 1)
                index._span = top if top <= SPAN_LIMIT else None
            index._dead = None
        done = _delete(index, gone)[0] if gone.size else 0
    return done


def _fresh_labels(index: Any, ids: np.ndarray) -> np.ndarray:
    """The graph labels to insert ``ids`` under (under the write lock): an id the graph already holds (live or
    deleted) has its current node marked deleted and gets a fresh label; a new id is its own label."""
    out = ids.copy()
    alias: dict[int, int] = index._alias
    moved: list[tuple[int, int]] = []
    for n, i in enumerate(ids.tolist()):
        label = alias.get(i, i)
        if label == i and i not in index._deleted and not _held(index, i):
            continue  # a new id
        if i not in index._deleted:  # its node is live: hide it (a deleted id's node already is)
            index._index.mark_deleted(label)
        moved.append((n, i))
    if moved:
        owners = index._owners
        start = len(owners)
        grown = np.empty(start + len(moved), np.int64)
        grown[:start] = owners
        for j, (n, i) in enumerate(moved):
            out[n] = ALIAS_BASE + start + j
            alias[i] = int(out[n])
            grown[start + j] = i
        index._owners = grown  # one assignment: a reader maps with the old array or the new one
        index.params["superseded"] = int(index.params.get("superseded", 0)) + len(moved)
    return out


def _held(index: Any, label: int) -> bool:
    """Whether the graph has a live node labelled ``label``."""
    try:
        index._index.get_items([label])
    except RuntimeError:  # "Label not found" (or marked deleted)
        return False
    return True


def _stored(index: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows as the graph stores them (augmented with the MIPS coordinate for augmented inner product), and
    which rows are longer than the index's radius (``None``: not an augmented index)."""
    if not index._augmented:
        return arr, None
    norms2 = np.einsum("ij,ij->i", arr.astype(np.float64), arr.astype(np.float64))
    radius2 = float(index.params["mips_radius"]) ** 2
    far = norms2 > radius2 * (1 + 1e-6)
    over = int(far.sum())
    if over:
        level = logging.DEBUG if index.params.get("over_radius") else logging.WARNING  # once per index
        index.params["over_radius"] = int(index.params.get("over_radius", 0)) + over
        log.log(level, "%d added vector(s) are longer than the index's radius: searched exactly beside the graph "
                "until the next build", over)
    extra = np.sqrt(np.maximum(radius2 - norms2, 0.0)).astype(np.float32)[:, None]
    return np.ascontiguousarray(np.hstack([arr, extra])), far


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
    with index._gate.write():
        done, missing = _delete(index, labels)
    if missing:
        raise InvalidModelData(f"id {missing[0]} is not in the index ({len(missing)} missing)")
    return done


def _delete(index: Any, labels: np.ndarray) -> tuple[int, list[int]]:
    """Mark ``labels`` deleted (under the write lock): how many were newly deleted, and those not held."""
    done, missing = 0, []
    for label in labels.tolist():
        if label in index._deleted:
            continue
        try:
            index._index.mark_deleted(index._alias.get(label, label))
        except RuntimeError:  # hnswlib: "Label not found"
            missing.append(label)
            continue
        index._deleted.add(label)
        done += 1
    index._dead = None
    return done, missing
