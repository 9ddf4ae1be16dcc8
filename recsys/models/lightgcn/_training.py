"""LightGCN's training loop on plain matrices: BPR epochs, periodic validation, stopping on convergence.

``LightGCN`` (:mod:`recsys.models.lightgcn.model`) validates parameters and converts ``Interactions`` to the
users x items CSR matrices this module works on.
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

from ...exceptions import TrainingError
from .._svd import randomized_svd
from ..metrics import ranking_metrics, top_k
from ._bpr import PositiveSet, bpr_gradient, sample_negatives
from .propagation import normalized_adjacency, propagate, to_torch_csr

logger = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LightGCN fit; defaults, meaning and validation: :class:`.model.LightGCN`."""

    dim: int
    layers: int
    lr: float
    reg: float
    epochs: int
    batch_size: int | None
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
    eval_users: int = 5000
    refit_epochs: int = 0
    init_filter: float = 2.0
    sampling: str = "edge"
    cpu_budget_s: float | None = None


@dataclass
class TrainResult:
    """Final (best) embeddings and what happened on the way."""

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped: str = "epochs"
    reason: str = ""
    fold_in_vectors: np.ndarray | None = None


def validation_metrics(
    final: torch.Tensor, n_users: int, train: sp.csr_matrix, valid: sp.csr_matrix, k: int,
    users: np.ndarray | None = None,
) -> tuple[float, float]:
    """(Recall@k, NDCG@k) on ``valid`` of propagated embeddings: exact full ranking, ``train`` items excluded.

    ``users`` restricts the evaluation to those users (default: every user with a held-out item).
    """
    vectors = final.detach().numpy()
    if users is None:
        users = np.flatnonzero(np.diff(valid.indptr) > 0)
    items, _ = top_k(vectors[:n_users], vectors[n_users:], k, exclude=train, users=users)
    truth = valid[users]
    m = ranking_metrics((np.arange(len(users)), items), truth, k)
    return float(m[f"recall@{k}"]), float(m[f"ndcg@{k}"])


def _initial_embeddings(
    train_matrix: sp.csr_matrix, adj: sp.csr_matrix, cfg: TrainConfig, gen: torch.Generator
) -> torch.Tensor:
    n = adj.shape[0]
    if cfg.init == "normal":
        return torch.randn(n, cfg.dim, generator=gen) * cfg.init_std
    n_users = train_matrix.shape[0]
    r = adj[:n_users, n_users:]
    if cfg.init == "spectral":
        return _spectral_start(r, cfg)
    # "svd": the leading singular vectors of the normalised interaction matrix R~ (the users x items block
    # of the adjacency), i.e. the eigenvectors of the adjacency with the largest eigenvalues: the subspace
    # LightGCN's smoothing amplifies. Rescaled to the usual embedding norm, plus a little noise so that no
    # two nodes start identical. Ranking from it is already sensible, so BPR starts far from chance.
    u, _, v = randomized_svd(r.astype(np.float64), cfg.dim, np.random.default_rng(cfg.seed), power=4,
                             dtype=np.float64)
    x = torch.from_numpy(np.vstack([u, v]).astype(np.float32))
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12).mean() * cfg.init_std * math.sqrt(cfg.dim)
    return x + torch.randn(n, cfg.dim, generator=gen) * (cfg.init_std * 0.1)


def _spectral_start(r: sp.csr_matrix, cfg: TrainConfig) -> torch.Tensor:
    """Ego embeddings whose propagation scores exactly as the spectral filter ``U S^p V^T`` (p = init_filter).

    With ``R~ ~ U S V^T`` (top ``dim`` triplets), ``A (U c; V c) = (U S c; V S c)``: the layer mean maps
    the start ``(U c; V c)`` to ``(U g(S) c; V g(S) c)`` with ``g(s) = mean_l s^l``. Choosing
    ``c = s^(p/2) / g(s)`` makes LightGCN's first scores those of :mod:`recsys.models.spectral` without its
    item degree factor; BPR then trains from there (and learns, among others, the popularity that factor adds).
    """
    u, s, v = randomized_svd(r, cfg.dim, np.random.default_rng(cfg.seed), oversample=64, power=4)
    g = np.mean(s.astype(np.float64)[None, :] ** np.arange(cfg.layers + 1)[:, None], axis=0)  # mean_l s^l
    live = s > 1e-6 * max(float(s[0]), 1e-30)  # zero padding of a graph smaller than dim
    c = np.zeros(len(s))
    c[live] = s[live].astype(np.float64) ** (cfg.init_filter / 2) / g[live]
    x = np.vstack([u * c, v * c]).astype(np.float32)
    norm = float(np.linalg.norm(x, axis=1).mean())
    x *= cfg.init_std * math.sqrt(cfg.dim) / max(norm, 1e-30)
    return torch.from_numpy(x)


