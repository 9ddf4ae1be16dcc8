"""Service-level tasks: ``ea.selfcheck`` runs a real round trip (train-like work, publish, load, query)."""

from __future__ import annotations

import time

import numpy as np

from vectorstore import ItemIndex, ModelRegistry

from ..app import app
from ._progress import Progress

__all__ = ["selfcheck"]


@app.task(name="ea.train_selfcheck", bind=True, acks_late=True)
def selfcheck(self, model: str = "selfcheck", items: int = 2000, dim: int = 32, steps: int = 5,
              seed: int = 0) -> dict:
    """Build a random item model in ``steps`` reported steps, publish it with its index, load it back.

    Returns:
        ``{"model", "version", "items", "recall@10"}``: recall of the loaded index against exact search.
    """
    progress = Progress(self, min_interval=0.0)
    rng = np.random.default_rng(seed)
    vectors = np.empty((items, dim), dtype=np.float32)
    for step, rows in enumerate(np.array_split(np.arange(items), steps), start=1):
        vectors[rows] = rng.standard_normal((rows.size, dim))
        progress({"stage": "build", "done": step, "total": steps})
        time.sleep(0.05)
    registry = ModelRegistry()
    token = self.request.id
    if token and (version := registry.version_for_token(model, token)):
        return {"model": model, "version": version, "items": items, "redelivered": True}
    index = ItemIndex.build(vectors, space="ip", ef=64)
    version = registry.publish(model, arrays={"item_vectors": vectors}, blobs={"index": index.to_bytes()},
                               meta={"kind": "selfcheck", "items": items, "dim": dim, "index": index.params},
                               token=token)
    loaded = registry.load(model, version)
    served = ItemIndex.from_bytes(loaded.blobs["index"])
    queries = vectors[:50]
    got, _ = served.query(queries, k=10)
    exact = np.argsort(-(queries @ loaded.arrays["item_vectors"].T), axis=1)[:, :10]
    recall = float(np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)]))
    progress({"stage": "publish", "done": 1, "total": 1, "version": version})
    return {"model": model, "version": version, "items": items, "recall@10": recall}
