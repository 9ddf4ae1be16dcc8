"""Hooks: where notifications go, and the registry the delivery consumers read.

A hook has a stable ``name`` (delivery is tracked per notification and hook name, so a success on one hook
is never repeated when another is retried) and a ``deliver(notification)`` method that returns on success
and raises:

* :class:`~alerts.exceptions.HookError` for a failure worth retrying (any other exception counts as one);
* :class:`~alerts.exceptions.DeliveryError` for a permanent failure (dead-lettered at once);
* :class:`~alerts.exceptions.HookDisabled` when the endpoint is gone (the hook is disabled).

Hooks are registered in code (:func:`register`) or by settings: ``EA_ALERT_WEBHOOK_URL`` (+ ``_SECRET``,
``_FORMAT``) adds a :class:`~alerts.webhook.WebhookHook`, ``EA_ALERT_FILE`` a :class:`JsonLinesHook`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vectorstore import Settings, celery_broker_config, celery_broker_url, get_settings

from .exceptions import HookError
from .notification import Notification

__all__ = ["CallableHook", "CeleryTaskHook", "Hook", "JsonLinesHook"]


class Hook:
    """Base class of hooks: a ``name`` and a ``deliver`` method."""

    name: str = "hook"

    def deliver(self, notification: Notification) -> None:
        """Deliver one notification; return on success, raise a ``HookError`` on failure."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class CallableHook(Hook):
    """Calls ``fn(notification)`` in the delivery consumer; any exception it raises is retried, except a
    :class:`~alerts.exceptions.DeliveryError` (dead-lettered at once)."""

    def __init__(self, fn: Callable[[Notification], Any], *, name: str | None = None) -> None:
        self.fn = fn
        self.name = name or f"callable:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"

    def deliver(self, notification: Notification) -> None:
        try:
            self.fn(notification)
        except HookError:
            raise
        except Exception as exc:
            raise HookError(f"{self.name} raised {type(exc).__name__}: {exc}") from exc


class JsonLinesHook(Hook):
    """Appends one JSON line per notification to ``path`` (demos and audit trails).

    Each line is written with a single ``write`` on a file opened in append mode, so lines from several
    consumer processes do not interleave.
    """

    def __init__(self, path: str | os.PathLike[str], *, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or f"file:{self.path}"

    def deliver(self, notification: Notification) -> None:
        line = (notification.to_json() + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            raise HookError(f"cannot append to {self.path}: {exc}") from exc


class CeleryTaskHook(Hook):
    """Sends the Celery task ``task_name`` with the notification (a JSON dict) as its only argument.

    Delivery succeeds when the broker has accepted the message (the task's own retries are its business).

    Args:
        task_name: the registered name of the task on the receiving workers.
        queue: the queue to send it on (the receiving workers must consume it).
        app: a Celery app to send through; by default a producer-only app on the service's broker with the
            same key prefix as ``workers.app`` (this package does not import ``workers``).
    """

    def __init__(self, task_name: str, queue: str = "alerts", *, app: Any = None, name: str | None = None,
                 settings: Settings | None = None) -> None:
        self.task_name = task_name
        self.queue = queue
        self.name = name or f"celery:{task_name}@{queue}"
        self._app = app
        self._settings = settings
        self._lock = threading.Lock()

    def _get_app(self) -> Any:
        with self._lock:
            if self._app is None:
                from celery import Celery

                settings = self._settings or get_settings()
                self._app = Celery("ea-alerts-producer", set_as_current=False)
                # The service's broker, transport options and queues (one builder for workers.app and this
                # hook), or the message would land in another queue key (Redis) or its queue be declared
                # with other arguments and refused (RabbitMQ's quorum queues).
                self._app.conf.update(
                    **celery_broker_config(settings, celery_broker_url(settings)),
                    task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
                )
            return self._app

    def deliver(self, notification: Notification) -> None:
        try:
            self._get_app().send_task(self.task_name, args=[notification.to_dict()], queue=self.queue,
                                      serializer="json", task_id=f"{notification.id}")
        except Exception as exc:  # broker down, timeout: retried by the outbox
            raise HookError(f"cannot send task {self.task_name}: {type(exc).__name__}") from exc
