"""kNN-distance anomaly detector that keeps learning, over one or two window channels.

A detector watches a series through **channels**. Each cuts the scaled series into windows ending at
every row, embeds them (:mod:`anomaly.embedders`), and measures the distance of each new window to its
nearest reference windows (:mod:`anomaly.reference`): the training prefix's windows (an hnswlib index
published with the detector) and the stream's own recent windows, which join after a delay. So a lasting
change becomes the new normal within about ``delay`` rows (plus the averaging), while a short anomaly is
never its own reference. Distances become calibrated readings (:mod:`anomaly.calibration`), readings and
value-range novelty a score in [0, 1] (:mod:`anomaly.rules`). Which rows alert is decided outside the
detector, from each source's readings (``decide``: :class:`~anomaly.stream.Readings`).

Embeddings (``embedding``), all with the same calibration and rules:

* ``"raw+paa"`` (the default): a short raw window (``window`` rows) joined with the long context
  (``context`` rows) in ``segments`` piecewise means: a spike or a step shows in the first, a missing
  daily bump in the second. It detected best on NAB (the README's table).
* ``"raw+lstm"``, ``"raw+gru"``: the same short window, the context read by an LSTM/GRU autoencoder
  over its piecewise means (a learned embedding of the longer context).
* ``"raw"``, ``"lstm"``, ``"gru"``: the short window alone, raw or through an autoencoder.

Scaling uses the training prefix only (median and IQR). Fitting streams the prefix through the same
scorer, without deciding, so the calibration and the value range start from it; the prefix's windows
then become the training references.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorstore import ItemIndex

from .embedders import MIN_FIT_WINDOWS, Embedder, RecurrentEmbedder, embedder_from_state, make_embedder
from .exceptions import InvalidParameter, NotFitted, SeriesTooShort
from .reference import Reference
from .series import Series
from .stream import NAT, SCORED_ARRAYS, Decide, Scored, StreamScorer, complete_windows, interpolate_gaps
from .windows import RobustScaler, sliding_windows

__all__ = ["KnnDetector", "Channel", "DETECTOR_KIND", "EMBEDDINGS", "DEFAULT_EMBEDDING", "MOVED_SETTINGS", "SETTINGS"]

log = logging.getLogger(__name__)

#: a published detector's ``meta["kind"]``
DETECTOR_KIND = "knn_detector"

#: What ``embedding`` may be: the short window's embedder, then optionally ``+`` the context's.
EMBEDDINGS = ("raw+paa", "raw", "raw+lstm", "raw+gru", "lstm", "gru")
#: The embedding a detector uses unless told: it detected best on NAB (see the README).
DEFAULT_EMBEDDING = "raw+paa"
#: Training windows kept in a channel's hnswlib index at most (evenly thinned beyond): bounds memory.
MAX_TRAINING_WINDOWS = 50_000
#: Every setting of the scoring rules, with its default (the README's detector table says what each does).
SETTINGS: dict[str, Any] = {
    "window": 16, "context": 256, "segments": 16, "k": 1, "delay": 50, "memory": 4000, "window_stride": 1,
    "context_stride": 4,
    "averaging": 5, "history": 1000, "quantile": 0.95, "refit": 50, "min_history": 100, "alpha": 1e-3,
    "effect": 3.0, "range_tolerance": 0.05, "max_missing": 3, "ef": 16, "screen": None,
}
#: Former settings of the detector's alert rule, and what replaced them: incidents are the alerting layer's.
MOVED_SETTINGS = {"refractory": "EA_ALERT_COOLDOWN_POINTS", "rearm": "EA_ALERT_CLEAR_POINTS",
                  "warmup": "EA_ALERT_WARMUP_POINTS"}
#: Settings of the LSTM/GRU embedders (:class:`~anomaly.encoder.WindowEncoder`).
ENCODER_SETTINGS = ("hidden", "epochs", "lr", "batch_size", "seed", "max_windows", "augment", "augment_scale",
                    "init", "isometry", "normalize")


@dataclass(frozen=True)
class Channel:
    """One way of looking at the series: windows of ``span`` rows, embedded by ``embedder``.

    Attributes:
        name: ``"window"`` (the short window) or ``"context"`` (the long one).
        floor: smallest distance scale the calibration accepts, in embedding units.
    """

    name: str
    embedder: Embedder
    span: int
    delay: int
    memory: int
    stride: int
    floor: float


class KnnDetector:
    """Distance-to-reference-windows anomaly detector that keeps learning (module docstring).

    Args:
        embedding: one of :data:`EMBEDDINGS`, or your own :class:`~anomaly.embedders.Embedder` for the
            short window, or a ``(window, context)`` pair of them (their spans set ``window`` and
            ``context``).
        window: short window length, rows.
        context: long context length, rows (channels ``+...``), cut in ``segments`` pieces.
        k: neighbours averaged in a distance.
        delay: rows before a new window joins the references (the context's waits ``context + delay``).
        memory: rows of recent windows remembered (one window in ``window_stride`` / ``context_stride``).
        averaging, history, quantile, refit, min_history: calibration (:class:`~anomaly.calibration.TailCalibrator`).
        screen: anomalous readings per ``history`` rows kept out of the calibration (``None``: those of one
            lasting change and its end, ``2 * (window + delay)``; 0: none).
        alpha: tail probability per row at which a channel reads 0.5, the threshold.
        effect: how many times its typical value a distance must be to reach the threshold.
        range_tolerance: value-range novelty margin, as a fraction of the range (``inf`` turns it off).
        max_missing: longest gap (rows) a window may span and still be scored, its values interpolated.
        ef: hnswlib search breadth over the training windows.
        encoder_params: :class:`~anomaly.encoder.WindowEncoder` settings for LSTM/GRU embedders
            (hidden, epochs, lr, batch_size, seed, max_windows, augment, augment_scale, init, isometry,
            normalize).

    Raises:
        InvalidParameter: an unknown setting (a former alert-rule setting names its ``EA_ALERT_*``
            replacement) or a value out of range (the message names it).
    """

    def __init__(self, embedding: str | Embedder | tuple[Embedder, ...] = DEFAULT_EMBEDDING, window: int | None = None,
                 **params: Any) -> None:
        embedders: tuple[Embedder, ...] = ()
        if isinstance(embedding, Embedder):
            embedding = (embedding,)
        if isinstance(embedding, tuple):
            if not 1 <= len(embedding) <= 2 or not all(isinstance(e, Embedder) for e in embedding):
                raise InvalidParameter(f"embedding must be a name, an Embedder or (window, context) Embedders; got "
                                       f"{embedding!r}")
            embedders = embedding
            params = {**params, "window": embedders[0].span}
            if len(embedders) == 2:
                params["context"] = embedders[1].span
            embedding = "+".join(_embedder_name(e) for e in embedders)
        elif embedding not in EMBEDDINGS:
            raise InvalidParameter(f"embedding={embedding!r} is not one of {', '.join(EMBEDDINGS)}")
        moved = sorted(set(params) & set(MOVED_SETTINGS))
        if moved:
            raise InvalidParameter(f"{', '.join(moved)}: no longer detector parameters; which rows alert is the "
                                   f"alerting layer's ({', '.join(MOVED_SETTINGS[m] for m in moved)})")
        unknown = sorted(set(params) - set(SETTINGS) - set(ENCODER_SETTINGS))
        if unknown:
            raise InvalidParameter(f"unknown detector parameter(s) {unknown}; accepted: "
                                   f"{', '.join([*SETTINGS, *ENCODER_SETTINGS])}")
        settings = {**SETTINGS, **{k: v for k, v in params.items() if k in SETTINGS}}
        if window is not None and not embedders:
            settings["window"] = window
        _validate(settings)
        self.embedding = embedding
        self._embedders = embedders
        self.settings = settings
        self.encoder_params = {k: v for k, v in params.items() if k in ENCODER_SETTINGS}
        self.center = 0.0
        self.scale = 1.0
        self.channels: list[Channel] = []
        self.references: list[Reference] = []
        self.n_train = 0
        self.training_values = np.zeros(0)
        self.training_times = np.zeros(0, np.int64)
        self.fit_seconds = 0.0
        #: id of the series the detector was trained on, when published (scoring it continues the prefix).
        self.series_id: str | None = None
        self._continuation: tuple[dict[str, Any], dict[str, bytes]] | None = None
        self._prefix: Scored | None = None

    @property
    def window(self) -> int:
        """The short window's length, rows."""
        return int(self.settings["window"])

    @property
    def threshold(self) -> float:
        """Scores at or above this are anomalous (always 0.5: scores are calibrated)."""
        from .rules import THRESHOLD

        return THRESHOLD

    @property
    def scaler(self) -> RobustScaler:
        """The training prefix's scaling (median and spread)."""
        return RobustScaler(self.center, self.scale)

    @property
    def fitted(self) -> bool:
        return bool(self.channels)

    def min_train_length(self) -> int:
        """Fewest training rows: enough windows for the short channel (and to fine-tune a learned one; a learned
        context with a shorter prefix starts from its pretrained weights as they are)."""
        s = self.settings
        need = 2 * s["window"] + s["k"] + 8
        if self.embedding.partition("+")[0] in ("lstm", "gru"):
            need = max(need, s["window"] + MIN_FIT_WINDOWS)
        return int(need)

    # -- fitting -------------------------------------------------------------------------------------------
    def fit(self, values: np.ndarray | Series, timestamps: np.ndarray | None = None) -> KnnDetector:
        """Fit on the training prefix (values; NaN = missing) with optional int64-ns ``timestamps``.

        Raises:
            SeriesTooShort: fewer rows than :meth:`min_train_length`, or too few values.
            InvalidParameter: values that are not a 1-D numeric array.
        """
        start = time.perf_counter()
        v, ts = _values_and_times(values, timestamps)
        n = v.size
        if n < self.min_train_length():
            raise SeriesTooShort(f"training prefix has {n} rows; at least {self.min_train_length()} are needed "
                                 f"(embedding {self.embedding}, window {self.window})")
        finite = v[np.isfinite(v)]
        if finite.size < self.min_train_length() // 2:
            raise SeriesTooShort(f"training prefix has only {finite.size} values (the rest missing); at least "
                                 f"{self.min_train_length() // 2} are needed")
        scaler = RobustScaler.fit(finite)
        self.center, self.scale = scaler.center, scaler.scale
        scaled = _filled(v, scaler)
        self.channels = self._make_channels(scaled)
        self.n_train = n
        self.training_values, self.training_times = v.copy(), ts.copy()
        refs = [self._reference(ch) for ch in self.channels]
        scorer = StreamScorer(self, refs, start_row=0, training=None)
        self._prefix = scorer.update(v, ts)
        for ch, ref in zip(self.channels, refs):
            vectors, rows = self._training_windows(ch, scaled, np.isnan(v))
            ref.clear_recent()
            ref.set_static(vectors, rows, own=True)
        scorer.recent_from = n
        self.references = refs
        self._continuation = scorer.to_state()
        self.fit_seconds = time.perf_counter() - start
        log.info("fitted %s detector on %d rows (window %d, channels %s) in %.2f s", self.embedding, n,
                 self.window, [ch.name for ch in self.channels], self.fit_seconds)
        return self

    def _make_channels(self, scaled: np.ndarray) -> list[Channel]:
        s = self.settings
        short, _, long = self.embedding.partition("+")
        enc = self.encoder_params
        given = self._embedders or (make_embedder(short, s["window"], **enc),
                                    *([make_embedder("paa" if long == "paa" else f"{long}-paa", s["context"],
                                                     s["segments"], **enc)] if long else []))
        w = given[0].span
        channels = [Channel("window", given[0], w, s["delay"], s["memory"], s["window_stride"],
                            _floor(given[0].kind, w))]
        if len(given) == 2:
            span = given[1].span
            channels.append(Channel("context", given[1], span, span + s["delay"], s["memory"], s["context_stride"],
                                    _floor(given[1].kind, span)))
        for ch in channels:
            if ch.embedder.kind == "recurrent":
                windows = sliding_windows(scaled, ch.span) if scaled.size >= ch.span else np.zeros((0, ch.span))
                ch.embedder.fit(windows[np.isfinite(windows).all(axis=1)])
        return channels

    def _reference(self, ch: Channel) -> Reference:
        s = self.settings
        return Reference(ch.embedder.dim, delay=ch.delay, memory=ch.memory, stride=ch.stride, k=s["k"], ef=s["ef"])

    def _training_windows(self, ch: Channel, scaled: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and end rows of the prefix's complete windows (thinned to MAX_TRAINING_WINDOWS)."""
        if scaled.size < ch.span:
            return np.zeros((0, ch.embedder.dim), np.float32), np.zeros(0, np.int64)
        windows = sliding_windows(scaled, ch.span)
        every = np.arange(windows.shape[0]) + ch.span - 1
        ends = np.flatnonzero(complete_windows(windows, missing, every, ch.span, self.settings["max_missing"]))
        ends = ends[(ends + ch.span - 1) % ch.stride == 0]  # the stride of the recent windows, for the same reason
        if ends.size > MAX_TRAINING_WINDOWS:
            ends = ends[np.linspace(0, ends.size - 1, MAX_TRAINING_WINDOWS).astype(int)]
        return ch.embedder.embed(windows[ends]), (ends + ch.span - 1).astype(np.int64)

    # -- scoring -------------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFitted("KnnDetector used before fit (or from_parts)")

    def continuation(self) -> StreamScorer:
        """A scorer continuing the training series right after its prefix (what :meth:`fit_detect` uses).

        Raises:
            NotFitted: before :meth:`fit`.
        """
        meta, arrays = self._continuation if self._continuation else ({}, {})
        return self.resume(meta, arrays, continuation=True)

    def new_stream(self) -> StreamScorer:
        """A scorer for another series (a new series id): the training windows are references from another
        series, and its readings say so (``new_series``: a decider warms up on them).

        Raises:
            NotFitted: before :meth:`fit`.
        """
        self._check_fitted()
        return StreamScorer(self, [ref.foreign() for ref in self.references], start_row=0, new_series=True,
                            training=(self.training_values, self.training_times))

    def resume(self, meta: dict[str, Any], arrays: dict[str, bytes], *, continuation: bool) -> StreamScorer:
        """A scorer restored from :meth:`StreamScorer.to_state` output (``continuation``: of the training
        series, else of another series).

        Raises:
            NotFitted: before :meth:`fit`.
            InvalidParameter: the state does not fit this detector.
        """
        self._check_fitted()
        if not continuation:
            return self.new_stream().load_state(meta, arrays)
        scorer = StreamScorer(self, [ref.shared(own=True) for ref in self.references], start_row=self.n_train,
                              recent_from=self.n_train,
                              training=(self.training_values, self.training_times))
        return scorer.load_state(meta, arrays)

    def fit_detect(self, values: np.ndarray | Series, train_until: int, timestamps: np.ndarray | None = None, *,
                   decide: Decide | None = None) -> Scored:
        """Fit on the first ``train_until`` rows and score every row causally; ``decide`` (see
        :meth:`StreamScorer.update`) decides the rows after the prefix (the prefix never alerts).

        Raises:
            SeriesTooShort, InvalidParameter: as :meth:`fit`, or ``train_until`` outside 1..rows.
        """
        v, ts = _values_and_times(values, timestamps)
        if not 1 <= int(train_until) <= v.size:
            raise InvalidParameter(f"train_until={train_until} must be between 1 and the {v.size} rows")
        self.fit(v[:train_until], ts[:train_until])
        rest = self.continuation().update(v[train_until:], ts[train_until:], decide=decide)
        head = self._prefix
        assert head is not None  # fit scored the prefix
        arrays = {f: np.concatenate([getattr(head, f), getattr(rest, f)]) for f in SCORED_ARRAYS}
        return Scored(**arrays, explanations=rest.explanations)

    # -- persistence ---------------------------------------------------------------------------------------
    def to_parts(self) -> tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, Any]]:
        """``(arrays, blobs, meta)`` for :meth:`vectorstore.ModelRegistry.publish`: all :meth:`from_parts` needs.

        arrays: each channel's training vectors and rows, the training values and timestamps; blobs: each
        channel's hnswlib index, learned embedders' weights, the training series' stream state; meta:
        settings, scaler, channels.
        """
        self._check_fitted()
        arrays: dict[str, np.ndarray] = {"training_values": self.training_values.astype(np.float64),
                                         "training_times": self.training_times.astype(np.int64)}
        blobs: dict[str, bytes] = {}
        channels = []
        for c, (ch, ref) in enumerate(zip(self.channels, self.references)):
            emb_meta, emb_blobs = ch.embedder.to_state()
            arrays[f"c{c}_vectors"] = ref.static_vectors
            arrays[f"c{c}_rows"] = ref.static_rows
            if ref.static_index is not None:
                blobs[f"c{c}_index"] = ref.static_index.to_bytes()
            blobs.update({f"c{c}_{name}": data for name, data in emb_blobs.items()})
            channels.append({"name": ch.name, "span": ch.span, "delay": ch.delay, "memory": ch.memory,
                             "stride": ch.stride, "floor": ch.floor, "embedder": emb_meta})
        assert self._continuation is not None  # set by fit and from_parts
        state_meta, state_arrays = self._continuation
        blobs.update({f"state_{name}": data for name, data in state_arrays.items()})
        meta = {"kind": DETECTOR_KIND, "format": 2, "embedding": self.embedding, "settings": self.settings,
                "encoder_params": self.encoder_params, "center": self.center, "scale": self.scale,
                "n_train": self.n_train, "channels": channels, "state": state_meta,
                "window": self.window, "threshold": self.threshold}
        return arrays, blobs, meta

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], blobs: dict[str, bytes], meta: dict[str, Any]) -> KnnDetector:
        """Rebuild a fitted detector from :meth:`to_parts` output.

        Raises:
            NotFitted: a part is missing, or the detector was published in an older format (train it again).
        """
        if meta.get("format") != 2:
            raise NotFitted("this detector was published by an older version (no learning state); train it again")
        try:
            name = meta["embedding"]
            # A detector published before incidents left it carries its alert rule's settings: not its own now.
            settings = {k: v for k, v in meta["settings"].items() if k not in MOVED_SETTINGS}
            det = cls(name if name in EMBEDDINGS else DEFAULT_EMBEDDING, **settings, **meta.get("encoder_params", {}))
            det.embedding = name
            det.center, det.scale, det.n_train = float(meta["center"]), float(meta["scale"]), int(meta["n_train"])
            det.series_id = meta.get("series_id")
            det.training_values = np.asarray(arrays["training_values"], np.float64)
            det.training_times = np.asarray(arrays["training_times"], np.int64)
            for c, spec in enumerate(meta["channels"]):
                emb_blobs = {name[len(f"c{c}_"):]: data for name, data in blobs.items() if name.startswith(f"c{c}_")
                             and name != f"c{c}_index"}
                embedder = embedder_from_state(spec["embedder"], emb_blobs)
                ch = Channel(spec["name"], embedder, int(spec["span"]), int(spec["delay"]), int(spec["memory"]),
                             int(spec["stride"]), float(spec["floor"]))
                ref = det._reference(ch)
                index = ItemIndex.from_bytes(blobs[f"c{c}_index"]) if f"c{c}_index" in blobs else None
                ref.set_static(np.asarray(arrays[f"c{c}_vectors"], np.float32), arrays[f"c{c}_rows"], own=True,
                               index=index)
                det.channels.append(ch)
                det.references.append(ref)
            state_arrays = {name[len("state_"):]: data for name, data in blobs.items() if name.startswith("state_")}
            det._continuation = (meta["state"], state_arrays)
        except KeyError as exc:
            raise NotFitted(f"detector parts lack {exc}") from None
        return det


