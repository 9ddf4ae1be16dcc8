"""Checks of the records this package reads back from Redis (notifications, incident states, hook specs).

Anyone with write access to Redis can leave garbage in them. Each check raises :class:`CorruptRecord` naming
the field, never its content, so that a reader can skip or dead-letter the record and go on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from .exceptions import CorruptRecord

_INCIDENT_TEXT = ("id", "fingerprint", "kind", "key", "start", "peak_at")
_INCIDENT_NUMBERS = ("peak_score", "threshold")
_INCIDENT_OPTIONAL_TEXT = ("end", "model", "model_version")


def parse_json(raw: Any, what: str) -> Any:
    """``json.loads(raw)``, or CorruptRecord naming ``what`` (bytes that are not UTF-8 alike)."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptRecord(f"{what} is not JSON") from None


def check_notification(data: Any) -> None:
    """Raise CorruptRecord unless ``data`` has the fields and types of :meth:`Notification.to_dict`."""
    if not isinstance(data, Mapping):
        raise CorruptRecord("notification is not a JSON object")
    for name in ("id", "state"):
        if not isinstance(data.get(name), str):
            raise CorruptRecord(f"notification field {name!r} is missing or not text")
    if data["state"] not in ("firing", "resolved"):
        raise CorruptRecord("notification field 'state' is neither 'firing' nor 'resolved'")
    if not _is_number(data.get("created_at_ts")):
        raise CorruptRecord("notification field 'created_at_ts' is missing or not a finite number")
    check_incident(data.get("incident"), "notification field 'incident'")


def check_incident(inc: Any, what: str = "incident") -> None:
    """Raise CorruptRecord unless ``inc`` has the fields and types of an incident."""
    if not isinstance(inc, Mapping):
        raise CorruptRecord(f"{what} is missing or not a JSON object")
    for name in _INCIDENT_TEXT:
        if not isinstance(inc.get(name), str):
            raise CorruptRecord(f"{what}: field {name!r} is missing or not text")
    for name in _INCIDENT_NUMBERS:
        if not _is_number(inc.get(name)):
            raise CorruptRecord(f"{what}: field {name!r} is missing or not a finite number")
    for name in _INCIDENT_OPTIONAL_TEXT:
        if inc.get(name) is not None and not isinstance(inc[name], str):
            raise CorruptRecord(f"{what}: field {name!r} is not text")
    labels = inc.get("labels", {})
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise CorruptRecord(f"{what}: field 'labels' is not an object of texts")
    if not isinstance(inc.get("evidence", []), list) or not isinstance(inc.get("group_key", ""), str):
        raise CorruptRecord(f"{what}: field 'evidence' or 'group_key' is of the wrong type")


def check_state(state: Any, key: str) -> dict[str, Any]:
    """``state`` if it is an incident state as :func:`alerts.incidents.observe` writes it, else CorruptRecord
    naming ``key`` and the field."""
    if not isinstance(state, dict):
        raise CorruptRecord(f"incident state {key}: not a JSON object")
    for name in ("last", "cool_until", "clear_from"):
        if state.get(name) is not None and not _is_number(state[name]):
            raise CorruptRecord(f"incident state {key}: field {name!r} is not a finite number")
    for name in ("bad", "good"):
        if type(state.get(name, 0)) is not int:
            raise CorruptRecord(f"incident state {key}: field {name!r} is not an integer")
    run = state.get("run")
    if run is not None and not (isinstance(run, dict) and all(_is_number(run.get(f))
                                                              for f in ("start", "peak", "peak_at"))):
        raise CorruptRecord(f"incident state {key}: field 'run' is not a run of numbers")
    if state.get("open") is not None:
        check_incident(state["open"], f"incident state {key}: field 'open'")
    return state


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
