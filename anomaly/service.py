"""Detectors as published models, and streaming scoring that keeps learning, its state in Redis.

Shared by the Celery tasks ``ea.train_series`` / ``ea.score_series`` and by the CLI. A detector version
holds :meth:`KnnDetector.to_parts` (training windows' hnswlib indexes, learned embedders, scaler,
settings, and the stream state at the end of the training prefix). The stream state of each series
(:meth:`StreamScorer.to_state`: its last values, calibration and value range) lives in one Redis hash per
series (:mod:`anomaly._stream_state` owns it: keys, fields, bytes), so any score worker can take the next
batch; a worker keeps the live scorer in memory and reads the hash again only when another worker has
written it since. A state under the former key (one slot per detector) is moved to the series' own key by
the series' next batch.

The series a detector was trained on (its id is recorded at training) continues from the training
prefix; any other series id starts its own stream, whose readings say it is new (``new_series``: the
alerting layer warms up on it).

Alerting is the caller's: :func:`score_points` gives each chunk's readings to a ``decide`` function and the
scored batch to a ``commit`` function, both under the series' lock (``workers`` passes the alerting layer's).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import ModelRegistry, Settings, get_settings

from . import _labels as labels
from . import _stream_state as state_record
from ._timestamps import NAT as _NAT
from ._timestamps import iso_utc, read_utc_ns
from .detector import DEFAULT_EMBEDDING, DETECTOR_KIND, KnnDetector
from .exceptions import CorruptState, InvalidParameter, InvalidSeries, NotFitted
from .series import ReadOptions, read_one_series
from .stream import Decide, Scored, StreamScorer

__all__ = ["load_detector", "publish_detector", "reset_stream", "score_points", "train_detector"]

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str, int], KnnDetector] = {}
_cache_lock = threading.Lock()
#: Live scorers of this process: (prefix, model, series id) -> (version, token, scorer), most recent last.
_live: OrderedDict[tuple[str, str, str], tuple[int, str, StreamScorer]] = OrderedDict()
_LIVE_MAX = 256


def train_detector(
    source: str | pd.DataFrame,
    *,
    name: str,
    train_until: int | None = None,
    embedding: str | None = None,
    params: dict[str, Any] | None = None,
    read_options: ReadOptions | None = None,
    series_id: str | None = None,
    registry: ModelRegistry | None = None,
    token: str | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fit a detector on the first ``train_until`` rows (default: all) of a series and publish it.

    ``embedding``: one of :data:`~anomaly.detector.EMBEDDINGS`; ``None``: the default
    (:data:`~anomaly.detector.DEFAULT_EMBEDDING`), so job submitters need not repeat it. ``read_options`` go
    to :func:`~anomaly.series.read_one_series`. ``series_id`` names the series trained on (default: its id
    in the file, ``"default"`` without a series column): scoring that id later continues right after the
    training rows, while any other id starts its own stream. ``progress`` is called with
    ``{"stage", "done", "total"}`` as the stages ``read``, ``fit`` and ``publish`` start and end.

    Returns:
        ``{"model", "version", "window", "threshold", "rows", "train_until", "embedding", "series_id"}``.

    Raises:
        InvalidSeries, SeriesTooShort, InvalidParameter: bad input; nothing published.
    """
    registry = registry or ModelRegistry()
    if token and (done := registry.version_for_token(name, token)):
        meta = registry.manifest(name, done)["meta"]
        return {"model": name, "version": done, "window": meta["window"], "embedding": meta["embedding"],
                "series_id": meta.get("series_id")}
    report = progress or (lambda info: None)
    report({"stage": "read", "done": 0, "total": 1})
    series = read_one_series(source, **(read_options or {}))
    n = train_until or len(series)
    if not 1 <= n <= len(series):
        raise InvalidParameter(f"train_until={n} must be between 1 and the {len(series)} rows of the input")
    detector = KnnDetector(embedding or DEFAULT_EMBEDDING, **(params or {}))
    report({"stage": "read", "done": 1, "total": 1, "rows": len(series)})
    report({"stage": "fit", "done": 0, "total": n, "embedding": detector.embedding})
    detector.fit(series.values[:n], series.timestamps.as_unit("ns").asi8[:n])
    report({"stage": "fit", "done": n, "total": n, "embedding": detector.embedding})
    sid = series_id or series.id
    extra = {"trained_rows": n, "trained_until": str(series.timestamps[n - 1]), "series_id": sid}
    report({"stage": "publish", "done": 0, "total": 1})
    version = publish_detector(registry, name, detector, extra_meta=extra, token=token)
    report({"stage": "publish", "done": 1, "total": 1, "version": version})
    return {"model": name, "version": version, "window": detector.window, "threshold": detector.threshold,
            "rows": len(series), "train_until": n, "embedding": detector.embedding, "series_id": sid}