class _Graph:
    """What an epoch needs of one interaction matrix: the torch adjacency, the edges, the positive set."""

    def __init__(self, matrix: sp.csr_matrix, reject_positives: bool) -> None:
        self.matrix = sp.csr_matrix(matrix)
        self.n_users, self.n_items = self.matrix.shape
        self.adj_np = normalized_adjacency(self.matrix)
        self.adj = to_torch_csr(self.adj_np)
        coo = self.matrix.tocoo()
        keep = coo.data != 0
        self.users = coo.row[keep].astype(np.int64)
        self.items = coo.col[keep].astype(np.int64)
        self.positives = (PositiveSet(self.users, self.items, self.n_users, self.n_items)
                          if reject_positives else None)
        # The edges are in the users' CSR order (coo of a CSR keeps it): user u's are indptr[u]:indptr[u+1].
        self.degree = np.bincount(self.users, minlength=self.n_users)
        self.indptr = np.concatenate([[0], np.cumsum(self.degree)])


def _step(graph: _Graph, ego: torch.nn.Parameter, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
          users: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """One Adam step on the BPR loss of the triples ``(users[k], pos[k], neg[k])``; returns their mean loss.

    One propagation forward and one back whatever the batch: the triples' part of the gradient is written
    out as sparse products (:func:`bpr_gradient`, the triples sorted into CSR order by user) and pushed
    back through the self-adjoint propagation; the L2 term is LightGCN's, on the batch's ego embeddings.
    """
    order = np.argsort(users, kind="stable")
    users, pos, neg = users[order], pos[order], neg[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=graph.n_users))])
    with torch.no_grad():
        final = propagate(graph.adj, ego.detach(), cfg.layers)
        loss, grad_final = bpr_gradient(final, indptr, pos, neg)
        grad = propagate(graph.adj, grad_final, cfg.layers)
        if cfg.reg:
            # 0.5 * reg * (|e_u|^2 + |e_i|^2 + |e_j|^2) averaged over the triples: a node's weight is how
            # often it occurs in them.
            counts = np.bincount(np.concatenate([users, pos + graph.n_users, neg + graph.n_users]),
                                 minlength=ego.shape[0])
            weight = torch.from_numpy(counts.astype(np.float32) * (cfg.reg / max(len(users), 1)))
            grad.add_(ego.detach() * weight.unsqueeze(1))
    ego.grad = grad
    optimizer.step()
    return loss


