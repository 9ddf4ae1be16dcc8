"""Scoring that keeps learning: one state machine for batch and streaming alike.

A :class:`StreamScorer` holds everything one series needs between two batches of rows: the last values
(with their timestamps and which of them were missing), every channel's recent reference windows and
calibration, the value range and the alert rule. :meth:`StreamScorer.update` scores consecutive rows
causally and learns from them; :meth:`~anomaly.detector.KnnDetector.detect` runs the same scorer over a
whole series in chunks, and the Celery scoring task runs it over each batch that arrives, its state kept
in Redis (:meth:`to_state` / :meth:`from_state`). Every step depends on the row numbers only, never on
how rows were batched, so both decide alike.

Missing values: a row without a value gets no score (NaN) and never alerts. Once a gap has ended, windows
read it as the straight line between the values around it (causal: both are known by then, and the
windows ending inside the gap are not scored); a window touching a gap longer than ``max_missing`` rows,
or holding more than ``max_missing`` interpolated values, is neither scored nor learned from, so an
outage never alerts by itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .calibration import TailCalibrator
from .exceptions import CorruptState, InvalidParameter, InvalidSeries
from .explain import explain_row
from .reference import Reference
from .rules import THRESHOLD, AlertRule, ValueRange, channel_score

__all__ = ["StreamScorer", "Scored", "SCORED_ARRAYS", "NAT", "complete_windows", "interpolate_gaps", "screen_budget"]

#: Timestamp (int64 nanoseconds) of a row whose time is unknown.
NAT = np.iinfo(np.int64).min
_CHUNK = 8192  # rows per step of a long batch: bounds memory (about 25 MB of windows), not results; longer
# steps let more graph searches share what is in cache (2,048: 11% slower)


class _Model(Protocol):
    """What a scorer reads from its detector (:class:`~anomaly.detector.KnnDetector`)."""

    channels: list[Any]
    settings: dict[str, Any]

    @property
    def scaler(self) -> Any: ...


@dataclass
class Scored:
    """What :meth:`StreamScorer.update` returns for a batch of rows (arrays, one entry per row).

    Attributes:
        rows: row numbers in the series.
        score: calibrated score in [0, 1] (NaN where the row has no value).
        is_anomaly: the alert decisions.
        distance: the deciding kNN channel's averaged distance (NaN when no channel has one).
        p_value: that channel's tail probability (1 without one).
        channel: index of the channel that gave the score (-1: value-range novelty, -2: none).
        in_incident: whether the row is within an incident (from its alert until every source it disarmed
            has calmed down).
        explanations: one dict per alerting row or score crossing (see :mod:`anomaly.explain`).
    """

    rows: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    distance: np.ndarray
    p_value: np.ndarray
    channel: np.ndarray
    in_incident: np.ndarray
    explanations: list[dict[str, Any]] = field(default_factory=list)


def screen_budget(settings: dict[str, Any]) -> int:
    """Anomalous readings per ``history`` rows kept out of a calibration: ``screen``, or by default those of
    one lasting change and its end (``2 * (window + delay)`` rows of large distances)."""
    screen = settings.get("screen")
    return 2 * (settings["window"] + settings["delay"]) if screen is None else int(screen)


#: The per-row arrays of :class:`Scored`, in order.
SCORED_ARRAYS = ("rows", "score", "is_anomaly", "distance", "p_value", "channel", "in_incident")


class StreamScorer:
    """Causal, learning scorer of one series (see the module docstring).

    Args:
        model: the fitted detector.
        references: one :class:`~anomaly.reference.Reference` per channel.
        start_row: row number of the first row this scorer will see.
        armed_from: first row that may alert.
        recent_from: first row whose windows join the recent references (earlier ones are training windows;
            default ``start_row``).
        training: ``(values, timestamps)`` of the series the training windows come from, for explanations.
    """

    def __init__(self, model: _Model, references: list[Reference], *, start_row: int = 0, armed_from: int = 0,
                 recent_from: int | None = None, training: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        s = model.settings
        self.model = model
        self.references = references
        self.calibrators = [TailCalibrator(averaging=s["averaging"], history=s["history"], quantile=s["quantile"],
                                           refit=s["refit"], min_history=s["min_history"], floor=ch.floor,
                                           screen=(s["alpha"] / len(model.channels), s["effect"]),
                                           budget=screen_budget(s))
                            for ch in model.channels]
        self.value_range = ValueRange(s["range_tolerance"])
        self.rule = AlertRule(s["refractory"], s["rearm"], armed_from)
        self.position = int(start_row)
        self.start_row = int(start_row)
        self.recent_from = int(start_row if recent_from is None else recent_from)
        keep = max([ch.span + ref.delay + ref.memory for ch, ref in zip(model.channels, references)], default=1)
        self.keep = int(keep) + 1
        self.values = np.zeros(0)  # the last `keep` values, gaps interpolated once closed (NaN while open)
        self.missing = np.zeros(0, bool)
        self.times = np.zeros(0, np.int64)
        self.last_score = 0.0
        self.training = training

    @property
    def buffer_start(self) -> int:
        """Row number of the first value held."""
        return self.position - self.values.size

    # -- scoring -------------------------------------------------------------------------------------------
    def update(self, values: np.ndarray, timestamps: np.ndarray | None = None) -> Scored:
        """Score the next rows (``values``: float, NaN = missing; ``timestamps``: int64 ns, optional) and
        learn from them.

        Raises:
            InvalidSeries: values that are infinite, or timestamps of another length.
        """
        v = np.asarray(values, np.float64).ravel()
        if np.isinf(v).any():
            bad = np.flatnonzero(np.isinf(v))[:5].tolist()
            raise InvalidSeries(f"values are infinite at batch positions {bad}")
        ts = np.full(v.size, NAT, np.int64) if timestamps is None else np.asarray(timestamps, np.int64).ravel()
        if ts.size != v.size:
            raise InvalidSeries(f"{ts.size} timestamps for {v.size} values")
        with _one_blas_thread():
            parts = [self._update(v[a : a + _CHUNK], ts[a : a + _CHUNK]) for a in range(0, v.size, _CHUNK)]
        if not parts:
            empty = np.zeros(0)
            return Scored(np.zeros(0, np.int64), empty, np.zeros(0, bool), empty, empty, np.zeros(0, np.int64),
                          np.zeros(0, bool))
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in SCORED_ARRAYS}
        return Scored(**arrays, explanations=[e for p in parts for e in p.explanations])

    def _update(self, v: np.ndarray, ts: np.ndarray) -> Scored:
        n = v.size
        rows = np.arange(self.position, self.position + n, dtype=np.int64)
        missing = np.isnan(v)
        all_values = interpolate_gaps(np.concatenate([self.values, v]))
        all_missing = np.concatenate([self.missing, missing])
        all_times = np.concatenate([self.times, ts])
        offset = self.values.size  # index of the first new row in the all_* arrays
        s = self.model.settings
        scaled = self.model.scaler.transform(all_values)
        channel_scores = np.zeros((len(self.references), n))
        readings = np.full((len(self.references), n), np.nan)
        pvals = np.ones((len(self.references), n))
        raw = np.full((len(self.references), n), np.nan)
        typical = np.full((len(self.references), n), np.nan)
        near_rows = np.full((len(self.references), n), -1, np.int64)
        near_train = np.zeros((len(self.references), n), bool)
        for c, (ch, ref, cal) in enumerate(zip(self.model.channels, self.references, self.calibrators)):
            span = ch.span
            first = max(offset, span - 1)  # windows need span values (the buffer holds what came before)
            dist = np.full(n, np.nan)
            if all_values.size >= span and first < all_values.size:
                ends = np.arange(first, all_values.size)
                # A view (ends are consecutive): a copy of a long context's windows is megabytes per batch,
                # enough to push the training graph out of the cache between two batches' searches.
                win = np.lib.stride_tricks.sliding_window_view(scaled, span)[first - span + 1 : ends[-1] - span + 2]
                complete = complete_windows(win, all_missing, ends, span, s["max_missing"])
                end_rows = self.buffer_start + ends
                if complete.any():
                    emb = ch.embedder.embed(win if complete.all() else win[complete])  # no copy when all are
                    # Added before the query: a window only becomes a reference `delay` (>= 1) rows after its
                    # own, which the reference's row rule enforces whatever the batch holds.
                    learn = end_rows[complete] >= self.recent_from
                    ref.add(emb[learn], end_rows[complete][learn])
                    d, nr, nt = ref.distances(emb, end_rows[complete])
                    at = ends[complete] - offset
                    dist[at], near_rows[c, at], near_train[c, at] = d, nr, nt
            ref.forget_before(self.position + n)
            raw[c] = dist
            readings[c], pvals[c], ratio, typical[c] = cal.update(dist, rows)
            channel_scores[c] = channel_score(pvals[c], ratio, channels=len(self.references), alpha=s["alpha"],
                                              effect=s["effect"])
        novelty, low, high = self.value_range.update(v)
        best = np.argmax(channel_scores, axis=0) if len(self.references) else np.zeros(n, np.int64)
        best_score = channel_scores[best, np.arange(n)] if len(self.references) else np.zeros(n)
        score = np.maximum(best_score, novelty)
        channel = np.where(novelty >= best_score, -1, best)
        channel = np.where(score > 0, channel, -2)
        score[missing] = np.nan
        sources = np.vstack([channel_scores, novelty[None, :]])
        sources[:, missing] = 0.0
        flags, in_incident = self.rule.update(sources, rows)
        picked = np.clip(channel, 0, None)
        distance = np.where(channel >= 0, readings[picked, np.arange(n)], np.nan) if len(self.references) else \
            np.full(n, np.nan)
        p_value = np.where(channel >= 0, pvals[picked, np.arange(n)], 1.0) if len(self.references) else np.ones(n)
        explain_at = np.flatnonzero(flags | _rising(np.nan_to_num(score, nan=0.0), self.last_score))
        self.last_score = float(np.nan_to_num(score[-1], nan=0.0))
        batch = {"offset": offset, "values": all_values, "times": all_times, "rows": rows, "score": score,
                 "channel": channel, "raw": raw, "reading": readings, "p": pvals, "typical": typical,
                 "near_row": near_rows, "near_training": near_train, "low": low, "high": high, "is_anomaly": flags}
        explanations = [explain_row(self, int(i), batch) for i in explain_at]
        self.values, self.missing, self.times = (all_values[-self.keep :], all_missing[-self.keep :],
                                                 all_times[-self.keep :])
        self.position += n
        return Scored(rows, score, flags, distance, p_value, channel.astype(np.int64), in_incident, explanations)

    # -- state ---------------------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """``(meta, arrays)``: the running state (JSON-able meta, little-endian array bytes) for Redis."""
        meta: dict[str, Any] = {
            "position": self.position, "start_row": self.start_row,
            "recent_from": self.recent_from,
            "last_score": self.last_score, "calibrators": [],
            "value_range": {"low": _json_float(self.value_range.low), "high": _json_float(self.value_range.high),
                            "seen": self.value_range.seen},
            "rule": {"armed_from": self.rule.armed_from, "last_alert": self.rule.last_alert, "calm": self.rule.calm,
                     "open": self.rule.open},
        }
        arrays = {"values": self.values.astype("<f8").tobytes(), "missing": self.missing.astype("u1").tobytes(),
                  "times": self.times.astype("<i8").tobytes()}
        for c, cal in enumerate(self.calibrators):
            cal_meta, cal_arrays = cal.state_parts()
            meta["calibrators"].append(cal_meta)
            arrays.update({f"cal{c}_{name}": data for name, data in cal_arrays.items()})
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: dict[str, bytes]) -> StreamScorer:
        """Restore :meth:`to_state` output (taken from a scorer of the same detector) into this fresh scorer:
        the values are read back and every channel's recent windows rebuilt from them.

        Raises:
            InvalidParameter: the parts were written for another layout (another number of channels).
            CorruptState: a part is missing, truncated or not of its type (the message names it, never
                its content).
        """
        cals = meta.get("calibrators") if isinstance(meta, dict) else None
        if not isinstance(cals, list) or not all(isinstance(st, dict) for st in cals):
            raise CorruptState("stream state part 'meta.calibrators' is missing or not a list of objects")
        if len(cals) != len(self.calibrators):
            raise InvalidParameter(f"stream state has {len(cals)} calibrations for {len(self.calibrators)} channels")
        part = "values"
        try:
            self.values = np.frombuffer(arrays["values"], "<f8").astype(np.float64)
            part = "missing"
            self.missing = np.frombuffer(arrays["missing"], "u1").astype(bool)
            part = "times"
            self.times = np.frombuffer(arrays["times"], "<i8").astype(np.int64)
            part = "meta.position"
            self.position, self.start_row = _count(meta["position"]), _count(meta["start_row"])
            part = "meta.recent_from"
            self.recent_from = _count(meta["recent_from"])
            part = "meta.last_score"
            self.last_score = float(meta.get("last_score", 0.0))
            for c, (cal, st) in enumerate(zip(self.calibrators, meta["calibrators"], strict=True)):
                part = f"cal{c}"
                if st.get("arrays"):
                    cal.load_parts(st, {name: arrays[f"cal{c}_{name}"] for name in ("recent", "readings", "screened")})
                else:  # a state saved before the arrays left the JSON part
                    cal.load_state(st)
                if cal.fit is not None and not (len(cal.fit) == 3 and all(math.isfinite(x) for x in cal.fit)):
                    raise ValueError("fit")
            part = "meta.value_range"
            vr = meta["value_range"]
            self.value_range.low = np.nan if vr["low"] is None else float(vr["low"])
            self.value_range.high = np.nan if vr["high"] is None else float(vr["high"])
            self.value_range.seen = _count(vr["seen"])
            part = "meta.rule"
            rule = meta["rule"]
            last = rule["last_alert"]
            self.rule.armed_from = _count(rule["armed_from"])
            self.rule.last_alert = None if last is None else _count(last)
            self.rule.calm = [None if c is None else _count(c) for c in rule["calm"]]
            self.rule.open = bool(rule.get("open", False))
            part = "values"
            if not (self.values.size == self.missing.size == self.times.size) or self.values.size > self.position:
                raise ValueError("lengths")
            if np.isinf(self.values).any() or (np.diff(self.times) < 0).any():
                raise ValueError("content")
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
            raise CorruptState(f"stream state part {part!r} is missing, truncated or not of its type") from None
        self._relearn()
        return self

    def _relearn(self) -> None:
        """Rebuild every channel's recent windows from the values held (what :meth:`update` had added)."""
        s = self.model.settings
        scaled = self.model.scaler.transform(self.values)
        for ch, ref in zip(self.model.channels, self.references):
            ref.clear_recent()
            if self.values.size < ch.span:
                continue
            ends = np.arange(ch.span - 1, self.values.size)
            end_rows = self.buffer_start + ends
            keep = (end_rows >= max(self.start_row + ch.span - 1, self.recent_from)) & (end_rows % ref.stride == 0)
            keep &= end_rows > self.position - ref.delay - ref.memory - 1
            ends, end_rows = ends[keep], end_rows[keep]
            win = np.lib.stride_tricks.sliding_window_view(scaled, ch.span)[ends - ch.span + 1]
            complete = complete_windows(win, self.missing, ends, ch.span, s["max_missing"])
            if complete.any():
                ref.add(ch.embedder.embed(win[complete]), end_rows[complete])
            ref.forget_before(self.position)

    def state_json(self) -> str:
        """The JSON part of :meth:`to_state`, as a string."""
        return json.dumps(self.to_state()[0])