def publish_detector(registry: ModelRegistry, name: str, detector: KnnDetector, *,
                     extra_meta: dict[str, Any] | None = None, token: str | None = None) -> int:
    """Publish a fitted detector as a version of model ``name``."""
    arrays, blobs, meta = detector.to_parts()
    return registry.publish(name, arrays=arrays, blobs=blobs, meta={**meta, **(extra_meta or {})}, token=token)


def load_detector(registry: ModelRegistry, name: str, version: int | None = None) -> tuple[int, KnnDetector]:
    """The detector of ``version`` (default: active), cached per process by version.

    Raises:
        NotFitted: the model is not a detector, or was published in an older format.
    """
    version = version or registry.active_version(name)
    key = (registry.settings.key_prefix, name, int(version or 0))
    with _cache_lock:
        if key in _cache:
            return key[2], _cache[key]
    mv = registry.load(name, version)
    if mv.meta.get("kind") != DETECTOR_KIND:
        raise NotFitted(f"model {name!r} v{mv.version} is not an anomaly detector (kind {mv.meta.get('kind')!r})")
    detector = KnnDetector.from_parts(dict(mv.arrays), dict(mv.blobs), mv.meta)
    with _cache_lock:
        _cache[(registry.settings.key_prefix, name, mv.version)] = detector
    return mv.version, detector


def _carry_over(registry: ModelRegistry, name: str, series_id: str, key: str) -> Any:
    """Move a state kept under the former key to ``key`` (under the series' lock); its token, or None.

    Copied field by field, not RENAMEd: on a cluster the two keys are in different slots.
    """
    former = state_record.former_state_key(registry.settings.key_prefix, name, series_id)
    raw = registry.client.hgetall(former)
    if not raw:
        return None
    registry.client.hset(key, mapping=raw)
    registry.client.delete(former)
    log.info("stream state of %r on %s moved to its own key", series_id, name)
    return state_record.token_of(raw)


def score_points(
    name: str,
    series_id: str,
    timestamps: list[Any],
    values: list[float | None],
    *,
    registry: ModelRegistry | None = None,
    decide: Decide | None = None,
    commit: Callable[[Scored, int], None] | None = None,
) -> dict[str, Any]:
    """Score newly arrived points of one series with the active detector of ``name``, causally, and learn
    from them.

    The stream state is read and written under a per-series lock, so concurrent batches of one series
    are scored in arrival order. Alerting is the caller's (``workers`` passes the alerting layer's):

    Args:
        values: floats; ``None``/NaN for a missing value (scored as missing, never an alert).
        timestamps: one per value, non-decreasing, after the last one scored for this series.
        decide: given each chunk's :class:`~anomaly.stream.Readings`, returns the rows that alert (they are
            explained); under the lock.
        commit: given the scored batch and the detector version once the batch is scored, before its state
            is saved, under the lock: what must be saved with the batch's decisions goes there. If it
            raises, the state is not saved (the batch can be scored again).

    Returns:
        ``{"version", "position", "rows", "timestamps", "scores", "threshold", "new_series", "explanations"}``
        and, with ``decide``, ``"is_anomaly"`` (timestamps as UTC ISO 8601 text; a missing value's score is
        None).

    Raises:
        InvalidSeries: lengths differ, values are infinite, or timestamps cannot be read or go backwards.
    """
    if len(timestamps) != len(values):
        raise InvalidSeries(f"{len(timestamps)} timestamps for {len(values)} values")
    vals = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if np.isinf(vals).any():
        bad = np.flatnonzero(np.isinf(vals))[:5].tolist()
        raise InvalidSeries(f"values must be finite or missing; positions {bad} are infinite")
    ns = read_utc_ns(timestamps)
    if (ns == _NAT).any():
        raise InvalidSeries(f"timestamps at positions {np.flatnonzero(ns == _NAT)[:5].tolist()} cannot be read")
    if (np.diff(ns) < 0).any():
        at = int(np.flatnonzero(np.diff(ns) < 0)[0]) + 1
        raise InvalidSeries(f"timestamps of a batch must not go backwards: position {at} ({_utc(ns[at])}) is "
                            f"before position {at - 1} ({_utc(ns[at - 1])})")
    registry = registry or ModelRegistry()
    settings = registry.settings
    client = registry.client
    version, detector = load_detector(registry, name)
    key = state_record.state_key(settings.key_prefix, name, series_id)
    with client.lock(state_record.lock_key(key), timeout=60, blocking_timeout=30):
        token = state_record.read_token(client, key)
        if token is None:
            token = _carry_over(registry, name, series_id, key)
        scorer = _scorer(registry, key, name, series_id, version, detector, token)
        if scorer.times.size and scorer.times[-1] != _NAT and ns.size and ns[0] <= scorer.times[-1]:
            raise InvalidSeries(f"series {series_id!r}: timestamp {_utc(ns[0])} is not after the last scored one "
                                f"({_utc(scorer.times[-1])})")
        try:
            out = scorer.update(vals, ns, decide=decide)
            if commit is not None:
                commit(out, version)
        except BaseException:
            _forget(settings, name, series_id)  # the scorer may be half-updated; Redis still holds its state
            raise
        mapping, new_token = state_record.to_hash(*scorer.to_state(), version)
        client.hset(key, mapping=mapping)
        _remember(settings, name, series_id, version, new_token, scorer)
    result = {"version": version, "position": scorer.position, "rows": out.rows.tolist(), "timestamps": iso_utc(ns),
              "scores": [None if x != x else x for x in out.score.tolist()],  # x != x: NaN, a missing value
              "threshold": detector.threshold, "new_series": scorer.new_series, "explanations": out.explanations}
    if decide is not None:
        result["is_anomaly"] = out.is_anomaly.astype(int).tolist()
    return result


