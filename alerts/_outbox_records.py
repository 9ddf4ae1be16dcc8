"""The outbox's records in Redis: their keys, how each is written and how it is read back.

This module is their one owner (the notification they carry is :mod:`alerts.notification`'s):

==============================  ======  ==============================================================
``{alerts}:outbox``             STREAM  one entry per notification to deliver: ``n`` (its JSON), ``hooks`` (a
                                        JSON list: the only hooks it is for, when a dead letter was requeued);
                                        consumer group :data:`GROUP`
``{alerts}:retry``              ZSET    outbox entry id -> due time (epoch s) of its next attempt
``{alerts}:delivery:{nid}``     HASH    per notification: hook -> ``ok`` | ``dead``, ``<hook>#n`` -> failed
                                        attempts
``{alerts}:dead``               STREAM  dead letters: ``n``, ``hook`` (``*``: the entry itself was garbage),
                                        ``error``, ``attempts``, ``outbox_id``, ``at``
``{alerts}:delivered``          STREAM  the log of deliveries (``ea alerts tail``), capped: ``n``, ``hook``,
                                        ``at``
``{alerts}:counters``           HASH    delivery outcomes since the deployment began: ``delivered``,
                                        ``retried``, ``dead`` (what metrics read)
==============================  ======  ==============================================================

Readers are lenient where a record is kept to be looked at (a dead letter is listed, garbage and all) and
strict where it is acted on (an outbox entry that cannot be read is dead-lettered, :class:`CorruptRecord`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from ._records import number, parse_json, text
from .exceptions import CorruptRecord
from .notification import Notification

__all__ = ["GROUP", "DeadLetter", "Delivered", "OutboxKeys"]

log = logging.getLogger(__name__)

#: Name of the outbox's consumer group (every delivery consumer joins it).
GROUP = "delivery"
#: Per-(notification, hook) delivery records are kept this long after the last change (seconds).
RECORD_TTL = 7 * 24 * 3600
#: The delivered log (``ea alerts tail``) keeps about this many entries.
DELIVERED_MAXLEN = 10_000


@dataclass(frozen=True)
class OutboxKeys:
    """The outbox's key names under one key prefix."""

    prefix: str

    @property
    def outbox(self) -> str:
        return f"{self.prefix}{{alerts}}:outbox"

    @property
    def retry(self) -> str:
        return f"{self.prefix}{{alerts}}:retry"

    @property
    def dead(self) -> str:
        return f"{self.prefix}{{alerts}}:dead"

    @property
    def delivered(self) -> str:
        return f"{self.prefix}{{alerts}}:delivered"

    def delivery(self, notification_id: str) -> str:
        return f"{self.prefix}{{alerts}}:delivery:{notification_id}"

    @property
    def counters(self) -> str:
        return f"{self.prefix}{{alerts}}:counters"


#: What the delivery counters count (``{alerts}:counters``, HASH outcome -> count since the deployment began):
#: (notification, hook) deliveries that succeeded, failed attempts to be retried, deliveries dead-lettered.
OUTCOMES = ("delivered", "retried", "dead")


def count_outcome(pipe: Any, keys: OutboxKeys, outcome: str) -> None:
    """Queue one more ``outcome`` (one of :data:`OUTCOMES`) on the delivery counters."""
    pipe.hincrby(keys.counters, outcome, 1)


def read_counters(client: Any, keys: OutboxKeys) -> dict[str, int]:
    """The delivery counters (garbage reads as 0)."""
    raw = client.hgetall(keys.counters)
    return {o: int(number(raw.get(o.encode()))) for o in OUTCOMES}


def oldest_age(client: Any, keys: OutboxKeys, now: float) -> float:
    """Seconds since the oldest notification still in the outbox was appended (0 when it is empty): its
    entry id's time."""
    first = client.xrange(keys.outbox, count=1)
    if not first:
        return 0.0
    millis = int(first[0][0].split(b"-")[0])
    return max(0.0, now - millis / 1000)


@dataclass(frozen=True)
class DeadLetter:
    """A (notification, hook) delivery that was given up: why, after how many attempts, when."""

    id: str
    hook: str
    error: str
    attempts: int
    at: float
    notification: Notification | None  # None when the outbox entry itself was malformed
    raw: str


@dataclass(frozen=True)
class Delivered:
    """One successful delivery, as logged for ``ea alerts tail``."""

    id: str
    hook: str
    at: float
    notification: Notification


# --- outbox entries --------------------------------------------------------------------------------------


def append(pipe: Any, keys: OutboxKeys, note_json: str | bytes, hooks: list[str] | None = None) -> None:
    """Queue the XADD of an outbox entry for a notification (``hooks``: only these hooks) on ``pipe``."""
    fields: dict[str, Any] = {"n": note_json}
    if hooks is not None:
        fields["hooks"] = json.dumps(hooks)
    pipe.xadd(keys.outbox, fields)


