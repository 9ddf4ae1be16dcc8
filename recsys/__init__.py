"""Recommendations from graph embeddings of a user-item interaction graph.

The public surface is re-exported here; the code lives in five rooms, each with its own map in its
``__init__``:

===========  ==================================================================================================
room         holds
===========  ==================================================================================================
``data``     what goes into a model: :class:`Interactions`, item metadata tables, the ids a request names
``models``   the :class:`GraphModel` contract, ``Spectral``, :class:`LightGCN`, :class:`Node2Vec`, the metrics
``publish``  a trained model written as a registry version (:func:`publish_embeddings`), its parts read back
``serving``  :class:`RecommendationClient` and what it composes; :func:`precompute_top_n`
``live``     deltas between trainings: :class:`CatalogueWriter`, the delta log, a client's follower of it
===========  ==================================================================================================

``training`` (:func:`train_and_publish`: read, train, evaluate, publish, carry deltas over) composes them;
``exceptions`` is the package's one error tree. A module whose name starts with an underscore is private to
its room. Importing :mod:`recsys` never imports torch or gensim: the models are imported by
:func:`make_model` (or on first access to ``recsys.Node2Vec`` / ``recsys.LightGCN``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .data.interactions import Interactions
from .data.synthetic import synthetic_interactions
from .exceptions import (
    InvalidDelta,
    InvalidFilter,
    InvalidInteractions,
    InvalidParameter,
    InvalidRequest,
    ModelUnavailable,
    RecsysError,
    TrainingError,
    UnknownItem,
    UnknownUser,
    UnsupportedDelta,
    VersionGone,
)
from .live.writer import CatalogueWriter
from .models.graph_model import DEFAULT_MODEL, MODELS, GraphEmbeddings, GraphModel, ProgressCallback, make_model
from .models.metrics import ranking_metrics, top_k
from .publish.embeddings import publish_embeddings
from .publish.entities import entity_vectors, user_rows, user_table_keys
from .serving.client import RecommendationClient
from .serving.precompute import precompute_top_n
from .serving.recommendations import Recommendations
from .serving.similarity import SimilarUsers
from .training import train_and_publish

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "entity_vectors",
    "user_rows",
    "user_table_keys",
    "precompute_top_n",
    "publish_embeddings",
    "synthetic_interactions",
    "train_and_publish",
    "Interactions",
    "GraphEmbeddings",
    "GraphModel",
    "ProgressCallback",
    "make_model",
    "ranking_metrics",
    "top_k",
    "Node2Vec",
    "LightGCN",
    "RecsysError",
    "InvalidInteractions",
    "UnknownUser",
    "UnknownItem",
    "TrainingError",
    "InvalidParameter",
    "InvalidRequest",
    "InvalidFilter",
    "ModelUnavailable",
    "VersionGone",
    "RecommendationClient",
    "Recommendations",
    "CatalogueWriter",
    "InvalidDelta",
    "UnsupportedDelta",
    "SimilarUsers",
]

_LAZY = {"Node2Vec": "recsys.models.node2vec.model", "LightGCN": "recsys.models.lightgcn.model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recsys' has no attribute {name!r}")
