"""The contract every graph model follows (implicit-style): one base class, one result type, one factory.

A model is configured with keyword hyper-parameters (validated at construction, so a bad value fails before
any work), and :meth:`GraphModel.fit` turns :class:`~recsys.data.interactions.Interactions` into
:class:`GraphEmbeddings`: user and item vectors in one space, scored by inner product or cosine.
"""

from __future__ import annotations

import abc
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.interactions import Interactions
from ..exceptions import InvalidParameter
from ..publish.wire import USER_VECTORS
from .rerank import FilterRerank

__all__ = ["DEFAULT_MODEL", "GraphEmbeddings", "GraphModel", "ProgressCallback", "make_model", "MODELS"]

logger = logging.getLogger(__name__)

#: Called with ``{"stage": str, "done": int, "total": int, ...}`` plus extras such as epoch, loss, walks.
ProgressCallback = Callable[[dict], None]

#: model name -> "module:Class", imported only when asked for (lightgcn needs torch).
MODELS: dict[str, str] = {
    "node2vec": "recsys.models.node2vec.model:Node2Vec",
    "lightgcn": "recsys.models.lightgcn.model:LightGCN",
    "spectral": "recsys.models.spectral:Spectral",
    "filter": "recsys.models.graph_filter:GraphFilter",
}

#: the model trained when none is named (``ea train graph``, ``ea eval recsys``, the job API): the most
#: accurate on Gowalla and ml-1m in bench/recsys.py's held-out table (docs/benchmarks.md), above EASE,
#: GF-CF, BSPM and ChebyCF in the same run, and served at the cost of a 256-d model (two stages).
DEFAULT_MODEL = "filter"

SPACES = ("ip", "cosine")
#: the vectors a model may name for entity outliers (see GraphEmbeddings)
USER_OUTLIERS = ("user", "history")
ITEM_OUTLIERS = ("item", "fold_in")


