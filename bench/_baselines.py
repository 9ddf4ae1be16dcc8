"""Baselines of the recsys benchmark, scored exactly over the whole catalogue (train items excluded).

* ``als``: implicit's ALS, its grid chosen on the tune split, refitted on the report train;
* ``ease``: EASE (Steck 2019), closed form ``B = I - P diag(1/diag P)``, ``P = (X^T X + lambda I)^-1``;
  an items x items dense inverse, so only where the catalogue allows (:data:`EASE_MAX_ITEMS`); lambda
  chosen on the tune split;
* ``gfcf``: GF-CF (Shen et al., CIKM 2021) with its paper's settings: ``x P + 0.3 x D^-1/2 V V^T D^1/2``,
  ``P = R~^T R~``, V the top 256 right singular vectors of ``R~ = D_u^-1/2 R D_i^-1/2``;
* ``bspm``: BSPM (Choi et al., SIGIR 2023) with its Gowalla settings: blur ``x P + 0.2 x D^-1/2 V V^T
  D^1/2`` (448 vectors), then sharpening ``dy/dt = -y P`` over T = 2.5 in one RK4 step;
* ``chebycf``: ChebyCF (Kim et al., SIGIR 2025) with its Gowalla settings: the order-8 Chebyshev
  interpolation of its plateau response (flatness 1.5) of ``P``, plus 0.2 times the ideal pass of the top
  512 vectors, inside item-degree normalisation ``D^-0.4 . D^0.4``.

The published settings are the papers' (chosen on their test sets, which for Gowalla is the file this
project holds back): they are shown as published, untuned. Sparse products run in torch (2 threads).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from recsys import Interactions, ranking_metrics

Scorer = Callable[[np.ndarray], np.ndarray]  # dense user ids -> batch x items scores
EASE_MAX_ITEMS = 20_000  # a 20k x 20k float64 inverse is 3.2 GB; Gowalla's 41k would be 13 GB
ALS_GRID = [{"factors": f, "regularization": r, "alpha": a, "iterations": 15}
            for f in (64, 128, 256) for r, a in ((0.01, 1.0), (0.1, 1.0), (1.0, 10.0), (5.0, 40.0))]
EASE_GRID = [{"lam": lam} for lam in (100.0, 300.0, 1000.0, 3000.0)]


def binary(train: Interactions) -> sp.csr_matrix:
    """The users x items 0/1 matrix of ``train`` (weights ignored, as in every graph filter)."""
    m = sp.csr_matrix(train.user_matrix(), dtype=np.float32, copy=True)
    m.data[:] = 1.0
    return m


def evaluate(scorer: Scorer, train: Interactions, test: Interactions, k: int = 20, batch: int = 1000) -> dict:
    """Recall@k / NDCG@k of ``scorer`` on ``test`` (the LightGCN protocol, train items excluded)."""
    seen, truth = binary(train), test.user_matrix()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    tops = []
    for start in range(0, len(users), batch):
        u = users[start : start + batch]
        scores = np.array(scorer(u), dtype=np.float32)
        scores[seen[u].nonzero()] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        tops.append(np.take_along_axis(top, order, 1))
    return ranking_metrics((np.arange(len(users)), np.vstack(tops)), truth[users], k)


def _inv_pow(d: np.ndarray, p: float) -> np.ndarray:
    out = np.zeros(len(d), np.float32)
    out[d > 0] = d[d > 0] ** -p
    return out


def _torch_csr(m: sp.csr_matrix):
    import torch

    m = sp.csr_matrix(m, dtype=np.float32)
    return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(np.int64)),
                                   torch.from_numpy(m.indices.astype(np.int64)), torch.from_numpy(m.data),
                                   size=m.shape)


class _Filters:
    """``R~`` and what the filters need of it: ``P x`` for items x batch dense x, the top singular vectors."""

    def __init__(self, x: sp.csr_matrix) -> None:
        import torch

        torch.set_num_threads(2)
        self.x = x
        du, self.di = np.asarray(x.sum(1)).ravel(), np.asarray(x.sum(0)).ravel()
        self.rt = sp.csr_matrix(sp.diags(_inv_pow(du, 0.5)) @ x @ sp.diags(_inv_pow(self.di, 0.5)))
        self._r, self._rt = _torch_csr(self.rt), _torch_csr(self.rt.T.tocsr())

    def P(self, z):
        import torch

        return torch.sparse.mm(self._rt, torch.sparse.mm(self._r, z))

    def vectors(self, k: int):
        import torch
        from scipy.sparse.linalg import svds

        # ARPACK, as the papers' code (exact top k; slower than this project's randomized SVD)
        start = np.random.default_rng(0).standard_normal(min(self.rt.shape))  # a seeded start: reproducible
        _, _, vt = svds(self.rt.astype(np.float64), k=min(k, min(self.rt.shape) - 1), which="LM", v0=start)
        return torch.from_numpy(np.ascontiguousarray(vt.T, dtype=np.float32))

    def rows(self, u: np.ndarray):
        import torch

        return torch.from_numpy(np.asarray(self.x[u].todense(), dtype=np.float32).T.copy())

    def degree(self, p: float):
        import torch

        return torch.from_numpy(np.where(self.di > 0, self.di, 1).astype(np.float32) ** p * (self.di > 0))[:, None]


def gfcf(train: Interactions, alpha: float = 0.3, k: int = 256) -> Scorer:
    f = _Filters(binary(train))
    v, dm, dp = f.vectors(k), f.degree(-0.5), f.degree(0.5)

    def score(u: np.ndarray) -> np.ndarray:
        x = f.rows(u)
        return (f.P(x) + alpha * (v @ (v.T @ (x * dm))) * dp).T.numpy()

    return score


def bspm(train: Interactions, beta: float = 0.2, k: int = 448, t_sharpen: float = 2.5) -> Scorer:
    f = _Filters(binary(train))
    v, dm, dp = f.vectors(k), f.degree(-0.5), f.degree(0.5)

    def score(u: np.ndarray) -> np.ndarray:
        x = f.rows(u)
        y = f.P(x) + beta * (v @ (v.T @ (x * dm))) * dp
        out, term = y.clone(), y
        for n in range(1, 5):  # one RK4 step of dy/dt = -y P: y (I - hP + (hP)^2/2 - (hP)^3/6 + (hP)^4/24)
            term = f.P(term) * (-t_sharpen / n)
            out += term
        return out.T.numpy()

    return score


def chebyshev_coefficients(order: int, flatness: float) -> np.ndarray:
    """ChebyCF's interpolation coefficients of its plateau response at the Chebyshev nodes."""
    x = np.round(np.cos((order - np.arange(order + 1)) / order * math.pi), 3)
    target = np.round(np.where(x < 0, np.abs(x) ** flatness * 0.5 + 0.5, -np.abs(x) ** flatness * 0.5 + 0.5), 3)
    nodes = np.cos(((order + 1) + 0.5 - np.arange(1, order + 2)) / (order + 1) * math.pi)
    basis = [np.ones_like(nodes), nodes]
    for _ in range(2, order + 1):
        basis.append(2 * nodes * basis[-1] - basis[-2])
    c = (np.stack(basis[: order + 1]) * target[None, :]).sum(1) * (2 / (order + 1))
    c[0] /= 2
    return c


