"""Data kept while it is served (issue 18, item 4).

* version cleanup never deletes a version a client still serves: clients lease the versions they hold, and
  cleanup keeps the newest ``EA_KEEP_VERSIONS``, the active one and every leased one;
* a client whose version's rows are gone anyway (deleted by hand, a lease lost) says so with
  ``VersionGone`` and moves to the active version, never popular items for a known user;
* a lost (or garbage) ``seq`` counter never makes a publish reuse a version number.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from _reliability import copy_version, wait_for

from recsys import RecommendationClient
from recsys.exceptions import VersionGone
from vectorstore import ModelRegistry, Settings


def _client(settings: Settings, name: str, **kwargs) -> RecommendationClient:
    return RecommendationClient(settings=settings, model=name, listen=False, refresh_interval=0, **kwargs)


def test_cleanup_keeps_the_version_a_client_serves(trained_model: str, model_name: str, settings: Settings) -> None:
    """The issue's case: a client with the signing key refuses two newer unsigned versions and keeps serving
    v1; with EA_KEEP_VERSIONS=1 cleanup used to delete v1's rows, and every user got popular items."""
    key = ("k3y-" + uuid.uuid4().hex).encode()
    plain = ModelRegistry(settings.with_(keep_versions=1, signing_key=None))
    signed = ModelRegistry(settings.with_(keep_versions=1, signing_key=key))
    v1 = copy_version(signed, trained_model, model_name, reader=plain)
    with _client(settings.with_(signing_key=key), model_name, user_cache=0) as client:
        assert client.recommend("u1", k=5, strict=True).source == "index"
        v3 = [copy_version(plain, trained_model, model_name) for _ in range(2)][-1]
        assert client.refresh() is False and client.model_version == v1  # both refused: unsigned
        assert [v.version for v in plain.versions(model_name)] == [v3, v1]  # v2 collected, v1 leased
        for user in ("u1", "u2", "u3"):
            assert client.recommend(user, k=5, strict=True).source == "index"
        assert model_name in plain.leases(model_name).key
        assert plain.leases(model_name).leased() == {v1}
    # Closed: the lease is given up, and the next publication's cleanup takes v1.
    v4 = copy_version(plain, trained_model, model_name)
    assert [v.version for v in plain.versions(model_name)] == [v4]


def test_a_client_moving_on_gives_up_its_old_lease(trained_model: str, model_name: str, settings: Settings) -> None:
    registry = ModelRegistry(settings.with_(keep_versions=1))
    v1 = copy_version(registry, trained_model, model_name, reader=ModelRegistry())
    with _client(settings, model_name) as client:
        v2 = copy_version(registry, trained_model, model_name, reader=ModelRegistry())
        assert registry.leases(model_name).leased() == {v1}
        assert client.refresh() and client.model_version == v2
        assert registry.leases(model_name).leased() == {v2}
        v3 = copy_version(registry, trained_model, model_name, reader=ModelRegistry())
        assert {v.version for v in registry.versions(model_name)} == {v2, v3}  # v1 free to go


def test_known_users_never_get_popularity_when_the_version_is_gone(trained_model: str, model_name: str,
                                                                   settings: Settings) -> None:
    registry = ModelRegistry(settings)
    v1 = copy_version(registry, trained_model, model_name, reader=ModelRegistry())
    with _client(settings, model_name, user_cache=0) as client:
        assert client.recommend("nobody", k=5).source == "popularity"  # unknown user: popular items
        v2 = copy_version(registry, trained_model, model_name, reader=ModelRegistry())
        registry.delete_version(model_name, v1)  # by hand, lease or not
        with pytest.raises(VersionGone, match=f"v{v1}.*now serving v{v2}"):
            client.recommend("u1", k=5)
        assert client.model_version == v2
        assert client.recommend("u1", k=5).source == "index"
        assert client.recommend("nobody", k=5).source == "popularity"


def test_a_lost_or_garbage_seq_never_reuses_a_version(model_name: str, settings: Settings) -> None:
    registry = ModelRegistry(settings.with_(keep_versions=5))
    v1 = registry.publish(model_name, blobs={"x": b"1"})
    v2 = registry.publish(model_name, blobs={"x": b"2"}, activate=False)  # stored, not active
    seq = registry.keys.seq(model_name)
    registry.client.delete(seq)
    v3 = registry.publish(model_name, blobs={"x": b"3"})
    assert (v1, v2, v3) == (1, 2, 3)
    registry.client.set(seq, "garbage")
    assert registry.publish(model_name, blobs={"x": b"4"}) == 4
    assert [registry.load(model_name, v).blobs["x"] for v in (1, 2, 3, 4)] == [b"1", b"2", b"3", b"4"]


def test_leases_expire_when_a_client_dies_without_releasing(model_name: str, settings: Settings) -> None:
    registry = ModelRegistry(settings)
    registry.publish(model_name, blobs={"x": b"1"})
    leases = registry.leases(model_name)
    leases.hold("dead-client", {1}, ttl=1.0)
    leases.hold("live-client", {1, 2}, ttl=60)
    assert leases.leased() == {1, 2}
    leases.hold("live-client", {2}, ttl=60)  # moved on: its lease on 1 is given up, the dead one's stays
    assert leases.leased() == {1, 2}
    wait_for(lambda: leases.leased() == {2}, 10, what="the dead client's lease to expire")
    done = threading.Event()
    threading.Thread(target=lambda: (leases.release("live-client"), done.set())).start()
    assert done.wait(10) and leases.leased() == set()
