"""Reproducible vectors on which inner-product HNSW graphs lose recall: clusters with varied norms.

Real embeddings are clustered, and their norms vary (popular items, confident users). An L2 graph over
inner-product vectors augmented with ``sqrt(R^2 - |x|^2)`` (``ItemIndex`` ``mips="augmented"``) loses
recall on such data: the extra coordinate dominates the many short vectors and crowds them together.
Used by the tests and ``bench/serving.py``; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

__all__ = ["varied_norm_vectors"]


def varied_norm_vectors(n: int = 100_000, dim: int = 64, *, centres: int | None = None,
                        norms: tuple[float, float] = (0.3, 3.0), noise: float = 0.5, queries: int = 500,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Clustered item vectors whose norms vary, and query vectors drawn around the same clusters.

    Args:
        n, dim: item count and dimension.
        centres: cluster count (default ``n // 1000``, at least 10).
        norms: each item is scaled by a factor drawn log-uniformly in this range.
        noise: standard deviation of an item or query around its (standard normal) cluster centre.
        queries: query count (unscaled: a query's norm does not change its inner-product ranking).
        seed: the only source of randomness.

    Returns:
        ``(items, queries)``: float32 ``n x dim`` and ``queries x dim``.

    Raises:
        ValueError: a size below 1 or a norm range that is not positive and increasing.
    """
    if n < 1 or dim < 1 or queries < 1:
        raise ValueError(f"n={n}, dim={dim}, queries={queries} must be >= 1")
    if not 0 < norms[0] <= norms[1]:
        raise ValueError(f"norms={norms} must be positive and increasing")
    rng = np.random.default_rng(seed)
    k = centres or max(10, n // 1000)
    centre = rng.standard_normal((k, dim)).astype(np.float32)
    items = centre[rng.integers(k, size=n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    items *= np.exp(rng.uniform(np.log(norms[0]), np.log(norms[1]), (n, 1))).astype(np.float32)
    asked = centre[rng.integers(k, size=queries)] + noise * rng.standard_normal((queries, dim)).astype(np.float32)
    return items.astype(np.float32), asked.astype(np.float32)