def chebycf(train: Interactions, order: int = 8, flatness: float = 1.5, eta: int = 512, alpha: float = 0.2,
            beta: float = 0.4) -> Scorer:
    f = _Filters(binary(train))
    v, pre, post = f.vectors(eta), f.degree(-beta), f.degree(beta)
    c = chebyshev_coefficients(order, flatness)

    def score(u: np.ndarray) -> np.ndarray:
        x = f.rows(u) * pre

        def laplacian(z):  # the scaled Laplacian I - 2P (P's spectrum is in [0, 1])
            return z - 2 * f.P(z)

        t0, t1 = x, laplacian(x)
        out = c[0] * t0 + c[1] * t1
        for ck in c[2:]:
            t0, t1 = t1, 2 * laplacian(t1) - t0
            out += ck * t1
        return ((out + alpha * (v @ (v.T @ x))) * post).T.numpy()

    return score


def ease(train: Interactions, params: dict) -> Scorer:
    x = binary(train)
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += params["lam"]
    p = np.linalg.inv(gram)
    b = (-p / np.diag(p)[None, :]).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    return lambda u: np.asarray(x[u].todense(), dtype=np.float32) @ b


def als(train: Interactions, params: dict) -> Scorer:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    model = AlternatingLeastSquares(**params, random_state=0, num_threads=2)
    with threadpool_limits(1, "blas"):  # implicit's own threads; a BLAS pool under them stalls (seen here)
        model.fit(train.user_matrix().astype(np.float32), show_progress=False)
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda u: users[u] @ items.T


def tuned(method: str, tune: tuple[Interactions, Interactions], report: tuple[Interactions, Interactions],
          k: int = 20) -> dict:
    """Choose ``method``'s setting on the tune split, refit on the report train, score the report test.

    Returns:
        the report metrics plus ``params`` (the chosen setting), ``tune`` (every setting's tune Recall@k)
        and ``cpu_s`` of the report fit and scoring.
    """
    grid = {"als": ALS_GRID, "ease": EASE_GRID}.get(method, [None])
    make = {"als": als, "ease": ease}.get(method)
    tried = []
    if len(grid) > 1:
        for params in grid:
            tried.append((evaluate(make(tune[0], params), *tune, k=k)[f"recall@{k}"], params))
    best = max(tried, key=lambda t: t[0])[1] if tried else None
    started = time.process_time()
    scorer = make(report[0], best) if make else {"gfcf": gfcf, "bspm": bspm, "chebycf": chebycf}[method](report[0])
    fit_s = time.process_time() - started
    metrics = evaluate(scorer, *report, k=k)
    return {**metrics, "params": best, "tune": [(r, p) for r, p in tried], "fit_cpu_s": fit_s,
            "cpu_s": time.process_time() - started}
