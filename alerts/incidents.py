"""Incidents: threshold crossings turned into one notification per state change.

The detector calls :func:`observe` with each scored batch of a series (or an entity). Per key, a small
state machine kept in Redis applies hysteresis:

* an incident **opens** (``firing``) after ``for_points`` consecutive points above the threshold, and
  starts at the first of them;
* it **resolves** after ``clear_points`` consecutive points at or below the threshold, and ends at the
  first of them; dips shorter than that do not resolve it;
* after a resolution the key is in **cooldown** for ``cooldown`` seconds of series time: an anomalous
  run does not open a new incident before then (it opens at the first point after the cooldown if the
  run is still long enough), so a flapping score yields one incident, not a storm.

Points at or before the last point already seen for the key are ignored, so a redelivered scoring batch
changes nothing. The state update and the notifications' append to the outbox stream happen in one
MULTI/EXEC under WATCH: several scoring workers can call :func:`observe` at once, and a notification is
written if and only if its state change is.

Timestamps may be datetimes (naive ones are taken as UTC), numpy datetime64, ISO 8601 strings or numbers
(epoch seconds). Non-finite scores are skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import redis

from vectorstore import Settings, connect, get_settings

from ._records import check_notification, check_state, parse_json
from .exceptions import CorruptRecord, InvalidAlertSetting
from .keys import AlertKeys
from .settings import AlertSettings, get_alert_settings

log = logging.getLogger(__name__)

__all__ = ["Incident", "IncidentPolicy", "Notification", "forget", "observe", "open_incidents"]

Kind = Literal["series", "entity"]
State = Literal["firing", "resolved"]

#: At most this many evidence items are kept with an incident (they travel in every notification).
MAX_EVIDENCE = 20
#: The state of a key with no open incident expires after this many seconds without a batch.
STATE_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class IncidentPolicy:
    """How scores become incidents.

    Attributes:
        for_points: consecutive anomalous points (score > threshold) that open an incident.
        clear_points: consecutive normal points that resolve it.
        cooldown: seconds of series time after a resolution during which no incident opens on that key.
        group_by: label names; incidents agreeing on these labels share a ``group_key`` (Alertmanager's
            ``groupKey``), so a receiver can fold concurrent incidents into one page.
    """

    for_points: int = 3
    clear_points: int = 5
    cooldown: float = 300.0
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.for_points < 1 or self.clear_points < 1:
            raise InvalidAlertSetting("for_points and clear_points must be >= 1")
        if not self.cooldown >= 0:
            raise InvalidAlertSetting(f"cooldown={self.cooldown} must be >= 0")

    @classmethod
    def from_settings(cls, settings: AlertSettings | None = None) -> IncidentPolicy:
        """The policy of the ``EA_ALERT_FOR_POINTS/_CLEAR_POINTS/_COOLDOWN/_GROUP_BY`` settings."""
        settings = settings or get_alert_settings()
        return cls(settings.for_points, settings.clear_points, settings.cooldown, tuple(settings.group_by))


@dataclass(frozen=True)
class Incident:
    """One anomaly incident of a series or an entity.

    ``id`` and ``fingerprint`` are stable hashes of (kind, key, labels, start): the same incident gets the
    same id however often its batch is replayed. ``start``/``end``/``peak_at`` are ISO 8601 UTC strings
    (``end`` is ``None`` while firing).
    """

    id: str
    fingerprint: str
    kind: str
    key: str
    start: str
    end: str | None
    peak_score: float
    peak_at: str
    threshold: float
    model: str | None = None
    model_version: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    evidence: list[Any] = field(default_factory=list)
    group_key: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Notification:
    """A state change of an incident (``firing`` or ``resolved``): what hooks receive.

    ``idempotency_key`` is derived from the incident id and the state, so it is the same on every retry
    and redelivery; receivers deduplicate on it. ``created_at`` is the wall-clock time (epoch seconds) the
    state change was recorded.
    """

    id: str
    state: str
    incident: Incident
    created_at: float

    @property
    def idempotency_key(self) -> str:
        return self.id

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (the ``native`` webhook body)."""
        return {
            "version": "ea.alert/1",
            "id": self.id,
            "state": self.state,
            "idempotency_key": self.idempotency_key,
            "created_at": _iso(self.created_at),
            "created_at_ts": self.created_at,
            "incident": asdict(self.incident),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """The notification of :meth:`to_dict` output.

        Raises:
            CorruptRecord: a field is missing or of the wrong type (the message names it).
        """
        check_notification(data)
        return cls(data["id"], data["state"], Incident.from_dict(data["incident"]), float(data["created_at_ts"]))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Notification:
        """The notification of :meth:`to_json` output.

        Raises:
            CorruptRecord: not JSON, or a field is missing or of the wrong type.
        """
        return cls.from_dict(parse_json(raw, "notification"))


def observe(
    key: str,
    timestamps: Iterable[Any],
    scores: Iterable[float],
    threshold: float,
    *,
    kind: Kind = "series",
    model: str | None = None,
    model_version: str | None = None,
    labels: Mapping[str, Any] | None = None,
    evidence: list[Any] | None = None,
    policy: IncidentPolicy | None = None,
    settings: Settings | None = None,
    client: redis.Redis | None = None,
) -> list[Notification]:
    """Feed one scored batch of ``key``; returns the notifications it caused (usually none).

    Args:
        key: the series id (``kind="series"``) or entity id (``kind="entity"``).
        timestamps, scores: the batch, same length, any order (sorted here).
        threshold: the detector's calibrated threshold; a point is anomalous when its score exceeds it.
        model, model_version: recorded on the incident.
        labels: extra labels (e.g. ``{"service": "checkout"}``); values are turned into strings.
        evidence: JSON-serialisable context for the on-call (nearest normal windows, peers), kept with
            the incident when it opens and when its peak rises (at most ``MAX_EVIDENCE`` items).
        policy: hysteresis, cooldown and grouping; by default from the ``EA_ALERT_*`` settings.
        settings, client: the service's settings and a Redis client (pass one when calling often: without
            it each call opens a new connection).

    Returns:
        The notifications appended to the outbox, in order.

    Raises:
        InvalidAlertSetting: lengths differ, a timestamp cannot be read, the threshold is not finite,
            or ``kind`` is unknown.
    """
    if kind not in ("series", "entity"):
        raise InvalidAlertSetting(f"kind={kind!r} must be 'series' or 'entity'")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise InvalidAlertSetting(f"threshold={threshold} must be finite")
    ts = [_epoch(t) for t in timestamps]
    sc = [float(s) for s in scores]
    if len(ts) != len(sc):
        raise InvalidAlertSetting(f"{len(ts)} timestamps but {len(sc)} scores")
    points = sorted(zip(ts, sc))
    settings = settings or get_settings()
    policy = policy or IncidentPolicy.from_settings()
    client = client or connect(settings)
    keys = AlertKeys(settings.key_prefix)
    context = {
        "kind": kind, "key": str(key), "threshold": threshold, "model": model,
        "model_version": None if model_version is None else str(model_version),
        "labels": {str(k): str(v) for k, v in (labels or {}).items()},
        "evidence": _jsonable(list(evidence or [])[:MAX_EVIDENCE]),
    }
    state_key = keys.state(kind, str(key))
    # transaction=True: a cluster client's pipeline is not a transaction by default (and has no WATCH).
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(state_key)
                raw = pipe.get(state_key)
                state = _read_state(raw, state_key)
                new_state, changes = _advance(state, points, threshold, policy, context)
                now = time.time()
                notes = [Notification(f"{inc['id']}:{st}", st, Incident.from_dict(inc), now) for st, inc in changes]
                pipe.multi()
                # A quiet key's state expires (entities come and go); an open incident's never does.
                ttl = None if new_state["open"] else STATE_TTL
                pipe.set(state_key, json.dumps(new_state, separators=(",", ":")), ex=ttl)
                for note in notes:
                    if note.state == "firing":
                        pipe.hset(keys.open, note.incident.id, note.to_json())
                    else:
                        pipe.hdel(keys.open, note.incident.id)
                    pipe.xadd(keys.outbox, {"n": note.to_json()})
                pipe.execute()
                return notes
            except redis.WatchError:
                continue  # another worker changed this key's state: recompute from the new state


def open_incidents(
    group_key: str | None = None, *, settings: Settings | None = None, client: redis.Redis | None = None
) -> list[Incident]:
    """Incidents currently firing, optionally only those of one group, oldest first."""
    settings = settings or get_settings()
    client = client or connect(settings)
    raw = client.hgetall(AlertKeys(settings.key_prefix).open)
    found = [note.incident for note in _readable(raw).values()]
    if group_key is not None:
        found = [i for i in found if i.group_key == group_key]
    return sorted(found, key=lambda i: i.start)


def forget(key: str, *, kind: Kind = "series", settings: Settings | None = None,
           client: redis.Redis | None = None) -> None:
    """Forget the incident state of one series (or entity) and its firing incidents, without notifying:
    what a replayed stream needs (points at or before the last one seen are otherwise ignored)."""
    settings = settings or get_settings()
    client = client or connect(settings)
    keys = AlertKeys(settings.key_prefix)
    firing = [iid for iid, note in _readable(client.hgetall(keys.open)).items()
              if note.incident.key == key and note.incident.kind == kind]
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.state(kind, key))
        if firing:
            pipe.hdel(keys.open, *firing)
        pipe.execute()


