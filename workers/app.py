"""The Celery application: ``workers.app.app``.

Configured as docs/architecture.md says: JSON only (pickle would let anyone who can write to the broker run
code),
late acknowledgement with redelivery when a worker dies, one message prefetched at a time, a visibility
timeout longer than the longest training job, and three queues: ``train`` (torch; run it with
``--pool solo`` or threads, since torch and fork do not mix), ``score`` and ``alerts``. The broker is the
service's Redis, or RabbitMQ with quorum queues and publisher confirms (``EA_BROKER_URL=amqp://...``;
:mod:`vectorstore.platform.broker`); Redis stays the result backend. Every task derives
from :class:`workers._task_policy.ServiceTask`: transient Redis and broker errors are retried with backoff,
and soft and hard time limits hold in every pool.
"""

from __future__ import annotations

import logging

from celery import Celery

from vectorstore import (
    QUEUES,
    ConfigurationError,
    Settings,
    broker_kind,
    celery_broker_config,
    celery_broker_url,
    celery_transport_options,
    get_settings,
    is_cluster,
    resolve_redis_url,
)

from .metrics import install_signals

__all__ = ["QUEUES", "app", "celery_config"]

log = logging.getLogger(__name__)

# Route by task name: training on `train`, scoring on `score`, alert delivery on `alerts`.
TASK_ROUTES = {
    "ea.train_*": {"queue": "train"},
    "ea.score_*": {"queue": "score"},
    "ea.precompute_*": {"queue": "score"},
    "ea.alerts_*": {"queue": "alerts"},
}


def celery_config(settings: Settings) -> dict:
    """Celery settings for ``settings`` (the broker and backend default to the service's Redis; with
    ``EA_BROKER_URL=amqp://...`` the broker is RabbitMQ: see :mod:`vectorstore.platform.broker`)."""
    redis_url = resolve_redis_url(settings)
    broker_url = celery_broker_url(settings)
    if not settings.result_backend and is_cluster(settings):
        # Celery's Redis result backend speaks no cluster protocol (its commands span slots).
        raise ConfigurationError("EA_REDIS_URL names a Redis Cluster, which Celery cannot use as its result "
                                 "backend: set EA_RESULT_BACKEND (a single Redis)")
    # RabbitMQ has no visibility timeout (its consumer_timeout, set on the server, plays that part).
    if (broker_kind(broker_url) == "redis" and settings.train_time_limit
            and settings.train_time_limit >= settings.visibility_timeout):
        log.warning("EA_TRAIN_TIME_LIMIT=%g s is not below EA_VISIBILITY_TIMEOUT=%d s: a training job still running "
                    "when the visibility timeout ends is delivered to a second worker", settings.train_time_limit,
                    settings.visibility_timeout)
    return {
        **celery_broker_config(settings, broker_url),
        "result_backend": settings.result_backend or redis_url,
        "result_backend_transport_options": celery_transport_options(settings),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_track_started": True,
        "result_extended": True,
        "result_expires": 7 * 24 * 3600,
        "task_default_queue": "score",
        "task_routes": TASK_ROUTES,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }


app = Celery("ea", include=["workers.tasks"], task_cls="workers._task_policy:ServiceTask")
# Lazy: the broker URL (possibly the embedded Redis, started on demand) is resolved only when the app's
# configuration is first read, not when this module is imported. A pending default, not an on_configure
# handler calling conf.update(): that one re-entered the configuration loading (task_routes flushes the
# router, which reads the configuration being loaded) and logged a RecursionError on every `ea train`.
app.add_defaults(lambda: celery_config(get_settings()))
install_signals()  # jobs by task and state, and their durations, counted in Redis (`ea metrics serve`)
