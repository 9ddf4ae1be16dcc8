"""Feedback the detector learns from: "not an anomaly" becomes normal windows, "missed" a label.

::

    import anomaly

    anomaly.label_normal("cpu", "cpu-eu-1", "2026-12-08T09:00Z", "2026-12-08T09:40Z", by="ana",
                         incident="inc_...")      # the same shape stops alerting, from the next batch on
    anomaly.label_missed("cpu", "cpu-eu-1", "2026-12-07T02:00Z", "2026-12-07T02:30Z", by="ana")
    version, labels = anomaly.series_labels("cpu", "cpu-eu-1")
    anomaly.undo_label("cpu", "cpu-eu-1", labels[0].id, by="ana")   # the windows leave the reference

A ``normal`` label takes the values of its rows (and of the windows ending in them) from the series'
stream state, which holds a stream's last few thousand rows (``context + delay + memory``): give the feedback
while the incident's rows are still there (:class:`~anomaly.exceptions.InvalidParameter` says when they are
not). The label is written under the series' lock, and the stream state gets a new token, so every score
worker reads the series again, with the normal windows, at its next batch. The record is
:mod:`anomaly._labels`'s; ``docs/oncall.md`` says what a feedback can and cannot fix.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import numpy as np

from vectorstore import ModelRegistry

from . import _labels as labels
from . import _stream_state as state_record
from ._timestamps import NAT, iso_utc, read_utc_ns
from .exceptions import InvalidParameter
from .service import _forget, load_detector

__all__ = ["Label", "label_missed", "label_normal", "last_point", "series_labels", "undo_label"]

log = logging.getLogger(__name__)

Label = labels.Label
#: Rows a ``normal`` label covers at most (its windows join every channel's reference).
MAX_LABEL_ROWS = 2000


def label_normal(name: str, series_id: str, start: Any, end: Any, *, by: str, comment: str = "",
                 incident: str | None = None, registry: ModelRegistry | None = None) -> Label:
    """Say that rows ``start`` to ``end`` (timestamps: ISO 8601 text, datetimes or epoch seconds; ``end``
    ``None``: up to the last row scored) of a series scored by detector ``name`` are normal: every window
    holding one of them becomes a normal window of its channel (at most :data:`MAX_LABEL_ROWS` rows, the
    first). Windows that run past the last row scored are not held yet: give the feedback a little after
    the incident (a context's length: 256 rows by default) for the whole shape.

    Returns:
        The label (its ``rows``: the rows covered; ``version``: the labels' version it made).

    Raises:
        InvalidParameter: no ``by``, times that cannot be read or in the wrong order, a series never scored,
            or rows no longer held by its stream state (the message says which rows it holds).
    """
    registry = registry or ModelRegistry()
    _check_by(by)
    start_ns, end_ns = _times(start, end)
    _, detector = load_detector(registry, name)
    reach = max((ch.span for ch in detector.channels), default=1) - 1
    key = state_record.state_key(registry.settings.key_prefix, name, series_id)
    client = registry.client
    with client.lock(state_record.lock_key(key), timeout=60, blocking_timeout=30):
        raw = client.hgetall(key)
        if not raw:
            raise InvalidParameter(f"series {series_id!r} of detector {name!r} has no stream state: it was never "
                                   "scored through the service (or was reset)")
        position, values, missing, times = state_record.read_buffer(raw)
        known = times != NAT
        inside = np.flatnonzero(known & (times >= start_ns) & ((times <= end_ns) if end_ns is not None else True))
        if not inside.size:
            held = (f"from {iso_utc(times[known][:1])[0]} to {iso_utc(times[known][-1:])[0]}" if known.any()
                    else "no timestamped rows")
            raise InvalidParameter(f"series {series_id!r}: no row between {iso_utc(np.array([start_ns]))[0]} and "
                                   f"{'the last' if end_ns is None else iso_utc(np.array([end_ns]))[0]} is held by "
                                   f"its stream state any more (it holds the last {values.size} rows, {held}); "
                                   f"give feedback sooner after an incident")
        first, last = int(inside[0]), min(int(inside[-1]), int(inside[0]) + MAX_LABEL_ROWS - 1)
        origin = position - values.size  # the row number of values[0]
        # The values of every window holding a labelled row (those after it, as far as they are held yet).
        lo, hi = max(0, first - reach), min(values.size, last + reach + 1)
        segment = [None if m else float(v) for v, m in zip(values[lo:hi], missing[lo:hi])]
        label = Label(f"lbl_{uuid.uuid4().hex[:12]}", "normal", iso_utc(times[first : first + 1])[0],
                      iso_utc(times[last : last + 1])[0], str(by).strip(), str(comment or ""), time.time(), 0,
                      incident, (origin + first, origin + last), origin + lo, tuple(segment))
        added = _write(registry, key, lambda found: found.add(label))
    _forget(registry.settings, name, series_id)
    log.info("series %r of %s: rows %s labelled normal by %s (labels v%d)", series_id, name, added.rows, by,
             added.version)
    return added


def label_missed(name: str, series_id: str, start: Any, end: Any, *, by: str, comment: str = "",
                 registry: ModelRegistry | None = None) -> Label:
    """Record that rows ``start`` to ``end`` of the series were an anomaly the detector did not flag (a
    label only: the detector does not change; see ``docs/oncall.md``).

    Raises:
        InvalidParameter: no ``by``, or times that cannot be read or in the wrong order.
    """
    registry = registry or ModelRegistry()
    _check_by(by)
    start_ns, end_ns = _times(start, end)
    if end_ns is None:
        raise InvalidParameter("a missed anomaly needs its end")
    key = state_record.state_key(registry.settings.key_prefix, name, series_id)
    label = Label(f"lbl_{uuid.uuid4().hex[:12]}", "missed", iso_utc(np.array([start_ns]))[0],
                  iso_utc(np.array([end_ns]))[0], str(by).strip(), str(comment or ""), time.time(), 0)
    with registry.client.lock(state_record.lock_key(key), timeout=60, blocking_timeout=30):
        return _write(registry, key, lambda found: found.add(label), touch=False)


def undo_label(name: str, series_id: str, label_id: str, *, by: str,
               registry: ModelRegistry | None = None) -> Label:
    """Undo a label (it stays in the record, marked undone): a ``normal`` label's windows leave the
    reference at the series' next batch. Returns the label as undone.

    Raises:
        InvalidParameter: no ``by``, or no active label of that id on the series.
    """
    registry = registry or ModelRegistry()
    _check_by(by)
    key = state_record.state_key(registry.settings.key_prefix, name, series_id)
    with registry.client.lock(state_record.lock_key(key), timeout=60, blocking_timeout=30):
        found = labels.decode(registry.client.get(labels.labels_key(key)), key)
        changed, label = found.undo(label_id, time.time())
        if label is None or changed is found:
            raise InvalidParameter(f"series {series_id!r} of {name!r} has no active label {label_id!r} "
                                   "(ea alerts labels lists them)")
        registry.client.set(labels.labels_key(key), labels.encode(changed))
        state_record.touch(registry.client, key)
    _forget(registry.settings, name, series_id)
    log.info("series %r of %s: label %s undone by %s (labels v%d)", series_id, name, label_id, by, changed.version)
    return next(lab for lab in changed.labels or [] if lab.id == label_id)


def series_labels(name: str, series_id: str, *, registry: ModelRegistry | None = None) -> tuple[int, list[Label]]:
    """``(version, labels)`` of a series, oldest first (undone ones included, marked)."""
    registry = registry or ModelRegistry()
    key = state_record.state_key(registry.settings.key_prefix, name, series_id)
    found = labels.decode(registry.client.get(labels.labels_key(key)), key)
    return found.version, list(found.labels or [])


def last_point(name: str, series_id: str, *, registry: ModelRegistry | None = None) -> tuple[str, float] | None:
    """``(timestamp, value)`` of the last row with a value the series' stream state holds (``None``: none)."""
    registry = registry or ModelRegistry()
    key = state_record.state_key(registry.settings.key_prefix, name, series_id)
    raw = registry.client.hgetall(key)
    if not raw:
        return None
    _, values, missing, times = state_record.read_buffer(raw)
    seen = np.flatnonzero(~missing & np.isfinite(values))
    if not seen.size:
        return None
    i = int(seen[-1])
    return (iso_utc(times[i : i + 1])[0] if times[i] != NAT else "unknown time"), float(values[i])


def _write(registry: ModelRegistry, key: str, change: Any, *, touch: bool = True) -> Label:
    """Apply ``change`` to the series' labels (under its lock), write them, and return the label added."""
    found = labels.decode(registry.client.get(labels.labels_key(key)), key)
    changed = change(found)
    registry.client.set(labels.labels_key(key), labels.encode(changed))
    if touch:
        state_record.touch(registry.client, key)
    return (changed.labels or [])[-1]


def _check_by(by: str) -> None:
    if not str(by or "").strip():
        raise InvalidParameter("feedback needs who gives it (by)")


def _times(start: Any, end: Any) -> tuple[int, int | None]:
    """int64 ns of ``start`` and ``end`` (``None`` stays ``None``)."""
    given = [start] if end is None else [start, end]
    ns = read_utc_ns([_text(t) for t in given])
    if (ns == NAT).any():
        bad = given[int(np.flatnonzero(ns == NAT)[0])]
        raise InvalidParameter(f"time {bad!r} cannot be read (ISO 8601, a datetime or epoch seconds)")
    if end is not None and ns[1] < ns[0]:
        raise InvalidParameter(f"end {end!r} is before start {start!r}")
    return int(ns[0]), None if end is None else int(ns[1])


def _text(t: Any) -> Any:
    """Epoch seconds as ISO text (the timestamp reader takes bare numbers for nanoseconds)."""
    if isinstance(t, int | float) and not isinstance(t, bool):
        return iso_utc(np.array([int(t * 1e9)]))[0]
    return t
