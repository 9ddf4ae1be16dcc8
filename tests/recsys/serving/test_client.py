"""RecommendationClient on a real Redis with a published model."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from recsys import InvalidRequest, RecommendationClient, UnknownItem, UnknownUser
from vectorstore import ModelRegistry


def community(item: str) -> int:
    return int(item[1:]) % 3


@pytest.fixture
def client(published, settings):
    with RecommendationClient(model=published.model, settings=settings, refresh_interval=0.2) as c:
        yield c


def test_importing_the_client_does_not_import_torch():
    code = "import sys, recsys.serving.client, vectorstore; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recommends_the_users_community_and_excludes_seen(client, communities):
    frame = communities["frame"]
    hits = []
    for u in range(0, 120, 7):
        user = f"u{u}"
        rec = client.recommend(user, k=5)
        seen = set(frame.loc[frame.user == user, "item"])
        assert len(rec) == 5 and not seen & set(rec.items)
        assert rec.source == "index" and rec.model_version == client.model_version
        assert np.all(np.diff(rec.scores) <= 1e-5)
        hits.append(np.mean([community(i) == u % 3 for i in rec.items]))
    assert np.mean(hits) > 0.8
    with_seen = client.recommend("u0", k=40, exclude_seen=False)
    assert set(frame.loc[frame.user == "u0", "item"]) & set(with_seen.items)


def test_include_exclude_and_fields(client):
    base = client.recommend("u1", k=3)
    rec = client.recommend("u1", k=3, exclude=base.items[:2])
    assert not set(base.items[:2]) & set(rec.items)
    allowed = ["i0", "i3", "i4", "i7"]
    rec = client.recommend("u1", k=10, include=allowed, fields=["title", "community"])
    assert set(rec.items) <= set(allowed)
    assert rec.fields["title"] == [f"Item {i[1:]}" for i in rec.items]
    df = rec.to_pandas()
    assert list(df.columns) == ["rank", "item", "score", "title", "community"]
    with pytest.raises(InvalidRequest, match="unknown field"):
        client.recommend("u1", fields=["price"])


def test_unknown_user_popularity_or_strict(client, published, settings):
    rec = client.recommend("stranger", k=4)
    assert rec.source == "popularity" and len(rec) == 4
    with pytest.raises(UnknownUser, match="stranger"):
        client.recommend("stranger", strict=True)
    with RecommendationClient(model=published.model, settings=settings, strict=True, listen=False,
                              refresh_interval=0) as strict, pytest.raises(UnknownUser):
        strict.recommend("stranger")


def test_similar_items_and_fold_in(client):
    sim = client.similar_items("i0", k=5)
    assert "i0" not in sim.items and np.mean([community(i) == 0 for i in sim.items]) >= 0.8
    hist = client.recommend_for_history(["i1", "i4", "i7"], k=5)
    assert hist.source == "history" and not {"i1", "i4", "i7"} & set(hist.items)
    assert np.mean([community(i) == 1 for i in hist.items]) >= 0.8
    assert client.recommend_for_history(["nope"], k=3).source == "popularity"
    with pytest.raises(UnknownItem):
        client.similar_items("nope")


def test_recommend_many_matches_recommend(client):
    users = [f"u{i}" for i in range(10)] + ["ghost"]
    many = client.recommend_many(users, k=5)
    for rec in many[:-1]:
        assert rec.items == client.recommend(rec.user, k=5).items
    assert many[-1].source == "popularity"


@pytest.mark.parametrize("k", [0, -3, 10**9, 2.5, "5", None, True])
def test_bad_k(client, k):
    with pytest.raises(InvalidRequest, match="k"):
        client.recommend("u1", k=k)


@pytest.mark.parametrize("user", [None, 1.5, ["u1"], b"u1"])
def test_bad_user_type(client, user):
    with pytest.raises(InvalidRequest, match="user id"):
        client.recommend(user)


def test_hot_swap_under_concurrent_queries(client, published, communities, fast_node2vec):
    from recsys.training import train_and_publish

    errors, versions, stop = [], set(), threading.Event()

    def query():
        while not stop.is_set():
            try:
                versions.add(client.recommend(f"u{np.random.randint(120)}", k=5).model_version)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=query) for _ in range(8)]
    for t in threads:
        t.start()
    new = train_and_publish(communities["train"], algorithm="node2vec", name=published.model,
                            params={**fast_node2vec, "seed": 4})
    published_at = time.monotonic()
    while client.model_version != new.version and time.monotonic() - published_at < 5:
        time.sleep(0.01)
    switched_after = time.monotonic() - published_at
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert client.model_version == new.version and switched_after < 1.0
    assert {published.version, new.version} <= versions


def test_corrupt_new_version_is_refused_and_old_keeps_serving(published, settings, redis_client):
    registry = ModelRegistry(settings)
    old = registry.load(published.model)
    # Polling only: a listening client would preload the staged version before the test corrupts it.
    with RecommendationClient(model=published.model, settings=settings, listen=False, refresh_interval=0.1) as client:
        new = registry.publish(published.model, arrays=dict(old.arrays), blobs=dict(old.blobs), meta=old.meta,
                               activate=False)
        redis_client.hset(registry.keys.data(published.model, new), "index:0", b"garbage")
        registry.activate(published.model, new)
        time.sleep(0.5)
        assert client.model_version == published.version
        assert client.recommend("u1", k=3).model_version == published.version
        assert not client.preload(new)  # refused when preloading too


def test_precomputed_top_n_is_used_when_fresh(client, published, celery_worker):
    from workers.jobs import submit

    submit("ea.precompute_recommendations", name=published.model, version=published.version, n=20).wait(timeout=60)
    deadline = time.monotonic() + 5
    while client.recommend("u2", k=5).source != "precomputed" and time.monotonic() < deadline:
        time.sleep(0.05)  # the client notices the lists at its next periodic check
    rec = client.recommend("u2", k=5)
    assert rec.source == "precomputed"
    assert rec.items == client.recommend("u2", k=5, exclude=[]).items
    assert client.recommend("u2", k=30).source == "index"  # asks for more than was precomputed


def _staged_copy(client, registry: ModelRegistry, model: str) -> int:
    """A copy of the active version published staged (not activated); waits up to 10 s for ``client`` to
    preload it."""
    old = registry.load(model)
    tables = {name: registry.read_table(model, old.version, name) for name in old.tables}
    staged = registry.publish(model, arrays=dict(old.arrays), blobs=dict(old.blobs), tables=tables, meta=old.meta,
                              activate=False)
    deadline = time.monotonic() + 10
    while staged not in client.staged_versions and time.monotonic() < deadline:
        time.sleep(0.02)
    return staged


def test_staged_version_is_preloaded_and_activation_switches_at_once(client, published, settings):
    registry = ModelRegistry(settings)
    staged = _staged_copy(client, registry, published.model)
    assert staged in client.staged_versions and client.model_version == published.version
    registry.activate(published.model, staged)
    t0 = time.monotonic()
    while client.model_version != staged and time.monotonic() - t0 < 5:
        time.sleep(0.005)
    assert client.model_version == staged and time.monotonic() - t0 < 1.0
    assert client.recommend("u1", k=3).model_version == staged


def test_a_bogus_staged_notice_does_not_stop_preloading(client, published, settings):
    """Issue 28, item 18: a 'staged' notice naming version 10**9 (no such version) is tried and dropped; the
    next real staged version is still preloaded."""
    from vectorstore import ModelNotice

    registry = ModelRegistry(settings)
    registry.client.publish(registry.channel(published.model),
                            ModelNotice(ModelNotice.STAGED, published.model, 10**9).encode())
    time.sleep(0.3)
    staged = _staged_copy(client, registry, published.model)
    assert staged in client.staged_versions


@pytest.mark.parametrize("k", [10**5000, -10**5000, 10**6, 0, 2.5, float("inf"), "x" * 10_000], ids=range(7))
def test_absurd_k_is_a_typed_error_naming_k_on_every_path(client, k):
    """Issue 28, item 12: k=10**5000 raised a raw ValueError (an int past 4,300 digits cannot be printed)."""
    calls = [lambda: client.recommend("u1", k=k), lambda: client.recommend_many(["u1"], k=k),
             lambda: client.similar_items("i0", k=k), lambda: client.recommend_for_history(["i0"], k=k),
             lambda: client.similar_users("u1", k=k)]
    for call in calls:
        with pytest.raises(InvalidRequest, match=r"^k[= ]") as err:
            call()
        assert len(str(err.value)) < 200


def test_recommend_many_takes_include_and_exclude_like_recommend(client):
    """Issue 28, item 20."""
    users = ["u1", "u2", "nobody"]
    top = client.recommend("u1", k=3).items
    many = client.recommend_many(users, k=5, exclude=top[:2])
    assert [r.items for r in many] == [client.recommend(u, k=5, exclude=top[:2]).items for u in users]
    assert not set(top[:2]) & set(many[0].items)
    only = ["i0", "i3", "i4", "i7"]
    listed = client.recommend_many(users, k=3, include=only, exclude=["i3"])
    assert [r.items for r in listed] == [client.recommend(u, k=3, include=only, exclude=["i3"]).items for u in users]
    assert all(set(r.items) <= {"i0", "i4", "i7"} for r in listed)


def test_items_by_id_and_by_filter(client, published, settings):
    """Issue 28, item 20: get(ids) and query(filter), as pymilvus users expect, on the client and as
    ``ea items get`` / ``ea items query``; deleted and unknown items are left out."""
    import json

    from click.testing import CliRunner

    from recsys import CatalogueWriter, InvalidFilter
    from workers.cli import main as cli

    assert client.get(["i4", "nope", "i1"]) == [{"id": "i4", "community": 1, "title": "Item 4"},
                                                 {"id": "i1", "community": 1, "title": "Item 1"}]
    assert client.get(["i4"], fields=["title"]) == [{"id": "i4", "title": "Item 4"}]
    order = [str(i) for i in client._model.item_ids]  # the catalogue's order
    second = [i for i in order if int(i[1:]) % 3 == 2]
    rows = client.query("community == 2", fields=["community"], limit=5)
    assert [r["id"] for r in rows] == second[:5] and {r["community"] for r in rows} == {2}
    assert [r["id"] for r in client.query("community == 2", limit=2, offset=3)] == second[3:5]
    assert len(client.query(limit=10_000)) == 60
    CatalogueWriter(published.model, settings=settings).delete_items(["i5"])
    deadline = time.monotonic() + 5
    while client.get(["i5"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.get(["i5"]) == [] and "i5" not in [r["id"] for r in client.query("community == 2")]
    with pytest.raises(InvalidFilter):
        client.query("community ==")
    with pytest.raises(InvalidRequest, match="limit"):
        client.query(limit=10**5000)
    with pytest.raises(InvalidRequest, match="unknown field"):
        client.get(["i4"], fields=["nope"])
    env = {"EA_REDIS_URL": settings.redis_url, "EA_KEY_PREFIX": settings.key_prefix}
    out = CliRunner().invoke(cli, ["items", "get", "i4", "i5", "--model", published.model, "--field", "title"],
                             env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line) for line in out.output.splitlines()] == [{"id": "i4", "title": "Item 4"}]
    out = CliRunner().invoke(cli, ["items", "query", "community == 0", "--model", published.model, "--limit", "2"],
                             env=env)
    assert out.exit_code == 0, out.output
    assert [json.loads(line)["id"] for line in out.output.splitlines()] == [i for i in order if int(i[1:]) % 3 == 0][:2]