def _read_state(raw: bytes | None, state_key: str) -> dict[str, Any]:
    """The incident state of a key; a corrupt one is logged and started afresh (its hysteresis is lost, not
    the scores: refusing it would fail every later batch of the key)."""
    if not raw:
        return {}
    try:
        return check_state(parse_json(raw, f"incident state {state_key}"), state_key)
    except CorruptRecord as exc:
        log.error("%s: the key's incidents start afresh", exc)
        return {}


def _readable(raw: Mapping[bytes, bytes]) -> dict[bytes, Notification]:
    """The firing notifications of the open-incidents hash, leaving out (with a warning) those that hold
    garbage."""
    found = {}
    for iid, value in raw.items():
        try:
            found[iid] = Notification.from_json(value)
        except CorruptRecord as exc:
            log.warning("open incident %s skipped: %s", iid.decode(errors="replace")[:80], exc)
    return found


# --- the state machine (pure) -------------------------------------------------------------------------


def _advance(
    state: dict[str, Any], points: list[tuple[float, float]], threshold: float, policy: IncidentPolicy,
    context: dict[str, Any],
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Run ``points`` through the key's state; returns the new state and the (state, incident) changes."""
    s = {"last": None, "bad": 0, "good": 0, "run": None, "open": None, "cool_until": None, **state}
    changes: list[tuple[str, dict[str, Any]]] = []
    for t, score in points:
        if s["last"] is not None and t <= s["last"]:
            continue  # already seen: a replayed batch must not count twice
        s["last"] = t
        if not math.isfinite(score):
            continue
        anomalous = score > threshold
        inc = s["open"]
        if inc is None:
            if not anomalous:
                s["bad"], s["run"] = 0, None
                continue
            s["bad"] += 1
            run = s["run"]
            if run is None:
                s["run"] = run = {"start": t, "peak": score, "peak_at": t}
            elif score > run["peak"]:
                run.update(peak=score, peak_at=t)
            cooling = s["cool_until"] is not None and t < s["cool_until"]
            if s["bad"] >= policy.for_points and not cooling:
                s["open"] = _new_incident(run, policy, context)
                s["bad"], s["good"], s["run"] = 0, 0, None
                changes.append(("firing", dict(s["open"])))
        elif anomalous:
            s["good"] = 0
            if score > inc["peak_score"]:
                inc.update(peak_score=score, peak_at=_iso(t))
                if context["evidence"]:
                    inc["evidence"] = context["evidence"]
        else:
            s["good"] += 1
            if s["good"] == 1:
                s["clear_from"] = t
            if s["good"] >= policy.clear_points:
                changes.append(("resolved", {**inc, "end": _iso(s["clear_from"])}))
                s["open"], s["good"], s["bad"], s["run"] = None, 0, 0, None
                s["cool_until"] = t + policy.cooldown
    return s, changes


def _new_incident(run: dict[str, Any], policy: IncidentPolicy, context: dict[str, Any]) -> dict[str, Any]:
    labels = context["labels"]
    start = _iso(run["start"])
    digest = hashlib.sha256(
        json.dumps([context["kind"], context["key"], labels, start], sort_keys=True).encode()
    ).hexdigest()
    if policy.group_by:
        group_key = ",".join(f"{n}={labels.get(n, '')}" for n in policy.group_by)
    else:
        group_key = f"{context['kind']}={context['key']}"
    return {
        "id": f"inc_{digest[:20]}", "fingerprint": digest[:16], "kind": context["kind"], "key": context["key"],
        "start": start, "end": None, "peak_score": run["peak"], "peak_at": _iso(run["peak_at"]),
        "threshold": context["threshold"], "model": context["model"], "model_version": context["model_version"],
        "labels": labels, "evidence": context["evidence"], "group_key": group_key,
    }


# --- time and JSON helpers ------------------------------------------------------------------------------


def _epoch(value: Any) -> float:
    """Epoch seconds of a timestamp given as a datetime, datetime64, ISO string or number."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, np.datetime64):
        return float((value - np.datetime64(0, "s")) / np.timedelta64(1, "us")) / 1e6
    if isinstance(value, str):
        try:
            return _epoch(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            raise InvalidAlertSetting(f"timestamp {value!r} is not ISO 8601") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidAlertSetting(f"timestamp {value!r} is not a datetime, ISO string or number") from None
    if not math.isfinite(out):
        raise InvalidAlertSetting(f"timestamp {value!r} is not finite")
    return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _jsonable(items: list[Any]) -> list[Any]:
    # Evidence travels in JSON bodies: arrays become lists, anything else unknown becomes its str().
    return json.loads(json.dumps(items, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
