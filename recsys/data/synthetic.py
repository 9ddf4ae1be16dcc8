"""A realistic synthetic interaction log for demos and tests: communities and popularity skew.

Users belong to taste communities (genres); each user interacts mostly with items of their genre, picked
with a Zipf-like popularity skew, plus some popular items from anywhere. Nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["GENRES", "synthetic_interactions"]

GENRES = ("jazz", "metal", "folk", "techno", "classical", "hiphop", "reggae", "blues")


def synthetic_interactions(users: int = 2000, items: int = 600, communities: int = 6, per_user: int = 25,
                           explore: float = 0.15, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An interaction log and an item table.

    Args:
        users, items: sizes. communities: taste groups (at most ``len(GENRES)``).
        per_user: mean interactions per user (Poisson, at least 3).
        explore: share of a user's interactions drawn from the global popularity instead of their genre.

    Returns:
        ``(interactions, items)``: ``user,item,weight,timestamp`` and ``item,title,genre``.
    """
    if not 1 <= communities <= len(GENRES):
        raise ValueError(f"communities={communities} must be between 1 and {len(GENRES)}")
    rng = np.random.default_rng(seed)
    item_genre = np.arange(items) % communities
    # Zipf-like popularity: a few hits, a long tail.
    popularity = 1.0 / (1.0 + rng.permutation(items)) ** 0.9
    user_genre = rng.integers(communities, size=users)
    rows_u, rows_i = [], []
    for u in range(users):
        n = max(3, int(rng.poisson(per_user)))
        own = np.flatnonzero(item_genre == user_genre[u])
        p_own = popularity[own] / popularity[own].sum()
        n_explore = rng.binomial(n, explore)
        picks = set(rng.choice(own, size=min(n - n_explore, own.size), replace=False, p=p_own).tolist())
        if n_explore:
            picks |= set(rng.choice(items, size=n_explore, replace=False, p=popularity / popularity.sum()).tolist())
        rows_u += [u] * len(picks)
        rows_i += sorted(picks)
    start = pd.Timestamp("2026-01-01", tz="UTC").value // 10**9
    frame = pd.DataFrame({
        "user": [f"user-{u}" for u in rows_u],
        "item": [f"item-{i}" for i in rows_i],
        "weight": rng.integers(1, 4, size=len(rows_u)).astype(float),
        "timestamp": start + rng.integers(0, 90 * 86400, size=len(rows_u)),
    })
    genres = [GENRES[g] for g in item_genre]
    table = pd.DataFrame({"item": [f"item-{i}" for i in range(items)],
                          "title": [f"{g.title()} record #{i}" for i, g in enumerate(genres)], "genre": genres})
    return frame, table
