"""LightGCN's objective: negative sampling and the BPR loss's gradient, as sparse products.

Node numbering follows the bipartite graph: users are nodes ``0 .. n_users-1``, item ``i`` is node
``n_users + i``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from .propagation import to_torch_csr

__all__ = ["PositiveSet", "sample_negatives", "bpr_gradient"]


class PositiveSet:
    """Vectorised membership test for (user, item) pairs.

    A dense boolean users x items table when it fits in ``dense_limit`` bytes (one indexed load per
    query); otherwise sorted int64 keys ``user * n_items + item`` searched with ``np.searchsorted``.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                 dense_limit: int = 1 << 28) -> None:
        self.n_items = int(n_items)
        keys = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        if int(n_users) * self.n_items <= dense_limit:
            self._dense: np.ndarray | None = np.zeros(int(n_users) * self.n_items, dtype=bool)
            self._dense[keys] = True
            self._keys = keys[:0]
        else:
            self._dense = None
            self._keys = np.unique(keys)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Boolean mask: which ``(users[k], items[k])`` pairs are interactions."""
        keys = users.astype(np.int64) * self.n_items + items.astype(np.int64)
        if self._dense is not None:
            return self._dense[keys]
        if len(self._keys) == 0:
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[pos] == keys


def sample_negatives(
    users: np.ndarray,
    n_items: int,
    rng: np.random.Generator,
    positives: PositiveSet | None = None,
    retries: int = 5,
) -> np.ndarray:
    """Uniform negative items for a batch of users.

    Args:
        users: user index of every triple.
        n_items: items are drawn from ``0 .. n_items-1``.
        rng: the source of randomness (determinism comes from its seed).
        positives: when given, draws that hit a known interaction are redrawn up to ``retries`` times
            (users who interacted with almost every item may keep a few positive "negatives").
        retries: rejection rounds.

    Returns:
        int64 array of the same length as ``users``.
    """
    neg = rng.integers(0, n_items, size=len(users), dtype=np.int64)
    if positives is None:
        return neg
    for _ in range(retries):
        bad = np.flatnonzero(positives.contains(users, neg))
        if len(bad) == 0:
            break
        neg[bad] = rng.integers(0, n_items, size=len(bad), dtype=np.int64)
    return neg


def bpr_gradient(
    final: torch.Tensor,
    indptr: np.ndarray,
    pos_items: np.ndarray,
    neg_items: np.ndarray,
) -> tuple[float, torch.Tensor]:
    """Mean BPR loss of a batch of triples and its gradient w.r.t. the propagated embeddings, by sparse products.

    The triples come in the users' CSR order (``indptr``): user ``u`` owns the
    triples ``indptr[u]:indptr[u+1]``, with positive ``pos_items[k]`` and negative ``neg_items[k]``. The
    scores of all the (user, item) pairs are ``sampled_addmm`` products on those patterns (13x less CPU
    than gathering the rows of every edge on Gowalla), and with ``c_k = dL/dd_k = -sigmoid(-d_k) / n`` the gradient is
    one sparse product ``M @ final``, ``M = (0 C; C^T 0)``, ``C = sum_k c_k (e_u e_i^T - e_u e_j^T)``.

    Args:
        final: propagated embeddings ``(n_users + n_items, d)``, users first.
        indptr: ``n_users + 1`` CSR row pointer of the triples.
        pos_items, neg_items: item indices (not node indices) of each triple.

    Returns:
        ``(mean loss, gradient)``: the gradient has ``final``'s shape; push it back through the
        propagation (self-adjoint) to get the ego embeddings' gradient.
    """
    n_users = len(indptr) - 1
    n_items = final.shape[0] - n_users
    n = len(pos_items)
    users, items = final[:n_users], final[n_users:]
    ones = np.ones(n, dtype=np.float32)

    def scores(cols: np.ndarray) -> torch.Tensor:
        pattern = to_torch_csr(sp.csr_matrix((ones, cols, indptr), shape=(n_users, n_items)), canonical=False)
        return torch.sparse.sampled_addmm(pattern, users, items.T, beta=0.0).values()

    d = scores(pos_items) - scores(neg_items)
    loss = float(torch.nn.functional.softplus(-d).mean())
    coef = (torch.sigmoid(-d) * (-1.0 / max(n, 1))).numpy()
    c = (sp.csr_matrix((coef, pos_items, indptr), shape=(n_users, n_items))
         - sp.csr_matrix((coef, neg_items, indptr), shape=(n_users, n_items)))
    m = sp.bmat([[None, c], [c.T, None]], format="csr", dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return loss, torch.sparse.mm(to_torch_csr(m), final)
