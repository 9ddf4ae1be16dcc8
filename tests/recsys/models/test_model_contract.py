"""One contract, run for every model in ``recsys.MODELS`` (as implicit's RecommenderBaseTestMixin).

Each model is fitted on planted communities that overlap (users explore popular items of other genres),
with a Zipf popularity skew and planted bot accounts (random items), published through the registry to
the real Redis, and asked through ``RecommendationClient`` and ``ea`` what a user would ask. The data are
chosen so that a model serving a path from the wrong vectors fails: ``test_wrong_vectors_fail_the_contract``
runs the same checks on Node2Vec with its context vectors in every path and expects them to fail.

A new model gets this run by being registered in ``MODELS``; give it small parameters in ``FAST`` (a model
without an entry runs with its defaults).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from recsys import (
    MODELS,
    Interactions,
    RecommendationClient,
    make_model,
    publish_embeddings,
    ranking_metrics,
    synthetic_interactions,
)
from vectorstore import ModelRegistry
from workers.cli import main

#: small parameters per model, so that a fit takes a few seconds
FAST = {
    "node2vec": {"dim": 32, "walk_length": 20, "walks_per_node": 10, "window": 5, "workers": 1, "seed": 1},
    "lightgcn": {"dim": 32, "seed": 0, "threads": 1, "batch_size": 2048},
    "spectral": {"dim": 48},
    "filter": {"dim": 32, "rank": 64},  # the other settings tuned on its carved split, as by default
}
COMMUNITIES = 8
ITEMS = 600
BOTS = 8
K = 10


@dataclasses.dataclass(frozen=True)
class Data:
    train: Interactions
    truth: dict[str, set[str]]  # held-out items of each (non-bot) user
    history: dict[str, list[str]]  # training items of each user
    best: dict[str, str]  # each user's highest-weighted training item
    genre: dict[str, int]  # item -> community
    bots: set[str]


@pytest.fixture(scope="module")
def data() -> Data:
    # 40% of each user's items come from the global (Zipf) popularity: communities overlap, and folding
    # in Node2Vec's context vectors scores 0.05-0.09 Recall@10 against 0.27 for its input vectors.
    frame, _ = synthetic_interactions(users=800, items=ITEMS, communities=COMMUNITIES, per_user=30, explore=0.4,
                                      seed=4)
    rng = np.random.default_rng(5)
    bots = [(f"bot-{b}", f"item-{j}", 1.0) for b in range(BOTS) for j in rng.choice(ITEMS, 40, replace=False)]
    frame = frame[["user", "item", "weight"]]
    held = rng.random(len(frame)) < 0.2
    train = pd.concat([frame[~held], pd.DataFrame(bots, columns=["user", "item", "weight"])])
    test = frame[held]
    best = train.sort_values(["user", "weight", "item"], ascending=[True, False, True]).groupby("user").item.first()
    return Data(
        train=Interactions.from_frame(train),
        truth={u: set(g.item) for u, g in test.groupby("user")},
        history={u: list(g.item) for u, g in train.groupby("user")},
        best=best.to_dict(),
        genre={f"item-{j}": j % COMMUNITIES for j in range(ITEMS)},
        bots={b for b, _, _ in bots},
    )


def _recall(recs: dict[str, list[str]], data: Data) -> float:
    return ranking_metrics(recs, {u: data.truth[u] for u in recs}, K)[f"recall@{K}"]


def measure(client: RecommendationClient, data: Data, registry: ModelRegistry) -> dict[str, float]:
    """Every path's quality, measured as a user would get it."""
    from workers.scoring import entity_outliers

    users = sorted(data.truth)
    popular = client.recommend("nobody-knows-me", k=K + 1).items
    known = {u: client.recommend(u, k=K).items for u in users}
    folded = {u: client.recommend_for_history(data.history[u], k=K).items for u in users}
    similar = {u: client.similar_items(data.best[u], k=K).items for u in users}
    by_popularity = {u: [i for i in popular if i != data.best[u]][:K] for u in users}
    items = sorted(data.genre)
    same = [np.mean([data.genre[j] == data.genre[i] for j in client.similar_items(i, k=K).items]) for i in items]
    same_popular = [np.mean([data.genre[j] == data.genre[i] for j in popular if j != i][:K]) for i in items]
    flagged = entity_outliers(client.name, "users", k=10, registry=registry)
    top = flagged.head(len(data.bots) + 2)
    return {
        "known": _recall(known, data),
        "popularity": _recall({u: [i for i in popular if i not in data.history[u]][:K] for u in users}, data),
        "fold_in": _recall(folded, data),
        "similar": _recall(similar, data),
        "similar_popularity": _recall(by_popularity, data),
        "same_community": float(np.mean(same)),
        "same_community_popularity": float(np.mean(same_popular)),
        "bots_on_top": len(set(top.id) & data.bots) / len(data.bots),
        "bots_flagged": len(set(flagged.loc[flagged.is_outlier, "id"]) & data.bots) / len(data.bots),
    }


