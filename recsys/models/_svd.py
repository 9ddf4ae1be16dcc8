"""Randomized truncated SVD of a sparse matrix (Halko, Martinsson & Tropp 2011), numpy and scipy only.

Shared by the spectral model (its whole fit) and LightGCN's SVD start; imports no torch.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

__all__ = ["randomized_svd"]


def randomized_svd(
    matrix: sp.spmatrix,
    k: int,
    rng: np.random.Generator,
    *,
    oversample: int = 16,
    power: int = 4,
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The top ``k`` singular triplets of a sparse matrix by subspace iteration on a random block.

    Args:
        matrix: ``m x n`` sparse matrix.
        k: number of singular triplets; fewer come back (zero-padded) when ``min(m, n) < k``.
        rng: the source of the random start (the result is a function of its seed).
        oversample: extra columns of the block: the accuracy of the last of the ``k`` vectors grows with
            it when the spectrum decays slowly, as it does for sparse interaction graphs.
        power: subspace (power) iterations; each multiplies by ``matrix`` and its transpose once.
        dtype: working precision; float32 halves the time of every product and is ample for embeddings.

    Returns:
        ``(u, s, v)``: ``m x k`` left vectors, ``k`` singular values in decreasing order, ``n x k`` right
        vectors (``matrix ~ u @ diag(s) @ v.T``).
    """
    a = sp.csr_matrix(matrix, dtype=dtype)
    at = a.T.tocsr()  # one CSR of the transpose: a CSC product would run single-threaded and slower
    n_rows, n_cols = a.shape
    width = min(k + oversample, n_rows, n_cols)
    q = _orthonormal(a @ rng.standard_normal((n_cols, width)).astype(dtype))
    for _ in range(power):
        q = _orthonormal(at @ q)
        q = _orthonormal(a @ q)
    u_small, s, vt = np.linalg.svd(np.ascontiguousarray((at @ q).T), full_matrices=False)
    u = q @ u_small[:, :k]
    s = s[:k]
    v = vt[:k].T
    if len(s) < k:  # fewer rows or columns than asked for
        pad = k - len(s)
        u = np.hstack([u, np.zeros((n_rows, pad), dtype)])
        v = np.hstack([v, np.zeros((n_cols, pad), dtype)])
        s = np.concatenate([s, np.zeros(pad, s.dtype)])
    return u, s, v


def _orthonormal(block: np.ndarray) -> np.ndarray:
    """An orthonormal basis of ``block``'s columns by Cholesky QR (a GEMM and a triangular solve).

    Several times faster than Householder QR on tall blocks, and as accurate here: each step's block is
    well conditioned, since every power half-step is re-orthonormalised. The Gram matrix is formed and
    factorised in float64; a rank-deficient block (a tiny or degenerate graph) falls back to Householder.
    """
    gram = (block.T @ block).astype(np.float64)
    try:
        chol = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        return np.linalg.qr(block)[0]
    if np.min(np.abs(np.diag(chol))) < 1e-6 * np.max(np.abs(np.diag(chol))):
        return np.linalg.qr(block)[0]
    return sla.solve_triangular(chol, block.T.astype(np.float64), lower=True).T.astype(block.dtype)
