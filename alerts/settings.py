"""The alerting machinery's own settings, read from ``EA_ALERT_*`` environment variables.

Redis and the key prefix come from the service's :class:`vectorstore.Settings`; how incidents open and
resolve and how notifications are delivered is configured here. The README's configuration table lists the
same variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from vectorstore import ConfigurationError, env_choice, env_float, env_int, env_url

__all__ = ["AlertSettings", "get_alert_settings", "WEBHOOK_FORMATS"]

#: Bodies a webhook hook can send.
WEBHOOK_FORMATS = ("native", "alertmanager")
#: Variables no longer read, and what replaced them (a deployment that sets one is told, not ignored).
_REPLACED = {
    "EA_ALERT_COOLDOWN": "the cooldown is counted in points after an alert, EA_ALERT_COOLDOWN_POINTS "
                         "(default 200), no longer in seconds after a resolution",
}


@dataclass(frozen=True)
class AlertSettings:
    """How scores become incidents and notifications reach hooks (:func:`get_alert_settings` reads them).

    Attributes:
        webhook_url: ``EA_ALERT_WEBHOOK_URL``; when set, a webhook hook is registered for alert delivery
            (the URL may carry credentials: never logged unredacted).
        webhook_secret: ``EA_ALERT_WEBHOOK_SECRET``; HMAC-SHA256 key of the webhook signature. Never logged.
        webhook_format: ``EA_ALERT_WEBHOOK_FORMAT`` (default ``native``; or ``alertmanager``).
        file: ``EA_ALERT_FILE``; when set, every notification is appended there as a JSON line.
        max_attempts: ``EA_ALERT_MAX_ATTEMPTS`` (default 8); after that many failed attempts a hook's
            delivery goes to the dead-letter stream.
        backoff: ``EA_ALERT_BACKOFF`` seconds (default 1): first retry delay, doubled per attempt, with full
            jitter, capped at ``EA_ALERT_BACKOFF_MAX`` (``backoff_max``, default 300).
        min_idle: ``EA_ALERT_MIN_IDLE`` seconds (default 60): a delivery left unacknowledged that long by a
            consumer is presumed crashed and re-claimed (XAUTOCLAIM) by another.
        for_points: ``EA_ALERT_FOR_POINTS`` (default 1): points in a row with an armed source at or above
            the threshold that alert (open an incident, or re-alert an open one).
        clear_points: ``EA_ALERT_CLEAR_POINTS`` (default 20): points in a row below the threshold after
            which a source re-arms; an incident resolves when all of its sources have.
        cooldown_points: ``EA_ALERT_COOLDOWN_POINTS`` (default 200): points after an alert during which
            no other alert is raised (sources reading the threshold then join its incident).
        warmup_points: ``EA_ALERT_WARMUP_POINTS`` (default 300): points of a series a detector was not
            trained on during which no incident opens.
        group_by: ``EA_ALERT_GROUP_BY`` (comma-separated label names, default none): incidents whose labels
            agree on these names share a group key.
    """

    webhook_url: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_format: str = "native"
    file: Path | None = None
    max_attempts: int = 8
    backoff: float = 1.0
    backoff_max: float = 300.0
    min_idle: float = 60.0
    for_points: int = 1
    clear_points: int = 20
    cooldown_points: int = 200
    warmup_points: int = 300
    group_by: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AlertSettings:
        """Read the ``EA_ALERT_*`` variables of ``environ`` (default: the process environment).

        Raises:
            vectorstore.ConfigurationError: a value that cannot work, or a variable that was replaced (the
                message names it and its replacement).
        """
        env = dict(os.environ if environ is None else environ)
        for old, new in _REPLACED.items():
            if env.get(old):
                raise ConfigurationError(f"{old} is no longer read: {new}")
        return cls(
            webhook_url=env_url(env, "EA_ALERT_WEBHOOK_URL", ("http", "https")),
            webhook_secret=env.get("EA_ALERT_WEBHOOK_SECRET") or None,
            webhook_format=env_choice(env, "EA_ALERT_WEBHOOK_FORMAT", "native", WEBHOOK_FORMATS),
            file=Path(env["EA_ALERT_FILE"]).expanduser() if env.get("EA_ALERT_FILE") else None,
            max_attempts=env_int(env, "EA_ALERT_MAX_ATTEMPTS", 8, 1),
            backoff=env_float(env, "EA_ALERT_BACKOFF", 1.0, 0.0),
            backoff_max=env_float(env, "EA_ALERT_BACKOFF_MAX", 300.0, 0.0),
            min_idle=env_float(env, "EA_ALERT_MIN_IDLE", 60.0, 0.0, positive=True),
            for_points=env_int(env, "EA_ALERT_FOR_POINTS", 1, 1),
            clear_points=env_int(env, "EA_ALERT_CLEAR_POINTS", 20, 1),
            cooldown_points=env_int(env, "EA_ALERT_COOLDOWN_POINTS", 200, 0),
            warmup_points=env_int(env, "EA_ALERT_WARMUP_POINTS", 300, 0),
            group_by=tuple(n.strip() for n in env.get("EA_ALERT_GROUP_BY", "").split(",") if n.strip()),
        )

    def with_(self, **changes: object) -> AlertSettings:
        """A copy with some fields changed (settings are immutable)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def get_alert_settings() -> AlertSettings:
    """Alert settings from the current environment (read anew at each call, cheap)."""
    return AlertSettings.from_env()
