"""Second-order (p, q)-biased random walks on a CSR graph, compiled with numba.

The walker never materialises transition tables (memory is the CSR plus the walks). Each step from ``v``
(having come from ``t``) picks neighbour ``x`` with probability proportional to ``w(v, x) * a(t, x)``,
with ``a = 1/p`` if ``x == t``, ``1`` if ``x`` is a neighbour of ``t`` and ``1/q`` otherwise (node2vec).

* General graphs: rejection sampling (KnightKing, PecanPy SparseOTF): propose ``x`` by edge weight,
  accept with probability ``a(t, x) / max(1/p, 1, 1/q)``; ``x in N(t)`` is a binary search in ``t``'s
  sorted neighbour list.
* Bipartite graphs (every user-item graph): ``t`` and ``x`` are on the same side, so ``a`` is ``1/p`` for
  the return step and ``1/q`` for every other one. The step is then sampled exactly in O(1): return with
  probability ``w(v,t)/p / (w(v,t)/p + (W(v) - w(v,t))/q)``, else a weight-proportional pick among the
  other neighbours.

Every walk has its own random stream, seeded from ``(seed, walk number)`` with splitmix64, so the walks
are the same for a seed whatever the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from ...exceptions import InvalidParameter

__all__ = ["CSRGraph", "random_walks", "set_threads"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


class CSRGraph:
    """A graph as CSR arrays for the walker: int64 ``indptr``, int32 sorted ``indices``, float64
    cumulative edge weights per row (``None`` when every weight is equal, for uniform sampling)."""

    def __init__(self, adjacency: sp.spmatrix, *, bipartite: bool = False) -> None:
        m = sp.csr_matrix(adjacency)
        if m.shape[0] != m.shape[1]:
            raise InvalidParameter(f"adjacency must be square, got shape {m.shape}")
        m.sort_indices()
        self.n_nodes = m.shape[0]
        self.indptr = m.indptr.astype(np.int64)
        self.indices = m.indices.astype(np.int32)
        data = np.asarray(m.data, dtype=np.float64)
        if len(data) and not (np.isfinite(data).all() and (data > 0).all()):
            raise InvalidParameter("adjacency: edge weights must be finite and > 0")
        self.weighted = bool(len(data)) and not np.all(data == data[0])
        # Row-wise cumulative weights: a weighted pick is a binary search in the row's slice.
        self.cumweights = _row_cumsum(self.indptr, data) if self.weighted else np.zeros(0)
        self.bipartite = bipartite

    def degrees(self) -> np.ndarray:
        """Number of neighbours of each node."""
        return np.diff(self.indptr)


@njit(cache=True)
def _row_cumsum(indptr: np.ndarray, data: np.ndarray) -> np.ndarray:
    out = np.empty(len(data), dtype=np.float64)
    for v in range(len(indptr) - 1):
        acc = 0.0
        for e in range(indptr[v], indptr[v + 1]):
            acc += data[e]
            out[e] = acc
    return out


@njit(cache=True, inline="always")
def _next(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(state: np.uint64) -> tuple[np.uint64, float]:
    state, z = _next(state)
    return state, float(z >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline="always")
def _pick(state, indptr, indices, cumweights, weighted, v):
    """A neighbour slot of ``v`` (index into ``indices``), by edge weight or uniformly."""
    start, end = indptr[v], indptr[v + 1]
    state, u = _uniform(state)
    if not weighted:
        e = start + np.int64(u * (end - start))
        return state, min(e, end - 1)
    target = u * cumweights[end - 1]  # each row is cumulated from 0 (_row_cumsum)
    lo, hi = start, end - 1
    while lo < hi:  # first slot whose cumulative weight exceeds target
        mid = (lo + hi) >> 1
        if cumweights[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return state, lo


@njit(cache=True, inline="always")
def _find(indptr, indices, v, x) -> int:
    """Slot of ``x`` in ``v``'s sorted neighbour list, or -1."""
    lo, hi = indptr[v], indptr[v + 1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if lo < indptr[v + 1] and indices[lo] == x:
        return lo
    return -1


@njit(cache=True, nogil=True, parallel=True)
def _walk_kernel(indptr, indices, cumweights, weighted, bipartite, starts, first_walk, walk_length,
                 inv_p, inv_q, seed, out):
    upper = max(inv_p, 1.0, inv_q)
    for w in prange(len(starts)):
        # Per-walk stream, reproducible for any thread count. The start state is a hash of (seed, walk):
        # plain seed + walk * GOLDEN would make walk w+1's stream walk w's shifted by one draw.
        _, h = _next(np.uint64(first_walk + w))
        _, state = _next(h ^ seed)
        v = starts[w]
        out[w, 0] = v
        if walk_length < 2:
            continue
        if indptr[v + 1] == indptr[v]:
            continue
        state, e = _pick(state, indptr, indices, cumweights, weighted, v)
        out[w, 1] = indices[e]
        for j in range(2, walk_length):
            t = out[w, j - 2]
            v = out[w, j - 1]
            start, end = indptr[v], indptr[v + 1]
            if bipartite:
                t_slot = _find(indptr, indices, v, t)
                if weighted:
                    w_t = cumweights[t_slot] - (cumweights[t_slot - 1] if t_slot > start else 0.0)
                    total = cumweights[end - 1]
                else:
                    w_t = 1.0
                    total = float(end - start)
                back = w_t * inv_p
                state, u = _uniform(state)
                if u * (back + (total - w_t) * inv_q) < back:
                    out[w, j] = t
                    continue
                while True:  # a weight-proportional pick among the other neighbours
                    state, e = _pick(state, indptr, indices, cumweights, weighted, v)
                    if e != t_slot:
                        break
                out[w, j] = indices[e]
            else:
                while True:
                    state, e = _pick(state, indptr, indices, cumweights, weighted, v)
                    x = indices[e]
                    if x == t:
                        a = inv_p
                    elif _find(indptr, indices, t, x) >= 0:
                        a = 1.0
                    else:
                        a = inv_q
                    state, u = _uniform(state)
                    if u * upper < a:
                        break
                out[w, j] = x


def random_walks(
    graph: CSRGraph,
    *,
    walk_length: int,
    walks_per_node: int,
    p: float = 1.0,
    q: float = 1.0,
    seed: int = 0,
    chunks: int = 8,
    progress=None,
) -> np.ndarray:
    """``walks_per_node`` (p, q)-biased walks of ``walk_length`` nodes from every node, in shuffled order.

    Args:
        graph: the :class:`CSRGraph`.
        walk_length: nodes per walk (the start included).
        walks_per_node: walks started from each node.
        p, q: return and in-out parameters (node2vec).
        seed: the walks are a function of the seed only (not of the thread count).
        chunks: the walks are generated in this many batches, with a progress call after each.
        progress: called with ``{"stage": "walks", "done", "total"}``.

    Returns:
        int32 array ``n_walks x walk_length``; a walk that reaches a node without neighbours ends there
        and the rest of its row is -1.
    """
    if walk_length < 1 or walks_per_node < 1:
        raise InvalidParameter(f"walk_length={walk_length}, walks_per_node={walks_per_node}: must be >= 1")
    if not (p > 0 and q > 0 and np.isfinite(p) and np.isfinite(q)):
        raise InvalidParameter(f"p={p}, q={q}: must be finite and > 0")
    rng = np.random.default_rng(seed)
    # Shuffled start order: skip-gram's learning rate decays over the corpus, so no node should come last.
    starts = rng.permutation(np.tile(np.arange(graph.n_nodes, dtype=np.int32), walks_per_node))
    out = np.full((len(starts), walk_length), -1, dtype=np.int32)
    bounds = np.linspace(0, len(starts), max(1, min(chunks, len(starts))) + 1).astype(np.int64)
    for a, b in zip(bounds[:-1], bounds[1:]):
        _walk_kernel(graph.indptr, graph.indices, graph.cumweights, graph.weighted, graph.bipartite,
                     starts[a:b], a, walk_length, 1.0 / p, 1.0 / q, np.uint64(seed & (2**64 - 1)), out[a:b])
        if progress is not None:
            progress({"stage": "walks", "done": int(b), "total": len(starts), "walks": int(b)})
    return out


def set_threads(n: int) -> None:
    """Use ``n`` numba threads for the walks (at most numba's pool size)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
