"""Detectors as published models, and streaming scoring with its state in Redis.

Shared by the Celery tasks ``ea.train_series`` / ``ea.score_series`` and by the CLI. A detector version
holds :meth:`KnnDetector.to_parts` (index, encoder state, threshold, scaler, training tail); the stream
state of each series (position, last ``window - 1`` values, last alert row) lives in one Redis hash, so
any score worker can take the next batch.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import ModelRegistry, Settings, get_settings

from .detector import DEFAULT_EMBEDDING, KnnDetector
from .exceptions import InvalidParameter, InvalidSeries, NotFitted
from .series import read_one_series
from .stream import StreamScorer

__all__ = ["entity_outliers", "load_detector", "publish_detector", "reset_stream", "score_points", "train_detector"]

log = logging.getLogger(__name__)

_cache: dict[tuple[str, str, int], KnnDetector] = {}
_cache_lock = threading.Lock()


def train_detector(
    source: str | pd.DataFrame,
    *,
    name: str,
    train_until: int | None = None,
    embedding: str | None = None,
    params: dict[str, Any] | None = None,
    registry: ModelRegistry | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Fit a detector on the first ``train_until`` rows (default: all) of a series and publish it.

    ``embedding``: ``"lstm"``, ``"gru"`` or ``"raw"``; ``None``: the detector's default
    (:data:`~anomaly.detector.DEFAULT_EMBEDDING`), so job submitters need not repeat it.

    Returns:
        ``{"model", "version", "window", "threshold", "rows", "train_until", "embedding"}``.

    Raises:
        InvalidSeries, SeriesTooShort, InvalidParameter: bad input; nothing published.
    """
    registry = registry or ModelRegistry()
    if token and (done := registry.version_for_token(name, token)):
        meta = registry.manifest(name, done)["meta"]
        return {"model": name, "version": done, "window": meta["window"], "embedding": meta["embedding"]}
    series = read_one_series(source)
    n = train_until or len(series)
    if not 1 <= n <= len(series):
        raise InvalidParameter(f"train_until={n} must be between 1 and the {len(series)} rows of the input")
    detector = KnnDetector(embedding or DEFAULT_EMBEDDING, **(params or {}))
    detector.fit(series.values[:n])
    version = publish_detector(registry, name, detector, extra_meta={"trained_rows": n,
                                                                     "trained_until": str(series.timestamps[n - 1])},
                               token=token)
    return {"model": name, "version": version, "window": int(detector.window), "threshold": detector.threshold,
            "rows": len(series), "train_until": n, "embedding": detector.embedding}


def publish_detector(registry: ModelRegistry, name: str, detector: KnnDetector, *,
                     extra_meta: dict[str, Any] | None = None, token: str | None = None) -> int:
    """Publish a fitted detector as a version of model ``name``."""
    arrays, blobs, meta = detector.to_parts()
    return registry.publish(name, arrays=arrays, blobs=blobs, meta={**meta, **(extra_meta or {})}, token=token)


def load_detector(registry: ModelRegistry, name: str, version: int | None = None) -> tuple[int, KnnDetector]:
    """The detector of ``version`` (default: active), cached per process by version.

    Raises:
        NotFitted: the model is not a detector.
    """
    version = version or registry.active_version(name)
    key = (registry.settings.key_prefix, name, int(version or 0))
    with _cache_lock:
        if key in _cache:
            return key[2], _cache[key]
    mv = registry.load(name, version)
    if mv.meta.get("kind") != "knn_detector":
        raise NotFitted(f"model {name!r} v{mv.version} is not an anomaly detector (kind {mv.meta.get('kind')!r})")
    detector = KnnDetector.from_parts(dict(mv.arrays), dict(mv.blobs), mv.meta)
    with _cache_lock:
        _cache[(registry.settings.key_prefix, name, mv.version)] = detector
    return mv.version, detector


def _state_key(settings: Settings, name: str, series_id: str) -> str:
    return f"{settings.key_prefix}series:{{{name}}}:{series_id}:state"


