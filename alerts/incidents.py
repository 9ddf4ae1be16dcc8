"""Incidents of the streaming path: one :class:`~alerts.machine.IncidentMachine` per (detector, series), its
state in Redis, one notification per state change appended to the outbox.

:func:`observe` feeds a scored batch of one key and returns the notifications it caused. A scoring worker
that must know the decisions before it can say why (the detector explains its alert rows) uses an
:class:`IncidentSession`: read the state, :meth:`~IncidentSession.feed` the batch, then
:meth:`~IncidentSession.commit` the state and the notifications with their evidence.

Incidents are keyed by the model whose scores they are (the detector) and the key (series or entity id): two
detectors scoring one series id have incidents of their own. The state update and the notifications' append
to the outbox happen in one MULTI/EXEC under WATCH: several workers can feed one key at once, and a
notification is written if and only if its state change is (a conflicting write makes the session decide
its points again from the new state; points already decided are replays and change nothing).

A state kept under the former key (one machine per series id, before incidents had a detector) is carried
over by the key's first batch when its open incident is this detector's (the incident stays open, under its
id, and resolves when the series has calmed down); without an open incident it is deleted, since its
counters meant another machine. One left by another detector waits for that detector's next batch.

This module owns the open incidents' record, ``{alerts}:open`` (HASH: incident id -> its latest ``firing``
notification, while the incident is open); the machine's state record is :mod:`alerts._key_state`'s.

The same transaction records each incident in the history (:mod:`alerts._history`) and decides which
notifications go to the outbox: none of an incident an active silence matches (:mod:`alerts.silences`), no
repeat of an acknowledged one (:mod:`alerts.acks`), and no resolution of one whose firing never went out.

Timestamps may be datetimes (naive ones are taken as UTC), numpy datetime64, ISO 8601 strings or numbers
(epoch seconds). A missing score (NaN) is a calm point.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import redis

from vectorstore import Settings, connect, get_settings

from . import _history as history
from . import _outbox_records as outbox
from ._key_state import decode_former_state, decode_state, encode_state, former_state_key, state_key
from .acks import ack_key, queue_forget, read_acks
from .exceptions import CorruptRecord, InvalidAlertSetting
from .machine import Decisions, IncidentMachine, IncidentPolicy
from .notification import Incident, Notification
from .silences import read_silences, silence_key, silencing

__all__ = ["IncidentSession", "forget", "observe", "open_incidents", "open_key"]

log = logging.getLogger(__name__)

Kind = Literal["series", "entity"]

#: At most this many evidence items are kept with an incident (they travel in every notification).
MAX_EVIDENCE = 20


class IncidentSession:
    """The incident machine of one (model, key), its state read from Redis and written back with the
    notifications of what was fed, in one transaction.

    Args:
        model: the detector (or graph model) whose scores these are.
        key: the series id (``kind="series"``) or entity id (``kind="entity"``).
        threshold: a score (or source reading) at or above it is anomalous.
        labels: extra labels (e.g. ``{"service": "checkout"}``); values are turned into strings.
        new_series: the detector started a stream for a series it was not trained on: a new key warms up.
        policy: the machine's settings; by default from the ``EA_ALERT_*`` settings.
        settings, client: the service's settings and a Redis client (pass one when calling often: without
            it each session opens a new connection).

    Raises:
        InvalidAlertSetting: the threshold is not finite, ``kind`` is unknown, or ``model`` is empty or holds
            a ``:``.
    """

    def __init__(self, model: str, key: str, threshold: float, *, kind: Kind = "series",
                 labels: Mapping[str, Any] | None = None, new_series: bool = False,
                 policy: IncidentPolicy | None = None, settings: Settings | None = None,
                 client: redis.Redis | None = None) -> None:
        settings = settings or get_settings()
        self.open_key = open_key(settings.key_prefix)
        self.outbox = outbox.OutboxKeys(settings.key_prefix)
        self.state_key = state_key(settings.key_prefix, kind, str(model), str(key))
        self.former_key = former_state_key(settings.key_prefix, kind, str(key))
        self.policy = policy or IncidentPolicy.from_settings()
        self._args = {"threshold": threshold, "model": str(model), "key": str(key), "kind": kind,
                      "labels": labels, "new_series": new_series}
        IncidentMachine(self.policy, **self._args)  # checks the arguments before anything is read
        self.client = client or connect(settings)
        # transaction=True: a cluster client's pipeline is not a transaction by default (and has no WATCH).
        self._pipe = self.client.pipeline(transaction=True)
        self._prefix = settings.key_prefix
        self._fed: list[tuple[Any, ...]] = []
        #: The notifications of the last commit that went to the outbox (the others were silenced, or were
        #: repeats of an acknowledged incident).
        self.sent: list[Notification] = []
        #: The decisions of each batch fed, in order (decided anew if a conflicting write forced it).
        self.decisions: list[Decisions] = []
        self._carried: str | None = None
        self._load()

    def _load(self) -> None:
        """WATCH the state and read it (or carry a former one over) into a fresh machine."""
        pipe = self._pipe
        pipe.reset()
        pipe.watch(self.state_key, self.former_key)
        state = decode_state(pipe.get(self.state_key), self.state_key)
        self._carried = None
        if state is None:
            raw = pipe.get(self.former_key)
            take, state = decode_former_state(raw, self._args["model"]) if raw is not None else (False, None)
            self._carried = self.former_key if take else None
        self.machine = IncidentMachine(self.policy, **self._args, state=state)

    def feed(self, times: Iterable[Any], scores: Iterable[float], *, rows: Iterable[int] | None = None,
             sources: np.ndarray | None = None) -> Decisions:
        """Decide a batch of points (see :meth:`IncidentMachine.feed`; ``times`` as in the module docstring).

        Raises:
            InvalidAlertSetting: a timestamp cannot be read, or lengths differ.
        """
        t = [_epoch(x) for x in times]
        batch = (t, [float(x) for x in scores], None if rows is None else list(rows), sources)
        self._fed.append(batch)
        decided = self.machine.feed(batch[0], batch[1], rows=batch[2], sources=batch[3])
        self.decisions.append(decided)
        return decided

    @property
    def warming_up(self) -> bool:
        """Whether the key cannot open an incident yet."""
        return self.machine.warming_up

    def commit(self, *, evidence: list[Any] | None = None, model_version: Any = None) -> list[Notification]:
        """Write the state and append the notifications of every batch fed, at once; returns them in order.

        Args:
            evidence: JSON-serialisable context for the on-call (the alert rows' explanations, nearest
                peers), kept with each incident that opened, re-alerted or peaked in these batches (at most
                ``MAX_EVIDENCE`` items).
            model_version: recorded on the incidents that opened in these batches.
        """
        items = _jsonable(list(evidence or [])[:MAX_EVIDENCE])
        pipe = self._pipe
        try:
            while True:
                notes = self._changes(items, None if model_version is None else str(model_version))
                routed = self._route(notes, self._peaked(notes))
                pipe.multi()
                record, ttl = encode_state(self.machine.state)
                pipe.set(self.state_key, record, ex=ttl)
                if self._carried:
                    pipe.delete(self._carried)
                for note, entry, send in routed:
                    if send is not None:  # None: only the history's entry changes (the peak rose)
                        _write_open(pipe, self.open_key, note)
                    if send:
                        outbox.append(pipe, self.outbox, note.to_json())
                    history.queue_entry(pipe, self._prefix, entry)
                    if note.state == "resolved":
                        queue_forget(pipe, self._prefix, note.incident.id)
                try:
                    pipe.execute()
                    self.sent = [note for note, _, send in routed if send]
                    if notes:
                        history.trim(self.client, self._prefix)
                    return notes
                except redis.WatchError:
                    self._refeed()  # another worker changed this key's state: decide again from the new state
        finally:
            pipe.reset()

    def close(self) -> None:
        """Give the connection back without writing (what was fed is dropped)."""
        self._pipe.reset()

    def _changes(self, evidence: list[Any], version: str | None) -> list[Notification]:
        """The notifications of the batches fed, with the evidence and version they carry (the open
        incident in the state carries them too)."""
        touched = self.machine.touched

        def completed(inc: Incident) -> Incident:
            if inc.id not in touched:
                return inc
            return replace(inc, evidence=evidence or inc.evidence,
                           model_version=version if inc.model_version is None else inc.model_version)

        state = self.machine.state
        if state.open is not None:
            state.open = completed(state.open)
        now = time.time()
        return [Notification.of_change(st, completed(inc), now) for d in self.decisions for st, inc in d.changes]

    def _peaked(self, notes: list[Notification]) -> list[Notification]:
        """The open incident, as a notification for the history alone, when it changed (its peak rose, its
        evidence came) without a notification of its own in these batches."""
        opened = self.machine.state.open
        if opened is None or opened.id not in self.machine.touched or any(n.incident.id == opened.id for n in notes):
            return []
        return [Notification.of_change("firing", opened, time.time())]

    def _route(self, notes: list[Notification], peaked: list[Notification]
               ) -> list[tuple[Notification, history.HistoryEntry, bool | None]]:
        """Each notification, its history entry and whether it goes to the outbox (read under the WATCH);
        ``peaked`` ones update the history only (``None``)."""
        if not notes and not peaked:
            return []
        pipe = self._pipe
        found = read_silences(pipe.hgetall(silence_key(self._prefix)))
        ids = list(dict.fromkeys(n.incident.id for n in [*notes, *peaked]))
        acked = read_acks(ids, pipe.hmget(ack_key(self._prefix), ids))
        entries, _ = history.history_keys(self._prefix)
        # Whether each incident notified a hook before (unknown: it predates the history, and did).
        before = history.read_entries(dict(zip(ids, pipe.hmget(entries, ids))))
        notified = {i: e.notified for i, e in before.items()}
        out: list[tuple[Notification, history.HistoryEntry, bool | None]] = [
            (n, history.HistoryEntry(n, notified.get(n.incident.id) is not False,
                                     before[n.incident.id].silenced_by if n.incident.id in before else None), None)
            for n in peaked]
        current = self.machine.state.open
        for note in notes:
            inc = note.incident
            muted_by = silencing(found, inc, note.created_at)
            repeat = note.state == "firing" and inc.alerts > 1 and inc.id in acked
            unseen = note.state == "resolved" and notified.get(inc.id) is False
            send = muted_by is None and not repeat and not unseen
            notified[inc.id] = bool(notified.get(inc.id)) or send
            # The history keeps the incident as it is now (its peak may have risen since this notification).
            latest = replace(note, incident=current) if note.state == "firing" and current is not None \
                and current.id == inc.id else note
            out.append((note, history.HistoryEntry(latest, notified[inc.id], muted_by,
                                                   acked.get(inc.id) if note.state == "resolved" else None), send))
        return out

    def _refeed(self) -> None:
        self._load()
        fed, self._fed, self.decisions = self._fed, [], []
        for t, scores, rows, sources in fed:
            self._fed.append((t, scores, rows, sources))
            self.decisions.append(self.machine.feed(t, scores, rows=rows, sources=sources))


def observe(
    model: str,
    key: str,
    timestamps: Iterable[Any],
    scores: Iterable[float],
    threshold: float,
    *,
    rows: Iterable[int] | None = None,
    sources: np.ndarray | None = None,
    kind: Kind = "series",
    model_version: Any = None,
    labels: Mapping[str, Any] | None = None,
    evidence: list[Any] | None = None,
    new_series: bool = False,
    policy: IncidentPolicy | None = None,
    settings: Settings | None = None,
    client: redis.Redis | None = None,
) -> list[Notification]:
    """Feed one scored batch of ``key`` as scored by ``model``; returns the notifications it caused (usually
    none). The arguments are :class:`IncidentSession`'s, :meth:`~IncidentSession.feed`'s and
    :meth:`~IncidentSession.commit`'s.

    Raises:
        InvalidAlertSetting: lengths differ, a timestamp cannot be read, the threshold is not finite, ``kind``
            is unknown, or ``model`` is empty or holds a ``:``.
    """
    session = IncidentSession(model, key, threshold, kind=kind, labels=labels, new_series=new_series,
                              policy=policy, settings=settings, client=client)
    try:
        session.feed(timestamps, scores, rows=rows, sources=sources)
        return session.commit(evidence=evidence, model_version=model_version)
    finally:
        session.close()


def open_incidents(
    group_key: str | None = None, *, settings: Settings | None = None, client: redis.Redis | None = None
) -> list[Incident]:
    """Incidents currently firing, optionally only those of one group, oldest first."""
    settings = settings or get_settings()
    client = client or connect(settings)
    found = [note.incident for note in _read_open(client.hgetall(open_key(settings.key_prefix))).values()]
    if group_key is not None:
        found = [i for i in found if i.group_key == group_key]
    return sorted(found, key=lambda i: i.start)


def forget(model: str, key: str, *, kind: Kind = "series", settings: Settings | None = None,
           client: redis.Redis | None = None) -> None:
    """Forget the incident state of one (model, series) (or entity) and its firing incidents, without
    notifying: what a replayed stream needs (points at or before the last one seen are otherwise ignored)."""
    settings = settings or get_settings()
    client = client or connect(settings)
    opened = open_key(settings.key_prefix)
    firing = [iid for iid, note in _read_open(client.hgetall(opened)).items()
              if (note.incident.model, note.incident.key, note.incident.kind) == (model, key, kind)]
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(state_key(settings.key_prefix, kind, model, key))
        if firing:
            pipe.hdel(opened, *firing)
        pipe.execute()


# --- the open incidents' record ------------------------------------------------------------------------------


def open_key(prefix: str) -> str:
    """The Redis key of the open incidents."""
    return f"{prefix}{{alerts}}:open"


def _write_open(pipe: Any, key: str, note: Notification) -> None:
    """Queue what a notification changes in the open incidents: firing sets, resolved removes."""
    if note.state == "firing":
        pipe.hset(key, note.incident.id, note.to_json())
    else:
        pipe.hdel(key, note.incident.id)


def _read_open(raw: Mapping[bytes, bytes]) -> dict[bytes, Notification]:
    """The firing notifications of the open-incidents hash by incident id, leaving out (with a warning) those
    that hold garbage."""
    found = {}
    for iid, value in raw.items():
        try:
            found[iid] = Notification.from_json(value)
        except CorruptRecord as exc:
            log.warning("open incident %s skipped: %s", iid.decode(errors="replace")[:64], exc)
    return found


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


def _jsonable(items: list[Any]) -> list[Any]:
    # Evidence travels in JSON bodies: arrays become lists, anything else unknown becomes its str().
    return json.loads(json.dumps(items, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
