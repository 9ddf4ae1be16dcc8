"""Train a graph model on interactions read by reference, evaluate it, publish it: the job's body.

Shared by the Celery task ``ea.train_graph`` and by ``ea eval recsys``, so both publish the same thing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vectorstore import ModelRegistry

from .data.interactions import Interactions
from .data.item_table import item_metadata_columns, read_item_table
from .exceptions import InvalidParameter
from .live.carry import carry_over
from .live.recorded import recorded
from .models.graph_model import DEFAULT_MODEL, ProgressCallback, make_model
from .models.metrics import ranking_metrics, top_k
from .publish.embeddings import INDEX_BACKENDS, publish_embeddings

__all__ = ["TrainingResult", "train_and_publish"]

log = logging.getLogger(__name__)

@dataclass
class TrainingResult:
    """What a training job returns (JSON-serialisable through :meth:`as_dict`)."""

    model: str
    version: int
    algorithm: str
    metrics: dict[str, float]
    timings: dict[str, float]
    n_users: int
    n_items: int
    history: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "algorithm": self.algorithm,
                "metrics": self.metrics, "timings": self.timings, "n_users": self.n_users,
                "n_items": self.n_items}


def train_and_publish(
    interactions: str | Interactions,
    *,
    algorithm: str | None = None,
    name: str = "default",
    params: dict[str, Any] | None = None,
    valid: str | Interactions | None = None,
    test: str | Interactions | None = None,
    item_metadata: str | None = None,
    k: int = 20,
    registry: ModelRegistry | None = None,
    progress: ProgressCallback | None = None,
    token: str | None = None,
    read_options: dict[str, Any] | None = None,
    index_backend: str = INDEX_BACKENDS[0],
    deltas: bool = True,
) -> TrainingResult:
    """Read, train, evaluate (on ``test``, else ``valid``, when given) and publish a graph model.

    Args:
        interactions: a path (CSV, Parquet, MovieLens formats) or :class:`Interactions`.
        algorithm: a key of :data:`~recsys.MODELS` (None: :data:`~recsys.DEFAULT_MODEL`).
        name: the model name to publish under.
        params: the model's hyper-parameters.
        valid: held-out interactions to stop on (LightGCN; without them it carves a split from the
            training data, stops on it, then trains on everything).
        test: held-out interactions for the published metrics.
        item_metadata: a CSV with an ``item`` column and fields returned with recommendations.
        k: metric cut-off.
        token: idempotency token (the job id): a redelivered job does not publish twice.
        read_options: keywords of :meth:`Interactions.read` for every file read (``columns``, ``encoding``).
        index_backend: where the item index lives, one of :data:`vectorstore.INDEX_BACKENDS` (``"hnswlib"``:
            in the serving process; ``"milvus"``: a Milvus collection per version, ``EA_MILVUS_URI``): see
            :func:`recsys.publish.embeddings.publish_embeddings`.
        deltas: learn from the delta log of ``name``'s active version (:func:`recsys.live.recorded.recorded`): its
            users' interactions are added to the training input and its deleted items left out, its field
            updates applied to the item metadata; the new version starts with an empty log (deltas written
            while it trained are carried over: :func:`recsys.live.carry.carry_over`).

    Raises:
        InvalidInteractions: bad input; nothing trained or published.
        InvalidParameter: unknown algorithm or parameter.
    """
    registry = registry or ModelRegistry()
    if token and (done := registry.version_for_token(name, token)):
        log.info("job %s already published %s v%s", token, name, done)
        meta = registry.manifest(name, done)["meta"]
        return TrainingResult(name, done, meta["algorithm"], meta.get("metrics", {}), {},
                              meta["n_users"], meta["n_items"])
    timings: dict[str, float] = {}
    t = time.perf_counter()
    read_options = read_options or {}
    train = interactions if isinstance(interactions, Interactions) else Interactions.read(interactions, **read_options)
    learned = recorded(registry, name) if deltas else None
    if learned is not None:
        train = learned.merged(train)
    valid_i = _aligned(train, valid, read_options)
    test_i = _aligned(train, test, read_options)
    metadata = item_metadata_columns(read_item_table(item_metadata), train.item_ids) if item_metadata else None
    if learned is not None:
        metadata = learned.merged_metadata(metadata, train.item_ids)
    algorithm = algorithm or DEFAULT_MODEL
    model = make_model(algorithm, **dict(params or {}))  # bad parameters fail before any training
    if index_backend not in INDEX_BACKENDS:
        raise InvalidParameter(f"index_backend={index_backend!r}: must be one of {', '.join(INDEX_BACKENDS)}")
    timings["read_s"] = time.perf_counter() - t

    t = time.perf_counter()
    embeddings = model.fit(train, valid=valid_i, progress=progress)
    timings["train_s"] = time.perf_counter() - t

    metrics: dict[str, float] = {}
    held_out = test_i if test_i is not None else valid_i
    if held_out is not None and len(held_out):
        t = time.perf_counter()
        if progress:
            progress({"stage": "evaluate", "done": 0, "total": 1})
        users_v, items_v = embeddings.scoring_vectors()
        users = sorted(set(held_out.users.tolist()))
        recs, _ = top_k(users_v, items_v, k, exclude=train.user_matrix(), users=users)
        metrics = ranking_metrics((np.asarray(users), recs), held_out, k, n_items=train.n_items)
        timings["evaluate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    if progress:
        progress({"stage": "publish", "done": 0, "total": 1})
    version = publish_embeddings(registry, name, train, embeddings, algorithm=algorithm, metrics=metrics,
                                 item_metadata=metadata, token=token, index_backend=index_backend,
                                 extra_meta={"trained_on": interactions if isinstance(interactions, str) else None,
                                             "timings": timings,
                                             **({"deltas": learned.summary()} if learned and learned.version else {})})
    if learned is not None and learned.version and registry.active_version(name) == version != learned.version:
        # deltas written while this version trained are in the old log: carried over, so none is lost
        carry_over(registry, name, learned.version, learned.last_id, version)
    timings["publish_s"] = time.perf_counter() - t
    return TrainingResult(name, version, algorithm, metrics, timings, train.n_users, train.n_items,
                          embeddings.history)


def _aligned(train: Interactions, other: str | Interactions | None,
             read_options: dict[str, Any]) -> Interactions | None:
    if other is None:
        return None
    other = other if isinstance(other, Interactions) else Interactions.read(other, **read_options)
    return train.align(other)
