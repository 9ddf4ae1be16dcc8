"""A validation split carved from the training interactions, for models that stop on convergence."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["carve_validation"]


def carve_validation(
    matrix: sp.csr_matrix, fraction: float, min_interactions: int, seed: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's interactions into a fitting part and a small held-out part.

    A user with at least ``min_interactions`` interactions gives ``max(1, round(fraction * n))`` of them,
    drawn uniformly (seeded), to the held-out part; users with fewer keep all theirs, so that no sparse
    user loses the little the model knows of them.

    Args:
        matrix: users x items CSR (non-zero = interaction).
        fraction: share of each eligible user's interactions held out, in (0, 0.5].
        min_interactions: users with fewer interactions are not split.
        seed: the draw is a function of it.

    Returns:
        ``(fit, held)``: two CSR matrices of ``matrix``'s shape whose sum is ``matrix``.
    """
    m = sp.csr_matrix(matrix)
    m.sum_duplicates()
    counts = np.diff(m.indptr)
    n_held = np.where(counts >= min_interactions, np.maximum(1, np.rint(fraction * counts)), 0).astype(np.int64)
    # One random key per interaction; within each user's row, the n_held smallest keys are held out.
    rng = np.random.default_rng(seed)
    keys = rng.random(m.nnz)
    row_of = np.repeat(np.arange(m.shape[0]), counts)
    order = np.lexsort((keys, row_of))  # by row, then key
    rank = np.empty(m.nnz, dtype=np.int64)
    rank[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    held_mask = rank < n_held[row_of]
    return _subset(m, ~held_mask), _subset(m, held_mask)


def _subset(m: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    coo = m.tocoo()
    out = sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=m.shape, dtype=m.dtype)
    out.sort_indices()
    return out
