"""The reference windows of one detector channel, and the kNN distance of new windows to them.

Two parts, one rule. The **training windows** (the prefix a detector was fitted on) sit in an hnswlib
index (:class:`vectorstore.ItemIndex`, L2) published with the detector; the **recent windows** of
the stream join as it passes and are searched exactly. A window ending at row ``j`` is a reference for
the window ending at row ``t`` when ``t - delay - memory < j <= t - delay`` (recent ones) or, for the
training windows of the same series, when ``j <= t - delay``:

* the ``delay`` keeps an anomaly from excusing itself at once: its own windows only join after it, and a
  lasting change becomes the new normal once they have;
* ``memory`` bounds what the recent part holds, in rows (``stride`` > 1 keeps one window in ``stride``:
  consecutive long-context windows are near copies of each other);
* the rule depends on the row alone, so a batch and a stream fed the same rows in any chunks search the
  same reference set. Distances are re-ranked exactly in float64 from the stored vectors, so both give
  the same distances whatever the chunking.

A third part, the **normal windows**, holds the windows an on-call engineer said were not an anomaly (a
series' ``normal`` labels, :mod:`anomaly._labels`): always references, whatever the rows, searched exactly.

The distance of a window is the mean Euclidean distance to its ``k`` nearest references; NaN when it has
none yet.
"""

from __future__ import annotations

import numpy as np

from vectorstore import ItemIndex

from .exceptions import InvalidParameter

__all__ = ["Reference"]

#: Query rows handled per block of the exact search: the eligible band of the recent windows moves by
#: one row per query row, so a block shares all but its edges.
_BLOCK = 128
#: Training sets up to this many windows are searched exactly (faster than the graph at this size, and
#: exact); larger ones through their hnswlib index.
EXACT_MAX = 4096


