"""LightGCN (He et al., SIGIR 2020): graph-convolution embeddings of the user-item graph, trained with BPR.

The model is exactly LightGCN: trainable ego embeddings ``E``, final embeddings the layer mean
``1/(L+1) * sum_l A^l E`` over the symmetric normalised adjacency ``A = D^-1/2 (0 R; R^T 0) D^-1/2``
(what ``torch_geometric.nn.LGConv`` computes), scored by inner product, fitted with BPR plus L2 on the
ego embeddings of each batch.

The default recipe is the paper's, trained as a GNN from a random start: normal ego embeddings (std 0.1),
64 dimensions, 3 layers, Adam, L2 1e-4 on each batch's ego embeddings, uniform negatives (training
positives redrawn), and mini-batches: 16,384 triples at ``lr=0.01`` rather than the paper's 2,048 at
1e-3, because every step costs one propagation over the whole graph whatever the batch, so the larger
batch is 8x the epochs per CPU-second (chosen on ml-1m's ``train -> valid``, 64 dims, Recall@20 on
3,000 of its users: batch 2,048 after 60 CPU-s at lr 1e-3 0.119 (the popularity phase every start
goes through first, below), at 1e-2 0.163, at 5e-2 0.185; batch 16,384 after 120 CPU-s at lr 1e-2
0.229, still rising, at 5e-2 0.214). Each step's BPR gradient is written out as sparse
products (``sampled_addmm`` scores, one sparse product back) and pushed back through the self-adjoint
propagation. ``sampling="user"`` draws users uniformly, as the authors' sampler does.

Why the previous recipe (``init="spectral"``: singular vectors of the normalised interaction matrix
scaled so that the layer mean scores as the spectral filter ``U S^2 V^T``; full batch, 512 dims) was
mostly its start: the start's scores are close to 0 (BPR loss 0.65, about log 2), where every triple's
gradient weighs the same and their sum points at the popular items; so the first steps of BPR move the
embeddings towards popularity whatever the step size. Measured on ml-1m ``train -> valid``, 64 dims,
mini-batch at ``lr=1e-3``: the start 0.2349, after 2 epochs 0.1567, after 6 epochs 0.1305 (where a
random start sits in its first epochs: 0.119) while the loss fell from 0.65 to 0.42: the fall the
full-batch recipe showed after step 5, with a 10x smaller step. A random start goes through the same
popularity phase and out of it, learning the ranking with it; the SVD start remains available as an option
(``init="spectral"`` or ``"svd"``).

The propagation is a torch sparse CSR matmul, all layers in one autograd node whose backward reuses the
same CSR (``A`` is symmetric, so the operator is its own adjoint: no transpose is built).

Training stops when it has converged: on the given ``valid`` split, or else on one carved from the
training data (``holdout`` of each user's interactions, users with fewer than ``holdout_min`` keep all
theirs), Recall@20 and NDCG@20 are measured every ``eval_every`` epochs on a sample of ``eval_users``
users; each evaluation without a better Recall@20 multiplies the learning rate by ``plateau_decay`` and
``patience`` of them end the fit; the best epoch is kept, and after a carved split it trains
``refit_epochs`` more epochs on everything and propagates over the whole graph. ``cpu_budget_s``
(process CPU seconds) and ``time_budget_s`` (wall seconds) bound a fit. The final history record says
which split was used and why the fit stopped.

The published vectors carry ``fold_in_vectors`` (:func:`._training.fold_in_vectors`): the mean of them
over a history is a known user's propagated embedding with that history, less the user's own ego term.

Example::

    model = make_model("lightgcn")
    emb = model.fit(train, progress=print)     # carves a validation split, stops on its plateau
    emb.history[-1]["reason"]                  # e.g. "recall@20 did not improve on 0.1850 (epoch 15) in 3 ..."
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ...data.interactions import Interactions
from ...exceptions import InvalidParameter
from ..graph_model import GraphEmbeddings, GraphModel, ProgressCallback, check_positive_float, check_positive_int

if TYPE_CHECKING:
    import scipy.sparse as sp
    import torch

__all__ = ["LightGCN"]

logger = logging.getLogger(__name__)

INITS = ("normal", "svd", "spectral")
SAMPLINGS = ("edge", "user")


class LightGCN(GraphModel):
    """LightGCN graph embeddings; ``space="ip"``.

    Hyper-parameters (keyword arguments, see ``defaults``):
        dim: embedding size.
        layers: propagation layers L (0 gives matrix factorisation with BPR).
        lr: Adam learning rate (scaled for the large default batch).
        reg: L2 weight on the batch's ego embeddings (LightGCN's ``weight_decay``; the paper's 1e-4: on
            Gowalla valid, Recall@20 0.1547 at epoch 12 against 0.1474 with 1e-3, same run conditions).
        epochs: maximum passes over the training edges.
        batch_size: BPR triples per optimisation step (default 16,384); None: every edge in each step
            (full batch: one step per epoch). A graph of fewer edges than a few batches trains better with
            a smaller one (the contract test's 19k edges: 2,048): its epochs are then more than one step.
        eval_every: evaluate Recall@eval_k and NDCG@eval_k on the validation split every this many epochs.
        patience: stop after this many evaluations without a better Recall@eval_k (converged; the best
            epoch is kept).
        plateau_decay: multiply the learning rate by this after each evaluation without improvement
            (1.0 keeps it constant).
        eval_k: cut-off of the validation recall.
        eval_users: evaluate on at most this many validation users (a seeded sample): full ranking costs
            users x items per evaluation.
        holdout: without a ``valid`` split, the share of each user's interactions carved out as one
            (0 disables it: then only ``epochs`` or ``time_budget_s`` stop the fit).
        holdout_min: users with fewer interactions keep all of theirs in training.
        refit_epochs: after stopping on a carved split, epochs of training on all the interactions (the
            best epoch's embeddings go on, with the learning rate reached); the final propagation then
            runs over the whole graph.
        init: ``"normal"`` (the default: std ``init_std``, as in the paper), ``"spectral"`` (singular
            vectors scaled so that the propagation scores as the spectral filter ``U S^init_filter V^T``; see
            above), ``"svd"`` (leading singular vectors of
            the normalised interaction matrix, rescaled to the norm of the normal init, plus a little
            noise). Both SVD starts score near 0, and BPR's first steps wash them out (see above).
        init_std: standard deviation (scale) of the initial embeddings (for the SVD starts: their mean
            row norm is ``init_std * sqrt(dim)``).
        init_filter: exponent p of the spectral start's filter ``s ** p``.
        reject_positives: redraw sampled negatives that are training positives of the user.
        seed: seed of every random draw (torch and numpy); same seed and threads -> same embeddings.
        threads: torch intra-op threads during the fit.
        sampling: ``"edge"`` (every training edge once an epoch, shuffled) or ``"user"`` (users drawn
            uniformly, one of their items each: the LightGCN authors' sampler).
        cpu_budget_s: optional bound in process CPU seconds (None, the default: stop on convergence); what a
            shared machine's neighbours do not inflate.
        time_budget_s: optional safety bound: stop gracefully once this many seconds have passed (None,
            the default: stop on convergence).

    Raises:
        InvalidParameter: at construction, for an unknown name or a value that cannot work.
    """

    name: ClassVar[str] = "lightgcn"
    defaults: ClassVar[dict[str, Any]] = {
        "dim": 64,
        "layers": 3,
        "lr": 0.01,
        "reg": 1e-4,
        "epochs": 1000,
        "batch_size": 16384,
        "eval_every": 5,
        "patience": 3,
        "plateau_decay": 0.5,
        "eval_k": 20,
        "eval_users": 5000,
        "holdout": 0.05,
        "holdout_min": 10,
        "refit_epochs": 4,
        "init": "normal",
        "init_std": 0.1,
        "init_filter": 2.0,
        "reject_positives": True,
        "seed": 0,
        "threads": 2,
        "time_budget_s": None,
        "cpu_budget_s": None,
        "sampling": "edge",
    }

    def validate(self, params: dict[str, Any]) -> None:
        """Check every hyper-parameter; raise :class:`InvalidParameter` naming the first bad one."""
        check_positive_int(params, "dim", "epochs", "eval_every", "patience", "eval_k", "threads")
        if params["batch_size"] is not None:
            check_positive_int(params, "batch_size")
        check_positive_int(params, "layers", "seed", "refit_epochs", minimum=0)
        check_positive_int(params, "eval_users", "holdout_min")
        holdout = params["holdout"]
        if isinstance(holdout, bool) or not isinstance(holdout, (int, float, np.number)) or not 0 <= holdout <= 0.5:
            raise InvalidParameter(f"holdout={holdout!r}: must be a number in [0, 0.5]")
        check_positive_float(params, "lr", "init_std", "plateau_decay")
        init_filter = params["init_filter"]
        if isinstance(init_filter, bool) or not isinstance(init_filter, (int, float, np.number)) or not (
            np.isfinite(init_filter) and init_filter >= 0
        ):
            raise InvalidParameter(f"init_filter={init_filter!r}: must be a finite number >= 0")
        if params["plateau_decay"] > 1:
            raise InvalidParameter(f"plateau_decay={params['plateau_decay']!r}: must be in (0, 1]")
        reg = params["reg"]
        if isinstance(reg, bool) or not isinstance(reg, (int, float, np.number)) or not (
            np.isfinite(reg) and reg >= 0
        ):
            raise InvalidParameter(f"reg={reg!r}: must be a finite number >= 0")
        if params["init"] not in INITS:
            raise InvalidParameter(f"init={params['init']!r}: must be one of {', '.join(INITS)}")
        if not isinstance(params["reject_positives"], bool):
            raise InvalidParameter(f"reject_positives={params['reject_positives']!r}: must be True or False")
        for budget in ("time_budget_s", "cpu_budget_s"):
            if params[budget] is not None:
                check_positive_float(params, budget)
        if params["sampling"] not in SAMPLINGS:
            raise InvalidParameter(f"sampling={params['sampling']!r}: must be one of {', '.join(SAMPLINGS)}")

    def fit(
        self,
        interactions: Interactions,
        *,
        valid: Interactions | None = None,
        progress: ProgressCallback | None = None,
    ) -> GraphEmbeddings:
        """Train on ``interactions``; see :meth:`GraphModel.fit`.

        Args:
            interactions: training interactions (weights are ignored: LightGCN's graph is binary).
            valid: held-out interactions to stop on; re-aligned to ``interactions``' id maps when they
                differ (unknown users/items dropped). Without it, ``holdout`` of each user's
                interactions are carved out as one, and after stopping the model trains
                ``refit_epochs`` more on everything.
            progress: called after every epoch with ``{"stage": "train", "epoch", "done", "total",
                "loss", "seconds"}`` plus ``"recall@<eval_k>"``, ``"ndcg@<eval_k>"`` on evaluation
                epochs, then ``{"stage": "refit", ...}`` after a carved split.

        Returns:
            :class:`GraphEmbeddings` with ``space="ip"``: the best validation epoch's propagated
            embeddings (refitted on everything after a carved split), or the last epoch's without any
            split. ``history`` holds one dict per epoch and a final ``{"stage": "done", "best_epoch",
            "stopped", "reason", "validation", "seconds"}``: ``stopped`` is ``"converged"``, ``"epochs"``
            or ``"time_budget"``, ``reason`` says why in words, ``validation`` is ``"given"``,
            ``"carved"`` or ``"none"``.

        Raises:
            InvalidParameter: the interactions have no users, items or edges, or ``valid`` has no pair
                in the training id space.
            TrainingError: the loss became non-finite (lower ``lr``).
        """
        # OpenMP threads that busy-wait between the many short sparse matmuls burn whole cores on a shared
        # machine (measured: 6x slower steps with 2 threads under load); PASSIVE makes them sleep. It only
        # takes effect if torch is not imported yet; a value set by the user wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # torch is imported here so that importing recsys (e.g. by the serving client) never loads it.
        from ._training import TrainConfig, train

        if interactions.n_users == 0 or interactions.n_items == 0 or len(interactions) == 0:
            raise InvalidParameter(f"interactions: nothing to train on ({interactions!r})")
        valid_matrix = refit_matrix = None
        fit_matrix = interactions.user_matrix()
        validation = "none"
        if valid is not None:
            if not _same_ids(interactions, valid):
                valid = interactions.align(valid)
            if len(valid) == 0:
                raise InvalidParameter(f"valid: no pair in the training id space ({valid!r})")
            valid_matrix = valid.user_matrix()
            validation = "given"
        p = self.params
        if valid is None and p["holdout"] > 0:
            from .._holdout import carve_validation

            fit_matrix, valid_matrix = carve_validation(fit_matrix, float(p["holdout"]), p["holdout_min"],
                                                        p["seed"])
            if valid_matrix.nnz:
                refit_matrix, validation = interactions.user_matrix(), "carved"
            else:  # every user is below holdout_min: nothing to validate on
                fit_matrix, valid_matrix = interactions.user_matrix(), None
        cfg = TrainConfig(
            dim=p["dim"], layers=p["layers"], lr=float(p["lr"]), reg=float(p["reg"]), epochs=p["epochs"],
            batch_size=p["batch_size"], eval_every=p["eval_every"], patience=p["patience"],
            plateau_decay=float(p["plateau_decay"]), k=p["eval_k"],
            init=p["init"], init_std=float(p["init_std"]), init_filter=float(p["init_filter"]),
            reject_positives=p["reject_positives"],
            seed=p["seed"], threads=p["threads"],
            time_budget_s=None if p["time_budget_s"] is None else float(p["time_budget_s"]),
            eval_users=p["eval_users"], refit_epochs=p["refit_epochs"], sampling=p["sampling"],
            cpu_budget_s=None if p["cpu_budget_s"] is None else float(p["cpu_budget_s"]),
        )
        started = time.perf_counter()
        result = train(fit_matrix, cfg, valid_matrix, progress, refit_matrix)
        seconds = time.perf_counter() - started
        logger.info("lightgcn fit %s in %.1f s (%s validation): best epoch %d, stopped: %s",
                    interactions, seconds, validation, result.best_epoch, result.reason)
        history = [*result.history, {"stage": "done", "best_epoch": result.best_epoch, "stopped": result.stopped,
                                     "reason": result.reason, "validation": validation, "seconds": seconds}]
        return GraphEmbeddings(result.user_vectors, result.item_vectors, "ip", dict(self.params), history,
                               fold_in_vectors=result.fold_in_vectors)

    # The propagation itself, for benchmarks that measure it (bench/propagation.py) against PyG's LGConv.
    @staticmethod
    def adjacency(user_items: sp.spmatrix) -> torch.Tensor:
        """The operator LightGCN propagates over: the symmetric normalised adjacency ``D^-1/2 (0 R; R^T 0)
        D^-1/2`` of the users x items matrix ``user_items`` (any non-zero is an edge; users are nodes
        ``0..n_users-1``, item ``i`` is node ``n_users + i``), as a float32 torch sparse CSR tensor.

        Imports torch.
        """
        from .propagation import normalized_adjacency, to_torch_csr

        return to_torch_csr(normalized_adjacency(user_items))

    @staticmethod
    def propagate(adjacency: torch.Tensor, x: torch.Tensor, layers: int) -> torch.Tensor:
        """LightGCN's final embeddings ``1/(L+1) * sum_l A^l x`` of ego embeddings ``x`` (``(n, d)``; gradients
        flow back to it) over :meth:`adjacency`'s operator, all ``layers`` in one autograd node: what
        :meth:`fit` trains through.

        Imports torch.
        """
        from .propagation import propagate

        return propagate(adjacency, x, layers)


def _same_ids(a: Interactions, b: Interactions) -> bool:
    return (a.user_ids is b.user_ids or np.array_equal(a.user_ids, b.user_ids)) and (
        a.item_ids is b.item_ids or np.array_equal(a.item_ids, b.item_ids)
    )