def score_points(
    name: str,
    series_id: str,
    timestamps: list[Any],
    values: list[float],
    *,
    labels: dict[str, Any] | None = None,
    registry: ModelRegistry | None = None,
    alert: bool = True,
) -> dict[str, Any]:
    """Score newly arrived points of one series with the active detector of ``name``, causally.

    The stream state is read and written under a per-series lock, so concurrent batches of one series
    are scored in arrival order. Threshold crossings go to :func:`anomaly.alerts.observe`, which opens
    and resolves incidents and appends notifications to the outbox.

    Returns:
        ``{"version", "position", "scores", "is_anomaly", "notifications"}``.

    Raises:
        InvalidSeries: lengths differ, values are not finite, or timestamps go backwards.
    """
    if len(timestamps) != len(values):
        raise InvalidSeries(f"{len(timestamps)} timestamps for {len(values)} values")
    vals = np.asarray(values, dtype=np.float64)
    if not np.isfinite(vals).all():
        bad = np.flatnonzero(~np.isfinite(vals))[:5].tolist()
        raise InvalidSeries(f"values must be finite; positions {bad} are not")
    ts = pd.to_datetime(pd.Series(timestamps), utc=True, errors="coerce")
    if ts.isna().any():
        raise InvalidSeries(f"timestamps at positions {np.flatnonzero(ts.isna())[:5].tolist()} cannot be read")
    if (ts.diff().dropna() <= pd.Timedelta(0)).any():
        raise InvalidSeries("timestamps of a batch must be strictly increasing")
    registry = registry or ModelRegistry()
    settings = registry.settings
    client = registry.client
    version, detector = load_detector(registry, name)
    key = _state_key(settings, name, series_id)
    with client.lock(key + ":lock", timeout=60, blocking_timeout=30):
        state = client.hgetall(key)
        if state:
            last_ts = pd.Timestamp(state[b"last_ts"].decode())
            if ts.iloc[0] <= last_ts:
                raise InvalidSeries(f"series {series_id!r}: timestamp {ts.iloc[0]} is not after the last "
                                    f"scored one ({last_ts})")
            tail = np.frombuffer(state[b"tail"], dtype="<f8")
            scorer = StreamScorer(detector, position=int(state[b"position"]), tail=tail)
            scorer.last_alert = json.loads(state[b"last_alert"])
            scorer.armed = state.get(b"armed", b"1") == b"1"
        else:
            scorer = StreamScorer(detector)
        scores, flags = scorer.update(vals)
        client.hset(key, mapping={"position": scorer.position, "tail": scorer.tail.astype("<f8").tobytes(),
                                  "last_alert": json.dumps(scorer.last_alert), "armed": int(scorer.armed),
                                  "last_ts": ts.iloc[-1].isoformat(),
                                  "version": version})
    notifications = []
    if alert:
        from . import alerts

        notifications = alerts.observe(series_id, list(ts), scores.tolist(), detector.threshold, kind="series",
                                       model=name, model_version=str(version), labels=labels,
                                       settings=settings, client=client)
    return {"version": version, "position": scorer.position, "scores": scores.tolist(),
            "is_anomaly": flags.astype(int).tolist(), "notifications": len(notifications)}


def reset_stream(name: str, series_id: str, settings: Settings | None = None) -> None:
    """Forget the stream state of one series (the next batch starts after the training prefix)."""
    settings = settings or get_settings()
    ModelRegistry(settings).client.delete(_state_key(settings, name, series_id))


def entity_outliers(name: str, kind: str = "users", *, k: int = 10, registry: ModelRegistry | None = None,
                    alert: bool = False) -> pd.DataFrame:
    """Users or items of a published graph model scored by kNN distance among their peers.

    Args:
        name: a published recommendation model.
        kind: ``"users"`` or ``"items"``.
        alert: also feed each entity's score to :func:`anomaly.alerts.observe` (``kind="entity"``).

    Returns:
        :func:`~anomaly.outliers.knn_outliers`'s frame (``id``, ``score``, ``is_outlier``), highest first.

    Raises:
        InvalidParameter: ``kind`` is unknown or the model is not a graph model.
    """
    from .outliers import knn_outliers

    if kind not in ("users", "items"):
        raise InvalidParameter(f"kind={kind!r} must be 'users' or 'items'")
    registry = registry or ModelRegistry()
    # recsys owns its stored format and says which vectors each model's entities are compared by.
    from recsys.entities import entity_vectors
    from recsys.exceptions import ModelUnavailable

    try:
        entities = entity_vectors(registry, name, kind)
    except ModelUnavailable:
        raise InvalidParameter(f"model {name!r} is not a graph model") from None
    ids, vectors, version = entities.ids, entities.vectors, entities.version
    df = knn_outliers(vectors, ids, k=k, space="cosine")
    df.attrs.update(model=name, version=version, kind=kind)
    if alert:
        from . import alerts

        now = pd.Timestamp.now(tz="UTC")
        for row in df.itertuples():
            alerts.observe(str(row.id), [now], [float(row.score)], df.attrs["threshold"], kind="entity",
                           model=name, model_version=str(version), labels={"entity_kind": kind},
                           settings=registry.settings, client=registry.client)
    return df
