"""What the on-call engineer looks at: the incidents firing now, those of a time range, one incident whole.

::

    import alerts

    for view in alerts.incidents():                         # firing now, oldest first
        print(view.incident.model, view.incident.key, view.since, view.incident.peak_score, view.silenced_by)
    alerts.incidents(all=True, since="2026-12-01")           # firing and resolved, started in a range
    view = alerts.incident("inc_...")                         # one, with its evidence
    alerts.acknowledge("inc_...", by="ana")                   # its repeats stop until it resolves

These are the functions behind ``ea alerts incidents``, ``ea alerts show`` and ``ea alerts ack``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from vectorstore import Settings, connect, get_settings

from . import _history as history
from ._records import to_epoch
from .acks import ack_key, read_acks, write_ack
from .exceptions import IncidentNotFound, InvalidAlertSetting
from .incidents import open_incidents
from .notification import Incident
from .silences import read_silences, silence_key, silencing

__all__ = ["IncidentView", "acknowledge", "incident", "incidents"]


@dataclass(frozen=True)
class IncidentView:
    """An incident as the on-call sees it.

    Attributes:
        incident: the incident (its latest version: peak, alerts, evidence, end once resolved).
        state: ``firing`` or ``resolved``.
        silenced_by: firing: the active silence that matches it now; resolved: the one that muted its last
            notification (``None``: not silenced).
        acknowledged: ``{"by", "comment", "at"}`` when acknowledged (while open, or when it resolved).
        notified: whether any of its notifications went to the hooks.
    """

    incident: Incident
    state: str
    silenced_by: str | None = None
    acknowledged: dict[str, Any] | None = None
    notified: bool = True

    @property
    def since(self) -> str | None:
        """When it started (ISO 8601 UTC)."""
        return self.incident.start

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ea alerts incidents --json``)."""
        inc = self.incident
        return {"id": inc.id, "state": self.state, "detector": inc.model, "series": inc.key, "kind": inc.kind,
                "since": inc.start, "end": inc.end, "peak_score": inc.peak_score, "peak_at": inc.peak_at,
                "threshold": inc.threshold, "alerts": inc.alerts, "labels": inc.labels,
                "silenced_by": self.silenced_by, "acknowledged": self.acknowledged, "notified": self.notified,
                "model_version": inc.model_version}


def incidents(*, all: bool = False, since: Any = None, until: Any = None, detector: str | None = None,
              series: str | None = None, limit: int = 500, settings: Settings | None = None,
              client: redis.Redis | None = None) -> list[IncidentView]:
    """The incidents firing now (oldest first); with ``all``, firing and resolved ones that started in
    ``[since, until]`` (newest first, at most ``limit``).

    Args:
        since, until: datetimes, ISO 8601 text or epoch seconds (``None``: open-ended).
        detector, series: keep only the incidents of this detector / series.

    Raises:
        InvalidAlertSetting: a time that cannot be read, or ``limit`` below 1.
    """
    if limit < 1:
        raise InvalidAlertSetting(f"limit={limit} must be at least 1")
    settings = settings or get_settings()
    client = client or connect(settings)
    prefix = settings.key_prefix
    if all:
        ids = history.ids_between(client, prefix, to_epoch(since), to_epoch(until), limit)
        entries = history.fetch(client, prefix, ids)
        views = [_view(client, prefix, entries[i]) for i in ids if i in entries]
    else:
        opened = open_incidents(settings=settings, client=client)
        entries = history.fetch(client, prefix, [i.id for i in opened])
        views = [_view(client, prefix, entries[i.id]) if i.id in entries else IncidentView(i, "firing")
                 for i in opened]
    views = [v for v in views if (detector is None or v.incident.model == detector)
             and (series is None or v.incident.key == series)]
    return _current(client, prefix, views)


def incident(incident_id: str, *, settings: Settings | None = None,
             client: redis.Redis | None = None) -> IncidentView:
    """One incident, firing or resolved, with its evidence.

    Raises:
        IncidentNotFound: no incident of that id in the history (nor open).
    """
    settings = settings or get_settings()
    client = client or connect(settings)
    found = history.fetch(client, settings.key_prefix, [incident_id])
    if incident_id in found:
        return _current(client, settings.key_prefix, [_view(client, settings.key_prefix, found[incident_id])])[0]
    for inc in open_incidents(settings=settings, client=client):
        if inc.id == incident_id:
            return _current(client, settings.key_prefix, [IncidentView(inc, "firing")])[0]
    raise IncidentNotFound(f"no incident {incident_id!r} (ea alerts incidents --all lists them)")


def acknowledge(incident_id: str, *, by: str, comment: str = "", settings: Settings | None = None,
                client: redis.Redis | None = None) -> dict[str, Any]:
    """Acknowledge an open incident: its repeats are not notified until it resolves (its resolution is).
    Returns the acknowledgement (``{"by", "comment", "at"}``).

    Raises:
        InvalidAlertSetting: no ``by``.
        IncidentNotFound: the incident is not open (resolved, or no such id).
    """
    settings = settings or get_settings()
    client = client or connect(settings)
    if not any(i.id == incident_id for i in open_incidents(settings=settings, client=client)):
        raise IncidentNotFound(f"incident {incident_id!r} is not open (ea alerts incidents lists those that are)")
    return write_ack(client, settings.key_prefix, incident_id, by, comment)


def _view(client: redis.Redis, prefix: str, entry: history.HistoryEntry) -> IncidentView:
    return IncidentView(entry.incident, entry.state, entry.silenced_by, entry.acknowledged, entry.notified)


def _current(client: redis.Redis, prefix: str, views: list[IncidentView]) -> list[IncidentView]:
    """Firing incidents with the silence that matches them now and their acknowledgement."""
    firing = [v.incident.id for v in views if v.state == "firing"]
    if not firing:
        return views
    found = read_silences(client.hgetall(silence_key(prefix)))
    acked = read_acks(firing, client.hmget(ack_key(prefix), firing))
    now = time.time()
    return [IncidentView(v.incident, v.state, silencing(found, v.incident, now), acked.get(v.incident.id),
                         v.notified) if v.state == "firing" else v for v in views]