def _utc(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _scorer(registry: ModelRegistry, key: str, name: str, series_id: str, version: int, detector: KnnDetector,
            token: Any) -> StreamScorer:
    """The live scorer of a series: this process's own when nobody wrote the state since, else the state
    read from Redis, else a new stream (the training series continues after its prefix); a scorer read
    anew gets the normal windows of the series' labels (:mod:`anomaly._labels`)."""
    live_key = (registry.settings.key_prefix, name, series_id)
    with _cache_lock:
        live = _live.get(live_key)
    if live and token is not None and live[0] == version and live[1] == bytes(token).decode(errors="replace"):
        return live[2]
    scorer = _read_scorer(registry, key, name, series_id, version, detector, token)
    try:
        labels.apply_normal(scorer, labels.decode(registry.client.get(labels.labels_key(key)), key))
    except CorruptState as exc:
        log.error("labels of series %r of %s are corrupt (%s): scored without its normal windows", series_id,
                  name, exc)
    return scorer


def _read_scorer(registry: ModelRegistry, key: str, name: str, series_id: str, version: int,
                 detector: KnnDetector, token: Any) -> StreamScorer:
    training = series_id == getattr(detector, "series_id", None)
    if token is None:
        return detector.continuation() if training else detector.new_stream()
    try:
        meta, arrays = state_record.from_hash(registry.client.hgetall(key))
        return detector.resume(meta, arrays, continuation=training and meta.get("version", 0) == version)
    except CorruptState as exc:
        # Refusing the series' batches would leave it unscored until someone resets it by hand; the state is
        # what the stream learned, so losing it costs a warm-up (the training series continues right after
        # its prefix), not data. Loud, so that whoever can write garbage into Redis is noticed.
        log.error("stream state of series %r of %s at %s is corrupt (%s): the series restarts from the "
                  "detector's training state", series_id, name, key, exc)
    except InvalidParameter:
        log.warning("stream state of %r does not fit %s v%d (another layout): the series starts a new stream",
                    series_id, name, version)
    return detector.continuation() if training else detector.new_stream()


def _remember(settings: Settings, name: str, series_id: str, version: int, token: str, scorer: StreamScorer) -> None:
    with _cache_lock:
        _live[(settings.key_prefix, name, series_id)] = (version, token, scorer)
        _live.move_to_end((settings.key_prefix, name, series_id))
        while len(_live) > _LIVE_MAX:
            _live.popitem(last=False)


def _forget(settings: Settings, name: str, series_id: str) -> None:
    with _cache_lock:
        _live.pop((settings.key_prefix, name, series_id), None)


def reset_stream(name: str, series_id: str, settings: Settings | None = None) -> None:
    """Forget the stream state of one series (its next batch starts a new stream, or for the training
    series, continues right after the training prefix)."""
    settings = settings or get_settings()
    ModelRegistry(settings).client.delete(state_record.state_key(settings.key_prefix, name, series_id),
                                          state_record.former_state_key(settings.key_prefix, name, series_id))
    _forget(settings, name, series_id)
