"""The client keeps following new versions (issue 18, item 5): stray notices, notice floods, fork, refusals."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time

import pytest
from _reliability import copy_version, wait_for
from redis.cluster import RedisCluster

from recsys import RecommendationClient
from vectorstore import ModelRegistry


@pytest.fixture
def model(trained_model, model_name, settings) -> str:
    """A model of this test (one version), copied from the session's trained one."""
    copy_version(ModelRegistry(settings), trained_model, model_name)
    return model_name


def wait_subscribed(registry: ModelRegistry, channel: str, listeners: int) -> None:
    """Wait until ``listeners`` connections are subscribed to ``channel`` (a notice sent before is missed).

    On a cluster each node counts the subscribers connected to it: they are asked all."""
    client = registry.client
    options = {"target_nodes": RedisCluster.ALL_NODES} if isinstance(client, RedisCluster) else {}

    def subscribed() -> bool:
        return sum(n for _, n in client.pubsub_numsub(channel, **options)) >= listeners

    wait_for(subscribed, 30, 0.02, f"{listeners} listener(s) to subscribe to {channel}")


def test_stray_messages_do_not_end_the_listener(settings, model):
    registry = ModelRegistry(settings)
    channel = registry.channel(model)
    # Polling off: only the listener can bring the new version.
    with RecommendationClient(model=model, settings=settings, refresh_interval=0) as client:
        wait_subscribed(registry, channel, 1)
        for junk in ["[]", "not json", '{"event": 1}', '{"event": "activated", "version": "x"}', "null",
                     '{"event": "staged", "version": 1e400}', b"\xff\xfe", '{"version": -3}']:
            registry.client.publish(channel, junk)
        time.sleep(0.3)
        new = copy_version(registry, model, model)
        wait_for(lambda: client.model_version == new, 5, 0.02, "the listener to switch after junk notices")
        assert client.recommend("u1", k=3).model_version == new


def test_a_flood_of_staged_notices_starts_no_threads(settings, model):
    registry = ModelRegistry(settings)
    channel = registry.channel(model)
    with RecommendationClient(model=model, settings=settings, refresh_interval=0) as client:
        time.sleep(0.3)
        before = threading.active_count()
        peak = before
        for version in range(2, 2002):  # staged versions that do not exist: each preload fails
            registry.client.publish(channel, f'{{"event": "staged", "version": {version}}}')
            if version % 100 == 0:
                peak = max(peak, threading.active_count())
        time.sleep(1.0)
        peak = max(peak, threading.active_count())
        assert peak <= before + 1, f"{peak - before} threads started by 2000 notices"
        new = copy_version(registry, model, model)  # and it still follows activations
        wait_for(lambda: client.model_version == new, 10, 0.02, "the switch after a notice flood")


def _serve_in_child(client: RecommendationClient, old: int, conn) -> None:
    conn.send("ready")
    # A wait bound, not a speed claim: on a loaded machine (load about 28) loading the new version took over 15 s.
    deadline = time.monotonic() + 60
    while client.model_version == old and time.monotonic() < deadline:
        time.sleep(0.02)
    conn.send(client.recommend("u1", k=3).model_version)


@pytest.mark.parametrize("listen", [True, False])
def test_a_forked_child_follows_new_versions(settings, model, listen):
    registry = ModelRegistry(settings)
    with RecommendationClient(model=model, settings=settings, listen=listen,
                              refresh_interval=0 if listen else 0.2) as client:
        old = client.model_version
        parent_end, child_end = multiprocessing.Pipe()
        child = multiprocessing.get_context("fork").Process(target=_serve_in_child, args=(client, old, child_end))
        child.start()
        try:
            assert parent_end.poll(10) and parent_end.recv() == "ready"
            if listen:  # the child's listener too
                wait_subscribed(registry, registry.channel(model), 2)
            new = copy_version(registry, model, model)
            assert parent_end.poll(70), "the forked child never answered"
            assert parent_end.recv() == new, "the forked child kept serving the old version"
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        # The parent too: its own check may finish loading the version a moment after the child's did.
        wait_for(lambda: client.model_version == new, 10, 0.02, "the parent to switch too")


def test_a_refused_version_is_logged_once(settings, model, caplog):
    registry = ModelRegistry(settings)
    old = registry.load(model)
    with RecommendationClient(model=model, settings=settings, listen=False, refresh_interval=0) as client:
        new = registry.publish(model, arrays=dict(old.arrays), blobs=dict(old.blobs), meta=old.meta,
                               activate=False)
        registry.client.hset(registry.keys.data(model, new), "index:0", b"garbage")
        registry.activate(model, new)
        with caplog.at_level(logging.DEBUG, logger="recsys"):
            for _ in range(5):
                assert not client.refresh()
        refusals = [r for r in caplog.records if "refusing" in r.getMessage()]
        assert len(refusals) == 5
        assert [r.levelno for r in refusals].count(logging.ERROR) == 1
        assert client.recommend("u1", k=3).model_version == old.version


def test_a_listening_client_finds_a_version_whose_notice_it_missed(settings, model):
    # Pub/sub delivers at most once: here the pointer moves with no notice at all (as when a notice is sent
    # while the subscription is being made, or lost in a cluster failover). Polling is off.
    registry = ModelRegistry(settings)
    loaded = registry.load(model)
    with RecommendationClient(model=model, settings=settings, refresh_interval=0) as client:
        old = client.model_version
        new = registry.publish(model, arrays=dict(loaded.arrays), blobs=dict(loaded.blobs),
                               tables={t: registry.read_table(model, loaded.version, t) for t in loaded.tables},
                               meta=dict(loaded.meta), activate=False)
        registry.client.set(registry.keys.active(model), new)  # the activation, its notice lost
        assert wait_for(lambda: client.model_version == new, timeout=15), f"still serving v{old}"