@dataclass
class GraphEmbeddings:
    """The result of :meth:`GraphModel.fit`.

    Attributes:
        user_vectors: float32 ``n_users x d``, row i is the user with dense id i.
        item_vectors: float32 ``n_items x d``, row j is the item with dense id j.
        space: how ``user . item`` is scored in the item index: ``"ip"`` or ``"cosine"``.
        params: the hyper-parameters used.
        history: one dict per epoch/stage (loss, metrics, seconds...).
        fold_in_vectors: optional float32 ``n_items x d``: item vectors whose mean over a user's items is
            that user's vector (:meth:`fold_in`); set by models whose user vector is such a mean (spectral),
            or whose item vectors live in another space than user vectors (Node2Vec: items' input
            vectors, where item_vectors are context vectors); ``None``: the item vectors.
        similar_vectors, similar_targets: optional float32 ``n_items x d'`` each, set together: item j's
            similarity to item x is ``similar_vectors[x] . similar_targets[j]``; ``None``: what a user
            whose history is item x alone is recommended (x's fold-in vector against the item index;
            ``item_vectors[x] . item_vectors[j]`` for a model without fold-in vectors).
        user_outliers: the users' vectors for entity outliers: ``"user"`` (user_vectors) or
            ``"history"`` (each user's mean of their items' fold-in vectors, centred by the mean of all
            items' fold-in vectors: a user whose items look like a random draw from the catalogue sits
            near the origin, in a direction of its own).
        item_outliers: the items' vectors for entity outliers: ``"item"`` or ``"fold_in"``.
        rerank: optional :class:`~recsys.models.rerank.FilterRerank`: a two-stage model's exact filter; the
            client re-ranks the index's candidates of ``recommend``, ``recommend_for_history`` and
            ``similar_items`` (an item's fold-in) by it, from the history alone.

    Each client path reads the vectors named here (:meth:`paths` lists them, the manifest records them):
    ``recommend`` user_vectors against the item index; ``recommend_for_history`` the mean of the
    history's fold-in vectors against the item index; ``similar_items`` as above; ``ea outliers``
    user_outliers / item_outliers, compared by cosine. Every model in :data:`MODELS` passes one contract
    test of every path (``tests/recsys/models/test_model_contract.py``), so a model that leaves a default in
    place where its vectors need another fails it.
    """

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    space: str
    params: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    fold_in_vectors: np.ndarray | None = None
    similar_vectors: np.ndarray | None = None
    similar_targets: np.ndarray | None = None
    user_outliers: str = "user"
    item_outliers: str = "item"
    rerank: FilterRerank | None = None

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise InvalidParameter(f"space={self.space!r}: must be one of {', '.join(SPACES)}")
        self.user_vectors = np.ascontiguousarray(self.user_vectors, dtype=np.float32)
        self.item_vectors = np.ascontiguousarray(self.item_vectors, dtype=np.float32)
        if self.user_vectors.ndim != 2 or self.item_vectors.ndim != 2:
            raise InvalidParameter("user_vectors and item_vectors must be 2-D")
        if self.user_vectors.shape[1] != self.item_vectors.shape[1]:
            raise InvalidParameter(
                f"user_vectors have {self.user_vectors.shape[1]} dims, "
                f"item_vectors {self.item_vectors.shape[1]}"
            )
        if self.fold_in_vectors is not None:
            self.fold_in_vectors = np.ascontiguousarray(self.fold_in_vectors, dtype=np.float32)
            if self.fold_in_vectors.shape != self.item_vectors.shape:
                raise InvalidParameter(
                    f"fold_in_vectors are {self.fold_in_vectors.shape}, item_vectors {self.item_vectors.shape}"
                )
        self._check_similar()
        if self.rerank is not None and self.rerank.n_items != self.item_vectors.shape[0]:
            raise InvalidParameter(f"rerank holds {self.rerank.n_items} items, "
                                   f"item_vectors {self.item_vectors.shape[0]}")
        if self.user_outliers not in USER_OUTLIERS:
            raise InvalidParameter(f"user_outliers={self.user_outliers!r}: must be one of {', '.join(USER_OUTLIERS)}")
        if self.item_outliers not in ITEM_OUTLIERS:
            raise InvalidParameter(f"item_outliers={self.item_outliers!r}: must be one of {', '.join(ITEM_OUTLIERS)}")

    def _check_similar(self) -> None:
        if (self.similar_vectors is None) != (self.similar_targets is None):
            raise InvalidParameter("similar_vectors and similar_targets are set together or not at all")
        if self.similar_vectors is None:
            return
        self.similar_vectors = np.ascontiguousarray(self.similar_vectors, dtype=np.float32)
        self.similar_targets = np.ascontiguousarray(self.similar_targets, dtype=np.float32)
        n = self.item_vectors.shape[0]
        if self.similar_vectors.ndim != 2 or self.similar_vectors.shape != self.similar_targets.shape or (
            self.similar_vectors.shape[0] != n
        ):
            raise InvalidParameter(f"similar_vectors {self.similar_vectors.shape} and similar_targets "
                                   f"{self.similar_targets.shape} must both be {n} items x d'")

    def paths(self) -> dict[str, str]:
        """Which vectors serve each client path (recorded in the published manifest).

        Returns:
            ``{"recommend", "fold_in", "similar", "user_outliers", "item_outliers"}`` -> a description
            naming the vectors, e.g. ``"fold_in_vectors -> item index"``.
        """
        fold = "fold_in_vectors" if self.fold_in_vectors is not None else "item_vectors"
        then = f" -> {self.rerank.candidates} re-ranked by the filter" if self.rerank is not None else ""
        return {
            "recommend": f"user_vectors -> item index ({self.space}){then}",
            "fold_in": f"mean of {fold} -> item index{then}",
            "similar": "similar_vectors -> similar_targets (ip)" if self.similar_vectors is not None
            else f"{fold} -> item index{then}",
            "user_outliers": USER_VECTORS if self.user_outliers == "user" else f"centred mean of {fold}",
            "item_outliers": "item_vectors" if self.item_outliers == "item" else fold,
        }

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.item_vectors.shape[1])

    def scoring_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) vectors such that ``user @ item.T`` is the score: L2-normalised rows for cosine."""
        if self.space == "ip":
            return self.user_vectors, self.item_vectors
        return _normalise(self.user_vectors), _normalise(self.item_vectors)


    def fold_in(self, items: np.ndarray) -> np.ndarray:
        """The user vector of a history of dense item ids: the mean of their fold-in vectors.

        For a model with ``fold_in_vectors`` this is exactly the vector of a known user with that
        history; otherwise the mean of the item vectors (an approximation). Repeated ids count once.

        Raises:
            InvalidParameter: no item, or an id out of range.
        """
        ids = np.unique(np.asarray(items, dtype=np.int64))
        if len(ids) == 0 or ids[0] < 0 or ids[-1] >= len(self.item_vectors):
            raise InvalidParameter(f"fold_in: needs dense item ids in 0..{len(self.item_vectors) - 1}")
        source = self.item_vectors if self.fold_in_vectors is None else self.fold_in_vectors
        return source[ids].mean(axis=0)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class GraphModel(abc.ABC):
    """Base class of every graph embedding model.

    Subclasses set ``name`` and ``defaults`` (every accepted hyper-parameter with its default) and may
    override :meth:`validate` to check values. Unknown parameter names raise :class:`InvalidParameter`.
    """

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InvalidParameter(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(self.defaults))}"
            )
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.validate(self.params)

    def validate(self, params: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Check hyper-parameter values; raise :class:`InvalidParameter` naming the bad one."""

    @abc.abstractmethod
    def fit(
        self,
        interactions: Interactions,
        *,
        valid: Interactions | None = None,
        progress: ProgressCallback | None = None,
    ) -> GraphEmbeddings:
        """Learn user and item vectors from ``interactions``.

        Args:
            interactions: the training interactions.
            valid: optional validation interactions in the same id space (see :meth:`Interactions.align`).
            progress: called with progress dicts (see :data:`ProgressCallback`).

        Raises:
            TrainingError: fitting failed.
        """

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def check_positive_int(params: dict[str, Any], *names: str, minimum: int = 1) -> None:
    """Raise :class:`InvalidParameter` unless each named parameter is an int >= ``minimum``."""
    for name in names:
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise InvalidParameter(f"{name}={value!r}: must be an integer >= {minimum}")


def check_positive_float(params: dict[str, Any], *names: str, zero: bool = False, tuned: bool = False) -> None:
    """Raise :class:`InvalidParameter` unless each named parameter is a finite number > 0 (``zero``: >= 0;
    ``tuned``: or None, a setting the model chooses itself)."""
    for name in names:
        value = params[name]
        if value is None and tuned:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            np.isfinite(value) and (value >= 0 if zero else value > 0)
        ):
            raise InvalidParameter(f"{name}={value!r}: must be a finite number {'>=' if zero else '>'} 0"
                                   + (" (or None: tuned)" if tuned else ""))


def make_model(name: str, **params: Any) -> GraphModel:
    """Build the graph model called ``name`` (a key of :data:`MODELS`) with ``params``.

    The model's module is imported only here, so importing :mod:`recsys` never imports torch.

    Raises:
        InvalidParameter: unknown model name (the message lists the valid ones) or bad parameter.
    """
    target = MODELS.get(name)
    if target is None:
        raise InvalidParameter(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**params)
