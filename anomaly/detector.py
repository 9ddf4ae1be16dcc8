"""kNN-distance anomaly detector over window embeddings (LSTM/GRU autoencoder state, or raw windows).

Fitting (``fit(values_train)``): the training prefix sets the scaler (median/IQR) and, unless given, the
window length (:func:`~anomaly.series.choose_window`); every training window (stride 1) is embedded and
put in an hnswlib L2 index whose ids are the windows' start rows.

Scoring: the window ending at row ``t`` is embedded; its distance is the mean L2 distance to its ``k``
nearest training windows, **excluding trivial matches**, i.e. training windows that overlap it in time
(start rows closer than ``window``). The score is that distance divided by the calibrated threshold
distance, so a score above 1.0 means anomalous and scores are comparable across series. The score at
row ``t`` uses only rows ``<= t`` plus the model fitted on the training prefix; rows before the first
full window score 0.

Calibration (never on labels): every training window is scored against the others (with the trivial
match exclusion, so each is in effect held out from the index), and the threshold distance is
``max(median + c * MAD, max)`` of those scores (MAD scaled to a standard deviation): never below the
largest training score, so the prefix itself raises no alert, and above it only for heavy-tailed
prefixes. Training windows are subsampled evenly to at most ``max_calibration`` for this. A neural
encoder is not trained on the last ``holdout`` fraction of the prefix (nor on windows overlapping it),
and the threshold is the larger of that rule over all training windows and over the held-out ones: an
encoder embeds the windows it was fitted on more tightly than new ones, so in-sample distances alone
understate those of new normal data. Off by default: on NAB it cut the false alarms of an over-sensitive
GRU (1.02 -> 0.19 per 1k clean rows) but cost the LSTM detections (NAB-like 48.8 vs 49.2 over 3 seeds),
the training prefix there being at most 750 rows.

Alerts: a row is flagged when its score exceeds 1.0 and no row was flagged in the previous
``refractory`` rows (default 200), so one incident gives one alert instead of a storm; with
``rearm=True`` the score must also have dropped back under 1.0 since the previous alert.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from vectorstore.index import ItemIndex

from .exceptions import InvalidParameter, NotFitted, SeriesTooShort
from .series import MAX_WINDOW, MIN_WINDOW, RobustScaler, Series, choose_window, sliding_windows
from .stream import THRESHOLD, StreamScorer, decide_alerts

__all__ = ["KnnDetector", "StreamScorer", "decide_alerts", "EMBEDDINGS", "DEFAULT_EMBEDDING"]

log = logging.getLogger(__name__)

EMBEDDINGS = ("lstm", "gru", "raw")
#: What a detector embeds windows with unless told: the LSTM detected best on NAB (see the README).
DEFAULT_EMBEDDING = "lstm"
_EXACT_BLOCK = 1024
_SETTINGS = ("window", "k", "c", "refractory", "center", "rearm", "ef", "max_calibration", "holdout")
_ADDED_SETTINGS = {"holdout": 0.0}  # settings newer than some published detectors: what those were fitted with


class KnnDetector:
    """Distance-to-training-windows anomaly detector (see the module docstring for the rules).

    Args:
        embedding: ``"lstm"`` or ``"gru"`` (sequence-autoencoder state; the LSTM, the default, detects
            best on NAB: see the README) or ``"raw"`` (the scaled window).
        window: window length; ``None`` chooses it from the training prefix.
        k: neighbours averaged in the distance.
        c: MAD multiplier of the threshold.
        refractory: rows after an alert during which no new alert is raised (``None``: 2 windows). The
            default, 200 rows, keeps alerts to about one per incident on minute-to-hourly metrics.
        center: subtract each window's mean (compare shapes only; blind to level shifts once the
            window has passed the step). Off by default: levels matter for most metrics.
        rearm: also require the score to fall back under the threshold before a new alert.
        hidden, epochs, lr, batch_size, seed, max_windows, augment, augment_scale, init, isometry, normalize:
            :class:`~anomaly.encoder.WindowEncoder` settings.
        ef: hnswlib query beam width.
        max_calibration: training windows scored to calibrate the threshold (evenly spread).
        holdout: fraction at the end of the prefix that a neural encoder is not trained on; the
            threshold also covers those windows' distances (ignored for raw windows).

    Raises:
        InvalidParameter: a value outside its range.
    """

    def __init__(
        self,
        embedding: str = DEFAULT_EMBEDDING,
        window: int | None = None,
        k: int = 3,
        c: float = 3.0,
        refractory: int | None = 200,
        *,
        center: bool = False,
        rearm: bool = False,
        hidden: int = 16,
        epochs: int | None = None,
        lr: float = 1e-2,
        batch_size: int = 64,
        seed: int = 0,
        max_windows: int = 1024,
        augment: float = 0.5,
        augment_scale: float | None = None,
        init: str | None = "auto",
        isometry: float | None = None,
        normalize: bool | None = None,
        ef: int = 16,
        max_calibration: int = 2000,
        holdout: float = 0.0,
    ) -> None:
        if embedding not in EMBEDDINGS:
            raise InvalidParameter(f"embedding={embedding!r} is not one of {EMBEDDINGS}")
        if window is not None and window < 2:
            raise InvalidParameter(f"window={window} must be >= 2")
        if k < 1 or ef < 1:
            raise InvalidParameter(f"k={k} and ef={ef} must be >= 1")
        if not c > 0:
            raise InvalidParameter(f"c={c} must be > 0")
        if not 0 <= holdout < 1:
            raise InvalidParameter(f"holdout={holdout} must be in [0, 1)")
        if refractory is not None and refractory < 0:
            raise InvalidParameter(f"refractory={refractory} must be >= 0")
        self.embedding = embedding
        self.window = window
        self._window_given = window  # refitting on another series chooses its window again
        self.k = int(k)
        self.c = float(c)
        self.refractory = refractory
        self.center = bool(center)
        self.rearm = bool(rearm)
        self.ef = int(ef)
        self.max_calibration = int(max_calibration)
        self.holdout = float(holdout)
        self.encoder_params = dict(
            hidden=hidden, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, max_windows=max_windows,
            augment=augment, augment_scale=augment_scale, init=init, isometry=isometry,
            normalize=normalize,
        )
        self.scaler: RobustScaler | None = None
        self.encoder: Any = None
        self.index: ItemIndex | None = None
        self._train_vectors: np.ndarray | None = None
        self.threshold_distance: float | None = None
        self.train_scores: np.ndarray | None = None
        self.n_train = 0
        self.tail: np.ndarray | None = None
        self.fit_seconds = 0.0

    # -- fitting ---------------------------------------------------------------------------------------
    @property
    def threshold(self) -> float:
        """Alert threshold on :meth:`score` values (scores are distances relative to the calibration)."""
        return THRESHOLD

    def min_train_length(self, window: int | None = None) -> int:
        """Fewest training rows: enough windows that ``k`` remain after excluding overlapping ones."""
        w = window or self.window or MIN_WINDOW
        return 3 * w + self.k + 8

    def fit(self, values_train: np.ndarray | Series) -> KnnDetector:
        """Fit on the training prefix (a :class:`Series` or its values).

        Raises:
            SeriesTooShort: fewer rows than :meth:`min_train_length` (the message names it).
            InvalidParameter: non-finite values.
        """
        start = time.perf_counter()
        values = _as_values(values_train)
        n = values.size
        self.window = self._window_given
        if n < self.min_train_length():
            raise SeriesTooShort(
                f"training prefix has {n} rows; at least {self.min_train_length()} are needed "
                f"(window {self.window or MIN_WINDOW}, k {self.k})"
            )
        if self.window is None:
            cap = max(MIN_WINDOW, min(MAX_WINDOW, (n - self.k - 8) // 3))
            self.window = choose_window(values, max_window=cap)
            log.info("chose window %d from the %d-row training prefix", self.window, n)
        if n < self.min_train_length():
            raise SeriesTooShort(
                f"training prefix has {n} rows; at least {self.min_train_length()} are needed for window "
                f"{self.window} and k {self.k}"
            )
        self.scaler = RobustScaler.fit(values)
        windows = self._windows(values)
        held = self._held_out_start(windows.shape[0])
        if self.embedding != "raw":
            from .encoder import WindowEncoder  # lazy: the raw detector works without torch

            # The encoder never sees the held-out windows, nor any window overlapping them.
            seen = windows if held is None else windows[: held - self.window + 1]
            self.encoder = WindowEncoder(cell=self.embedding, **self.encoder_params).fit(seen)
        vectors = self._embed(windows)
        self.index = ItemIndex.build(vectors, space="l2", M=16, ef_construction=100, ef=self.ef, num_threads=1)
        self.threshold_distance = 1.0
        # Calibrate on at most max_calibration windows spread over the prefix (each held out from its
        # own neighbourhood by the trivial-match exclusion); all of them on short prefixes.
        cal = np.unique(np.linspace(0, vectors.shape[0] - 1, min(vectors.shape[0], self.max_calibration)).astype(int))
        dist = self._distances(vectors[cal], cal)
        threshold = self._threshold(dist)
        if held is not None and (cal >= held).any():
            # Windows the encoder never saw are embedded less tightly than those it was fitted on: the
            # threshold must also cover them (those among the calibration windows), or new normal data
            # would sit above it.
            threshold = max(threshold, self._threshold(dist[cal >= held]))
        self.threshold_distance = threshold
        self.train_scores = (dist / self.threshold_distance).astype(np.float32)
        self.n_train = n
        self.tail = values[n - self.window + 1 :].copy()
        self.fit_seconds = time.perf_counter() - start
        log.info(
            "fitted %s detector: window %d, %d training windows, threshold distance %.4g in %.1f s",
            self.embedding, self.window, vectors.shape[0], self.threshold_distance, self.fit_seconds,
        )
        return self

    def _threshold(self, dist: np.ndarray) -> float:
        """``max(median + c * MAD, max)`` of calibration distances (MAD scaled to a standard deviation)."""
        med = float(np.median(dist))
        mad = 1.4826 * float(np.median(np.abs(dist - med)))
        return max(med + self.c * mad, float(dist.max()), 1e-9)

    def _held_out_start(self, n_windows: int) -> int | None:
        """First training window kept from the encoder for calibration (``None``: no hold-out).

        Raw windows need none: the trivial-match exclusion already scores each training window against
        windows it does not overlap. Too short a prefix keeps everything for training.
        """
        if self.embedding == "raw" or self.holdout <= 0:
            return None
        start = n_windows - int(round(self.holdout * n_windows))
        if n_windows - start < 2 * self.k + 8 or start - self.window + 1 < 16:
            return None
        return start

    # -- scoring ---------------------------------------------------------------------------------------
    def score(self, values: np.ndarray | Series, start_index: int = 0) -> np.ndarray:
        """Anomaly score of every row of ``values`` (float64, finite; > 1.0 = anomalous).

        ``values[i]`` is row ``start_index + i`` of the series the detector was fitted on (row 0 is the
        first training row); that position is what makes training windows overlapping a query window
        trivial matches. Score ``i`` depends only on ``values[: i + 1]``; the first ``window - 1`` rows of
        ``values`` have no full window and score 0.

        Raises:
            NotFitted: before :meth:`fit`.
            InvalidParameter: non-finite values.
        """
        self._check_fitted()
        v = _as_values(values)
        out = np.zeros(v.size, dtype=np.float64)
        w = self.window
        if v.size < w:
            return out
        windows = self._windows(v)
        starts = start_index + np.arange(windows.shape[0])
        out[w - 1 :] = self._distances(self._embed(windows), starts) / self.threshold_distance
        return out

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        """``is_anomaly`` decisions (bool) for consecutive ``scores``, with the refractory period."""
        return decide_alerts(scores, THRESHOLD, self.refractory_rows, rearm=self.rearm)[0]

    @property
    def refractory_rows(self) -> int:
        """Rows after an alert during which no new one is raised."""
        self._check_fitted()
        return 2 * self.window if self.refractory is None else int(self.refractory)

    def stream(self) -> StreamScorer:
        """A :class:`StreamScorer` continuing right after the training prefix."""
        self._check_fitted()
        return StreamScorer(self, position=self.n_train, tail=self.tail)

    def _windows(self, values: np.ndarray) -> np.ndarray:
        windows = sliding_windows(self.scaler.transform(values), self.window)
        if self.center:
            # Shape, not level: slow drifts of the level then move no window away from the training ones.
            return windows - windows.mean(axis=1, keepdims=True)
        return windows

    def _embed(self, windows: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            return np.ascontiguousarray(windows, dtype=np.float32)
        return self.encoder.embed(windows)

    def _distances(self, vectors: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Mean L2 distance of each vector to its k nearest training windows not overlapping it in time."""
        w, k = self.window, self.k
        n_index = len(self.index)
        dist = np.empty(vectors.shape[0], dtype=np.float64)
        # Only windows starting before the last training window's end can overlap one.
        near = starts < n_index + w - 1
        far = ~near
        if far.any():
            ids, _ = self._query(vectors[far], min(k, n_index))
            dist[far] = self._exact(vectors[far], ids).mean(axis=1)
        if near.any():
            fetch = min(n_index, k + 2 * w - 1)
            ids, _ = self._query(vectors[near], fetch)
            ok = (ids >= 0) & (np.abs(ids - starts[near][:, None]) >= w)
            keep = ok & (np.cumsum(ok, axis=1) <= k)
            d = np.where(keep, self._exact(vectors[near], np.where(ids >= 0, ids, 0)), 0.0)
            dist[near] = d.sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
        return dist

    def _exact(self, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Euclidean distances (float64) from each vector to the training vectors ``ids`` (one row each).

        hnswlib picks the neighbours; recomputing their distances here makes a score independent of
        how queries were batched (hnswlib's float32 SIMD sums differ between batch and single queries),
        so streaming gives exactly the batch scores.
        """
        ref = self._reference()
        out = np.empty(ids.shape, dtype=np.float64)
        # In blocks: the gathered neighbours of a block stay in cache (one pass over all rows does not).
        for a in range(0, ids.shape[0], _EXACT_BLOCK):
            diff = ref[ids[a : a + _EXACT_BLOCK]] - vectors[a : a + _EXACT_BLOCK].astype(np.float64)[:, None, :]
            out[a : a + _EXACT_BLOCK] = np.sqrt(np.einsum("mkd,mkd->mk", diff, diff))
        return out

    def _reference(self) -> np.ndarray:
        if self._train_vectors is None:
            self._train_vectors = self.index.get_vectors(np.arange(len(self.index))).astype(np.float64)
        return self._train_vectors

    def _query(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest training windows (ids, squared distances), exact if hnswlib cannot answer."""
        try:
            return self.index.query(vectors, k=k)
        except RuntimeError:
            # hnswlib gives up ("cannot return the results in a contiguous 2D array") when many training
            # vectors are identical (flat lines); an exact search over the stored vectors always works.
            log.warning("hnswlib returned fewer than %d neighbours; using exact search", k)
            ref = self._reference()
            ids = np.empty((vectors.shape[0], k), dtype=np.int64)
            sq = np.empty((vectors.shape[0], k), dtype=np.float64)
            ref_norm = (ref**2).sum(axis=1)
            for i in range(0, vectors.shape[0], 1024):
                q = vectors[i : i + 1024].astype(np.float64)
                d = np.maximum((q**2).sum(axis=1)[:, None] - 2 * q @ ref.T + ref_norm[None, :], 0)
                part = np.argsort(d, axis=1, kind="stable")[:, :k]
                ids[i : i + q.shape[0]] = part
                sq[i : i + q.shape[0]] = np.take_along_axis(d, part, axis=1)
            return ids, sq

    def _check_fitted(self) -> None:
        if self.index is None or self.scaler is None:
            raise NotFitted("KnnDetector used before fit (or from_parts)")

    # -- persistence -----------------------------------------------------------------------------------
    def to_parts(self) -> tuple[dict[str, np.ndarray], dict[str, bytes], dict[str, Any]]:
        """``(arrays, blobs, meta)`` for :meth:`ModelRegistry.publish`: everything :meth:`from_parts` needs.

        arrays: ``tail`` (last window-1 training values), ``train_scores``; blobs: ``index``
        (:meth:`ItemIndex.to_bytes`) and, for neural embeddings, ``encoder`` (torch state_dict bytes);
        meta: JSON-able settings, scaler statistics and the threshold distance.
        """
        self._check_fitted()
        arrays = {"tail": self.tail.astype(np.float64), "train_scores": self.train_scores.astype(np.float32)}
        blobs = {"index": self.index.to_bytes()}
        meta: dict[str, Any] = {
            "kind": "knn_detector",
            "embedding": self.embedding,
            **{key: getattr(self, key) for key in _SETTINGS},
            "threshold_distance": float(self.threshold_distance),
            "scaler": {"center": self.scaler.center, "scale": self.scaler.scale},
            "n_train": int(self.n_train),
            "encoder_params": dict(self.encoder_params),
        }
        if self.encoder is not None:
            blobs["encoder"] = self.encoder.state_bytes()
            meta["encoder"] = self.encoder.config_dict()
        return arrays, blobs, meta

    @classmethod
    def from_parts(
        cls, arrays: dict[str, np.ndarray], blobs: dict[str, bytes], meta: dict[str, Any]
    ) -> KnnDetector:
        """Rebuild a fitted detector from :meth:`to_parts` output.

        Raises:
            NotFitted: a part is missing.
        """
        try:
            settings = {key: meta[key] if key in meta else _ADDED_SETTINGS[key] for key in _SETTINGS}
            det = cls(meta["embedding"], **settings, **meta["encoder_params"])
            det.scaler = RobustScaler(float(meta["scaler"]["center"]), float(meta["scaler"]["scale"]))
            det.threshold_distance = float(meta["threshold_distance"])
            det.n_train = int(meta["n_train"])
            det.tail = np.asarray(arrays["tail"], dtype=np.float64)
            det.train_scores = np.asarray(arrays["train_scores"], dtype=np.float32)
            det.index = ItemIndex.from_bytes(blobs["index"])
            if det.embedding != "raw":
                from .encoder import WindowEncoder

                det.encoder = WindowEncoder.from_state(blobs["encoder"], meta["encoder"])
        except KeyError as exc:
            raise NotFitted(f"detector parts lack {exc}") from None
        return det


def _as_values(values: np.ndarray | Series, allow_empty: bool = False) -> np.ndarray:
    v = values.values if isinstance(values, Series) else values
    v = np.asarray(v, dtype=np.float64).ravel()
    if v.size == 0 and not allow_empty:
        raise SeriesTooShort("no values given; at least one window is needed")
    if not np.isfinite(v).all():
        bad = np.flatnonzero(~np.isfinite(v))[:5].tolist()
        raise InvalidParameter(f"values must be finite; NaN/inf at positions {bad}")
    return v
