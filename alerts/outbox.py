"""Operating the outbox: dead letters and requeueing, status, the delivered log, a test notification.

These are the functions behind ``ea alerts dead|retry|status|tail|test``; the delivery itself is
:mod:`alerts.delivery`, the records they read and write :mod:`alerts._outbox_records`'.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

from vectorstore import Settings, connect, get_settings

from . import _outbox_records as records
from ._outbox_records import GROUP, DeadLetter, Delivered, OutboxKeys
from .exceptions import CorruptRecord, DeadLetterNotFound
from .notification import Incident, Notification

log = logging.getLogger(__name__)

__all__ = ["dead_letters", "outbox_status", "requeue", "send_test", "tail"]


def _ctx(settings: Settings | None, client: redis.Redis | None) -> tuple[OutboxKeys, redis.Redis]:
    settings = settings or get_settings()
    return OutboxKeys(settings.key_prefix), client or connect(settings)


def dead_letters(count: int = 100, *, settings: Settings | None = None,
                 client: redis.Redis | None = None) -> list[DeadLetter]:
    """The oldest ``count`` dead letters, oldest first."""
    keys, client = _ctx(settings, client)
    return [records.read_dead(i, f) for i, f in client.xrange(keys.dead, count=count)]


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
        letter = records.read_dead(entry_id, fields)
        pipe = client.pipeline(transaction=True)
        only = None
        if letter.notification is not None and letter.hook != "*":
            # Forget the failure, so the hook gets a fresh set of attempts.
            records.forget_failures(pipe, keys, letter.notification.id, letter.hook)
            only = [letter.hook]
        records.append(pipe, keys, letter.raw, only)
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
    pipe = client.pipeline(transaction=False)
    records.append(pipe, keys, note.to_json())
    pipe.execute()
    return note


def outbox_status(*, settings: Settings | None = None, client: redis.Redis | None = None) -> dict[str, Any]:
    """Counts for monitoring: ``undelivered`` (entries in the outbox), ``oldest_age_s`` (seconds since the
    oldest of them was appended), ``pending`` (read, not yet acknowledged), ``retrying`` (scheduled retries),
    ``dead``, ``consumers`` (name -> pending, idle ms), ``outcomes`` (deliveries ``delivered``, ``retried``
    and ``dead`` since the deployment began)."""
    keys, client = _ctx(settings, client)
    status: dict[str, Any] = {"undelivered": client.xlen(keys.outbox),
                              "oldest_age_s": round(records.oldest_age(client, keys, time.time()), 3), "pending": 0,
                              "retrying": client.zcard(keys.retry), "dead": client.xlen(keys.dead),
                              "consumers": {}, "outcomes": records.read_counters(client, keys)}
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


def _delivered(entry_id: bytes, fields: dict[bytes, bytes]) -> Delivered | None:
    """A delivered-log entry, or None (with a warning) when it holds garbage."""
    try:
        return records.read_delivered(entry_id, fields)
    except CorruptRecord as exc:
        log.warning("delivered-log entry %s skipped: %s", entry_id.decode(), exc)
        return None
