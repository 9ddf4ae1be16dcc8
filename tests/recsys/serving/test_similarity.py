"""similar_users, and similar_items by cosine, on published models and a real Redis."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from recsys import (
    CatalogueWriter,
    GraphEmbeddings,
    Interactions,
    InvalidRequest,
    RecommendationClient,
    UnknownItem,
    UnknownUser,
    publish_embeddings,
)
from vectorstore import ModelRegistry


@pytest.fixture
def client(published, settings):
    with RecommendationClient(model=published.model, settings=settings, listen=False, refresh_interval=0) as c:
        yield c


def test_similar_users_are_of_the_users_community(client):
    """Users of community c (u % 3) interact with community c's items: their nearest users share it."""
    shares = []
    for u in range(0, 120, 11):
        found = client.similar_users(f"u{u}", k=10)
        assert len(found) == 10 and f"u{u}" not in found.users and found.metric == "cosine"
        assert found.model_version == client.model_version and found.user == f"u{u}"
        assert np.all(np.diff(found.scores) <= 1e-6) and np.all(np.abs(found.scores) <= 1 + 1e-5)
        shares.append(np.mean([int(v[1:]) % 3 == u % 3 for v in found.users]))
    assert np.mean(shares) > 0.8
    assert len(client.similar_users("u0", k=10, metric="ip")) == 10
    everyone = client.similar_users("u0", k=5000)
    assert len(everyone) == 119 and "u0" not in everyone.users


def test_similar_users_errors(client):
    with pytest.raises(UnknownUser, match="'nobody' is not in model"):
        client.similar_users("nobody")
    with pytest.raises(InvalidRequest, match="metric='l2' must be one of"):
        client.similar_users("u0", metric="l2")
    with pytest.raises(InvalidRequest, match="k=0"):
        client.similar_users("u0", k=0)


def test_cosine_similar_items_on_a_model_with_its_own_similarity_vectors(client):
    """Node2Vec ranks similar items by its input vectors against its context vectors: cosine compares the same."""
    for item in ("i0", "i4", "i8"):
        rec = client.similar_items(item, k=8, metric="cosine", fields=["community"])
        assert len(rec) == 8 and item not in rec.items and rec.source == "similar"
        assert np.all(np.diff(rec.scores) <= 1e-6) and np.all(np.abs(rec.scores) <= 1 + 1e-5)
        assert np.mean([c == int(item[1:]) % 3 for c in rec.fields["community"]]) >= 0.75
    with pytest.raises(InvalidRequest, match="metric='euclid'"):
        client.similar_items("i0", metric="euclid")
    with pytest.raises(UnknownItem):
        client.similar_items("nothing", metric="cosine")


def test_cosine_finds_the_neighbours_that_popularity_hides_from_the_inner_product(settings, model_name):
    """Planted: ten clusters of five items; one long-vector (popular) item per cluster, pointing a little towards
    every cluster. By inner product an item's neighbours are the popular items; by cosine, its own cluster."""
    rng = np.random.default_rng(2)
    dim, clusters, per = 16, 10, 5
    centres = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:clusters]
    items, popular = [], []
    for c in range(clusters):
        for _ in range(per):
            items.append(centres[c] + 0.1 * rng.standard_normal(dim))
        popular.append(10.0 * (0.3 * centres[c] + centres.sum(axis=0) / np.sqrt(clusters)))
    vectors = np.vstack([np.asarray(items), np.asarray(popular)]).astype(np.float32)
    n = len(vectors)
    frame = pd.DataFrame({"user": [f"u{j}" for j in range(n)], "item": [f"i{j}" for j in range(n)]})
    inter = Interactions.from_frame(frame)
    order = [int(str(i)[1:]) for i in inter.item_ids]
    users = rng.standard_normal((inter.n_users, dim)).astype(np.float32)
    publish_embeddings(ModelRegistry(settings), model_name, inter, GraphEmbeddings(users, vectors[order], "ip"),
                       algorithm="synthetic")
    with RecommendationClient(model=model_name, settings=settings, listen=False, refresh_interval=0) as client:
        by_ip = client.similar_items("i0", k=4)
        by_cos = client.similar_items("i0", k=4, metric="cosine")
        assert by_ip.items == client.similar_items("i0", k=4, metric="ip").items  # the default stays ip
    cluster = {f"i{j}" for j in range(1, per)}
    assert sum(i in cluster for i in by_ip.items) <= 1
    assert set(by_cos.items) == cluster


def test_similar_users_sees_users_updated_by_deltas(published, settings):
    """u0 (community 0) takes in many items of community 1: as the query user its neighbours become community
    1's, and as a neighbour it is scored by its new vector (the two directions agree)."""
    with RecommendationClient(model=published.model, settings=settings, refresh_interval=0) as client:
        before = client.similar_users("u0", k=10)
        assert np.mean([int(v[1:]) % 3 == 0 for v in before.users]) > 0.5
        CatalogueWriter(published.model, settings=settings).update_users(
            {"u0": [f"i{j}" for j in range(1, 60, 3)], "newcomer": [f"i{j}" for j in range(2, 60, 3)]})
        deadline = time.monotonic() + 5  # the client applies the delta when it hears the writer's notice
        while True:
            try:
                client.similar_users("newcomer", k=1)
                break
            except UnknownUser:
                assert time.monotonic() < deadline, "the user delta never reached similar_users"
                time.sleep(0.02)
        after = client.similar_users("u0", k=10)
        assert np.mean([int(v[1:]) % 3 == 1 for v in after.users if v != "newcomer"]) > 0.5
        everyone = client.similar_users("u4", k=5000)  # u4 is of community 1: u0 is now near it
        score = dict(zip(everyone.users, everyone.scores.tolist()))
        mine = client.similar_users("u0", k=5000)
        back = dict(zip(mine.users, mine.scores.tolist()))
        assert score["u0"] == pytest.approx(back["u4"], abs=1e-5)
        assert "newcomer" in score
        near_new = client.similar_users("newcomer", k=10).users
        assert np.mean([int(v[1:]) % 3 == 2 for v in near_new if v[0] == "u" and v != "u0"]) > 0.5


def test_cosine_similar_items_never_return_a_deleted_item(communities, model_name, settings):
    """Issue 28, item 3: an item brought back and another deleted leave the catalogue's size and deleted count
    as they were; the cosine targets are still built again (keyed by the deltas applied)."""
    from recsys.training import train_and_publish

    train_and_publish(communities["train"], algorithm="spectral", name=model_name, registry=ModelRegistry(settings))
    writer = CatalogueWriter(model_name, settings=settings)
    with RecommendationClient(model=model_name, settings=settings, listen=False, refresh_interval=30) as client:
        assert client._model.similar_index is client._model.index  # one index: its deleted count is shared

        def similar() -> set[str]:
            client._watcher.catch_up()
            return set(client.similar_items("i0", k=500, metric="cosine").items)

        assert {"i3", "i6"} <= similar()
        writer.delete_items(["i3"])
        assert "i3" not in similar()
        writer.upsert_items([{"id": "i3", "users": ["u0", "u3"]}])
        writer.delete_items(["i6"])
        assert "i6" not in similar() and "i3" in similar()
