"""Operating the outbox: dead letters and requeueing, disabled hooks, status, and the delivered log.

These are the functions behind ``ea alerts dead|retry|hooks|enable|status|tail|test``; the delivery itself is
:mod:`alerts.delivery`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from vectorstore import Settings, connect, get_settings

from ._records import parse_json
from .exceptions import CorruptRecord, DeadLetterNotFound
from .incidents import Incident, Notification
from .keys import GROUP, AlertKeys

log = logging.getLogger(__name__)

__all__ = ["DeadLetter", "Delivered", "dead_letters", "disabled_hooks", "enable_hook", "outbox_status",
           "requeue", "send_test", "tail"]


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


def _ctx(settings: Settings | None, client: redis.Redis | None) -> tuple[AlertKeys, redis.Redis]:
    settings = settings or get_settings()
    return AlertKeys(settings.key_prefix), client or connect(settings)


def dead_letters(count: int = 100, *, settings: Settings | None = None,
                 client: redis.Redis | None = None) -> list[DeadLetter]:
    """The oldest ``count`` dead letters, oldest first."""
    keys, client = _ctx(settings, client)
    return [_dead(i, f) for i, f in client.xrange(keys.dead, count=count)]


def requeue(ids: Iterable[str] | None = None, *, all: bool = False, settings: Settings | None = None,
            client: redis.Redis | None = None) -> int:
    """Send dead letters back to the outbox, each for its hook only (other hooks that already succeeded
    are not called again); returns how many were requeued.

    Args:
        ids: dead-letter ids (as listed by :func:`dead_letters`).
        all: requeue every dead letter (``ids`` is then ignored).

    Raises:
        DeadLetterNotFound: an id is not in the dead-letter stream (nothing is requeued then).
    """
    keys, client = _ctx(settings, client)
    if all:
        entries = client.xrange(keys.dead)
    else:
        entries = []
        for i in ids or []:
            found = client.xrange(keys.dead, i, i)
            if not found:
                raise DeadLetterNotFound(f"no dead letter {i!r}")
            entries.extend(found)
    for entry_id, fields in entries:
        letter = _dead(entry_id, fields)
        pipe = client.pipeline(transaction=True)
        outbox_fields: dict[str, Any] = {"n": letter.raw}
        if letter.notification is not None and letter.hook != "*":
            # Forget the failure, so the hook gets a fresh set of attempts.
            pipe.hdel(keys.delivery(letter.notification.id), letter.hook, f"{letter.hook}#n")
            outbox_fields["hooks"] = json.dumps([letter.hook])
        pipe.xadd(keys.outbox, outbox_fields)
        pipe.xdel(keys.dead, entry_id)
        pipe.execute()
    return len(entries)


def send_test(key: str = "ea-test", *, settings: Settings | None = None,
              client: redis.Redis | None = None) -> Notification:
    """Append a synthetic ``firing`` notification (labels ``{"test": "true"}``, a fresh incident id) to the
    outbox, to check that the consumers and hooks work end to end. Returns it."""
    keys, client = _ctx(settings, client)
    now = time.time()
    stamp = datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z")
    fingerprint = uuid.uuid4().hex[:16]
    incident = Incident(f"inc_test_{fingerprint}", fingerprint, "series", key, stamp, None, 1.0, stamp, 0.0,
                        labels={"test": "true"}, group_key=f"series={key}")
    note = Notification(f"{incident.id}:firing", "firing", incident, now)
    client.xadd(keys.outbox, {"n": note.to_json()})
    return note


def disabled_hooks(*, settings: Settings | None = None, client: redis.Redis | None = None) -> dict[str, dict]:
    """Hooks disabled because their endpoint answered 410: name -> ``{"reason", "at", "status"}``."""
    keys, client = _ctx(settings, client)
    found = {}
    for k, v in client.hgetall(keys.disabled).items():
        try:
            mark = parse_json(v, "disabled-hook mark")
        except CorruptRecord:
            mark = None
        if not isinstance(mark, dict):  # still disabled (HGET finds it); enable_hook's HDEL clears it
            mark = {"reason": "unreadable mark"}
        status = mark.get("status")
        found[_text(k)] = {"reason": _text(str(mark.get("reason", "unreadable mark")).encode()),
                           "at": _number(str(mark.get("at")).encode()),
                           "status": status if type(status) is int else None}
    return found


def enable_hook(name: str, *, settings: Settings | None = None, client: redis.Redis | None = None) -> bool:
    """Re-enable a disabled hook (its dead letters stay; ``requeue`` them). Returns whether it was disabled."""
    keys, client = _ctx(settings, client)
    return bool(client.hdel(keys.disabled, name))


def outbox_status(*, settings: Settings | None = None, client: redis.Redis | None = None) -> dict[str, Any]:
    """Counts for monitoring: ``undelivered`` (entries in the outbox), ``pending`` (read, not yet
    acknowledged), ``retrying`` (scheduled retries), ``dead``, ``consumers`` (name -> pending, idle ms)."""
    keys, client = _ctx(settings, client)
    status: dict[str, Any] = {"undelivered": client.xlen(keys.outbox), "pending": 0,
                              "retrying": client.zcard(keys.retry), "dead": client.xlen(keys.dead),
                              "consumers": {}}
    try:
        status["pending"] = client.xpending(keys.outbox, GROUP)["pending"]
        for c in client.xinfo_consumers(keys.outbox, GROUP):
            status["consumers"][c["name"].decode()] = {"pending": c["pending"], "idle_ms": c["idle"]}
    except redis.ResponseError:  # no group yet: nothing was ever delivered
        pass
    return status


def tail(*, last: int = 10, block: float = 1.0, stop: threading.Event | None = None,
         settings: Settings | None = None, client: redis.Redis | None = None) -> Iterator[Delivered]:
    """Yield deliveries as they happen (XREAD on the delivered log), starting with the ``last`` previous
    ones; ends when ``stop`` is set (checked every ``block`` seconds), else runs until closed."""
    keys, client = _ctx(settings, client)
    # An explicit id, not "$": "$" would skip what is added between two XREAD calls.
    recent = client.xrevrange(keys.delivered, count=max(1, last))
    start = recent[0][0] if recent else b"0-0"
    for entry_id, fields in reversed(recent[:last]):
        if (done := _delivered(entry_id, fields)) is not None:
            yield done
    while stop is None or not stop.is_set():
        reply = client.xread({keys.delivered: start}, block=int(block * 1000), count=100)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                start = entry_id
                if (done := _delivered(entry_id, fields)) is not None:
                    yield done


def _dead(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    """A dead letter as listed; its fields are read leniently (a dead letter is kept to be looked at, garbage
    and all: a notification that cannot be read is None, a count or time that cannot be read is 0)."""
    raw = fields.get(b"n", b"").decode(errors="replace")
    try:
        note: Notification | None = Notification.from_json(raw)
    except CorruptRecord:
        note = None
    return DeadLetter(entry_id.decode(), _text(fields.get(b"hook", b"*")), _text(fields.get(b"error", b"")),
                      int(_number(fields.get(b"attempts"))), _number(fields.get(b"at")), note, raw)


def _delivered(entry_id: bytes, fields: dict[bytes, bytes]) -> Delivered | None:
    """A delivered-log entry, or None (with a warning) when it holds garbage."""
    try:
        return Delivered(entry_id.decode(), _text(fields[b"hook"]), _number(fields[b"at"]),
                         Notification.from_json(fields[b"n"]))
    except (KeyError, CorruptRecord) as exc:
        log.warning("delivered-log entry %s skipped: %s", entry_id.decode(), exc if isinstance(exc, CorruptRecord)
                    else "a field is missing")
        return None


def _text(value: bytes) -> str:
    return value.decode(errors="replace")[:500]


def _number(value: bytes | None) -> float:
    """A finite number written by this package, else 0.0."""
    try:
        x = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return x if math.isfinite(x) else 0.0