def _epoch_triples(graph: _Graph, cfg: TrainConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The (user, positive item) pairs of one epoch, as many as there are edges, in the order they train.

    ``"edge"``: every edge once, shuffled. ``"user"``: users drawn uniformly, each with one of its items
    (the LightGCN authors' sampler): every user weighs the same in the loss, as in the per-user recall.
    """
    n_edges = len(graph.users)
    if cfg.sampling == "edge":
        order = rng.permutation(n_edges)
        return graph.users[order], graph.items[order]
    active = np.flatnonzero(graph.degree > 0)
    users = active[rng.integers(0, len(active), n_edges)]
    offset = (rng.random(n_edges) * graph.degree[users]).astype(np.int64)
    return users, graph.items[graph.indptr[users] + offset]


def _epoch(graph: _Graph, ego: torch.nn.Parameter, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
           rng: np.random.Generator, out_of_time: Callable[[], bool]) -> float:
    """One BPR pass (as many triples as edges, fresh uniform negatives) in batches; returns the mean loss."""
    users, pos = _epoch_triples(graph, cfg, rng)
    negatives = sample_negatives(users, graph.n_items, rng, graph.positives)
    batch = cfg.batch_size or len(users)
    loss_sum = 0.0
    seen = 0
    for start in range(0, len(users), batch):
        # The budget is also checked between steps: one epoch on a large graph can take a while.
        if start > 0 and out_of_time():
            break
        sl = slice(start, start + batch)
        n = len(users[sl])
        loss_sum += _step(graph, ego, optimizer, cfg, users[sl], pos[sl], negatives[sl]) * n
        seen += n
    return loss_sum / max(seen, 1)


def train(
    train_matrix: sp.csr_matrix,
    cfg: TrainConfig,
    valid_matrix: sp.csr_matrix | None = None,
    progress: Progress | None = None,
    refit_matrix: sp.csr_matrix | None = None,
) -> TrainResult:
    """Fit LightGCN with BPR on a users x items matrix.

    Args:
        train_matrix: users x items interactions (non-zero = edge).
        cfg: hyper-parameters.
        valid_matrix: held-out users x items interactions, same shape; when given, Recall@k and NDCG@k
            (on at most ``cfg.eval_users`` of its users, a seeded sample) are computed every
            ``cfg.eval_every`` epochs, the best epoch's embeddings are kept and training stops after
            ``cfg.patience`` evaluations without a better Recall@k (converged).
        progress: called after each epoch with a dict (``stage``, ``epoch``, ``done``, ``total``, ``loss``,
            ``seconds`` and ``recall@k``, ``ndcg@k`` when evaluated).
        refit_matrix: every interaction (``train_matrix`` plus the part carved from it as
            ``valid_matrix``): after stopping, the best epoch's ego embeddings train ``cfg.refit_epochs``
            more epochs on it (stage ``"refit"``) and are propagated over its graph, so the held-out
            interactions count in the final embeddings (without the extra epochs after a time budget).

    Returns:
        ``TrainResult`` with float32 numpy user and item vectors; ``stopped`` is ``"converged"``,
        ``"epochs"`` or ``"time_budget"`` and ``reason`` says why in words.

    Raises:
        TrainingError: the loss or the embeddings became non-finite.
    """
    started = (time.perf_counter(), time.process_time())
    old_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _train(train_matrix, cfg, valid_matrix, progress, refit_matrix, started)
    finally:
        torch.set_num_threads(old_threads)


def _train(
    train_matrix: sp.csr_matrix,
    cfg: TrainConfig,
    valid_matrix: sp.csr_matrix | None,
    progress: Progress | None,
    refit_matrix: sp.csr_matrix | None,
    started: tuple[float, float],
) -> TrainResult:
    graph = _Graph(train_matrix, cfg.reject_positives)
    n_users = graph.n_users
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ego = torch.nn.Parameter(_initial_embeddings(graph.matrix, graph.adj_np, cfg, gen))
    optimizer = torch.optim.Adam([ego], lr=cfg.lr)
    eval_users = None
    if valid_matrix is not None:
        # Full ranking costs users x items per evaluation (a minute on Gowalla's 30k x 41k on 2 cores); a
        # fixed seeded sample of users measures the plateau as well for a fraction of it.
        eval_users = np.flatnonzero(np.diff(sp.csr_matrix(valid_matrix).indptr) > 0)
        if len(eval_users) > cfg.eval_users:
            eval_users = np.sort(np.random.default_rng(cfg.seed + 1).choice(eval_users, cfg.eval_users,
                                                                              replace=False))

    def budget_used() -> str | None:
        """Which budget is used up, in words (None: neither)."""
        if cfg.time_budget_s is not None and time.perf_counter() - started[0] >= cfg.time_budget_s:
            return f"time budget of {cfg.time_budget_s} s used up"
        if cfg.cpu_budget_s is not None and time.process_time() - started[1] >= cfg.cpu_budget_s:
            return f"CPU budget of {cfg.cpu_budget_s} CPU-s used up"
        return None

    def out_of_time() -> bool:
        return budget_used() is not None

    history: list[dict[str, Any]] = []
    best: tuple[float, int, torch.Tensor | None] = (-1.0, 0, None)  # (recall, epoch, ego embeddings)
    bad_evals = 0
    stopped, reason = "epochs", f"ran all {cfg.epochs} epochs"
    recall_key, ndcg_key = f"recall@{cfg.k}", f"ndcg@{cfg.k}"
    if valid_matrix is not None and cfg.init == "spectral":
        # The spectral start already ranks well (it is the spectral model's filter): it competes as
        # epoch 0, so that training can only be kept where it improves on it.
        with torch.no_grad():
            final = propagate(graph.adj, ego.detach(), cfg.layers)
        start = validation_metrics(final, n_users, graph.matrix, valid_matrix, cfg.k, eval_users)
        history.append({"stage": "start", "epoch": 0, recall_key: start[0], ndcg_key: start[1]})
        best = (start[0], 0, ego.detach().clone())
    for epoch in range(1, cfg.epochs + 1):
        if out_of_time():  # e.g. used up by the previous epoch's evaluation, which then was the last
            stopped, reason = "time_budget", str(budget_used())
            break
        t0 = time.perf_counter()
        record: dict[str, Any] = {"epoch": epoch, "loss": _epoch(graph, ego, optimizer, cfg, rng, out_of_time),
                                  "seconds": time.perf_counter() - t0}
        if not math.isfinite(record["loss"]):
            raise TrainingError(f"LightGCN loss became {record['loss']} at epoch {epoch}; lower lr={cfg.lr}")
        last = out_of_time()
        evaluate = valid_matrix is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs or last)
        if evaluate:
            with torch.no_grad():
                final = propagate(graph.adj, ego.detach(), cfg.layers)
            record[recall_key], record[ndcg_key] = validation_metrics(
                final, n_users, graph.matrix, valid_matrix, cfg.k, eval_users)
            if record[recall_key] > best[0]:
                best = (record[recall_key], epoch, ego.detach().clone())
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
            stopped = "converged"
            reason = (f"{recall_key} did not improve on {best[0]:.4f} (epoch {best[1]}) in {cfg.patience} "
                      f"evaluations, every {cfg.eval_every} epochs")
            break
        if last:
            stopped, reason = "time_budget", str(budget_used())
            break

    best_epoch = len(history)
    if best[2] is not None:
        best_epoch = best[1]
        with torch.no_grad():
            ego.copy_(best[2])
    if refit_matrix is not None:
        graph = _Graph(refit_matrix, cfg.reject_positives)
        # A fit stopped by its time budget skips the extra epochs; the propagation over the whole graph
        # below still brings the held-out interactions in.
        for extra in range(1, 0 if stopped == "time_budget" else cfg.refit_epochs + 1):
            t0 = time.perf_counter()
            loss = _epoch(graph, ego, optimizer, cfg, rng, lambda: False)
            record = {"stage": "refit", "epoch": len(history) + 1, "loss": loss,
                      "seconds": time.perf_counter() - t0}
            history.append(record)
            if progress is not None:
                progress({"done": extra, "total": cfg.refit_epochs, **record})
    with torch.no_grad():
        final = propagate(graph.adj, ego.detach(), cfg.layers)
    logger.info("lightgcn stopped (%s: %s) after %d epochs, best epoch %d", stopped, reason, len(history),
                best_epoch)
    vectors = final.numpy().astype(np.float32, copy=True)
    if not np.isfinite(vectors).all():
        raise TrainingError(f"LightGCN produced non-finite embeddings; lower lr={cfg.lr}")
    return TrainResult(vectors[:n_users], vectors[n_users:], history, best_epoch, stopped, reason,
                       fold_in_vectors(graph, ego.detach(), cfg.layers))


def fold_in_vectors(graph: _Graph, ego: torch.Tensor, layers: int) -> np.ndarray | None:
    """Item vectors whose mean over a history ranks items as a known user with that history, less its ego term.

    A user's final embedding is ``(e_u + sum_{l=1..L} e_u^(l)) / (L+1)`` with ``e_u^(l) = sum_{i in N(u)}
    e_i^(l-1) / sqrt(d_u d_i)``, so ``e_u^(1..L)`` sum to ``sqrt(d_u) * mean_{i in N(u)} f_i`` with
    ``f_i = sum_{l=0..L-1} e_i^(l) / sqrt(d_i)``: the mean of ``f_i`` is that part of the vector up to a
    positive factor, which inner-product ranking ignores. Only the user's own trained ego embedding ``e_u``
    (weight ``1/(L+1)``) is missing, which a history alone cannot give. ``None`` for ``layers=0`` (matrix
    factorisation: a user is only its ego embedding).
    """
    if layers == 0:
        return None
    n_users = graph.n_users
    with torch.no_grad():
        h = ego
        total = ego.clone()
        for _ in range(layers - 1):
            h = torch.sparse.mm(graph.adj, h)
            total += h
    items = total[n_users:].numpy().astype(np.float32, copy=True)
    degree = np.bincount(graph.items, minlength=graph.n_items).astype(np.float32)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0).astype(np.float32)
    return items * scale[:, None]
