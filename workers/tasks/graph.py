"""Graph-model tasks: ``ea.train_graph`` (queue ``train``) and ``ea.precompute_recommendations`` (``score``)."""

from __future__ import annotations

import logging

from vectorstore import ModelRegistry, input_path

from ..app import app
from ._progress import Progress

__all__ = ["precompute_recommendations", "train_graph"]

log = logging.getLogger(__name__)


@app.task(name="ea.train_graph", bind=True)
def train_graph(self, interactions: str, model: str | None = None, name: str = "default",
                params: dict | None = None, valid: str | None = None, test: str | None = None,
                item_metadata: str | None = None, k: int = 20, precompute: int = 0,
                read_options: dict | None = None, index_backend: str = "hnswlib") -> dict:
    """Train a graph model on interactions read by reference (a path the worker can read) and publish it.

    ``model`` is a key of ``recsys.MODELS``; None trains ``recsys.DEFAULT_MODEL``.
    ``index_backend``: ``"hnswlib"`` or ``"milvus"`` (``recsys.publish_embeddings``).
    ``read_options``: keywords of ``recsys.Interactions.read`` (``columns``, ``encoding``). Under
    ``EA_DATA_ROOT`` every path must lie inside it (``vectorstore.input_path``), else the job fails
    with ``InputNotAllowed`` before any file is opened.

    Reports PROGRESS (stage, epoch, loss, walks done...). Idempotent: a redelivered job returns the
    version its first run committed instead of publishing another.

    Returns:
        ``{"model", "version", "algorithm", "metrics", "timings", "n_users", "n_items"}``.
    """
    from recsys import train_and_publish

    interactions, valid, test, item_metadata = (  # type: ignore[assignment]  # interactions is always given
        None if path is None else str(input_path(path, what=what))
        for path, what in ((interactions, "interactions"), (valid, "valid"), (test, "test"),
                           (item_metadata, "item metadata")))
    progress = Progress(self)
    result = train_and_publish(interactions, algorithm=model, name=name, params=params, valid=valid, test=test,
                               item_metadata=item_metadata, k=k, progress=progress, token=self.request.id,
                               read_options=read_options, index_backend=index_backend)
    progress.flush()
    if precompute:
        precompute_recommendations.delay(name=name, version=result.version, n=precompute)
    return result.as_dict()


@app.task(name="ea.precompute_recommendations", bind=True)
def precompute_recommendations(self, name: str = "default", version: int | None = None, n: int = 50,
                               batch: int = 2048) -> dict:
    """Write every user's top-``n`` (seen items excluded) for ``version`` into Redis
    (:func:`recsys.precompute_top_n`); a redelivered job drops its killed delivery's partial list.
    """
    from recsys import precompute_top_n

    return precompute_top_n(ModelRegistry(), name, version, n=n, batch=batch, attempt=self.request.id,
                            progress=Progress(self))