class Reference:
    """Training windows (hnswlib) plus a bounded memory of recent windows (exact) for one channel.

    Args:
        dim: embedding length.
        delay: rows a window waits before it can be a reference.
        memory: rows of recent windows kept (the oldest leave first).
        stride: keep one recent window in ``stride`` (its end row a multiple of ``stride``).
        k: neighbours averaged in the distance.
        ef: hnswlib search breadth over the training windows.

    Raises:
        InvalidParameter: a size below 1 (``delay`` below 0).
    """

    def __init__(self, dim: int, *, delay: int, memory: int, stride: int = 1, k: int = 1, ef: int = 32) -> None:
        if delay < 0 or memory < 1 or stride < 1 or k < 1 or ef < 1 or dim < 1:
            raise InvalidParameter(f"delay={delay}, memory={memory}, stride={stride}, k={k}, ef={ef}, dim={dim}: "
                                   "delay must be >= 0 and the others >= 1")
        self.dim, self.delay, self.memory, self.stride, self.k, self.ef = dim, delay, memory, stride, k, ef
        self.static_index: ItemIndex | None = None
        self.static_vectors = np.zeros((0, dim), np.float32)
        self.static_rows = np.zeros(0, np.int64)
        self.static_own = True
        #: the training windows' main direction: graph queries go in its order (see _static_candidates)
        self.static_axis: np.ndarray | None = None
        self._static_aug = _augmented(self.static_vectors)
        self._recent = _RecentWindows(dim)
        self._normal_aug = _augmented(np.zeros((0, dim), np.float32))
        self.normal_rows = np.zeros(0, np.int64)

    @property
    def recent_vectors(self) -> np.ndarray:
        """The recent windows' embeddings, oldest first (a read-only view)."""
        return self._recent.aug[:, :-1]

    @property
    def recent_rows(self) -> np.ndarray:
        """The recent windows' end rows, increasing (a read-only view)."""
        return self._recent.rows

    # -- contents ------------------------------------------------------------------------------------------
    def set_static(self, vectors: np.ndarray, rows: np.ndarray, *, own: bool = True,
                   index: ItemIndex | None = None) -> None:
        """Make ``vectors`` (ending at ``rows``) the training windows; ``own``: they are this series' past.

        ``index`` is a published hnswlib index over the same vectors (built here when not given); sets of
        at most :data:`EXACT_MAX` windows are searched exactly and need none.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.static_vectors, self.static_rows, self.static_own = vectors, np.asarray(rows, np.int64), own
        if index is None and vectors.shape[0] > EXACT_MAX:
            index = ItemIndex.build(vectors, space="l2", M=16, ef_construction=100, ef=self.ef, num_threads=1)
        self.static_index = index if vectors.shape[0] > EXACT_MAX else None
        self.static_axis = _main_axis(vectors) if self.static_index is not None else None
        self._static_aug = _augmented(vectors)

    def shared(self, *, own: bool) -> Reference:
        """A reference with the same training windows and no recent ones (each scorer owns its recent part);
        ``own``: the windows are the past of the series it scores, else another series' (a new series id: no
        trivial-match exclusion against the training rows)."""
        ref = Reference(self.dim, delay=self.delay, memory=self.memory, stride=self.stride, k=self.k, ef=self.ef)
        ref.static_index, ref.static_vectors, ref.static_rows = self.static_index, self.static_vectors, self.static_rows
        ref.static_axis, ref.static_own, ref._static_aug = self.static_axis, own, self._static_aug
        return ref

    def foreign(self) -> Reference:
        """A copy sharing the training windows as another series' past (for a new series id)."""
        return self.shared(own=False)

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Remember the windows ending at ``rows`` (increasing, after every row added before); they become
        references ``delay`` rows later. Windows off the stride are dropped."""
        rows = np.asarray(rows, np.int64)
        keep = rows % self.stride == 0
        if keep.any():
            self._recent.append(_augmented(np.asarray(vectors, np.float32)[keep]), rows[keep])

    def forget_before(self, next_row: int) -> None:
        """Drop recent windows that no row from ``next_row`` on can use."""
        self._recent.drop(int(np.searchsorted(self.recent_rows, next_row - self.delay - self.memory, side="right")))

    def set_normal(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Make ``vectors`` (windows labelled normal, ending at ``rows`` of the series) the normal windows:
        references for every query (none: an empty array)."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        order = np.argsort(np.asarray(rows, np.int64), kind="stable")
        self._normal_aug, self.normal_rows = _augmented(vectors[order]), np.asarray(rows, np.int64)[order]

    def clear_recent(self) -> None:
        """Forget every recent window."""
        self._recent = _RecentWindows(self.dim)

    # -- distances -----------------------------------------------------------------------------------------
    def distances(self, queries: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """kNN distance of each query window (ending at ``rows``) to its references.

        Returns:
            ``(distance, nearest_row, nearest_is_training)``: the mean distance to the ``k`` nearest
            references (NaN without any), the end row of the nearest one (-1 without) and whether it is a
            training window (its row then counts in the training series).
        """
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        rows = np.asarray(rows, np.int64)
        n, k = q.shape[0], self.k
        best = np.full((n, k), np.inf)
        best_row = np.full((n, k), -1, np.int64)
        best_static = np.zeros((n, k), bool)
        if n == 0:
            return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, bool)
        for cand, cand_rows, is_static in (self._static_candidates(q, rows), self._recent_candidates(q, rows),
                                           self._normal_candidates(q)):
            if cand is None:
                continue
            if k == 1:  # the merge below, for one neighbour: a candidate replaces the best only when nearer
                nearer = cand[:, 0] < best[:, 0]
                best[nearer, 0], best_row[nearer, 0], best_static[nearer, 0] = cand[nearer, 0], cand_rows[nearer, 0], \
                    is_static
                continue
            merged = np.concatenate([best, cand], axis=1)
            merged_rows = np.concatenate([best_row, cand_rows], axis=1)
            merged_static = np.concatenate([best_static, np.full(cand.shape, is_static)], axis=1)
            order = np.argsort(merged, axis=1, kind="stable")[:, :k]
            best = np.take_along_axis(merged, order, axis=1)
            best_row = np.take_along_axis(merged_rows, order, axis=1)
            best_static = np.take_along_axis(merged_static, order, axis=1)
        found = np.isfinite(best).all(axis=1)
        dist = np.where(found, best.mean(axis=1) if k > 1 else best[:, 0], np.nan)
        return dist, np.where(found, best_row[:, 0], -1), best_static[:, 0] & found

    def _static_candidates(self, q: np.ndarray, rows: np.ndarray):
        n_static = self.static_rows.shape[0]
        if n_static == 0:
            return None, None, True
        # Training windows of this series ending less than `delay` rows before a query are not references
        # yet (they overlap it, or are its own recent past); another series' training windows always are.
        hi_row = rows - self.delay if self.static_own else np.full(rows.shape, np.iinfo(np.int64).max)
        if n_static <= EXACT_MAX or self.static_index is None:
            return (*_band_nearest(self._static_aug, self.static_rows, q, None, hi_row, self.k), True)
        banned = np.zeros(rows.shape[0], np.int64)
        if self.static_own:
            banned = np.minimum(np.clip(self.static_rows[-1] - hi_row, 0, None), n_static)
        fetch = np.minimum(n_static, self.k + banned)
        out = np.full((rows.shape[0], self.k), np.inf)
        out_rows = np.full((rows.shape[0], self.k), -1, np.int64)
        # A graph search asked for more neighbours than its beam (the first `delay` rows after the prefix,
        # whose newest training windows are not references yet) widens its beam to all of them: hundreds of
        # neighbours to throw most away. Those few rows are searched exactly, which is cheaper and exact.
        wide = fetch > max(self.ef, self.k)
        if wide.any():
            sel = np.flatnonzero(wide)
            out[sel], out_rows[sel] = _band_nearest(self._static_aug, self.static_rows, q[sel], None, hi_row[sel],
                                                    self.k)
        for f in np.unique(fetch[~wide]):
            sel = np.flatnonzero(fetch == f)
            if self.static_axis is not None and sel.size > 1:
                # Each graph search is on its own (the same answer in any order), but searches of similar
                # windows walk the same nodes: in the order of their main coordinate, a search finds most
                # of the graph it needs still in the CPU cache (a quarter faster on a 20,000-window index).
                sel = sel[np.argsort(q[sel] @ self.static_axis, kind="stable")]
            qs = q[sel]
            ids, _ = self.static_index.query(qs, k=int(f), exact=False)
            ids = np.atleast_2d(ids)
            cand_rows = np.where(ids >= 0, self.static_rows[np.maximum(ids, 0)], -1)
            ok = (ids >= 0) & (cand_rows <= hi_row[sel][:, None])
            d = _exact(qs, self.static_vectors, np.maximum(ids, 0))
            d[~ok] = np.inf
            if f == 1:  # one candidate each: nothing to order
                out[sel, 0], out_rows[sel, 0] = d[:, 0], cand_rows[:, 0]
                continue
            order = np.argsort(d, axis=1, kind="stable")[:, : self.k]
            m = order.shape[1]
            out[sel, :m] = np.take_along_axis(d, order, axis=1)
            out_rows[sel, :m] = np.take_along_axis(cand_rows, order, axis=1)
        return out, out_rows, True

    def _recent_candidates(self, q: np.ndarray, rows: np.ndarray):
        if self.recent_rows.shape[0] == 0:
            return None, None, False
        dist, found = _band_nearest(self._recent.aug, self.recent_rows, q, rows - self.delay - self.memory,
                                    rows - self.delay, self.k)
        return dist, found, False


    def _normal_candidates(self, q: np.ndarray):
        if self.normal_rows.shape[0] == 0:
            return None, None, False
        everything = np.full(q.shape[0], np.iinfo(np.int64).max, np.int64)
        dist, found = _band_nearest(self._normal_aug, self.normal_rows, q, None, everything, self.k)
        return dist, found, False


class _RecentWindows:
    """Recent windows (as :func:`_augmented` rows) and their end rows, oldest first, in buffers that grow by
    doubling: appending a window copies no other, and the oldest leave by moving the start."""

    def __init__(self, dim: int) -> None:
        self._aug = np.empty((64, dim + 1), np.float32)
        self._rows = np.empty(64, np.int64)
        self._start = self._end = 0

    @property
    def aug(self) -> np.ndarray:
        return self._aug[self._start : self._end]

    @property
    def rows(self) -> np.ndarray:
        return self._rows[self._start : self._end]

    def append(self, aug: np.ndarray, rows: np.ndarray) -> None:
        live, m = self._end - self._start, rows.shape[0]
        if self._end + m > self._rows.shape[0]:
            size = max(self._rows.shape[0], 2 * (live + m))
            new_aug, new_rows = np.empty((size, self._aug.shape[1]), np.float32), np.empty(size, np.int64)
            new_aug[:live], new_rows[:live] = self.aug, self.rows
            self._aug, self._rows, self._start, self._end = new_aug, new_rows, 0, live
        self._aug[self._end : self._end + m], self._rows[self._end : self._end + m] = aug, rows
        self._end += m

    def drop(self, count: int) -> None:
        self._start = min(self._start + count, self._end)


def _augmented(vectors: np.ndarray) -> np.ndarray:
    """``[v, -|v|^2 / 2]`` per row (float32): the nearest by squared distance is the largest product with
    ``[q, 1]`` (see :func:`_band_nearest`)."""
    out = np.empty((vectors.shape[0], vectors.shape[1] + 1), np.float32)
    out[:, :-1], out[:, -1] = vectors, -0.5 * np.einsum("ij,ij->i", vectors, vectors)
    return out


def _band_nearest(aug_ref: np.ndarray, ref_rows: np.ndarray, q: np.ndarray, lo_row: np.ndarray | None,
                  hi_row: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest of each query among the references (:func:`_augmented` rows ``aug_ref``) with
    ``lo_row < row <= hi_row`` (rows sorted).

    Candidates come from a float32 matrix product over blocks of queries whose eligible bands overlap (only
    the band edges are masked per query); the chosen ones are measured again exactly in float64.
    Returns distances (inf where fewer than ``k``) and the candidates' rows (-1 there).
    """
    ref = aug_ref[:, :-1]
    n = q.shape[0]
    out = np.full((n, k), np.inf)
    out_rows = np.full((n, k), -1, np.int64)
    hi = np.searchsorted(ref_rows, hi_row, side="right")
    lo = np.zeros(n, np.int64) if lo_row is None else np.searchsorted(ref_rows, lo_row, side="right")
    # Nearest by squared distance = largest q.r - |r|^2 / 2: one product of [q, 1] with [r, -|r|^2 / 2].
    scratch = None
    aug_q = np.empty((n, q.shape[1] + 1), np.float32)
    aug_q[:, :-1], aug_q[:, -1] = q, 1.0
    for a in range(0, n, _BLOCK):
        b = min(n, a + _BLOCK)
        c0, c1 = int(lo[a:b].min()), int(hi[a:b].max())
        if c1 <= c0:
            continue
        if scratch is None or scratch.size < (b - a) * (c1 - c0):
            # One buffer for every block: a fresh multi-megabyte array per block costs more in page faults
            # than the product itself.
            scratch = np.empty(max(_BLOCK * int((hi - lo).max() + _BLOCK), (b - a) * (c1 - c0)), np.float32)
        sims = np.matmul(aug_q[a:b], aug_ref[c0:c1].T, out=scratch[: (b - a) * (c1 - c0)].reshape(b - a, c1 - c0))
        # Columns every query of the block may use need no mask: only the band's two moving edges do (left of
        # the shared middle a column is only ever too old, right of it only too new).
        lo_b, hi_b = lo[a:b, None] - c0, hi[a:b, None] - c0
        inner0, inner1 = int(lo_b.max()), int(hi_b.min())
        cols = np.arange(c1 - c0)[None, :]
        if inner1 >= inner0:
            if inner0 > 0:
                np.copyto(sims[:, :inner0], -np.inf, where=cols[:, :inner0] < lo_b)
            if inner1 < c1 - c0:
                np.copyto(sims[:, inner1:], -np.inf, where=cols[:, inner1:] >= hi_b)
        else:
            np.copyto(sims, -np.inf, where=(cols < lo_b) | (cols >= hi_b))
        take = min(k, c1 - c0)
        if take == 1:
            pick = np.argmax(sims, axis=1)[:, None]
            valid = np.isfinite(sims[np.arange(b - a), pick[:, 0]])[:, None]
        else:
            pick = np.argsort(-sims, axis=1, kind="stable")[:, :take]
            valid = np.isfinite(np.take_along_axis(sims, pick, axis=1))
        d = _exact(q[a:b], ref[c0:c1], pick)
        d[~valid] = np.inf
        out[a:b, :take] = d
        out_rows[a:b, :take] = np.where(valid, ref_rows[c0:c1][pick], -1)
    return out, out_rows


def _main_axis(vectors: np.ndarray) -> np.ndarray:
    """The direction along which ``vectors`` spread most (their first principal axis), float32."""
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)
    return np.ascontiguousarray(axes[:, -1], dtype=np.float32)


def _exact(q: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Euclidean distances (float64) of each query to its candidates ``ref[ids]`` (one row of ids per query),
    computed from the differences so that a pair's distance never depends on the rest of the batch."""
    diff = ref[ids].astype(np.float64) - q[:, None, :].astype(np.float64)
    return np.sqrt(np.einsum("mkd,mkd->mk", diff, diff))
