"""The hooks of this process: registered in code, or configured by ``EA_ALERT_WEBHOOK_URL`` / ``EA_ALERT_FILE``.

(Hooks shared by every consumer live in Redis: :mod:`alerts.shared`.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .hooks import CallableHook, Hook, JsonLinesHook
from .notification import Notification
from .settings import AlertSettings, get_alert_settings
from .webhook import WebhookHook

__all__ = ["register", "registered_hooks", "unregister"]

_registry: dict[str, Hook] = {}
_registry_lock = threading.Lock()


def register(hook: Hook | Callable[[Notification], Any]) -> Hook:
    """Register a hook for this process's delivery consumers (a plain callable is wrapped in
    :class:`CallableHook`). A hook with the same name replaces the previous one. Returns the hook."""
    if not isinstance(hook, Hook):
        hook = CallableHook(hook)
    with _registry_lock:
        _registry[hook.name] = hook
    return hook


def unregister(hook: Hook | str) -> None:
    """Remove a hook (or the hook of that name) from the registry; unknown names are ignored."""
    with _registry_lock:
        _registry.pop(hook if isinstance(hook, str) else hook.name, None)


def registered_hooks(settings: AlertSettings | None = None) -> list[Hook]:
    """The hooks registered in code plus those configured by ``EA_ALERT_WEBHOOK_URL`` / ``EA_ALERT_FILE``."""
    settings = settings or get_alert_settings()
    with _registry_lock:
        hooks = dict(_registry)
    if settings.webhook_url:
        webhook = WebhookHook(settings.webhook_url, settings.webhook_secret,
                              format=settings.webhook_format)  # type: ignore[arg-type]  # checked when read
        hooks.setdefault(webhook.name, webhook)
    if settings.file:
        lines = JsonLinesHook(settings.file)
        hooks.setdefault(lines.name, lines)
    return list(hooks.values())
