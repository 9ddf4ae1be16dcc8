"""The contract every graph model follows (implicit-style): one base class, one result type, one factory.

A model is configured with keyword hyper-parameters (validated at construction, so a bad value fails before
any work), and :meth:`GraphModel.fit` turns :class:`~recsys.interactions.Interactions` into
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

from .exceptions import InvalidParameter
from .interactions import Interactions

__all__ = ["GraphEmbeddings", "GraphModel", "ProgressCallback", "make_model", "MODELS"]

logger = logging.getLogger(__name__)

#: Called with ``{"stage": str, "done": int, "total": int, ...}`` plus extras such as epoch, loss, walks.
ProgressCallback = Callable[[dict], None]

#: model name -> "module:Class", imported only when asked for (lightgcn needs torch).
MODELS: dict[str, str] = {
    "node2vec": "recsys.node2vec:Node2Vec",
    "lightgcn": "recsys.lightgcn:LightGCN",
}

SPACES = ("ip", "cosine")


@dataclass
class GraphEmbeddings:
    """The result of :meth:`GraphModel.fit`.

    Attributes:
        user_vectors: float32 ``n_users x d``, row i is the user with dense id i.
        item_vectors: float32 ``n_items x d``, row j is the item with dense id j.
        space: how ``user . item`` is scored in the item index: ``"ip"`` or ``"cosine"``.
        params: the hyper-parameters used.
        history: one dict per epoch/stage (loss, metrics, seconds...).
    """

    user_vectors: np.ndarray
    item_vectors: np.ndarray
    space: str
    params: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

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

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.item_vectors.shape[1])

    def scoring_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) vectors such that ``user @ item.T`` is the score: L2-normalised rows for cosine."""
        if self.space == "ip":
            return self.user_vectors, self.item_vectors
        return _normalise(self.user_vectors), _normalise(self.item_vectors)


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


def check_positive_float(params: dict[str, Any], *names: str) -> None:
    """Raise :class:`InvalidParameter` unless each named parameter is a finite number > 0."""
    for name in names:
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            np.isfinite(value) and value > 0
        ):
            raise InvalidParameter(f"{name}={value!r}: must be a finite number > 0")


def make_model(name: str, **params: Any) -> GraphModel:
    """Build the graph model called ``name`` (``"node2vec"`` or ``"lightgcn"``) with ``params``.

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
