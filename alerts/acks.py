"""Acknowledgements: an on-call engineer has seen an open incident; its repeats stop until it resolves.

An acknowledged incident's re-alerts (``firing`` notifications of an incident already open) are not sent to
the hooks; its resolution is. When it resolves, the acknowledgement leaves this record and is kept in the
incident's history entry.

This module owns the record ``{alerts}:acks`` (HASH: incident id -> JSON ``{"by", "comment", "at"}``, ``at``
in epoch seconds), written by :func:`write_ack` (:func:`alerts.acknowledge`) and removed in the
transaction that resolves the incident (:mod:`alerts.incidents`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from ._records import is_number, parse_json
from .exceptions import CorruptRecord, InvalidAlertSetting

__all__ = ["ack_key", "queue_forget", "read_acks", "write_ack"]

log = logging.getLogger(__name__)


def ack_key(prefix: str) -> str:
    """The Redis key of the acknowledgements under ``prefix``."""
    return f"{prefix}{{alerts}}:acks"


def write_ack(client: Any, prefix: str, incident_id: str, by: str, comment: str) -> dict[str, Any]:
    """Record an acknowledgement (the caller checked that the incident is open); returns it.

    Raises:
        InvalidAlertSetting: no ``by``.
    """
    if not str(by or "").strip():
        raise InvalidAlertSetting("an acknowledgement needs who made it (by)")
    record = {"by": str(by).strip(), "comment": str(comment or ""), "at": time.time()}
    client.hset(ack_key(prefix), incident_id, json.dumps(record))
    return record


def read_acks(ids: Iterable[str], values: Iterable[bytes | None]) -> dict[str, dict[str, Any]]:
    """The acknowledgements of ``ids`` (HMGET ``values`` in the same order); garbage is left out, with a
    warning."""
    found = {}
    for iid, raw in zip(ids, values):
        if raw is None:
            continue
        try:
            data = parse_json(raw, "acknowledgement")
            if not isinstance(data, dict) or not isinstance(data.get("by"), str) or not is_number(data.get("at")):
                raise CorruptRecord("acknowledgement: field 'by' or 'at' is missing or of the wrong type")
            found[iid] = data
        except CorruptRecord as exc:
            log.warning("acknowledgement of %s skipped: %s", iid[:64], exc)
    return found


def queue_forget(pipe: Any, prefix: str, incident_id: str) -> None:
    """Queue the removal of an incident's acknowledgement (it resolved)."""
    pipe.hdel(ack_key(prefix), incident_id)
