"""Graph-model tasks: ``ea.train_graph`` (queue ``train``) and ``ea.precompute_recommendations`` (``score``)."""

from __future__ import annotations

import logging
import uuid

import numpy as np
import redis

from vectorstore import ModelRegistry
from vectorstore.inputs import input_path

from ..app import app
from ._progress import Progress

__all__ = ["precompute_recommendations", "train_graph"]

log = logging.getLogger(__name__)

#: Seconds a partial top-N list outlives its last write: far longer than one batch takes.
BUILDING_TTL_S = 3600


@app.task(name="ea.train_graph", bind=True)
def train_graph(self, interactions: str, model: str | None = None, name: str = "default",
                params: dict | None = None, valid: str | None = None, test: str | None = None,
                item_metadata: str | None = None, k: int = 20, precompute: int = 0,
                read_options: dict | None = None) -> dict:
    """Train a graph model on interactions read by reference (a path the worker can read) and publish it.

    ``model`` is a key of ``recsys.models.MODELS``; None trains ``recsys.models.DEFAULT_MODEL``.
    ``read_options``: keywords of ``recsys.Interactions.read`` (``columns``, ``encoding``). Under
    ``EA_DATA_ROOT`` every path must lie inside it (``vectorstore.inputs.input_path``), else the job fails
    with ``InputNotAllowed`` before any file is opened.

    Reports PROGRESS (stage, epoch, loss, walks done...). Idempotent: a redelivered job returns the
    version its first run committed instead of publishing another.

    Returns:
        ``{"model", "version", "algorithm", "metrics", "timings", "n_users", "n_items"}``.
    """
    from recsys.training import train_and_publish

    interactions, valid, test, item_metadata = (  # type: ignore[assignment]  # interactions is always given
        None if path is None else str(input_path(path, what=what))
        for path, what in ((interactions, "interactions"), (valid, "valid"), (test, "test"),
                           (item_metadata, "item metadata")))
    progress = Progress(self)
    result = train_and_publish(interactions, algorithm=model, name=name, params=params, valid=valid, test=test,
                               item_metadata=item_metadata, k=k, progress=progress, token=self.request.id,
                               read_options=read_options)
    progress.flush()
    if precompute:
        precompute_recommendations.delay(name=name, version=result.version, n=precompute)
    return result.as_dict()


@app.task(name="ea.precompute_recommendations", bind=True)
def precompute_recommendations(self, name: str = "default", version: int | None = None, n: int = 50,
                               batch: int = 2048) -> dict:
    """Write every user's top-``n`` (seen items excluded) for ``version`` into Redis.

    The client serves them when present for the version it is serving (the key is per version, so a
    stale list is never used) and falls back to the index otherwise.
    """
    from recsys._serving import TOPN, ServingModel
    from recsys.client import encode_top

    registry = ModelRegistry()
    model = ServingModel.load(registry, name, version)
    table, seen_table = model.vectors_key, model.seen_key
    out_key = registry.derived_key(name, model.version, TOPN)
    users = [u.decode() for u in registry.client.hkeys(table)]
    progress = Progress(self)
    # A building key of this attempt only: two precomputations of one version at once (two workers, a
    # redelivered job) must not delete or rename each other's partial lists. The key expires unless
    # written to, so an attempt killed mid-way leaves nothing behind for long.
    job = (self.request.id or "local").replace("-", "")[:32]
    tmp = registry.derived_key(name, model.version, f"{TOPN}-building-{job}-{uuid.uuid4().hex[:12]}")
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        vectors = np.stack([np.frombuffer(v, "<f4") for v in registry.client.hmget(table, chunk)])
        seen = [np.frombuffer(s or b"", "<i4") for s in registry.client.hmget(seen_table, chunk)]
        ids, scores = model.index.query(vectors, k=min(n, model.n_items), exclude=seen,
                                        **model.search.get("recommend", {}))  # as the client asks them
        rows = {}
        for u, row_ids, row_scores in zip(chunk, ids, scores):
            keep = row_ids >= 0
            rows[u] = encode_top(row_ids[keep], row_scores[keep])
        registry.client.pipeline(transaction=False).hset(tmp, mapping=rows).expire(tmp, BUILDING_TTL_S).execute()
        progress({"stage": "precompute", "done": min(start + batch, len(users)), "total": len(users)})
    if self.request.id:
        # A delivery of this same job killed mid-way (the broker redelivers it to us) left its partial list.
        _drop_building_keys(registry, name, model.version, f"{TOPN}-building-{job}-", keep=tmp)
    _publish_complete(registry, tmp, out_key, len(users))
    registry.unregister_derived(name, model.version, tmp)
    return {"model": name, "version": model.version, "users": len(users), "n": n}


def _drop_building_keys(registry: ModelRegistry, name: str, version: int, prefix: str, keep: str) -> None:
    # Building keys are registered with the version, so its derived set lists them: no keyspace scan.
    start = registry.derived_key(name, version, prefix, register=False)
    for key in registry.derived_keys(name, version):
        if key.startswith(start) and key != keep:
            registry.client.delete(key)
            registry.unregister_derived(name, version, key)


def _publish_complete(registry: ModelRegistry, tmp: str, out_key: str, n_users: int) -> None:
    """Rename the building list into place only when it holds every user; otherwise drop it."""
    if n_users and registry.client.hlen(tmp) == n_users:
        try:
            registry.client.pipeline().rename(tmp, out_key).persist(out_key).execute()
            return
        except redis.ResponseError:  # dropped by a concurrent cleanup between the check and the rename
            pass
    registry.client.delete(tmp)
    if n_users and registry.client.hlen(out_key) != n_users:
        raise RuntimeError(f"precomputed top-N list {out_key!r} is incomplete: another run removed this "
                           "run's partial list; run the precomputation again")
