"""Celery's broker: the service's Redis (the default) or RabbitMQ (``EA_BROKER_URL=amqp://...``).

Every producer (``workers.app``, ``ea`` submitting jobs, :class:`alerts.CeleryTaskHook`) and every worker
must declare the queues alike, or their messages land in other queues (Redis: other keys; RabbitMQ: a
declaration with other arguments is refused). :func:`celery_broker_config` is the one place that says how.

* **Redis**: queues are Redis lists under the service's key prefix; an unacknowledged job comes back after
  ``EA_VISIBILITY_TIMEOUT`` (kombu's unacked hash; :func:`vectorstore.platform.connection.celery_transport_options`).
* **RabbitMQ**: the ``train``, ``score`` and ``alerts`` queues are *quorum* queues (replicated by Raft on a
  cluster, durable on disk), each behind a topic exchange of its name so that delayed retries use RabbitMQ's
  native delayed delivery (Celery declares its ``celery_delayed_*`` exchanges) instead of waiting inside a
  worker. Publishes wait for the broker's confirm, so a job ``ea`` reported as submitted is on disk. An
  unacknowledged job is redelivered as soon as its worker's connection closes (a killed worker); the
  visibility timeout plays no part. Quorum queues refuse global QoS, so the worker's prefetch is per
  consumer (``worker_detect_quorum_queues``). No AMQP heartbeats (a solo-pool job blocks them, and RabbitMQ
  would drop the connection and deliver the job again). A job running longer than the server's
  ``consumer_timeout`` (30 min by default) loses its channel and is redelivered: set it above
  ``EA_TRAIN_TIME_LIMIT`` on the server (docker-compose.yml does); it is also how long the job of a worker
  host that vanished without closing its connection waits. Redis stays the registry and the result backend.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from kombu import Exchange, Queue

from .connection import celery_transport_options
from .settings import Settings

__all__ = ["AMQP_SCHEMES", "QUEUES", "broker_kind", "celery_broker_config"]

#: The service's queues: ``train`` (torch), ``score`` (scoring, precomputation), ``alerts`` (delivery).
QUEUES = ("train", "score", "alerts")
#: URL schemes of a RabbitMQ broker (``pyamqp`` is kombu's name of the same transport).
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


def broker_kind(url: str) -> str:
    """``"amqp"`` for a RabbitMQ URL, ``"redis"`` for a Redis one, else the URL's scheme."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in AMQP_SCHEMES:
        return "amqp"
    return "redis" if scheme in ("redis", "rediss", "unix", "sentinel") else scheme


def _quorum_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="topic"), routing_key=name, durable=True,
                 queue_arguments={"x-queue-type": "quorum"})


def celery_broker_config(settings: Settings, broker_url: str) -> dict[str, object]:
    """The Celery settings that depend on the broker at ``broker_url`` (see the module docstring).

    Returns:
        ``broker_url``, ``broker_transport_options`` and ``task_queues`` for either broker; for RabbitMQ
        also the quorum-queue settings.
    """
    if broker_kind(broker_url) != "amqp":
        return {"broker_url": broker_url, "broker_transport_options": celery_transport_options(settings),
                "task_queues": [Queue(name) for name in QUEUES]}
    return {
        "broker_url": broker_url,
        # Publisher confirms: send_task returns once RabbitMQ has the message (on a quorum queue: on a
        # majority of the cluster's disks), not when it left this process.
        "broker_transport_options": {"confirm_publish": True},
        "task_queues": [_quorum_queue(name) for name in QUEUES],
        # Quorum queues refuse global QoS (RabbitMQ answers NOT_IMPLEMENTED): per-consumer prefetch.
        "worker_detect_quorum_queues": True,
        "broker_native_delayed_delivery_queue_type": "quorum",
        # No AMQP heartbeats: a solo-pool worker (training) runs its job inside the loop that would send them,
        # so RabbitMQ closed its connection after two missed beats (~2 min), the ack failed and the job ran
        # again on another worker (measured; celery#3430). A killed worker's socket still closes at once; a
        # vanished host is caught by the server's consumer_timeout, as the visibility timeout does on Redis.
        "broker_heartbeat": 0,
    }
