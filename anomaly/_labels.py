"""A series' labels from the on-call, and the normal windows a detector learns from them.

Two kinds of label, both kept for the record (and for :mod:`bench`'s replays):

* ``normal``: an alert was wrong ("not an anomaly"). The label keeps the values of the rows it covers and
  around them; every channel embeds the windows that hold any of its rows and keeps them in its reference as
  **normal windows** (:meth:`~anomaly.reference.Reference.set_normal`), always eligible, so the same shape
  no longer reads as far from everything seen. No retraining: the next batch's scorer has them.
* ``missed``: an anomaly the detector did not flag (rows ``start`` to ``end``). Kept as a label only: a
  distance detector cannot learn "abnormal" from one example (see ``docs/oncall.md``).

This module owns the record: ``series:{<model>:<series id>}:state:labels`` (beside the series' stream
state, in its hash slot), a JSON string ``{"format": 1, "version": <n>, "labels": [...]}``. Each label has
``id``, ``kind``, ``start`` and ``end`` (ISO 8601 UTC), ``rows`` ([first, last]: the rows labelled; windows
holding any of them are normal), ``incident``, ``by``, ``comment``, ``at``, ``version`` (the record's
version that added it), ``undone_at`` (epoch seconds, or null) and, for normal labels, ``first_row`` and
``values`` (from ``first_row`` on, null where missing). Each change (a label added or undone) raises
``version``; an undone label stays, marked. The labels outlive the stream state (``reset_stream`` keeps
them): they are what people said about the series.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .exceptions import CorruptState
from .stream import StreamScorer, complete_windows, interpolate_gaps

__all__ = ["Label", "LabelSet", "apply_normal", "decode", "encode", "labels_key"]

_FORMAT = 1
#: Normal windows kept per channel and series at most (the newest labels' first): bounds the exact search.
MAX_NORMAL_WINDOWS = 20_000


@dataclass(frozen=True)
class Label:
    """One label of a series (see the module docstring for the fields)."""

    id: str
    kind: str
    start: str | None
    end: str | None
    by: str
    comment: str
    at: float
    version: int
    incident: str | None = None
    rows: tuple[int, int] | None = None
    first_row: int | None = None
    values: tuple[float | None, ...] = ()
    undone_at: float | None = None

    @property
    def active(self) -> bool:
        return self.undone_at is None

    def to_dict(self, *, with_values: bool = True) -> dict[str, Any]:
        """JSON-ready form (``with_values=False``: without the values, to list)."""
        out = asdict(self)
        out["rows"] = list(self.rows) if self.rows else None
        if not with_values:
            out.pop("values")
            out["points"] = len(self.values)
        return out


@dataclass
class LabelSet:
    """The labels of one series and the record's version."""

    version: int = 0
    labels: list[Label] | None = None

    def __post_init__(self) -> None:
        self.labels = list(self.labels or [])

    def add(self, label: Label) -> LabelSet:
        return LabelSet(self.version + 1, [*self.labels, replace(label, version=self.version + 1)])  # type: ignore[misc]

    def undo(self, label_id: str, at: float) -> tuple[LabelSet, Label | None]:
        """The set with ``label_id`` undone, and that label (``None``: no such active label)."""
        found = next((lab for lab in self.labels or [] if lab.id == label_id), None)
        if found is None or not found.active:
            return self, found
        done = replace(found, undone_at=at)
        return LabelSet(self.version + 1, [done if lab.id == label_id else lab for lab in self.labels or []]), done


def labels_key(state_key: str) -> str:
    """The key of the labels of the series whose stream state is at ``state_key``."""
    return f"{state_key}:labels"


def encode(labels: LabelSet) -> str:
    return json.dumps({"format": _FORMAT, "version": labels.version,
                       "labels": [lab.to_dict() for lab in labels.labels or []]}, separators=(",", ":"))


def decode(raw: bytes | str | None, where: str) -> LabelSet:
    """The labels of a record (none: an empty set).

    Raises:
        CorruptState: not this record's JSON (names ``where`` and the field, never the content).
    """
    if not raw:
        return LabelSet()
    try:
        data = json.loads(raw)
    except ValueError:
        raise CorruptState(f"labels {where} are not JSON") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT or type(data.get("version")) is not int:
        raise CorruptState(f"labels {where}: not a JSON object of format {_FORMAT} with a version")
    found = []
    for item in data.get("labels") or []:
        try:
            rows = item.get("rows")
            found.append(Label(
                str(item["id"]), str(item["kind"]), item.get("start"), item.get("end"), str(item["by"]),
                str(item.get("comment", "")), float(item["at"]), int(item["version"]), item.get("incident"),
                None if rows is None else (int(rows[0]), int(rows[1])),
                None if item.get("first_row") is None else int(item["first_row"]),
                tuple(None if v is None else float(v) for v in item.get("values") or ()),
                None if item.get("undone_at") is None else float(item["undone_at"])))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise CorruptState(f"labels {where}: a label is missing a field or has one of the wrong type") from None
    return LabelSet(data["version"], found)


def apply_normal(scorer: StreamScorer, labels: LabelSet) -> int:
    """Give every channel of ``scorer`` the normal windows of the active ``normal`` labels (replacing any
    it had); returns how many windows the first channel got.

    The windows are embedded with the scorer's detector (scaler and embedders), so a label made under one
    detector version serves the next as well.
    """
    normal = [lab for lab in labels.labels or [] if lab.kind == "normal" and lab.active and lab.rows
              and lab.first_row is not None]
    s = scorer.model.settings
    counts = []
    for ch, ref in zip(scorer.model.channels, scorer.references):
        vectors, rows = [], []
        for lab in reversed(normal):  # the newest first, so that a cap drops the oldest
            v = np.array([math.nan if x is None else x for x in lab.values], np.float64)
            if v.size < ch.span:
                continue
            scaled = scorer.model.scaler.transform(interpolate_gaps(v))
            ends = np.arange(ch.span - 1, v.size)
            end_rows = lab.first_row + ends
            # Every window that holds a row of the label: the shape, wherever it sits in a long context.
            keep = (end_rows >= lab.rows[0]) & (end_rows - ch.span + 1 <= lab.rows[1])  # type: ignore[index]
            ends, end_rows = ends[keep], end_rows[keep]
            if not ends.size:
                continue
            win = np.lib.stride_tricks.sliding_window_view(scaled, ch.span)[ends - ch.span + 1]
            complete = complete_windows(win, np.isnan(v), ends, ch.span, s["max_missing"])
            if complete.any():
                vectors.append(ch.embedder.embed(win[complete]))
                rows.append(end_rows[complete])
            if sum(r.size for r in rows) >= MAX_NORMAL_WINDOWS:
                break
        if vectors:
            ref.set_normal(np.concatenate(vectors)[:MAX_NORMAL_WINDOWS], np.concatenate(rows)[:MAX_NORMAL_WINDOWS])
        else:
            ref.set_normal(np.zeros((0, ref.dim), np.float32), np.zeros(0, np.int64))
        counts.append(sum(r.size for r in rows))
    return counts[0] if counts else 0
