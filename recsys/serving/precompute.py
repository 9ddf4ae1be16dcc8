"""Every user's top-N, precomputed into Redis for the version being served.

The client serves a user's precomputed list when one exists for the version it is serving (the key is per
version, so a stale list is never used) and asks the index otherwise. A list is built under a key of its
own attempt and renamed into place only when it holds every user, so readers never see half a list, and a
redelivered job (a worker killed mid-way) drops its earlier attempt's partial list.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from vectorstore import ModelRegistry, RedisUnavailable

from ..publish.wire import TOPN, decode_ids, decode_vector, encode_top, topn_building
from .serving_model import ServingModel

__all__ = ["BUILDING_TTL_S", "precompute_top_n"]

#: Seconds a partial top-N list outlives its last write: far longer than one batch takes.
BUILDING_TTL_S = 3600

_RENAME_PERSIST = "redis.call('RENAME', KEYS[1], KEYS[2]); return redis.call('PERSIST', KEYS[2])"


def precompute_top_n(registry: ModelRegistry, name: str, version: int | None = None, *, n: int = 50,
                     batch: int = 2048, attempt: str | None = None,
                     progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Write every user's top-``n`` (seen items excluded, as the client would answer) for ``version``
    (default: the active one) of model ``name``.

    Args:
        attempt: an id of this attempt that a redelivery repeats (a Celery task id): its earlier partial
            lists are dropped; ``None`` for a one-off run.
        progress: called with ``{"stage": "precompute", "done", "total"}`` after each batch.

    Returns:
        ``{"model", "version", "users", "n"}``.

    Raises:
        RuntimeError: another run removed this run's partial list (run it again).
        vectorstore.SignatureError, vectorstore.CorruptRow: a user's row fails its signature or is malformed.
        recsys.exceptions.ModelUnavailable: no such model or version.
    """
    model = ServingModel.load(registry, name, version)
    table, seen_table = model.vectors_key, model.seen_key
    out_key = registry.derived_key(name, model.version, TOPN)
    users = [u.decode() for u in registry.client.hkeys(table)]
    # A building key of this attempt only: two precomputations of one version at once (two workers, a
    # redelivered job) must not delete or rename each other's partial lists. The key expires unless
    # written to, so an attempt killed mid-way leaves nothing behind for long.
    job = (attempt or "local").replace("-", "")[:32]
    tmp = registry.derived_key(name, model.version, topn_building(job, uuid.uuid4().hex[:12]))
    vector_seal, seen_seal = model.vector_seal, model.seen_seal
    assert vector_seal is not None and seen_seal is not None  # set by ServingModel.load
    # Lists are signed like the rows they come from (a reader checks them with EA_SIGNING_KEY), and only
    # from rows whose signatures verify: a planted vector must not come back as a signed list.
    top_seal = registry.row_seal(name, model.version, TOPN, derived=True)
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        vectors = np.stack([decode_vector(vector_seal.open(u, v), model.dim)
                            for u, v in zip(chunk, registry.client.hmget(table, chunk))])
        seen = [decode_ids(None if s is None else seen_seal.open(u, s), model.n_items)
                for u, s in zip(chunk, registry.client.hmget(seen_table, chunk))]
        ids, scores = model.index.query(vectors, k=min(n, model.n_items), exclude=seen,
                                        **model.search.get("recommend", {}))  # as the client asks them
        rows = {}
        for u, row_ids, row_scores in zip(chunk, ids, scores):
            keep = row_ids >= 0
            rows[u] = top_seal.seal(u, encode_top(row_ids[keep], row_scores[keep]))
        try:
            registry.client.pipeline(transaction=False).hset(tmp, mapping=rows).expire(tmp, BUILDING_TTL_S).execute()
        except redis.RedisError as exc:
            # Typed, without the command's binary arguments; a refused write (Redis full) drops the partial list.
            error = registry.typed_error(exc, f"precompute of {name!r} v{model.version}")
            if not isinstance(error, RedisUnavailable):
                with contextlib.suppress(redis.RedisError):
                    registry.client.delete(tmp)
            raise error from None
        if progress is not None:
            progress({"stage": "precompute", "done": min(start + batch, len(users)), "total": len(users)})
    if attempt:
        # A delivery of this same job killed mid-way (the broker redelivers it to us) left its partial list.
        _drop_building_keys(registry, name, model.version, topn_building(job), keep=tmp)
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
            # A script, not MULTI/EXEC: a cluster client refuses RENAME in a pipeline (both keys share the
            # model's hash tag, so the script runs on one node).
            registry.client.eval(_RENAME_PERSIST, 2, tmp, out_key)
            return
        except redis.ResponseError:  # dropped by a concurrent cleanup between the check and the rename
            pass
    registry.client.delete(tmp)
    if n_users and registry.client.hlen(out_key) != n_users:
        raise RuntimeError(f"precomputed top-N list {out_key!r} is incomplete: another run removed this "
                           "run's partial list; run the precomputation again")
