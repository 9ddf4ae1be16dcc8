"""A spectral graph model: embeddings from the leading singular vectors of the normalised interaction matrix.

In the spirit of SVD-GCN (Peng et al., CIKM 2022) and GF-CF (Shen et al., CIKM 2021): LightGCN's
propagation over ``A = D^-1/2 (0 R; R^T 0) D^-1/2`` is a low-pass filter on the graph, and its spectrum is
that of ``R~ = D_u^-1/2 R D_i^-1/2``: with ``R~ ~ U S V^T`` (top ``dim`` singular triplets), any filter of
the propagation is a function of ``S``. This model skips the training and scores

    score(u, i) = sum_k  U[u, k] * phi(s_k) * V[i, k] * d_i ** item_degree,      phi(s) = s ** weight

so that the filter (``weight``) sets how much the smoother, more global components count against the
finer ones, and ``item_degree`` how much popular items are favoured. The fit is one randomized SVD (numpy
and scipy, no torch), deterministic for a seed.

Vectors (``space="ip"``, so hnswlib serves them like any other model's):

* item vector ``y_i = d_i ** item_degree * V[i]``;
* fold-in vector ``f_i = d_i ** -1/2 * V[i] * phi(S) / S`` (``GraphEmbeddings.fold_in_vectors``);
* user vector: the mean of the fold-in vectors of the user's items, ``x_u = (1/d_u) sum_{i in u} f_i``.

Since ``U = R~ V S^-1``, ``x_u = d_u ** -1/2 * U[u] * phi(S)``: the same ranking as the formula above (a
positive factor per user changes no ranking). A user's vector is a function of their interaction row
alone, so folding in a new user's history (the mean of its items' fold-in vectors) gives exactly the
vector a known user with that history has.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from ..exceptions import InvalidParameter, TrainingError
from ._svd import randomized_svd
from .graph_model import GraphEmbeddings, GraphModel, ProgressCallback, check_positive_int

__all__ = ["Spectral"]

logger = logging.getLogger(__name__)


class Spectral(GraphModel):
    """Spectral embeddings of the user-item graph (no training loop); ``space="ip"``.

    Hyper-parameters (keyword arguments, see ``defaults``):
        dim: K, the number of singular triplets (the embedding size); None: :func:`auto_dim` of the
            graph's size.
        weight: exponent p of the spectral filter ``phi(s) = s ** p`` (0: every component alike; larger:
            the leading, smoothest components dominate).
        item_degree: exponent of the item degree on the item vectors (0: symmetric normalisation;
            0.5: undoes the item side of it, favouring popular items).
        oversample: extra columns of the randomized SVD's block. More make the last singular values more
            accurate, but barely change the ranking, since ``weight`` makes them count little (Gowalla
            valid, dim 512: Recall@20 0.1964 with 64 in 24 CPU-s, 0.1973 with 256 in 36 CPU-s).
        power_iterations: subspace iterations of the randomized SVD.
        seed: seed of the SVD's random start; same seed -> same embeddings.
        threads: BLAS threads during the fit (the SVD is dense products on tall blocks).

    Raises:
        InvalidParameter: at construction, for an unknown name or a value that cannot work.
    """

    name: ClassVar[str] = "spectral"
    defaults: ClassVar[dict[str, Any]] = {
        "dim": None,
        "weight": 2.0,
        "item_degree": 0.25,
        "oversample": 64,
        "power_iterations": 4,
        "seed": 0,
        "threads": 2,
    }

    def validate(self, params: dict[str, Any]) -> None:
        """Check every hyper-parameter; raise :class:`InvalidParameter` naming the first bad one."""
        check_positive_int(params, "threads")
        check_positive_int(params, "power_iterations", "seed", minimum=0)
        if params["dim"] is not None:
            check_positive_int(params, "dim")
        check_positive_int(params, "oversample", minimum=0)
        for name in ("weight", "item_degree"):
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
                raise InvalidParameter(f"{name}={value!r}: must be a finite number")
        if params["weight"] < 0:
            raise InvalidParameter(f"weight={params['weight']!r}: must be >= 0")

    def fit(
        self,
        interactions: Interactions,
        *,
        valid: Interactions | None = None,
        progress: ProgressCallback | None = None,
    ) -> GraphEmbeddings:
        """Compute the embeddings of ``interactions``; see :meth:`GraphModel.fit`.

        Args:
            interactions: training interactions (weights are ignored: the graph is binary, as LightGCN's).
            valid: accepted for the common interface and unused (there is nothing to stop early).
            progress: called with ``{"stage": "svd", "done", "total"}`` before and after the SVD and
                ``{"stage": "vectors", ...}`` when the vectors are built.

        Returns:
            :class:`GraphEmbeddings` with ``space="ip"``, ``fold_in_vectors`` set, and a history of one
            ``{"stage": "done", "dim", "seconds", "svd_seconds", "singular_values": [first, last]}`` record.

        Raises:
            InvalidParameter: the interactions have no users, items or edges.
            TrainingError: the SVD produced non-finite values.
        """
        if interactions.n_users == 0 or interactions.n_items == 0 or len(interactions) == 0:
            raise InvalidParameter(f"interactions: nothing to train on ({interactions!r})")
        p = dict(self.params)
        p["dim"] = p["dim"] or auto_dim(interactions.n_users, interactions.n_items)
        started = time.perf_counter()
        binary = sp.csr_matrix(interactions.user_matrix(), dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        user_degree = np.asarray(binary.sum(axis=1)).ravel()
        item_degree = np.asarray(binary.sum(axis=0)).ravel()
        normalised = sp.diags(_inv_sqrt(user_degree)) @ binary @ sp.diags(_inv_sqrt(item_degree))

        if progress is not None:
            progress({"stage": "svd", "done": 0, "total": 1})
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=p["threads"]):
            _, s, v = randomized_svd(normalised, p["dim"], np.random.default_rng(p["seed"]),
                                     oversample=p["oversample"], power=p["power_iterations"])
        svd_seconds = time.perf_counter() - started
        if progress is not None:
            progress({"stage": "svd", "done": 1, "total": 1, "seconds": svd_seconds})
        if not (np.isfinite(s).all() and np.isfinite(v).all()):
            raise TrainingError("spectral: the SVD produced non-finite values")

        # Components with a (numerically) zero singular value carry nothing and would divide by zero in
        # phi(s) / s: they get zero weight (a graph with fewer users or items than dim has such padding).
        live = s > 1e-6 * max(float(s[0]), 1e-30)
        filt = np.zeros_like(s)
        filt[live] = s[live] ** float(p["weight"])
        fold_scale = np.zeros_like(s)
        fold_scale[live] = filt[live] / s[live]
        v = v.astype(np.float32)
        fold_in = (_inv_sqrt(item_degree)[:, None] * v) * fold_scale[None, :].astype(np.float32)
        items = _power(item_degree, float(p["item_degree"]))[:, None] * v
        users = (binary @ fold_in) / np.maximum(user_degree, 1.0)[:, None]
        seconds = time.perf_counter() - started
        if progress is not None:
            progress({"stage": "vectors", "done": 1, "total": 1, "seconds": seconds})
        logger.info("spectral fit %s: %d components in %.1f s (SVD %.1f s), singular values %.3f..%.3f",
                    interactions, p["dim"], seconds, svd_seconds, s[0], s[-1])
        history = [{"stage": "done", "dim": p["dim"], "seconds": seconds, "svd_seconds": svd_seconds,
                    "singular_values": [float(s[0]), float(s[-1])]}]
        return GraphEmbeddings(users, items, "ip", dict(p), history, fold_in_vectors=fold_in)


def auto_dim(n_users: int, n_items: int) -> int:
    """The default number of components: ``min(n_users, n_items) / 16``, within 32..1024.

    A larger graph supports more components before the smallest ones are noise; with ``weight=2`` the
    tail counts little anyway, so the choice is not sharp (Recall@20 on ml-100k u1: 0.285 / 0.292 / 0.293
    at 32 / 64 / 128; ml-1m valid: 0.251 / 0.249 / 0.244 at 256 / 512 / 1024; Gowalla valid: 0.191 /
    0.201 at 512 / 1024). 1024 bounds the fit to about a minute and a half of 2 cores on Gowalla.
    """
    return int(min(1024, max(32, min(n_users, n_items) // 16)))


def _inv_sqrt(degree: np.ndarray) -> np.ndarray:
    """``degree ** -1/2`` as float32, 0 for isolated nodes."""
    out = np.zeros(len(degree), dtype=np.float32)
    nz = degree > 0
    out[nz] = 1.0 / np.sqrt(degree[nz])
    return out


def _power(degree: np.ndarray, exponent: float) -> np.ndarray:
    """``degree ** exponent`` as float32, 0 for isolated nodes (an item no one used scores nothing)."""
    out = np.zeros(len(degree), dtype=np.float32)
    nz = degree > 0
    out[nz] = degree[nz] ** exponent
    return out
