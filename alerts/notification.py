"""Incidents and their notifications, and the notification's JSON: what the outbox carries and hooks receive.

This module owns that format (``"version": "ea.alert/1"``): it writes it (:meth:`Notification.to_json`, also
the ``native`` webhook body) and reads it back (:meth:`Notification.from_json`). Anyone with write access to
Redis can leave garbage where a notification is expected; reading raises :class:`CorruptRecord` naming the
field, never its content, so that a reader can skip or dead-letter the record and go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._records import is_number, parse_json
from .exceptions import CorruptRecord

__all__ = ["Incident", "Notification"]

_VERSION = "ea.alert/1"
_INCIDENT_TEXT = ("id", "fingerprint", "kind", "key")
_INCIDENT_TIMES = ("start", "peak_at")
_INCIDENT_NUMBERS = ("peak_score", "threshold")
_INCIDENT_OPTIONAL_TEXT = ("end", "model", "model_version")


@dataclass(frozen=True)
class Incident:
    """One anomaly incident of a detector's series (or a model's entity).

    ``id`` and ``fingerprint`` are stable hashes of (kind, model, key, labels, start): the same incident gets
    the same id however often its batch is replayed, and two detectors scoring one series id have incidents
    of their own. ``start``/``end``/``peak_at`` are ISO 8601 UTC strings (``end`` is ``None`` while firing;
    ``start`` and ``peak_at`` are ``None`` only for a series without timestamps, decided in memory).
    ``alerts`` counts its alerts (more than one when it re-alerted while open).
    """

    id: str
    fingerprint: str
    kind: str
    key: str
    start: str | None
    end: str | None
    peak_score: float
    peak_at: str | None
    threshold: float
    model: str | None = None
    model_version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    evidence: list[Any] = field(default_factory=list)
    group_key: str = ""
    alerts: int = 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        """The incident of a dict of its fields (unknown fields are left out; unchecked: see
        :func:`check_incident`)."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Notification:
    """A state change of an incident (``firing``: it opened or re-alerted; ``resolved``): what hooks receive.

    ``idempotency_key`` is derived from the incident id, the state and the alert's number, so it is the same
    on every retry and redelivery; receivers deduplicate on it. ``created_at`` is the wall-clock time (epoch
    seconds) the state change was recorded.
    """

    id: str
    state: str
    incident: Incident
    created_at: float

    @classmethod
    def of_change(cls, state: str, incident: Incident, created_at: float) -> Notification:
        """The notification of a state change decided by :class:`~alerts.machine.IncidentMachine`: its id
        is ``<incident>:<state>``, and ``<incident>:firing:<n>`` for the n-th alert of an open incident."""
        suffix = f":{incident.alerts}" if state == "firing" and incident.alerts > 1 else ""
        return cls(f"{incident.id}:{state}{suffix}", state, incident, created_at)

    @property
    def idempotency_key(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (the ``native`` webhook body)."""
        return {
            "version": _VERSION,
            "id": self.id,
            "state": self.state,
            "idempotency_key": self.idempotency_key,
            "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat().replace("+00:00", "Z"),
            "created_at_ts": self.created_at,
            "incident": asdict(self.incident),
        }

    def to_json(self) -> str:
        """The JSON text of :meth:`to_dict` (what the outbox carries)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """The notification of :meth:`to_dict` output.

        Raises:
            CorruptRecord: a field is missing or of the wrong type (the message names it).
        """
        _check_notification(data)
        return cls(data["id"], data["state"], Incident.from_dict(data["incident"]), float(data["created_at_ts"]))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Notification:
        """The notification of :meth:`to_json` output.

        Raises:
            CorruptRecord: not JSON, or a field is missing or of the wrong type.
        """
        return cls.from_dict(parse_json(raw, "notification"))


def _check_notification(data: Any) -> None:
    """Raise CorruptRecord unless ``data`` has the fields and types of :meth:`Notification.to_dict`."""
    if not isinstance(data, Mapping):
        raise CorruptRecord("notification is not a JSON object")
    for name in ("id", "state"):
        if not isinstance(data.get(name), str):
            raise CorruptRecord(f"notification field {name!r} is missing or not text")
    if data["state"] not in ("firing", "resolved"):
        raise CorruptRecord("notification field 'state' is neither 'firing' nor 'resolved'")
    if not is_number(data.get("created_at_ts")):
        raise CorruptRecord("notification field 'created_at_ts' is missing or not a finite number")
    check_incident(data.get("incident"), "notification field 'incident'")


def check_incident(inc: Any, what: str = "incident", *, times_known: bool = True) -> dict[str, Any]:
    """``inc`` if it has the fields and types of an :class:`Incident` (as a dict), else CorruptRecord naming
    ``what`` and the field (``times_known=False``: its start and peak may be unknown, ``null``)."""
    if not isinstance(inc, dict):
        raise CorruptRecord(f"{what} is missing or not a JSON object")
    for name in _INCIDENT_TEXT + _INCIDENT_TIMES:
        if not isinstance(inc.get(name), str) and not (name in _INCIDENT_TIMES and not times_known
                                                         and inc.get(name, "") is None):
            raise CorruptRecord(f"{what}: field {name!r} is missing or not text")
    for name in _INCIDENT_NUMBERS:
        if not is_number(inc.get(name)):
            raise CorruptRecord(f"{what}: field {name!r} is missing or not a finite number")
    for name in _INCIDENT_OPTIONAL_TEXT:
        if inc.get(name) is not None and not isinstance(inc[name], str):
            raise CorruptRecord(f"{what}: field {name!r} is not text")
    labels = inc.get("labels", {})
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise CorruptRecord(f"{what}: field 'labels' is not an object of texts")
    if not isinstance(inc.get("evidence", []), list) or not isinstance(inc.get("group_key", ""), str):
        raise CorruptRecord(f"{what}: field 'evidence' or 'group_key' is of the wrong type")
    if type(inc.get("alerts", 1)) is not int or inc.get("alerts", 1) < 1:
        raise CorruptRecord(f"{what}: field 'alerts' is not a positive integer")
    return inc
