"""The incident state machine: scores in, alerts and incidents out. Pure and in memory.

One machine per key (a detector's series, or a model's entity) decides, point by point, which points alert
and when an incident opens and resolves. The streaming path (:func:`alerts.observe`, its state in Redis) and
the batch path (``ea detect``) run this same machine, so they decide alike however the points are batched:
every step depends on how many points came before, never on where a batch ended.

A point carries a score and, optionally, the readings of the **sources** the score is the largest of (a
detector's channels and its value-range rule). A source is *hot* at a point when its reading is at or above
the threshold (a point without a score is calm). With one setting each (:class:`IncidentPolicy`):

* **opening**: a point alerts when a source has been hot while *armed* for ``for_points`` points in a row,
  the last alert is more than ``cooldown_points`` points back, and the key is past its warm-up. The alert
  opens an incident, which starts at the first of those points;
* **cooldown and grouping**: every source hot within ``cooldown_points`` points of an alert belongs to its
  incident and is *disarmed*; no other alert is raised in that time;
* **re-arming and resolving**: a disarmed source re-arms after ``clear_points`` points in a row below the
  threshold; one that alerted before is disarmed again whenever it is hot and does not alert (a source
  that keeps coming back during a cooldown must calm down before it may alert). The incident resolves when
  every source it disarmed has re-armed, and ends at the first point after its last hot one. So a lasting
  change alerts once, however long it takes to become normal;
* **re-alerting**: an armed source hot after the cooldown alerts again. While the incident is still open
  (another of its sources has not calmed down) the alert is a new ``firing`` notification of the same
  incident (its ``alerts`` count grows), not a new incident;
* **warm-up**: a key whose scores come from a detector that was not trained on its series
  (``new_series``) opens nothing during its first ``warmup_points`` points.

The state of a key (:class:`~alerts._key_state.KeyState`) is one record (:mod:`alerts._key_state` owns it);
the streaming path (:mod:`alerts.incidents`) keeps it in Redis. Points are ordered by their row numbers when
given, else by their timestamps; a point at or before the last one seen is a replay and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ._key_state import KeyState
from .exceptions import InvalidAlertSetting
from .notification import Incident
from .settings import AlertSettings, get_alert_settings

__all__ = ["Decisions", "IncidentMachine", "IncidentPolicy"]


@dataclass(frozen=True)
class IncidentPolicy:
    """How scores become alerts and incidents (the module docstring says what each setting does).

    Attributes:
        for_points: points in a row with an armed source at or above the threshold that alert.
        clear_points: points in a row below the threshold after which a disarmed source re-arms.
        cooldown_points: points after an alert during which no other alert is raised.
        warmup_points: points of a new series (``new_series``) during which nothing opens.
        group_by: label names; incidents agreeing on them share a ``group_key`` (Alertmanager's
            ``groupKey``), so a receiver can fold concurrent incidents into one page.

    Raises:
        InvalidAlertSetting: a count out of range (the message names it).
    """

    for_points: int = 1
    clear_points: int = 20
    cooldown_points: int = 200
    warmup_points: int = 300
    group_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        counts = {"for_points": self.for_points, "clear_points": self.clear_points,
                  "cooldown_points": self.cooldown_points, "warmup_points": self.warmup_points}
        for name, value in counts.items():
            if type(value) is not int or value < (1 if name in ("for_points", "clear_points") else 0):
                raise InvalidAlertSetting(f"{name}={value!r} must be an integer >= "
                                          f"{1 if name in ('for_points', 'clear_points') else 0}")

    @classmethod
    def from_settings(cls, settings: AlertSettings | None = None) -> IncidentPolicy:
        """The policy of the ``EA_ALERT_FOR_POINTS/_CLEAR_POINTS/_COOLDOWN_POINTS/_WARMUP_POINTS/_GROUP_BY``
        settings."""
        s = settings or get_alert_settings()
        return cls(s.for_points, s.clear_points, s.cooldown_points, s.warmup_points, tuple(s.group_by))


@dataclass
class Decisions:
    """What :meth:`IncidentMachine.feed` decided about a batch of points (arrays in the order given).

    Attributes:
        alerts: the points that alert (open an incident, or re-alert an open one).
        in_incident: the points within an open incident (from its first alert to the point before it
            resolves).
        changes: ``(state, incident)`` of each notification due: ``"firing"`` (an opening or a re-alert) or
            ``"resolved"``.
        warming_up: whether the key is still in its warm-up after the batch.
    """

    alerts: np.ndarray
    in_incident: np.ndarray
    changes: list[tuple[str, Incident]] = field(default_factory=list)
    warming_up: bool = False


class IncidentMachine:
    """The state machine of one key (see the module docstring).

    Args:
        policy: the settings (default: from ``EA_ALERT_*``).
        threshold: a source is hot at or above it.
        model: the detector (or graph model) whose scores these are: incidents are keyed by it and the key.
        key: the series id (``kind="series"``) or entity id (``kind="entity"``).
        kind: ``"series"`` or ``"entity"``.
        labels: recorded on incidents; ``policy.group_by`` names some of them.
        new_series: the scores come from a stream the detector started for a series it was not trained on:
            the key warms up (read when the state is new).
        state: the key's state so far (default: a new key).

    Raises:
        InvalidAlertSetting: a threshold that is not finite, or an unknown kind.
    """

    def __init__(self, policy: IncidentPolicy | None = None, *, threshold: float, model: str, key: str,
                 kind: str = "series", labels: Mapping[str, Any] | None = None, new_series: bool = False,
                 state: KeyState | None = None) -> None:
        if kind not in ("series", "entity"):
            raise InvalidAlertSetting(f"kind={kind!r} must be 'series' or 'entity'")
        self.threshold = float(threshold)
        if not math.isfinite(self.threshold):
            raise InvalidAlertSetting(f"threshold={threshold} must be finite")
        self.policy = policy or IncidentPolicy.from_settings()
        self.kind, self.model, self.key = kind, str(model), str(key)
        self.labels = {str(k): str(v) for k, v in (labels or {}).items()}
        self.state = state or KeyState(warm_from=self.policy.warmup_points if new_series else 0)
        #: ids of the incidents opened, re-alerted or whose peak rose since this machine was made (what
        #: evidence and a detector version given later belong to).
        self.touched: set[str] = set()

    @property
    def warming_up(self) -> bool:
        """Whether the key cannot open an incident yet."""
        return self.state.points < self.state.warm_from

    def feed(self, times: Sequence[float] | np.ndarray, scores: Sequence[float] | np.ndarray, *,
             rows: Sequence[int] | np.ndarray | None = None, sources: np.ndarray | None = None) -> Decisions:
        """Advance the key by a batch of points and return the decisions.

        Args:
            times: epoch seconds of the points (NaN: unknown; incidents then carry no time).
            scores: the points' scores (NaN: none, a calm point).
            rows: the points' row numbers, which order them (default: ``times``).
            sources: the sources' readings, sources x points (default: the score is the one source).

        Raises:
            InvalidAlertSetting: lengths that differ.
        """
        t = np.asarray(times, np.float64).ravel()
        x = np.asarray(scores, np.float64).ravel()
        order_by = t if rows is None else np.asarray(rows, np.float64).ravel()
        r = x[None, :] if sources is None else np.atleast_2d(np.asarray(sources, np.float64))
        if not t.size == x.size == order_by.size == r.shape[1]:
            raise InvalidAlertSetting(f"{t.size} timestamps, {x.size} scores, {order_by.size} rows and "
                                      f"{r.shape[1]} readings per source: they must be as many")
        self._fit_sources(r.shape[0])
        alerts = np.zeros(x.size, bool)
        in_incident = np.zeros(x.size, bool)
        changes: list[tuple[str, Incident]] = []
        order = np.argsort(order_by, kind="stable")
        # A point at or before one seen before (in an earlier batch, or earlier in this one) is a replay.
        seen = np.maximum.accumulate(np.concatenate([[-np.inf if self.state.last is None else self.state.last],
                                                     order_by[order]]))[:-1]
        order = order[order_by[order] > seen]
        if order.size:
            self.state.last = float(order_by[order[-1]])
        hot = np.nan_to_num(r[:, order], nan=-np.inf) >= self.threshold
        busy = np.flatnonzero(hot.any(axis=0))
        when = t[order]
        inside = np.zeros(order.size, bool)
        # Points where no source is hot only lengthen calm streaks (and may resolve): taken in one go.
        prev = 0
        for j in busy.tolist():
            self._quiet(prev, j, when, inside, changes)
            alerts[order[j]] = self._step(_time(when[j]), float(x[order[j]]), hot[:, j], changes)
            inside[j] = self.state.open is not None
            prev = j + 1
        self._quiet(prev, order.size, when, inside, changes)
        in_incident[order] = inside
        return Decisions(alerts, in_incident, changes, self.warming_up)

    def _fit_sources(self, n: int) -> None:
        """Start the per-source streaks, or resize them for a detector with another number of sources (an
        open incident then waits for every source to calm down)."""
        s = self.state
        if len(s.calm) != n:
            s.calm = [0 if s.open else None] * n
            s.hot = [0] * n

    def _quiet(self, a: int, b: int, when: np.ndarray, inside: np.ndarray,
               changes: list[tuple[str, Incident]]) -> None:
        """Points ``a .. b-1`` (of the batch in order): no source hot. What :meth:`_step` would do point by
        point, at once (a calm point's score is below the threshold, so below any incident's peak)."""
        n = b - a
        if n <= 0:
            return
        s, p = self.state, self.policy
        s.points += n
        s.hot, s.run = [0] * len(s.hot), None
        if s.open is not None:
            if s.clear_from is None:
                s.clear_from = _time(when[a])
            # It resolves at the point where the last source still calming down reaches clear_points.
            resolves = max(p.clear_points - c for c in s.calm if c is not None and c < p.clear_points)
            if resolves <= n:
                inside[a : a + resolves - 1] = True
                changes.append(("resolved", replace(s.open, end=_iso(s.clear_from))))
                s.open, s.clear_from = None, None
            else:
                inside[a:b] = True
        s.calm = [None if c is None else c + n for c in s.calm]

    def _step(self, t: float | None, score: float, hot: np.ndarray, changes: list[tuple[str, Incident]]) -> bool:
        """One point: whether it alerts. The order of the steps is the rule (module docstring)."""
        s, p = self.state, self.policy
        point = s.points
        s.points += 1
        calm, streak = s.calm, s.hot
        # Per source: points in a row hot while armed (its calm streak is left alone until they decide).
        for i, h in enumerate(hot):
            streak[i] = streak[i] + 1 if h and (calm[i] is None or calm[i] >= p.clear_points) else 0
        if any(streak):
            run = s.run or [t, score, t]
            if not score <= run[1]:
                run[1:] = [score, t]
            s.run = run
        else:
            s.run = None
        ready = s.last_alert is None or point - s.last_alert > p.cooldown_points
        alert = max(streak, default=0) >= p.for_points and ready and point >= s.warm_from
        if alert:
            run, s.run = s.run, None
            self._alert(run, point, changes)
        joins = s.open is not None and s.last_alert is not None and point - s.last_alert <= p.cooldown_points
        for i, h in enumerate(hot):
            if h:
                if joins or (calm[i] is not None and not 0 < streak[i] < p.for_points):
                    calm[i] = 0
            elif calm[i] is not None:
                calm[i] += 1
        if s.open is not None:
            if score > s.open.peak_score:
                s.open = replace(s.open, peak_score=score, peak_at=_iso(t))
                self.touched.add(s.open.id)
            s.clear_from = None if hot.any() else (t if s.clear_from is None else s.clear_from)
            if not any(c is not None and c < p.clear_points for c in calm):
                changes.append(("resolved", replace(s.open, end=_iso(t if s.clear_from is None else s.clear_from))))
                s.open, s.clear_from = None, None
        return alert

    def _alert(self, run: list[Any], point: int, changes: list[tuple[str, Incident]]) -> None:
        s = self.state
        s.last_alert = point
        if s.open is None:
            s.open = self._new_incident(run)
        else:
            s.open = replace(s.open, alerts=s.open.alerts + 1)
            if run[1] > s.open.peak_score:
                s.open = replace(s.open, peak_score=run[1], peak_at=_iso(run[2]))
        s.clear_from = None
        self.touched.add(s.open.id)
        changes.append(("firing", s.open))

    def _new_incident(self, run: list[Any]) -> Incident:
        start = _iso(run[0])
        digest = hashlib.sha256(json.dumps([self.kind, self.model, self.key, self.labels, start],
                                           sort_keys=True).encode()).hexdigest()
        group_by = self.policy.group_by
        group_key = (",".join(f"{n}={self.labels.get(n, '')}" for n in group_by) if group_by
                     else f"{self.kind}={self.key},model={self.model}")
        return Incident(id=f"inc_{digest[:20]}", fingerprint=digest[:16], kind=self.kind, key=self.key, start=start,
                        end=None, peak_score=run[1], peak_at=_iso(run[2]), threshold=self.threshold, model=self.model,
                        labels=self.labels, group_key=group_key)


def _time(epoch: float) -> float | None:
    """A point's time as kept in the state: epoch seconds, or None when unknown."""
    return float(epoch) if math.isfinite(epoch) else None


def _iso(epoch: float | None) -> str | None:
    """ISO 8601 UTC text of epoch seconds (None when unknown)."""
    if epoch is None or not math.isfinite(epoch):
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")