def _validate(s: dict[str, Any]) -> None:
    ints = ("window", "context", "segments", "k", "delay", "memory", "window_stride", "context_stride", "averaging",
            "history",
            "refit", "min_history", "max_missing", "ef")
    for key in ints:
        if not isinstance(s[key], int | np.integer) or isinstance(s[key], bool):
            raise InvalidParameter(f"{key}={s[key]!r} must be an integer")
    if s["window"] < 2 or s["context"] < 2 or s["k"] < 1 or s["ef"] < 1 or s["memory"] < 1:
        raise InvalidParameter(f"window={s['window']}, context={s['context']}, k={s['k']}, ef={s['ef']}, "
                               f"memory={s['memory']}: window and context must be >= 2, the others >= 1")
    if s["delay"] < 1 or s["context_stride"] < 1 or s["window_stride"] < 1 or s["averaging"] < 1 or s["refit"] < 1:
        raise InvalidParameter(f"delay={s['delay']}, context_stride={s['context_stride']}, "
                               f"averaging={s['averaging']}, refit={s['refit']} must be >= 1")
    if s["segments"] < 1 or s["context"] % s["segments"]:
        raise InvalidParameter(f"segments={s['segments']} must divide context={s['context']}")
    if s["min_history"] < 10 or s["history"] < s["min_history"]:
        raise InvalidParameter(f"min_history={s['min_history']} must be >= 10 and <= history={s['history']}")
    if not 0 < float(s["alpha"]) < 0.5:
        raise InvalidParameter(f"alpha={s['alpha']} must be in (0, 0.5)")
    if not 0.5 <= float(s["quantile"]) < 1:
        raise InvalidParameter(f"quantile={s['quantile']} must be in [0.5, 1)")
    if not float(s["effect"]) > 0 or not float(s["range_tolerance"]) >= 0:
        raise InvalidParameter(f"effect={s['effect']} must be > 0 and range_tolerance={s['range_tolerance']} >= 0")
    if s["screen"] is not None and (not isinstance(s["screen"], int | np.integer) or s["screen"] < 0):
        raise InvalidParameter(f"screen={s['screen']!r} must be a non-negative integer or None")
    if s["max_missing"] < 0:
        raise InvalidParameter(f"max_missing={s['max_missing']} must be >= 0")


