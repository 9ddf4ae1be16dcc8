"""LightGCN's training loop on plain matrices: BPR epochs, periodic validation, early stopping, budget.

``recsys.lightgcn.LightGCN`` validates parameters and converts ``Interactions`` to the users x items CSR
matrices this module works on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from recsys._lightgcn_ops import (
    PositiveSet,
    bpr_loss,
    normalized_adjacency,
    propagate,
    sample_negatives,
    to_torch_csr,
)
from recsys.exceptions import TrainingError
from recsys.metrics import ranking_metrics, top_k

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LightGCN fit; defaults, meaning and validation: ``recsys.lightgcn.LightGCN``."""

    dim: int
    layers: int
    lr: float
    reg: float
    epochs: int
    batch_size: int
    eval_every: int
    patience: int
    plateau_decay: float
    k: int
    init: str
    init_std: float
    reject_positives: bool
    seed: int
    threads: int
    time_budget_s: float | None


@dataclass
class TrainResult:
    """Final (best) embeddings and what happened on the way."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = "epochs"


def validation_recall(
    final: torch.Tensor, n_users: int, train: sp.csr_matrix, valid: sp.csr_matrix, k: int
) -> float:
    """Recall@k on ``valid`` of propagated embeddings: exact full ranking, ``train`` items excluded."""
    vectors = final.detach().numpy()
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    items, _ = top_k(vectors[:n_users], vectors[n_users:], k, exclude=train, users=users)
    return float(ranking_metrics((users, items), valid, k)[f"recall@{k}"])


def _initial_embeddings(
    train_matrix: sp.csr_matrix, adj: sp.csr_matrix, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    n = adj.shape[0]
    if cfg.init == "normal":
        return torch.randn(n, cfg.dim, generator=gen) * cfg.init_std
    # "svd": the leading singular vectors of the normalised interaction matrix R~ (the users x items block
    # of the adjacency), i.e. the eigenvectors of the adjacency with the largest eigenvalues: the subspace
    # LightGCN's smoothing amplifies. Rescaled to the usual embedding norm, plus a little noise so that no
    # two nodes start identical. Ranking from it is already sensible, so BPR starts far from chance.
    n_users = train_matrix.shape[0]
    r = adj[:n_users, n_users:].astype(np.float64)
    u, v = _randomized_svd(r, cfg.dim, np.random.default_rng(cfg.seed))
    x = torch.from_numpy(np.vstack([u, v]).astype(np.float32))
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12).mean() * cfg.init_std * math.sqrt(cfg.dim)
    return x + torch.randn(n, cfg.dim, generator=gen) * (cfg.init_std * 0.1)


def _randomized_svd(
    r: sp.csr_matrix, k: int, rng: np.random.Generator, oversample: int = 16, power: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Left and right singular vectors of the top ``k`` singular values (Halko et al.), zero-padded.

    A few sparse products with a thin random block: far cheaper than ``eigsh`` to the same precision as
    an initialisation needs, and deterministic for a given ``rng``.
    """
    n_rows, n_cols = r.shape
    width = min(k + oversample, n_rows, n_cols)
    q, _ = np.linalg.qr(r @ rng.standard_normal((n_cols, width)))
    for _ in range(power):
        q, _ = np.linalg.qr(r.T @ q)
        q, _ = np.linalg.qr(r @ q)
    u_small, _, vt = np.linalg.svd((r.T @ q).T, full_matrices=False)
    u = (q @ u_small)[:, :k]
    v = vt.T[:, :k]
    if u.shape[1] < k:  # fewer users or items than dimensions
        u = np.hstack([u, np.zeros((n_rows, k - u.shape[1]))])
        v = np.hstack([v, np.zeros((n_cols, k - v.shape[1]))])
    return u, v


