"""Deltas on the active version (issue 20, part 1): written by CatalogueWriter, applied by real clients (one in
another process) through the notice path, replayed on load, refused when tampered, superseded by training."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from recsys import CatalogueWriter, InvalidDelta, ModelUnavailable, RecommendationClient, UnknownItem, UnknownUser
from recsys.live.delta_log import DELTAS
from recsys.live.recorded import recorded
from recsys.training import train_and_publish
from vectorstore import ModelRegistry


def community(item: str) -> int:
    return int(item[1:]) % 3


@pytest.fixture
def client(published, settings):
    # A long poll interval: what the test sees arrives through the notice path.
    with RecommendationClient(model=published.model, settings=settings, refresh_interval=30) as c:
        yield c


@pytest.fixture
def writer(published, settings):
    return CatalogueWriter(published.model, settings=settings)


def wait_for(check, timeout: float = 5.0) -> float:
    """Seconds until ``check()`` holds (fails after ``timeout``)."""
    start = time.perf_counter()
    while not check():
        assert time.perf_counter() - start < timeout, "the delta never became visible"
        time.sleep(0.005)
    return time.perf_counter() - start


def every_item(client: RecommendationClient, user: str) -> list[str]:
    return client.recommend(user, k=500, exclude_seen=False).items


def field_of(client: RecommendationClient, item: str, field: str):
    """An item's metadata field as the client returns it."""
    return client.recommend("u0", k=1, include=[item], fields=[field], exclude_seen=False).fields[field][0]


SECOND_CLIENT = """
import json, sys, time
from recsys import RecommendationClient
client = RecommendationClient(model=sys.argv[1], refresh_interval=30)
print("ready", flush=True)
gone, added = sys.argv[2], sys.argv[3]
deadline = time.time() + 20
while time.time() < deadline:
    items = client.recommend(sys.argv[4], k=500, exclude_seen=False).items
    if gone not in items and added in items:
        print(json.dumps({"seen_at": time.time(), "top": client.recommend(sys.argv[4], k=3).items}), flush=True)
        break
    time.sleep(0.005)
client.close()
"""


