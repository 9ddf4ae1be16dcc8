"""Scoring that keeps learning: one scorer for batch and streaming alike.

A :class:`StreamScorer` holds everything one series needs between two batches of rows: the last values
(with their timestamps and which of them were missing), every channel's recent reference windows and
calibration, and the value range. :meth:`StreamScorer.update` scores consecutive rows causally and learns
from them; :meth:`~anomaly.detector.KnnDetector.fit_detect` runs the same scorer over a whole series in
chunks, and the Celery scoring task runs it over each batch that arrives, its state kept in Redis
(:meth:`~StreamScorer.to_state`, :mod:`anomaly._stream_state`). Every step depends on the row numbers only,
never on how rows were batched.

The scorer emits scores, not decisions: each chunk's :class:`Readings` (every source's reading: the kNN
channels and the value-range rule) go to the caller's ``decide``, which returns the rows that alert
(:class:`alerts.IncidentMachine` in this service, composed by ``workers``); the scorer explains those rows
and the rows whose score crosses the threshold. Batch and streaming thus decide alike as long as the
decider does.

Missing values: a row without a value gets no score (NaN) and never alerts. Once a gap has ended, windows
read it as the straight line between the values around it (causal: both are known by then, and the
windows ending inside the gap are not scored); a window touching a gap longer than ``max_missing`` rows,
or holding more than ``max_missing`` interpolated values, is neither scored nor learned from, so an
outage never alerts by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import _stream_state
from .calibration import TailCalibrator
from .exceptions import InvalidParameter, InvalidSeries
from .explain import explain_row
from .reference import Reference
from .rules import THRESHOLD, ValueRange, channel_score

__all__ = ["Decide", "Readings", "StreamScorer", "Scored", "SCORED_ARRAYS", "NAT", "complete_windows",
           "interpolate_gaps", "screen_budget"]

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
class Readings:
    """What the scorer emits for a chunk of rows, for a decision made outside it (arrays, one entry per row).

    Attributes:
        rows: row numbers in the series.
        times: int64 nanoseconds since the epoch (:data:`NAT`: unknown).
        score: the calibrated score in [0, 1], the largest reading (NaN where the row has no value).
        sources: each source's reading, sources x rows (0 where the row has no value): the kNN channels in
            order, then value-range novelty. A reading of :data:`~anomaly.rules.THRESHOLD` or more is
            anomalous.
        new_series: the rows are of a series the detector was not trained on (its scores of it start without
            this series' history: a decider warms up on them).
    """

    rows: np.ndarray
    times: np.ndarray
    score: np.ndarray
    sources: np.ndarray
    new_series: bool

    def epoch_seconds(self) -> np.ndarray:
        """``times`` as float epoch seconds (NaN: unknown)."""
        return np.where(self.times == NAT, np.nan, self.times / 1e9)


#: A decider: the rows of a chunk's readings that alert (bool per row). Called once per chunk, in order.
Decide = Callable[[Readings], np.ndarray]


@dataclass
class Scored:
    """What :meth:`StreamScorer.update` returns for a batch of rows (arrays, one entry per row).

    Attributes:
        rows: row numbers in the series.
        score: calibrated score in [0, 1] (NaN where the row has no value).
        is_anomaly: the rows the caller's ``decide`` said alert (all False without one).
        distance: the deciding kNN channel's averaged distance (NaN when no channel has one).
        p_value: that channel's tail probability (1 without one).
        channel: index of the channel that gave the score (-1: value-range novelty, -2: none).
        explanations: one dict per alerting row or score crossing (see :mod:`anomaly.explain`).
    """

    rows: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    distance: np.ndarray
    p_value: np.ndarray
    channel: np.ndarray
    explanations: list[dict[str, Any]] = field(default_factory=list)


def screen_budget(settings: dict[str, Any]) -> int:
    """Anomalous readings per ``history`` rows kept out of a calibration: ``screen``, or by default those of
    one lasting change and its end (``2 * (window + delay)`` rows of large distances)."""
    screen = settings.get("screen")
    return 2 * (settings["window"] + settings["delay"]) if screen is None else int(screen)


#: The per-row arrays of :class:`Scored`, in order.
SCORED_ARRAYS = ("rows", "score", "is_anomaly", "distance", "p_value", "channel")


class StreamScorer:
    """Causal, learning scorer of one series (see the module docstring).

    Args:
        model: the fitted detector.
        references: one :class:`~anomaly.reference.Reference` per channel.
        start_row: row number of the first row this scorer will see.
        new_series: the series is not the one the detector was trained on (see :class:`Readings`).
        recent_from: first row whose windows join the recent references (earlier ones are training windows;
            default ``start_row``).
        training: ``(values, timestamps)`` of the series the training windows come from, for explanations.
    """

    def __init__(self, model: _Model, references: list[Reference], *, start_row: int = 0, new_series: bool = False,
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
        self.new_series = bool(new_series)
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
    def update(self, values: np.ndarray, timestamps: np.ndarray | None = None, *,
               decide: Decide | None = None) -> Scored:
        """Score the next rows (``values``: float, NaN = missing; ``timestamps``: int64 ns, optional) and
        learn from them. ``decide`` is given each chunk's :class:`Readings` and returns the rows that alert:
        they are explained, and returned as ``is_anomaly``.

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
            parts = [self._update(v[a : a + _CHUNK], ts[a : a + _CHUNK], decide) for a in range(0, v.size, _CHUNK)]
        if not parts:
            empty = np.zeros(0)
            return Scored(np.zeros(0, np.int64), empty, np.zeros(0, bool), empty, empty, np.zeros(0, np.int64))
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in SCORED_ARRAYS}
        return Scored(**arrays, explanations=[e for p in parts for e in p.explanations])

    def _update(self, v: np.ndarray, ts: np.ndarray, decide: Decide | None) -> Scored:
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
        flags = np.zeros(n, bool) if decide is None else \
            np.asarray(decide(Readings(rows, ts, score, sources, self.new_series)), bool)
        if flags.shape != (n,):
            raise InvalidParameter(f"decide returned {flags.shape} flags for {n} rows")
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
        return Scored(rows, score, flags, distance, p_value, channel.astype(np.int64), explanations)

    # -- state ---------------------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """``(meta, arrays)``: the running state (JSON-able meta, little-endian array bytes) for Redis and
        for a published detector (:mod:`anomaly._stream_state`)."""
        return _stream_state.to_parts(self)

    def load_state(self, meta: dict[str, Any], arrays: dict[str, bytes]) -> StreamScorer:
        """Restore :meth:`to_state` output (taken from a scorer of the same detector) into this fresh scorer:
        the values are read back and every channel's recent windows rebuilt from them.

        Raises:
            InvalidParameter: the parts were written for another layout (another number of channels).
            CorruptState: a part is missing, truncated or not of its type (the message names it, never
                its content).
        """
        _stream_state.load_parts(self, meta, arrays)
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