def train(
    train_matrix: sp.csr_matrix,
    cfg: TrainConfig,
    valid_matrix: sp.csr_matrix | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Fit LightGCN with BPR on a users x items matrix.

    Args:
        train_matrix: users x items interactions (non-zero = edge).
        cfg: hyper-parameters.
        valid_matrix: held-out users x items interactions, same shape; when given, Recall@k is computed
            every ``cfg.eval_every`` epochs, the best epoch's embeddings are kept and training stops after
            ``cfg.patience`` evaluations without improvement.
        progress: called after each epoch with a dict (``stage``, ``epoch``, ``done``, ``total``, ``loss``,
            ``seconds`` and ``recall@k`` when evaluated).

    Returns:
        ``TrainResult`` with float32 numpy user and item vectors.
    """
    started = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(train_matrix, cfg, valid_matrix, progress, started)
    finally:
        torch.set_num_threads(old_threads)


def _train(
    train_matrix: sp.csr_matrix,
    cfg: TrainConfig,
    valid_matrix: sp.csr_matrix | None,
    progress: Progress | None,
    started: float,
) -> TrainResult:
    train_matrix = sp.csr_matrix(train_matrix)
    n_users, n_items = train_matrix.shape
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    adj_np = normalized_adjacency(train_matrix)
    adj = to_torch_csr(adj_np)
    coo = train_matrix.tocoo()
    keep = coo.data != 0
    edge_users = coo.row[keep].astype(np.int64)
    edge_items = coo.col[keep].astype(np.int64)
    positives = PositiveSet(edge_users, edge_items, n_users, n_items) if cfg.reject_positives else None

    ego = torch.nn.Parameter(_initial_embeddings(train_matrix, adj_np, cfg, gen))
    optimizer = torch.optim.Adam([ego], lr=cfg.lr)
    n_edges = len(edge_users)
    steps = max(1, math.ceil(n_edges / cfg.batch_size))

    def out_of_time() -> bool:
        return cfg.time_budget_s is not None and time.perf_counter() - started >= cfg.time_budget_s

    history: list[dict[str, Any]] = []
    best: tuple[float, int, torch.Tensor | None] = (-1.0, 0, None)  # (recall, epoch, final embeddings)
    bad_evals = 0
    stopped = "epochs"
    for epoch in range(1, cfg.epochs + 1):
        if out_of_time():  # e.g. used up by the previous epoch's evaluation, which then was the last
            stopped = "time_budget"
            break
        t0 = time.perf_counter()
        order = rng.permutation(n_edges)
        negatives = sample_negatives(edge_users[order], n_items, rng, positives)
        loss_sum = 0.0
        seen_edges = 0
        for s in range(steps):
            # The budget is also checked between steps: one epoch on a large graph can take minutes.
            if s > 0 and out_of_time():
                break
            sl = slice(s * cfg.batch_size, (s + 1) * cfg.batch_size)
            idx = order[sl]
            users = torch.from_numpy(edge_users[idx])
            pos = torch.from_numpy(edge_items[idx])
            neg = torch.from_numpy(negatives[sl])
            final = propagate(adj, ego, cfg.layers)
            loss, bpr = bpr_loss(final, ego, users, pos, neg, n_users, cfg.reg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(bpr) * len(idx)
            seen_edges += len(idx)
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / seen_edges,
            "seconds": time.perf_counter() - t0,
        }
        if not math.isfinite(record["loss"]):
            raise TrainingError(f"LightGCN loss became {record['loss']} at epoch {epoch}; lower lr={cfg.lr}")
        last = out_of_time()
        evaluate = valid_matrix is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs or last)
        if evaluate:
            with torch.no_grad():
                final = propagate(adj, ego.detach(), cfg.layers)
            score = validation_recall(final, n_users, train_matrix, valid_matrix, cfg.k)
            record[f"recall@{cfg.k}"] = score
            if score > best[0]:
                best = (score, epoch, final)
                bad_evals = 0
            else:
                bad_evals += 1
                # A large step size found the basin quickly; past the peak, smaller steps refine it.
                for group in optimizer.param_groups:
                    group["lr"] *= cfg.plateau_decay
        history.append(record)
        logger.debug("lightgcn epoch %d: %s", epoch, record)
        if progress is not None:
            progress({"stage": "train", "done": epoch, "total": cfg.epochs, **record})
        if evaluate and bad_evals >= cfg.patience:
            stopped = "early_stopping"
            break
        if last:
            stopped = "time_budget"
            break

    if best[2] is not None:
        final, best_epoch = best[2], best[1]
    else:
        with torch.no_grad():
            final = propagate(adj, ego.detach(), cfg.layers)
        best_epoch = len(history)
    logger.info("lightgcn stopped (%s) after %d epochs, best epoch %d", stopped, len(history), best_epoch)
    vectors = final.numpy().astype(np.float32, copy=True)
    if not np.isfinite(vectors).all():
        raise TrainingError(f"LightGCN produced non-finite embeddings; lower lr={cfg.lr}")
    return TrainResult(vectors[:n_users], vectors[n_users:], history, best_epoch, stopped)