def _embedder_name(e: Embedder) -> str:
    if isinstance(e, RecurrentEmbedder):
        return e.cell + ("-paa" if e.segments else "")
    return e.kind


def _floor(kind: str, span: int) -> float:
    """The calibration's smallest distance scale: 1% of the prefix's IQR per row for raw and piecewise-mean
    windows (a noise-free series must not alert on rounding), a fixed small value in an encoder's space."""
    return 0.01 * math.sqrt(span) if kind in ("raw", "paa") else 1e-3


def _values_and_times(values: np.ndarray | Series, timestamps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(values, Series):
        if timestamps is None:
            timestamps = values.timestamps.as_unit("ns").asi8
        values = values.values
    v = np.asarray(values)
    if v.ndim != 1 or v.dtype.kind not in "fiub":
        raise InvalidParameter(f"values must be a 1-D numeric array, got shape {v.shape} dtype {v.dtype}")
    v = v.astype(np.float64)
    if np.isinf(v).any():
        raise InvalidParameter(f"values are infinite at positions {np.flatnonzero(np.isinf(v))[:5].tolist()}")
    ts = np.full(v.size, NAT, np.int64) if timestamps is None else np.asarray(timestamps).astype(np.int64)
    if ts.size != v.size:
        raise InvalidParameter(f"{ts.size} timestamps for {v.size} values")
    return v, ts


def _filled(v: np.ndarray, scaler: RobustScaler) -> np.ndarray:
    """Scaled values with closed gaps interpolated as the scorer reads them (open ends stay NaN)."""
    return scaler.transform(interpolate_gaps(v))