def read_entry(fields: dict[bytes, bytes]) -> tuple[Notification, set[str] | None]:
    """An outbox entry's notification and the hooks it is for (``None``: all of them).

    Raises:
        CorruptRecord: the notification is missing or garbage, or ``hooks`` is not a JSON list of names.
    """
    if b"n" not in fields:
        raise CorruptRecord("field 'n' is missing")
    note = Notification.from_json(fields[b"n"])
    if b"hooks" not in fields:
        return note, None
    names = parse_json(fields[b"hooks"], "outbox field 'hooks'")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CorruptRecord("outbox field 'hooks' is not a list of hook names")
    return note, set(names)


def raw_notification(fields: dict[bytes, bytes]) -> bytes:
    """The notification an entry holds, as stored (empty when missing): what a dead letter keeps."""
    return fields.get(b"n", b"")


# --- delivery records --------------------------------------------------------------------------------------


def read_record(raw: dict[bytes, bytes]) -> dict[str, str]:
    """A delivery record as text: hook -> ``ok`` | ``dead``, ``<hook>#n`` -> attempts."""
    return {_s(k): _s(v) for k, v in raw.items()}


def done(record: dict[str, str], hook: str) -> bool:
    """Whether ``hook`` is finished with this notification (delivered, or dead-lettered)."""
    return record.get(hook) in ("ok", "dead")


def tried(record: dict[str, str], hook: str) -> bool:
    """Whether ``hook`` has failed on this notification and is not finished (it is in backoff)."""
    return f"{hook}#n" in record and not done(record, hook)


def attempts(record: dict[str, str], hook: str) -> int:
    """Failed attempts of ``hook`` in a delivery record (garbage counts as none)."""
    value = record.get(f"{hook}#n", "0")
    return int(value) if value.isascii() and value.isdigit() and len(value) < 10 else 0


def count_attempt(client: redis.Redis, keys: OutboxKeys, notification_id: str, hook: str, before: int) -> int:
    """Count one more failed attempt of ``hook``; a count that holds garbage is replaced (HINCRBY refuses
    it) by the attempts known to the caller plus one. Returns the count."""
    key = keys.delivery(notification_id)
    try:
        count = int(client.hincrby(key, f"{hook}#n", 1))
    except redis.ResponseError as exc:
        if "not an integer" not in str(exc):
            raise
        log.warning("delivery record %s: attempts of %s held garbage; counted again", key, hook)
        client.hset(key, f"{hook}#n", before + 1)
        count = before + 1
    client.expire(key, RECORD_TTL)
    return count


def forget_failures(pipe: Any, keys: OutboxKeys, notification_id: str, hook: str) -> None:
    """Queue the deletion of ``hook``'s outcome and attempts (a requeued dead letter starts afresh)."""
    pipe.hdel(keys.delivery(notification_id), hook, f"{hook}#n")


def record_ok(pipe: Any, keys: OutboxKeys, note: Notification, hook: str) -> None:
    """Queue what a success writes: the record's ``ok`` and the delivered log's entry."""
    pipe.hset(keys.delivery(note.id), hook, "ok")
    pipe.expire(keys.delivery(note.id), RECORD_TTL)
    pipe.xadd(keys.delivered, {"n": note.to_json(), "hook": hook, "at": repr(time.time())},
              maxlen=DELIVERED_MAXLEN, approximate=True)


# --- dead letters ------------------------------------------------------------------------------------------


def record_dead(pipe: Any, keys: OutboxKeys, entry_id: bytes | str, raw: str | bytes, hook: str, error: str,
                attempts: int, notification_id: str | None = None) -> None:
    """Queue a dead letter (and, for a readable notification, the record's ``dead`` for ``hook``)."""
    pipe.xadd(keys.dead, {"n": raw, "hook": hook, "error": error[:500], "attempts": attempts,
                          "outbox_id": entry_id, "at": repr(time.time())})
    if notification_id is not None:
        pipe.hset(keys.delivery(notification_id), hook, "dead")
        pipe.expire(keys.delivery(notification_id), RECORD_TTL)


def read_dead(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    """A dead letter as listed; its fields are read leniently (a dead letter is kept to be looked at, garbage
    and all: a notification that cannot be read is None, a count or time that cannot be read is 0)."""
    raw = fields.get(b"n", b"").decode(errors="replace")
    try:
        note: Notification | None = Notification.from_json(raw)
    except CorruptRecord:
        note = None
    return DeadLetter(entry_id.decode(), text(fields.get(b"hook", b"*")), text(fields.get(b"error", b"")),
                      int(number(fields.get(b"attempts"))), number(fields.get(b"at")), note, raw)


def read_delivered(entry_id: bytes, fields: dict[bytes, bytes]) -> Delivered:
    """A delivered-log entry.

    Raises:
        CorruptRecord: a field is missing, or the notification is garbage.
    """
    try:
        return Delivered(entry_id.decode(), text(fields[b"hook"]), number(fields[b"at"]),
                         Notification.from_json(fields[b"n"]))
    except KeyError:
        raise CorruptRecord("a field is missing") from None


def _s(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