_blas: Any = None


def _one_blas_thread() -> Any:
    """Scoring's products are small: a second BLAS thread only spins, and on a shared worker (threads pool)
    it competes with the other series being scored."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def complete_windows(windows: np.ndarray, missing: np.ndarray, ends: np.ndarray, span: int,
                     max_missing: int) -> np.ndarray:
    """Which windows (ending at indices ``ends`` of ``missing``) may be scored and learned from: no value
    unknown, no row of a gap longer than ``max_missing``, at most ``max_missing`` interpolated rows, and
    not ending at a missing row (its interpolated value needs the row after it, unknown at the time: a
    whole series read at once must not score a window a stream could not)."""
    miss = np.asarray(missing, bool)
    long_gap = miss.copy()
    if miss.any():
        edges = np.diff(np.concatenate([[0], miss.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        long_gap[:] = False
        for a, b in zip(starts, stops):
            if b - a > max_missing:
                long_gap[a:b] = True
    view = np.lib.stride_tricks.sliding_window_view
    first = ends - span + 1
    gaps = view(miss, span)[first].sum(axis=1)
    touched = view(long_gap, span)[first].any(axis=1)
    return (gaps <= max_missing) & ~touched & ~miss[ends] & np.isfinite(windows).all(axis=1)


def interpolate_gaps(values: np.ndarray) -> np.ndarray:
    """``values`` with each run of NaN that has values on both sides replaced by the straight line between
    them (runs at either end stay NaN: what comes next is not known yet)."""
    nan = np.isnan(values)
    if not nan.any():
        return values
    known = np.flatnonzero(~nan)
    if known.size < 2:
        return values
    out = values.copy()
    inner = np.flatnonzero(nan)
    inner = inner[(inner > known[0]) & (inner < known[-1])]
    out[inner] = np.interp(inner, known, values[known])
    return out


def _rising(score: np.ndarray, before: float) -> np.ndarray:
    """Rows where the score reaches the threshold from below."""
    prev = np.concatenate([[before], score[:-1]])
    return (score >= THRESHOLD) & (prev < THRESHOLD)


def _count(value: Any) -> int:
    """A row number or count read back from a state: a non-negative int (a bool or float is garbage)."""
    if type(value) is not int or value < 0:
        raise ValueError("not a count")
    return value


def _json_float(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
