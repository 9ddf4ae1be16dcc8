"""Filtered-query rows of ``bench/serving.py``: a filter allowing 1%, 10% and 50% of the items, against the
unfiltered query of the same users in the same run (each user's two queries timed one after the other, so
both see the same machine), and recall@10 against exact search over the allowed items.

Every item gets a ``bucket`` 0..99 (a seeded permutation, so ``bucket < 1`` allows exactly 1% of them),
published as item metadata; the filters are ``bucket < 1``, ``bucket < 10`` and ``bucket < 50``.
"""

from __future__ import annotations

import time

import numpy as np

from recsys import RecommendationClient, user_rows
from vectorstore import by_exact_search

SHARES = (1, 10, 50)
HEADERS = ["model", "allowed", "items allowed", "search", "filtered p50 ms", "unfiltered p50 ms", "p50 ratio",
           "filtered p99 ms", "unfiltered p99 ms", "p99 ratio", "CPU p50 ratio", "filtered recall@10",
           "unfiltered recall@10", "allowed set built ms"]


def bucket_metadata(item_ids) -> dict[str, list]:
    """``{"bucket": [0..99 per item]}``, an equal share of the items in each bucket."""
    n = len(item_ids)
    order = np.random.default_rng(7).permutation(n)
    bucket = np.empty(n, np.int64)
    bucket[order] = np.arange(n) * 100 // n
    return {"bucket": bucket.tolist()}


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - w, time.thread_time() - c


def _exact(client: RecommendationClient, users: list[str], expression: str | None, k: int = 10) -> float:
    """Recall@k of the served (filtered) top-k against exact search over the allowed, unseen items."""
    model = client._model
    reg = client.registry
    rows = user_rows(reg, model.name, model.version, users)
    bucket = np.asarray(model.metadata["bucket"])
    share = int(expression.split("<")[1]) if expression else 100
    hits = total = 0
    for user, (vec, seen) in zip(users, rows):
        scores = model.item_vectors @ vec
        scores[seen] = -np.inf
        scores[bucket >= share] = -np.inf
        truth = set(np.argpartition(-scores, k)[:k].tolist())
        truth = {i for i in truth if np.isfinite(scores[i])}
        served = {model.item_pos[i] for i in client.recommend(user, k=k, filter=expression).items}
        hits += len(truth & served)
        total += len(truth)
    return hits / max(total, 1)


def filtered_rows(label: str, client: RecommendationClient, queries: int) -> list[list]:
    """One row per share: latency of ``queries`` users' queries against their unfiltered ones, recall against
    exact filtered search (300 users)."""
    all_users = [u.decode() for u in client.registry.client.hkeys(client._model.vectors_key)]
    rng = np.random.default_rng(2)
    users = [all_users[i] for i in rng.integers(len(all_users), size=queries)]
    n = client._model.n_items
    plain_recall = _exact(client, users[:300], None)
    rows = []
    for share in SHARES:
        expression = f"bucket < {share}"
        t = time.perf_counter()
        allowed = len(client._filters.allowed(client._model, expression))
        built = (time.perf_counter() - t) * 1e3
        for u in users[:50]:  # warm-up
            client.recommend(u, k=10, filter=expression)
        plain, filt = [], []
        for u in users:
            plain.append(_timed(lambda: client.recommend(u, k=10)))  # noqa: B023 - called at once
            filt.append(_timed(lambda: client.recommend(u, k=10, filter=expression)))  # noqa: B023
        pw, pc = (np.asarray(x) * 1e3 for x in zip(*plain))
        fw, fc = (np.asarray(x) * 1e3 for x in zip(*filt))
        exact = by_exact_search(allowed, n)
        p50, p99 = (float(np.percentile(fw, q)) for q in (50, 99))
        b50, b99 = (float(np.percentile(pw, q)) for q in (50, 99))
        rows.append([label, f"{share}%", allowed, "exact over allowed" if exact else "hnswlib filter",
                     p50, b50, p50 / b50, p99, b99, p99 / b99, float(np.median(fc) / np.median(pc)),
                     _exact(client, users[:300], expression), plain_recall, built])
    return rows
