"""The broker settings: Redis by default, RabbitMQ with quorum queues and publisher confirms for an amqp URL,
and an ``EA_BROKER_URL`` that cannot work refused by name, its password never shown."""

from __future__ import annotations

import pytest

from vectorstore import QUEUES, ConfigurationError, Settings, broker_kind
from workers.app import celery_config

REDIS = "redis://127.0.0.1:1/0"


def test_rabbitmq_broker_gets_quorum_queues_confirms_and_keeps_redis_for_results() -> None:
    settings = Settings.from_env({"EA_REDIS_URL": REDIS, "EA_BROKER_URL": "amqp://ea:pw@rabbit:5672/ea"})
    conf = celery_config(settings)
    assert conf["broker_url"] == "amqp://ea:pw@rabbit:5672/ea" and conf["result_backend"] == REDIS
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert [q.name for q in conf["task_queues"]] == list(QUEUES)
    for queue in conf["task_queues"]:
        assert queue.queue_arguments == {"x-queue-type": "quorum"} and queue.durable
        # A topic exchange: delayed retries go through RabbitMQ's native delayed delivery.
        assert queue.exchange.type == "topic" and queue.routing_key == queue.name
    assert conf["worker_detect_quorum_queues"] is True
    assert conf["broker_heartbeat"] == 0  # a solo-pool job would miss the beats (test_rabbitmq.py)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"] and conf["worker_prefetch_multiplier"] == 1


def test_redis_broker_keeps_its_queues_under_the_key_prefix() -> None:
    conf = celery_config(Settings.from_env({"EA_REDIS_URL": REDIS, "EA_KEY_PREFIX": "p1:"}))
    assert conf["broker_url"] == REDIS
    assert conf["broker_transport_options"]["global_keyprefix"] == "p1:celery:"
    assert all(q.queue_arguments is None and q.exchange.type == "direct" for q in conf["task_queues"])


@pytest.mark.parametrize(("url", "kind"), [("amqp://h", "amqp"), ("pyamqp://h:5672//", "amqp"),
                                           ("amqps://h", "amqp"), ("rediss://h", "redis"), ("unix:///r.s", "redis")])
def test_broker_kind(url: str, kind: str) -> None:
    assert broker_kind(url) == kind


@pytest.mark.parametrize("url", ["amqp://ea:s3cr/et@rabbit:56x2/ea",    # a '/' in the password breaks the URL
                                 "amqp://ea:s3cr@et@:5672/ea",          # no host
                                 "amqp://ea:s3cret@rabbit:99999/ea",    # port out of range
                                 "amqb://ea:s3cret@rabbit:5672/ea"])    # not a broker scheme
def test_a_broken_broker_url_is_refused_by_name_without_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="EA_BROKER_URL") as caught:
        Settings.from_env({"EA_BROKER_URL": url})
    assert "s3cr" not in str(caught.value) and "et@" not in str(caught.value)
