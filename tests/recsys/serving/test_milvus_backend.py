"""Models published with ``index_backend="milvus"``: their items in a Milvus collection per version, served by
the same client (user vectors from Redis, the search in Milvus), the alias following activation.

Milvus here is milvus-lite (embedded, one data path per test module) through pymilvus: the same client code
that talks to Milvus standalone. milvus-lite is slow per query, so these tests are few and small.
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="the milvus extra is not installed (pip install -e .[milvus])")

from recsys import CatalogueWriter, ModelUnavailable, RecommendationClient, UnsupportedDelta  # noqa: E402
from recsys.exceptions import InvalidFilter  # noqa: E402
from recsys.training import train_and_publish  # noqa: E402
from vectorstore import (  # noqa: E402
    ConfigurationError,
    MilvusStore,  # noqa: E402
    MilvusUnavailable,
    ModelRegistry,
)
from vectorstore.store.milvus import collection_names  # noqa: E402

SPECTRAL = {"dim": 8}


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "ea.db")


@pytest.fixture
def milvus_settings(settings, milvus_uri):
    return settings.with_(milvus_uri=milvus_uri)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_milvus_version_serves_filtered_recommendations_with_output_fields(communities, model_name,
                                                                            milvus_settings, celery_worker,
                                                                            monkeypatch):
    # Published by a real worker through the job option (ea train graph --index-backend milvus).
    from workers import jobs

    monkeypatch.setenv("EA_MILVUS_URI", milvus_settings.milvus_uri)
    handle = jobs.train_graph(communities["train"], model="spectral", name=model_name, params=SPECTRAL,
                              item_metadata=communities["items"], index_backend="milvus")
    version = handle.wait(timeout=120)["version"]
    registry = ModelRegistry(milvus_settings)
    manifest = registry.manifest(model_name, version)
    collection, alias = collection_names(milvus_settings, model_name, version)
    assert manifest["meta"]["milvus"]["collection"] == collection
    assert "index" not in manifest["parts"]  # no hnswlib index: the collection is the index
    store = MilvusStore.get(milvus_settings)
    assert store.alias_target(alias) == collection

    mv = registry.load(model_name, version, ["item_vectors", "item_ids"])
    items, item_ids = mv.arrays["item_vectors"], json.loads(mv.blobs["item_ids"])
    community = {f"i{j}": j % 3 for j in range(60)}
    with RecommendationClient(model=model_name, settings=milvus_settings, listen=False, refresh_interval=0) as client:
        assert client.model_version == version
        user = "u4"  # community 1
        recs = client.recommend(user, k=5, fields=["title", "community"], filter="community == 2")
        assert recs.source == "index" and len(recs.items) == 5
        assert recs.fields["community"] == [2] * 5
        assert recs.fields["title"] == [f"Item {i[1:]}" for i in recs.items]
        # The same items exact search finds among unseen items of community 2.
        vector = np.frombuffer(registry.table_get(model_name, version, "user_vectors", [user])[0], "<f4")
        seen = set(communities["frame"].query("user == @user")["item"])
        allowed = [n for n, i in enumerate(item_ids) if community[i] == 2 and i not in seen]
        exact = [item_ids[n] for n in sorted(allowed, key=lambda n: -float(items[n] @ vector))[:5]]
        assert recs.items == exact
        assert not set(recs.items) & seen
        # Paths answered by the adapter (fields fetched by primary key), and a refused filter field.
        similar = client.similar_items("i0", k=3, fields=["community"])
        assert len(similar.items) == 3 and "i0" not in similar.items
        with pytest.raises(InvalidFilter, match="nosuchfield"):
            client.recommend(user, k=3, filter="nosuchfield == 1")
        with pytest.raises(InvalidFilter):
            client.recommend(user, k=3, filter="community == ")
        # recommend_many and similar_items pass the same expression to Milvus.
        many = client.recommend_many([user, "u5"], k=4, filter="community == 0", fields=["community"])
        assert [r.fields["community"] for r in many] == [[0] * 4, [0] * 4]
        assert set(client.similar_items("i1", k=4, filter="community == 0", fields=["community"])
                   .fields["community"]) == {0}
        # An unknown user gets the most popular items that pass the filter (Milvus evaluates it).
        popular = client.recommend("nobody", k=3, filter="community == 1", fields=["community"])
        assert popular.source == "popularity" and popular.fields["community"] == [1] * 3
    # Deletions and field updates reach the collection (the writer writes there before it logs them) and every
    # client path; upserts, unknown fields and values of another type are refused with a typed error.
    writer = CatalogueWriter(model_name, settings=milvus_settings)
    for write in (lambda: writer.upsert_items([{"id": "new", "vector": items[0]}]),
                  lambda: writer.update_metadata({"i0": {"colour": "red"}}),
                  lambda: writer.update_metadata({"i0": {"community": "two"}})):
        with pytest.raises(UnsupportedDelta, match="Milvus collection"):
            write()
    assert not registry.client.exists(registry.derived_key(model_name, version, "deltas", register=False))
    assert writer.update_users({user: ["i0"]}).count == 1
    writer.update_metadata({"i5": {"community": 1}})  # i5 was of community 2; its title and vector stay
    row = store.fetch(collection, [item_ids.index("i5")], ["community", "title"])
    assert row == {"community": [1], "title": ["Item 5"]}
    gone = recs.items[0]
    writer.delete_items([gone, "i2"])
    assert store.fetch(collection, [item_ids.index(gone)], ["item"])["item"] == [None]
    with RecommendationClient(model=model_name, settings=milvus_settings, listen=False, refresh_interval=0) as client:
        assert gone not in client.recommend(user, k=5, filter="community == 2").items
        assert "i2" not in client.recommend("nobody", k=20, filter="community == 2").items  # popular items
        assert gone not in client.similar_items("i5", k=20).items
        assert client.similar_items("i8", k=30, filter="community == 1", fields=["community"]).items.count("i5") == 1


def test_the_alias_follows_activation_rollback_and_deletion(communities, model_name, milvus_settings):
    registry = ModelRegistry(milvus_settings.with_(keep_versions=2))
    store = MilvusStore.get(milvus_settings)

    def publish(**kw):
        return train_and_publish(communities["train"], algorithm="spectral", name=model_name, params=SPECTRAL,
                                 registry=registry, index_backend="milvus", **kw).version

    v1 = publish()
    _, alias = collection_names(milvus_settings, model_name, v1)
    with RecommendationClient(model=model_name, settings=milvus_settings, listen=False, refresh_interval=0) as client:
        v2 = publish()
        assert store.alias_target(alias) == collection_names(milvus_settings, model_name, v2)[0]
        assert client.refresh() and client.model_version == v2
        assert len(client.recommend("u0", k=3).items) == 3
        assert registry.rollback(model_name) == v1
        assert store.alias_target(alias) == collection_names(milvus_settings, model_name, v1)[0]
        assert client.refresh() and client.model_version == v1
        assert len(client.recommend("u0", k=3).items) == 3
    registry.activate(model_name, v2)
    v3 = publish()  # keeps two versions: v1 and its collection go
    names = store.collections()
    assert collection_names(milvus_settings, model_name, v1)[0] not in names
    assert {collection_names(milvus_settings, model_name, v)[0] for v in (v2, v3)} <= set(names)
    assert store.alias_target(alias) == collection_names(milvus_settings, model_name, v3)[0]


def test_missing_setting_and_unreachable_milvus_are_typed_errors(communities, model_name, settings,
                                                                 milvus_settings):
    def publish(s):
        return train_and_publish(communities["train"], algorithm="spectral", name=model_name, params=SPECTRAL,
                                 registry=ModelRegistry(s), index_backend="milvus")

    with pytest.raises(ConfigurationError, match="EA_MILVUS_URI"):
        publish(settings.with_(milvus_uri=None))
    down = settings.with_(milvus_uri=f"http://127.0.0.1:{_closed_port()}", socket_timeout=1.0)
    with pytest.raises(MilvusUnavailable, match="did not answer"):
        publish(down)
    assert ModelRegistry(settings).active_version(model_name) is None  # nothing published

    publish(milvus_settings)
    with pytest.raises(ModelUnavailable, match="did not answer") as info:
        RecommendationClient(model=model_name, settings=down, listen=False, refresh_interval=0)
    assert isinstance(info.value.__cause__, MilvusUnavailable)


def test_a_two_stage_model_on_milvus_answers_as_on_hnswlib(communities, model_name, milvus_settings):
    """The filter model (issue 27): Milvus gives the candidates, the client re-ranks them by the filter."""
    params = {"dim": 8, "rank": 24, "sharpen": 1.0, "ideal": 0.2, "degree": 0.3}
    on_milvus = train_and_publish(communities["train"], algorithm="filter", name=model_name, params=params,
                                  registry=ModelRegistry(milvus_settings), index_backend="milvus",
                                  item_metadata=communities["items"])
    local = train_and_publish(communities["train"], algorithm="filter", name=f"{model_name}-local", params=params,
                              registry=ModelRegistry(milvus_settings))
    with (RecommendationClient(model=model_name, settings=milvus_settings, listen=False, refresh_interval=0) as milvus,
          RecommendationClient(model=local.model, settings=milvus_settings, listen=False, refresh_interval=0) as hnsw):
        assert milvus.model_version == on_milvus.version and milvus._model.rerank is not None
        for user in ("u0", "u1", "u5"):
            ours = milvus.recommend(user, k=5, fields=["community"])
            assert ours.items == hnsw.recommend(user, k=5).items  # 60 items: both re-rank all of them
            assert ours.fields["community"] == [int(i[1:]) % 3 for i in ours.items]  # the items' own fields
        history = ["i0", "i3"]
        assert milvus.recommend_for_history(history, k=5).items == hnsw.recommend_for_history(history, k=5).items
        assert milvus.similar_items("i4", k=5).items == hnsw.similar_items("i4", k=5).items
