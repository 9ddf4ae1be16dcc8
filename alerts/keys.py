"""The key names of the alerting layer, all under the service's key prefix, each built by its record's owner.

::

    {prefix}{alerts}:state:{kind}:{model}:{key}  STRING  one key's incident machine   alerts._key_state
    {prefix}{alerts}:open                        HASH    open incidents               alerts.incidents
    {prefix}{alerts}:outbox                      STREAM  notifications to deliver     alerts._outbox_records
    {prefix}{alerts}:retry                       ZSET    due retries                  alerts._outbox_records
    {prefix}{alerts}:delivery:{nid}              HASH    per (notification, hook)     alerts._outbox_records
    {prefix}{alerts}:dead                        STREAM  dead letters                 alerts._outbox_records
    {prefix}{alerts}:delivered                   STREAM  the delivered log            alerts._outbox_records
    {prefix}{alerts}:hooks                       HASH    hooks shared by consumers    alerts.shared
    {prefix}{alerts}:hooks:version               STRING  their change counter         alerts.shared
    {prefix}{alerts}:hooks:disabled              HASH    hooks disabled by a 410      alerts.shared
    {prefix}{alerts}:incidents                   HASH    the incident history         alerts._history
    {prefix}{alerts}:incidents:by_start          ZSET    its index by start time      alerts._history
    {prefix}{alerts}:silences                    HASH    silences                     alerts.silences
    {prefix}{alerts}:acks                        HASH    acknowledgements             alerts.acks

The literal ``{alerts}`` is a Redis Cluster hash tag: every key above is in one slot, because the layer's
transactions span them (an incident's state, the open incidents and the outbox change in one MULTI/EXEC; a
delivery acknowledges the outbox and writes its record, dead letter or retry at once). On one server the
braces are just characters of the name. ``docs/architecture.md`` has the formats of the records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._history import history_keys
from ._key_state import state_key
from ._outbox_records import GROUP, OutboxKeys
from .acks import ack_key
from .incidents import open_key
from .shared import HookKeys
from .silences import silence_key

__all__ = ["GROUP", "AlertKeys"]


@dataclass(frozen=True)
class AlertKeys:
    """The key names for one key prefix (for operators and tests; the code uses its records' owners)."""

    prefix: str

    @property
    def outbox(self) -> str:
        return OutboxKeys(self.prefix).outbox

    @property
    def retry(self) -> str:
        return OutboxKeys(self.prefix).retry

    @property
    def dead(self) -> str:
        return OutboxKeys(self.prefix).dead

    @property
    def delivered(self) -> str:
        return OutboxKeys(self.prefix).delivered

    @property
    def open(self) -> str:
        return open_key(self.prefix)

    @property
    def disabled(self) -> str:
        return HookKeys(self.prefix).disabled

    @property
    def hooks(self) -> str:
        return HookKeys(self.prefix).hooks

    @property
    def hooks_version(self) -> str:
        return HookKeys(self.prefix).version

    @property
    def incidents(self) -> str:
        return history_keys(self.prefix)[0]

    @property
    def incidents_by_start(self) -> str:
        return history_keys(self.prefix)[1]

    @property
    def silences(self) -> str:
        return silence_key(self.prefix)

    @property
    def acks(self) -> str:
        return ack_key(self.prefix)

    def state(self, kind: str, model: str, key: str) -> str:
        return state_key(self.prefix, kind, model, key)

    def delivery(self, notification_id: str) -> str:
        return OutboxKeys(self.prefix).delivery(notification_id)
