"""The state of one key of the incident machine between two batches, and its record in Redis.

This module is that record's one owner: :func:`state_key` names it, :func:`encode_state` and
:func:`decode_state` write and read it (JSON, ``"format": 2``). ``{alerts}:state:{kind}:{key}`` is the
former state key (one machine per series id, whatever the detector; its JSON had no ``format``):
:func:`decode_former_state` reads what can be kept of one, an open incident.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from ._records import is_number, parse_json
from .exceptions import CorruptRecord, InvalidAlertSetting
from .notification import Incident, check_incident

__all__ = ["KeyState", "decode_former_state", "decode_state", "encode_state", "former_state_key", "state_key"]

log = logging.getLogger("alerts.incidents")

#: The state of a key with no open incident expires after this many seconds without a batch.
STATE_TTL = 30 * 24 * 3600
_FORMAT = 2


@dataclass
class KeyState:
    """The state of one key between two batches (:mod:`alerts.machine` says what each part is for).

    Attributes:
        points: points seen.
        last: the last point's row number (or time, without rows): what a replay is recognised by.
        warm_from: the first point that may open an incident.
        last_alert: the point of the last alert.
        calm: per source, points in a row below the threshold since it was disarmed (``None``: armed, never
            disarmed).
        hot: per source, points in a row hot while armed.
        run: ``[start, peak, peak_at]`` of the current run of hot points.
        open: the open incident.
        clear_from: time of the first point after the open incident's last hot one.

    Times are epoch seconds, ``None`` when unknown (a series without timestamps, decided in memory).
    """

    points: int = 0
    last: float | None = None
    warm_from: int = 0
    last_alert: int | None = None
    calm: list[int | None] = field(default_factory=list)
    hot: list[int] = field(default_factory=list)
    run: list[Any] | None = None
    open: Incident | None = None
    clear_from: float | None = None



# --- the state record --------------------------------------------------------------------------------------


def state_key(prefix: str, kind: str, model: str, key: str) -> str:
    """The Redis key of the state of ``key`` scored by ``model`` (a model name has no ``:``, so the key
    reads one way).

    Raises:
        InvalidAlertSetting: ``model`` is empty or holds a ``:``.
    """
    if not model or ":" in model:
        raise InvalidAlertSetting(f"model {model!r} must be a non-empty name without ':'")
    return f"{prefix}{{alerts}}:state:{kind}:{model}:{key}"


def former_state_key(prefix: str, kind: str, key: str) -> str:
    """Where the state of ``key`` was kept before incidents were keyed by detector and series."""
    return f"{prefix}{{alerts}}:state:{kind}:{key}"


def encode_state(state: KeyState) -> tuple[str, int | None]:
    """``(record, ttl)``: the JSON of a key's state, and its expiry in seconds (a quiet key's state expires:
    entities come and go; an open incident's never does)."""
    return (json.dumps({**asdict(state), "format": _FORMAT}, separators=(",", ":")),
            None if state.open else STATE_TTL)


def decode_state(raw: bytes | None, where: str) -> KeyState | None:
    """The state :func:`encode_state` wrote (``None``: none). A corrupt one is logged and the key starts
    afresh (its incidents' counting is lost, not the scores: refusing it would fail every later batch)."""
    if not raw:
        return None
    try:
        return _checked(parse_json(raw, f"incident state {where}"), where)
    except CorruptRecord as exc:
        log.error("%s: the key's incidents start afresh", exc)
        return None


def decode_former_state(raw: bytes, model: str) -> tuple[bool, KeyState | None]:
    """What to do with a state under the former key, found by ``model``'s first batch: ``(take, state)``.
    Its open incident is taken when it is ``model``'s (a state holding it, already past any warm-up); a
    state without one (or garbage) is taken with nothing kept (its counters meant another machine); another
    detector's open incident is not taken (``False``)."""
    try:
        former = parse_json(raw, "former incident state")
        inc = former.get("open") if isinstance(former, dict) else None
        if inc is None:
            return True, None
        if inc.get("model") not in (None, model):
            return False, None
        return True, KeyState(open=Incident.from_dict(check_incident(inc)))
    except (CorruptRecord, AttributeError):
        return True, None


def _checked(data: Any, where: str) -> KeyState:
    """The state of a decoded record, or CorruptRecord naming ``where`` and the field."""
    def bad(name: str, what: str) -> CorruptRecord:
        return CorruptRecord(f"incident state {where}: field {name!r} is not {what}")

    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise CorruptRecord(f"incident state {where}: not a JSON object of format {_FORMAT}")
    counts = {name: data.get(name) for name in ("points", "warm_from")}
    if any(type(v) is not int or v < 0 for v in counts.values()):
        raise bad("points' or 'warm_from", "a count")
    last_alert = data.get("last_alert")
    if last_alert is not None and (type(last_alert) is not int or last_alert < 0):
        raise bad("last_alert", "a count")
    times = {name: data.get(name) for name in ("last", "clear_from")}
    if any(v is not None and not is_number(v) for v in times.values()):
        raise bad("last' or 'clear_from", "a finite number or null")
    calm, hot, run = data.get("calm"), data.get("hot"), data.get("run")
    if not isinstance(calm, list) or not all(c is None or (type(c) is int and c >= 0) for c in calm):
        raise bad("calm", "a list of counts")
    if not isinstance(hot, list) or len(hot) != len(calm) or not all(type(c) is int and c >= 0 for c in hot):
        raise bad("hot", "a list of counts, one per source")
    if run is not None and not (isinstance(run, list) and len(run) == 3 and is_number(run[1])
                                and all(v is None or is_number(v) for v in (run[0], run[2]))):
        raise bad("run", "a run of numbers")
    opened = data.get("open")
    incident = None if opened is None else \
        Incident.from_dict(check_incident(opened, f"incident state {where}: field 'open'", times_known=False))
    return KeyState(counts["points"], times["last"], counts["warm_from"], last_alert, calm, hot, run, incident,
                    times["clear_from"])