def contract_failures(m: dict[str, float]) -> list[str]:
    """The contract's quality checks that the measures ``m`` fail (empty: all pass).

    The bars are set to pass every model that reads the right vectors and to fail the wrong ones by a wide
    margin (Node2Vec's context vectors: fold-in at 20% of known users, the proxy at half of popularity's,
    no bot among the top outliers). The issue's own targets (fold-in within 20% of known users, similar
    items above popularity) are measured on ml-100k by ``bench/recsys.py``: on these data, whose
    interactions are 40% popular items, LightGCN's fold-in (the mean of its item vectors) reaches 79% of its
    known users' recall, and the spectral model's similar items 94% of popularity on the proxy.
    """
    checks = {
        "recommendations beat popularity": m["known"] > 1.1 * m["popularity"],
        "fold-in close to known users": m["fold_in"] >= 0.75 * m["known"],
        "similar items near popularity on the held-out proxy": m["similar"] >= 0.8 * m["similar_popularity"],
        "similar items come from the item's community": m["same_community"] >= 3 * m["same_community_popularity"],
        "planted bots rank as the top user outliers": m["bots_on_top"] >= 0.75,
    }
    return [name for name, ok in checks.items() if not ok]


@pytest.fixture(scope="module", params=sorted(MODELS))
def served(request, data):
    """(algorithm, client, registry, embeddings) for each registered model, published to the real Redis."""
    from vectorstore import get_settings

    settings = get_settings()
    algorithm = request.param
    emb = make_model(algorithm, **FAST.get(algorithm, {})).fit(data.train)
    registry = ModelRegistry(settings)
    name = f"contract-{algorithm}"
    version = publish_embeddings(registry, name, data.train, emb, algorithm=algorithm)
    with RecommendationClient(model=name, settings=settings, listen=False, refresh_interval=0) as client:
        assert client.model_version == version
        yield algorithm, client, registry, emb


def test_every_path_serves_the_right_vectors(served, data):
    algorithm, client, registry, _ = served
    m = measure(client, data, registry)
    assert not contract_failures(m), f"{algorithm}: {contract_failures(m)} ({m})"


def test_recommend_and_recommend_many_agree_and_exclude_seen(served, data):
    _, client, _, _ = served
    users = sorted(data.truth)[:40]
    many = client.recommend_many(users, k=K)
    for rec in many:
        one = client.recommend(rec.user, k=K)
        assert rec.items == one.items and one.source == "index" and len(one) == K
        assert not set(one.items) & set(data.history[rec.user])
        assert np.all(np.diff(one.scores) <= 1e-5)
    hist = client.recommend_for_history(data.history[users[0]][:3], k=K)
    assert hist.source == "history" and not set(hist.items) & set(data.history[users[0]][:3])


def test_ann_recall_of_every_path_is_in_the_manifest(served, settings):
    _, client, registry, emb = served
    report = client.model_meta["ann_recall"]
    assert set(report["recall"]) == {"recommend", "history", "similar"}
    assert min(report["recall"].values()) >= 0.99 and report["k"] == 10
    assert client.model_meta["paths"] == emb.paths()
    out = CliRunner().invoke(main, ["models", client.name, "--json"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output.strip().splitlines()[0])
    assert shown["ann_recall"]["recall"] == report["recall"]
    text = CliRunner().invoke(main, ["models", client.name]).output
    assert "ANN recall@10: recommend" in text


def test_wrong_vectors_fail_the_contract(data, settings):
    """The data catch a model that serves fold-in, similarity and outliers from its scoring vectors."""
    emb = make_model("node2vec", **FAST["node2vec"]).fit(data.train)
    wrong = dataclasses.replace(emb, fold_in_vectors=None, similar_vectors=None, similar_targets=None,
                                user_outliers="user", item_outliers="item")
    registry = ModelRegistry(settings)
    publish_embeddings(registry, "contract-wrong", data.train, wrong, algorithm="node2vec")
    with RecommendationClient(model="contract-wrong", settings=settings, listen=False, refresh_interval=0) as client:
        m = measure(client, data, registry)
    failures = contract_failures(m)
    assert {"fold-in close to known users", "similar items near popularity on the held-out proxy",
            "planted bots rank as the top user outliers"} <= set(failures)
