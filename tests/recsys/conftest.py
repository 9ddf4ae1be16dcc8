"""Small interaction data with planted communities, shared by the recsys tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def community_frame(users: int = 120, items: int = 60, communities: int = 3, per_user: int = 12,
                    noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Users of community c interact mostly with items of community c (item j is in community j % c)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        c = u % communities
        own = [j for j in range(items) if j % communities == c]
        picks = set(rng.choice(own, size=min(per_user, len(own)), replace=False).tolist())
        if rng.random() < noise * per_user:
            picks.add(int(rng.integers(items)))
        rows += [(f"u{u}", f"i{j}") for j in picks]
    return pd.DataFrame(rows, columns=["user", "item"])


@pytest.fixture(scope="session")
def communities(tmp_path_factory) -> dict:
    """A planted-community interaction CSV, a held-out split and an item metadata CSV."""
    df = community_frame()
    folder = tmp_path_factory.mktemp("communities")
    rng = np.random.default_rng(1)
    test_mask = rng.random(len(df)) < 0.2
    train, test = df[~test_mask], df[test_mask]
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    meta = pd.DataFrame({"item": [f"i{j}" for j in range(60)], "title": [f"Item {j}" for j in range(60)],
                         "community": [j % 3 for j in range(60)]})
    meta.to_csv(folder / "items.csv", index=False)
    return {"train": str(folder / "train.csv"), "test": str(folder / "test.csv"),
            "items": str(folder / "items.csv"), "frame": train}


FAST_NODE2VEC = {"dim": 16, "walk_length": 20, "walks_per_node": 10, "window": 5, "workers": 1, "seed": 3,
                 "space": "cosine"}


@pytest.fixture
def fast_node2vec() -> dict:
    """Node2Vec parameters small enough for tests."""
    return dict(FAST_NODE2VEC)


@pytest.fixture
def published(communities, model_name, settings):
    """A Node2Vec model trained on the community data and published (name, version)."""
    from recsys.training import train_and_publish

    result = train_and_publish(communities["train"], algorithm="node2vec", name=model_name,
                               params=FAST_NODE2VEC, test=communities["test"], item_metadata=communities["items"])
    return result
