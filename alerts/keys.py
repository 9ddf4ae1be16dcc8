"""Names of the Redis keys of the alerting layer, all under the service's key prefix.

::

    {prefix}{alerts}:state:{kind}:{key}   STRING  JSON state machine of one series/entity (see incidents.py)
    {prefix}{alerts}:open                 HASH    incident id -> incident JSON, while firing
    {prefix}{alerts}:outbox               STREAM  one entry per notification; consumer group "delivery"
    {prefix}{alerts}:retry                ZSET    outbox id -> due time (epoch s) of its next attempt
    {prefix}{alerts}:delivery:{nid}       HASH    per (notification, hook): "ok" | "dead", attempts "{hook}#n"
    {prefix}{alerts}:dead                 STREAM  dead letters: one entry per (notification, hook) given up
    {prefix}{alerts}:delivered            STREAM  log of successful deliveries (``ea alerts tail``), capped
    {prefix}{alerts}:hooks:disabled       HASH    hook name -> JSON reason, for endpoints that answered 410
    {prefix}{alerts}:hooks                HASH    hook name -> JSON spec of a hook shared by every consumer
    {prefix}{alerts}:hooks:version        STRING  counter, incremented at each change of the shared hooks

The literal ``{alerts}`` is a Redis Cluster hash tag: every key above is in one slot, because the layer's
transactions span them (an incident's state, the open incidents and the outbox change in one MULTI/EXEC; a
delivery acknowledges the outbox and writes its record, dead letter or retry at once). On one server the
braces are just characters of the name.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GROUP", "AlertKeys"]

#: Name of the outbox's consumer group (every delivery consumer joins it).
GROUP = "delivery"


@dataclass(frozen=True)
class AlertKeys:
    """The key names for one key prefix."""

    prefix: str

    @property
    def _base(self) -> str:
        return f"{self.prefix}{{alerts}}:"

    @property
    def outbox(self) -> str:
        return f"{self._base}outbox"

    @property
    def retry(self) -> str:
        return f"{self._base}retry"

    @property
    def dead(self) -> str:
        return f"{self._base}dead"

    @property
    def delivered(self) -> str:
        return f"{self._base}delivered"

    @property
    def open(self) -> str:
        return f"{self._base}open"

    @property
    def disabled(self) -> str:
        return f"{self._base}hooks:disabled"

    @property
    def hooks(self) -> str:
        return f"{self._base}hooks"

    @property
    def hooks_version(self) -> str:
        return f"{self._base}hooks:version"

    def state(self, kind: str, key: str) -> str:
        return f"{self._base}state:{kind}:{key}"

    def delivery(self, notification_id: str) -> str:
        return f"{self._base}delivery:{notification_id}"
