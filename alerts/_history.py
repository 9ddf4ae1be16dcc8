"""The incident history: every incident of the last days, firing or resolved, and what was done about it.

This module is that record's one owner (its keys, how an entry is written and read back):

=================================  ======  ===============================================================
``{alerts}:incidents``             HASH    incident id -> JSON ``{"format": 1, "latest": <its latest
                                           notification, ea.alert/1>, "notified": whether any of its
                                           notifications went to the hooks, "silenced_by": the silence that
                                           muted its latest notification (or null), "acknowledged": the
                                           acknowledgement it resolved with (or null)}``
``{alerts}:incidents:by_start``    ZSET    incident id -> its start (epoch seconds; the time it was
                                           recorded when its series has no timestamps)
=================================  ======  ===============================================================

Entries are written in the incident session's transaction (:mod:`alerts.incidents`), so the history never
disagrees with the open incidents. At most :data:`MAX_INCIDENTS` are kept (the oldest by start leave first).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._records import parse_json
from .exceptions import CorruptRecord
from .notification import Incident, Notification

__all__ = ["HistoryEntry", "MAX_INCIDENTS", "history_keys", "queue_entry", "read_entries", "trim"]

log = logging.getLogger(__name__)

#: Incidents kept in the history at most (the oldest by start are dropped past it): an incident carries its
#: evidence (a few windows of values, up to about 10 kB), so about 100 MB at most.
MAX_INCIDENTS = 10_000
_FORMAT = 1


@dataclass(frozen=True)
class HistoryEntry:
    """One incident as the history holds it.

    Attributes:
        notification: its latest notification (``state`` ``firing`` or ``resolved``; the incident inside).
        notified: whether any of its notifications went to the hooks (``False``: silenced all along).
        silenced_by: the id of the silence that muted its latest notification, or ``None``.
        acknowledged: the acknowledgement it had when it resolved (``{"by", "comment", "at"}``), or ``None``.
    """

    notification: Notification
    notified: bool
    silenced_by: str | None = None
    acknowledged: dict[str, Any] | None = None

    @property
    def incident(self) -> Incident:
        return self.notification.incident

    @property
    def state(self) -> str:
        """``firing`` or ``resolved``."""
        return self.notification.state


def history_keys(prefix: str) -> tuple[str, str]:
    """``(entries, by_start)``: the two keys of the history under ``prefix``."""
    return f"{prefix}{{alerts}}:incidents", f"{prefix}{{alerts}}:incidents:by_start"


def queue_entry(pipe: Any, prefix: str, entry: HistoryEntry) -> None:
    """Queue the write of one incident's entry (replacing the one before) on ``pipe``."""
    entries, by_start = history_keys(prefix)
    record = {"format": _FORMAT, "latest": entry.notification.to_dict(), "notified": entry.notified,
              "silenced_by": entry.silenced_by, "acknowledged": entry.acknowledged}
    pipe.hset(entries, entry.incident.id, json.dumps(record, separators=(",", ":"), default=str))
    pipe.zadd(by_start, {entry.incident.id: _start(entry.notification)})


def read_entries(raw: Mapping[Any, bytes | None]) -> dict[str, HistoryEntry]:
    """The entries of ``{id: value}`` as read from the history hash, leaving out (with a warning) those that
    hold garbage and the ids without a value."""
    found = {}
    for iid, value in raw.items():
        name = iid.decode(errors="replace") if isinstance(iid, bytes) else str(iid)
        if value is None:
            continue
        try:
            found[name] = _decode(value)
        except CorruptRecord as exc:
            log.warning("incident %s of the history skipped: %s", name[:64], exc)
    return found


def fetch(client: Any, prefix: str, ids: Iterable[str]) -> dict[str, HistoryEntry]:
    """The entries of ``ids`` (those the history holds)."""
    ids = list(ids)
    if not ids:
        return {}
    entries, _ = history_keys(prefix)
    return read_entries(dict(zip(ids, client.hmget(entries, ids))))


def ids_between(client: Any, prefix: str, since: float | None, until: float | None, limit: int) -> list[str]:
    """Ids of the incidents that started in ``[since, until]`` (epoch seconds, open ends), newest first, at
    most ``limit``."""
    _, by_start = history_keys(prefix)
    hi = "+inf" if until is None else repr(float(until))
    lo = "-inf" if since is None else repr(float(since))
    return [i.decode() for i in client.zrevrangebyscore(by_start, hi, lo, start=0, num=limit)]


def trim(client: Any, prefix: str, keep: int = MAX_INCIDENTS) -> int:
    """Drop the oldest entries past ``keep``; returns how many were dropped."""
    entries, by_start = history_keys(prefix)
    extra = client.zcard(by_start) - keep
    if extra <= 0:
        return 0
    old = client.zrange(by_start, 0, extra - 1)
    if old:
        with client.pipeline(transaction=True) as pipe:
            pipe.hdel(entries, *old)
            pipe.zrem(by_start, *old)
            pipe.execute()
    return len(old)


def _start(note: Notification) -> float:
    """The score of an incident in the start index: its start, else the time its notification was made."""
    start = note.incident.start
    if start:
        try:
            return datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return note.created_at or time.time()


def _decode(raw: bytes | str) -> HistoryEntry:
    data = parse_json(raw, "incident history entry")
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise CorruptRecord(f"incident history entry is not a JSON object of format {_FORMAT}")
    note = Notification.from_dict(data.get("latest") or {})
    silenced, acked = data.get("silenced_by"), data.get("acknowledged")
    if not isinstance(data.get("notified"), bool) or not (silenced is None or isinstance(silenced, str)) \
            or not (acked is None or isinstance(acked, dict)):
        raise CorruptRecord("incident history entry: field 'notified', 'silenced_by' or 'acknowledged' is of the "
                            "wrong type")
    return HistoryEntry(note, data["notified"], silenced, acked)