def test_two_processes_see_the_same_delta_within_a_second(client, writer, published):
    second = subprocess.Popen([sys.executable, "-c", SECOND_CLIENT, published.model, "i0", "fresh", "u3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert second.stdout is not None and second.stdout.readline().strip() == "ready"
        vector = client._rows.fetch(client._model, ["u3"], False)[0].vector  # u3's own vector: its top item
        written = time.time()
        writer.delete_items(["i0"])
        writer.upsert_items([{"id": "fresh", "vector": vector.tolist(), "metadata": {"title": "Fresh"}}])
        here = wait_for(lambda: "i0" not in every_item(client, "u3") and "fresh" in every_item(client, "u3"))
        line = second.stdout.readline()
        assert line, "the second process never saw the delta"
        there = json.loads(line)
    finally:
        second.wait(timeout=30)
    assert here < 1.0 and there["seen_at"] - written < 1.0
    mine = client.recommend("u3", k=3, fields=["title"])
    assert mine.items[0] == "fresh" and mine.fields["title"][0] == "Fresh"
    assert there["top"] == mine.items


def test_deleted_items_leave_every_path(client, writer, published, settings):
    registry = ModelRegistry(settings)
    from recsys import precompute_top_n

    precompute_top_n(registry, published.model, n=20)
    client._watcher.check_precomputed()
    top = client.recommend("u1", k=3)
    assert top.source == "precomputed"
    similar = client.similar_items("i4", k=3).items
    history = client.recommend_for_history(["i1", "i7"], k=3).items
    popular = client.recommend("stranger", k=3).items
    gone = sorted({top.items[0], similar[0], history[0], popular[0]})
    writer.delete_items(gone)
    wait_for(lambda: not set(gone) & set(every_item(client, "u1")))
    checks = [client.recommend("u1", k=10).items, client.similar_items("i4", k=10).items,
              client.recommend_for_history(["i1", "i7"], k=10).items, client.recommend("stranger", k=10).items,
              client.recommend("u1", k=10, include=gone + ["i2"]).items,
              *[r.items for r in client.recommend_many(["u0", "u1", "u2"], k=10)]]
    assert all(not set(gone) & set(items) for items in checks)
    assert client.recommend("u1", k=3).source == "precomputed"  # the list is corrected, not set aside
    with pytest.raises(UnknownItem, match=gone[0]):
        client.similar_items(gone[0])
    with pytest.raises(UnknownItem, match="deleted from"):
        writer.delete_items([gone[0]])


def test_folded_in_items_and_users(client, writer):
    writer.upsert_items([{"id": "c1-new", "users": ["u1", "u4", "u7", "u10", "u13"]}])
    wait_for(lambda: "c1-new" in client._model.item_pos)
    similar = client.similar_items("c1-new", k=5).items
    assert np.mean([community(i) == 1 for i in similar]) >= 0.8
    assert "c1-new" in client.recommend("u16", k=10).items  # a community-1 user who did not fold it in
    before = client.recommend("u2", k=5).items
    writer.update_users({"u2": before[:2], "newcomer": ["i0", "i3", "i6", "i9"]})
    wait_for(lambda: client.recommend("newcomer", k=3).source == "index")
    assert not set(before[:2]) & set(client.recommend("u2", k=10).items)  # seen items extended
    assert np.mean([community(i) == 0 for i in client.recommend("newcomer", k=5).items]) >= 0.8
    writer.update_metadata({"i5": {"title": "Renamed", "stock": 0}})
    wait_for(lambda: field_of(client, "i5", "title") == "Renamed")
    assert field_of(client, "i5", "stock") == 0
    assert client.recommend("u2", k=5, filter="stock == 0", exclude_seen=False).items == ["i5"]
    writer.update_metadata({"i5": {"stock": 2}})  # a filter's allowed items follow the change
    wait_for(lambda: not client.recommend("u2", k=5, filter="stock == 0", exclude_seen=False).items)


def test_a_client_started_later_replays_the_log(client, writer, published, settings):
    writer.delete_items(["i8"])
    writer.upsert_items([{"id": "late", "users": ["u0", "u3"]}])
    writer.update_users({"later-user": ["i0", "i3"]})
    wait_for(lambda: "late" in client._model.item_pos)
    with RecommendationClient(model=published.model, settings=settings, listen=False, refresh_interval=0) as late:
        for user in ("u0", "u5", "later-user"):
            assert late.recommend(user, k=10).items == client.recommend(user, k=10).items
        assert "i8" not in every_item(late, "u0") and "late" in every_item(late, "u0")


def test_bad_deltas_are_refused_naming_the_value(writer, published, settings):
    with pytest.raises(UnknownItem, match="'nope'"):
        writer.delete_items(["nope"])
    with pytest.raises(InvalidDelta, match="'x1' vector has dimension 3"):
        writer.upsert_items([{"id": "x1", "vector": [0.1, 0.2, 0.3]}])
    with pytest.raises(InvalidDelta, match="'x2' vector holds NaN"):
        writer.upsert_items([{"id": "x2", "vector": [float("nan")] * 16}])
    with pytest.raises(InvalidDelta, match="'x3' needs a 'vector' or 'users'"):
        writer.upsert_items([{"id": "x3"}])
    with pytest.raises(UnknownUser, match="ghost"):
        writer.upsert_items([{"id": "x4", "users": ["ghost"]}])
    with pytest.raises(UnknownItem, match="user 'u1': item 'nope'"):
        writer.update_users({"u1": ["nope"]})
    with pytest.raises(InvalidDelta, match="field 'price'"):
        writer.update_metadata({"i1": {"price": float("inf")}})
    with pytest.raises(ModelUnavailable, match="nosuchmodel"):
        CatalogueWriter("nosuchmodel", settings=settings).delete_items(["i1"])
    with pytest.raises(ModelUnavailable, match="version 99"):
        CatalogueWriter(published.model, settings=settings, version=99).delete_items(["i1"])
    registry = ModelRegistry(settings)
    key = registry.derived_key(published.model, published.version, DELTAS, register=False)
    assert not registry.client.exists(key)  # nothing written by any of them


def test_deltas_training_would_refuse_are_refused_by_the_writer(writer, published, settings):
    """Issue 28, items 1, 4, 6 and 12: each was accepted, then broke every client, every filter on the field or
    every training of the model (a raw error each time)."""
    with pytest.raises(InvalidDelta, match="'x1' vector holds NaN or inf .*position 0"):
        writer.upsert_items([{"id": "x1", "vector": [1e39] + [0.0] * 15}])  # finite in float64, inf in float32
    with pytest.raises(InvalidDelta, match="field 'year' is an integer of 1329 bits"):
        writer.update_metadata({"i5": {"year": 10**400}})
    with pytest.raises(InvalidDelta, match="field 'year' is an integer of 16610 bits"):
        writer.update_metadata({"i5": {"year": 10**5000}})
    with pytest.raises(InvalidDelta, match="weights of user 'u1' must be one number in 1e-12..1e\\+12"):
        writer.update_users({"u1": ["i1"]}, weights={"u1": [1e308]})
    with pytest.raises(InvalidDelta, match="item id holds a NUL byte at position 1"):
        writer.update_users({"u1": ["i\x001"]})
    with pytest.raises(InvalidDelta, match="item id is empty"):
        writer.delete_items([""])
    with pytest.raises(InvalidDelta, match="user id is blank"):
        writer.update_users({"  ": ["i1"]})
    with pytest.raises(InvalidDelta, match="give a list .* got NoneType"):
        writer.upsert_items(None)
    registry = ModelRegistry(settings)
    key = registry.derived_key(published.model, published.version, DELTAS, register=False)
    assert not registry.client.exists(key)  # nothing written by any of them
    writer.update_metadata({"i5": {"year": 2**53}})  # the bound itself is a value
    assert "i5" in recorded(registry, published.model).metadata


def test_a_token_writes_once(writer):
    first = writer.delete_items(["i11"], token="job-1")
    again = writer.delete_items(["i11"], token="job-1")  # a redelivered job: no UnknownItem, no second entry
    assert again.duplicate and again.id == first.id and not first.duplicate


def test_training_learns_the_deltas_and_starts_a_new_log(client, writer, published, communities, fast_node2vec,
                                                          settings):
    writer.update_users({"trained-later": ["i1", "i4", "i7", "i10"]})
    writer.delete_items(["i13"])
    writer.update_metadata({"i16": {"title": "Kept"}})
    learned = recorded(ModelRegistry(settings), published.model)
    assert len(learned.interactions) == 4 and learned.deleted == {"i13"}
    result = train_and_publish(communities["train"], algorithm="node2vec", name=published.model,
                               params=fast_node2vec, item_metadata=communities["items"])
    wait_for(lambda: client.model_version == result.version)
    assert client.model_meta["deltas"]["interactions"] == 4
    assert client.recommend("trained-later", k=3).source == "index"  # a user of the training now
    assert "i13" not in every_item(client, "u1")
    assert field_of(client, "i16", "title") == "Kept"
    assert client._model.live.catalogue is None  # the new version's log is empty
    new = CatalogueWriter(published.model, settings=settings).delete_items(["i19"])
    assert new.version == result.version
    with pytest.raises(UnknownItem):
        CatalogueWriter(published.model, settings=settings).delete_items(["i13"])


def test_signed_deltas_tampered_are_refused(communities, model_name, settings):
    signed = settings.with_(signing_key=b"delta-secret")
    result = train_and_publish(communities["train"], algorithm="spectral", name=model_name,
                               registry=ModelRegistry(signed))
    writer = CatalogueWriter(model_name, settings=signed)
    with RecommendationClient(model=model_name, settings=signed, refresh_interval=30) as client:
        registry = ModelRegistry(signed)
        key = registry.derived_key(model_name, result.version, DELTAS, register=False)
        writer.delete_items(["i0"])
        wait_for(lambda: "i0" not in client._model.item_pos)
        entry_id, fields = registry.client.xrange(key)[-1]
        body = json.loads(fields[b"body"])
        body["items"] = ["i3"]  # an altered copy of a signed entry
        registry.client.xadd(key, {"body": json.dumps(body), "tag": fields[b"tag"]})
        registry.client.xadd(key, {"body": json.dumps({**body, "items": ["i6"]}), "tag": ""})  # unsigned
        writer.delete_items(["i9"])  # a good one after them is still applied
        wait_for(lambda: "i9" not in client._model.item_pos)
        assert "i3" in client._model.item_pos and "i6" in client._model.item_pos
        assert client._model.live.refused == 2
        # a user row rewritten by a delta, then planted under another user: refused (the published row serves)
        writer.update_users({"u0": ["i12"]})
        wait_for(lambda: client._model.live.users_updated)
        users = registry.derived_key(model_name, result.version, "delta_users", register=False)
        planted = registry.client.hget(users, "u0")
        registry.client.hset(users, "u1", planted)
        assert client._model.live.user_row("u0", planted) is not None
        assert client._model.live.user_row("u1", planted) is None


def test_deltas_written_while_training_are_carried_to_the_new_version(client, writer, published, communities,
                                                                       fast_node2vec, settings):
    from recsys.live.carry import carry_over

    registry = ModelRegistry(settings)
    writer.delete_items(["i22"])
    writer.update_users({"mid-training": ["i1", "i4"]})
    writer.upsert_items([{"id": "old-space", "users": ["u1"]}])
    new = train_and_publish(communities["train"], algorithm="node2vec", name=published.model, params=fast_node2vec,
                            deltas=False)  # as if it read the log before these were written
    wait_for(lambda: client.model_version == new.version)
    assert "i22" in client._model.item_pos
    assert carry_over(registry, published.model, published.version, "0-0", new.version) == 2
    wait_for(lambda: "i22" not in client._model.item_pos)
    wait_for(lambda: client.recommend("mid-training", k=3).source == "index")
    assert "old-space" not in client._model.item_pos  # its vector belonged to the old model


def test_a_new_vector_for_an_indexed_item_moves_it_in_every_search(client, writer):
    """An item already in the index gets new vectors, again and again: each time it is found by the newest one
    (graph and exact search, filtered or not), never by an old one, and deleting it afterwards hides it."""
    vector = client._rows.fetch(client._model, ["u3"], False)[0].vector
    moved = next(i for i in client.recommend("u3", k=500).items[::-1] if community(i) == 0)  # last of u3's list
    for sign in (1.0, -1.0, 1.0):
        writer.upsert_items([{"id": moved, "vector": (sign * 3.0 * vector).tolist()}])
        first = (lambda: client.recommend("u3", k=1).items[:1] == [moved]) if sign > 0 else (
            lambda: moved not in client.recommend("u3", k=10).items)
        wait_for(first)
    assert client.recommend("u3", k=1, filter="community == 0").items == [moved]
    assert client.recommend_many(["u3"] * 20, k=1)[0].items == [moved]  # a batch (exact search)
    assert every_item(client, "u3").count(moved) == 1
    writer.delete_items([moved])
    wait_for(lambda: moved not in every_item(client, "u3"))


def test_two_writers_adding_items_agree_with_the_clients_on_positions(client, published, settings):
    """Writer B has not read writer A's new item when it adds its own: B's user update must still name B's item
    by the position every client gives it (the log's order), not by the one B's stale copy would."""
    a = CatalogueWriter(published.model, settings=settings)
    b = CatalogueWriter(published.model, settings=settings)
    a.version, b.version  # noqa: B018 - both read the log now
    vector = client._rows.fetch(client._model, ["u3"], False)[0].vector
    a.upsert_items([{"id": "from-a", "vector": (2.0 * vector).tolist()}])
    b.upsert_items([{"id": "from-b", "vector": (2.0 * vector).tolist()}])
    b.update_users({"u3": ["from-b"]})  # u3 has now seen from-b, not from-a
    wait_for(lambda: "from-b" in every_item(client, "u3"))
    wait_for(lambda: "from-b" not in client.recommend("u3", k=10).items)
    assert "from-a" in client.recommend("u3", k=3).items
