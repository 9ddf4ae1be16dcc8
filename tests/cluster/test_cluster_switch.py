"""Pointing the service at a cluster: the switch, detection from the URL, Celery kept off it, one slot per
transaction's keys."""

from __future__ import annotations

import os

import pytest
from redis.cluster import RedisCluster, key_slot

from alerts import CeleryTaskHook, send_test
from alerts.exceptions import HookError
from alerts.keys import AlertKeys
from vectorstore import ConfigurationError, ModelRegistry, Settings, connect, is_cluster
from workers.app import celery_config


def test_a_cluster_node_url_is_detected_without_the_switch(redis_cluster, model_name, monkeypatch):
    monkeypatch.delenv("EA_REDIS_CLUSTER")
    settings = Settings.from_env()
    assert settings.redis_cluster is None and is_cluster(settings)
    assert isinstance(connect(settings), RedisCluster)
    registry = ModelRegistry(settings)
    version = registry.publish(model_name, blobs={"x": b"1"})
    assert registry.load(model_name).blobs["x"] == b"1" and registry.active_version(model_name) == version


def test_a_single_server_is_not_taken_for_a_cluster(monkeypatch):
    single = os.environ["EA_BROKER_URL"]  # the session's single Redis
    assert not is_cluster(Settings(redis_url=single))
    assert not isinstance(connect(Settings(redis_url=single)), RedisCluster)
    # The switch wins over detection.
    monkeypatch.setenv("EA_REDIS_CLUSTER", "0")
    assert not is_cluster(Settings.from_env())


def test_switch_values_and_database_numbers_are_checked(redis_cluster, monkeypatch):
    monkeypatch.setenv("EA_REDIS_CLUSTER", "maybe")
    with pytest.raises(ConfigurationError, match="EA_REDIS_CLUSTER"):
        Settings.from_env()
    with pytest.raises(ConfigurationError, match="database 3"):
        connect(Settings(redis_url=redis_cluster.url.rsplit("/", 1)[0] + "/3", redis_cluster=True))


def test_celery_is_not_pointed_at_the_cluster():
    on_cluster = Settings.from_env()
    with pytest.raises(ConfigurationError, match="EA_BROKER_URL"):
        celery_config(on_cluster.with_(broker_url=None))
    with pytest.raises(ConfigurationError, match="EA_RESULT_BACKEND"):
        celery_config(on_cluster.with_(result_backend=None))
    config = celery_config(on_cluster)
    assert config["broker_url"] == on_cluster.broker_url and config["result_backend"] == on_cluster.result_backend
    # The alert hook that sends Celery tasks neither: the delivery fails (and is retried by the outbox).
    hook = CeleryTaskHook("tests.nowhere", settings=on_cluster.with_(broker_url=None))
    with pytest.raises(HookError, match="ConfigurationError"):
        hook.deliver(send_test(settings=on_cluster))


def test_keys_that_change_together_share_a_slot(settings):
    keys = AlertKeys(settings.key_prefix)
    alert_keys = [keys.outbox, keys.retry, keys.dead, keys.delivered, keys.open, keys.disabled, keys.hooks,
                  keys.hooks_version, keys.state("series", "m", "s{1}"), keys.delivery("inc_1:firing")]
    assert len({key_slot(k.encode()) for k in alert_keys}) == 1
    registry = ModelRegistry(settings)
    model_keys = [registry.keys.active("m"), registry.keys.manifest("m", 3), registry.channel("m"),
                  registry.table_key("m", 3, "users"), registry.derived_key("m", 3, "topn", register=False)]
    assert len({key_slot(k.encode()) for k in model_keys}) == 1
