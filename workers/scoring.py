"""Scoring composed with alerting: what the ``score`` workers, ``ea score`` and ``ea outliers`` run.

The packages do one job each and never import each other: :mod:`anomaly` scores, :mod:`recsys` owns the
graph models' stored vectors, :mod:`alerts` turns scores into incidents and notifications. This module is
where they meet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import alerts
from anomaly import InvalidParameter, knn_outliers, score_points
from vectorstore import ModelRegistry

__all__ = ["entity_outliers", "score_series"]


def score_series(name: str, series_id: str, timestamps: list[Any], values: list[float | None], *,
                 labels: dict[str, Any] | None = None, alert: bool = True,
                 registry: ModelRegistry | None = None) -> dict[str, Any]:
    """Score new points of one series (:func:`anomaly.service.score_points`) and feed the detector's
    incidents to :func:`alerts.observe`, with its explanations as evidence.

    Returns:
        ``score_points``'s result plus ``"notifications"`` (how many state changes went to the outbox).

    Raises:
        anomaly.InvalidSeries: a bad batch (see ``score_points``); nothing is scored or alerted.
    """
    registry = registry or ModelRegistry()
    result = score_points(name, series_id, timestamps, values, registry=registry)
    notifications: list[Any] = []
    if alert:
        threshold = float(result["threshold"])
        scores = np.array([np.nan if s is None else s for s in result["scores"]], dtype=np.float64)
        # Incidents follow the detector's own: anomalous from an alert until its sources have calmed down.
        held = np.where(np.asarray(result["in_incident"], bool), np.maximum(scores, np.nextafter(threshold, 1.0)),
                        np.minimum(scores, threshold))
        notifications = alerts.observe(series_id, result["timestamps"], held.tolist(), threshold, kind="series",
                                       model=name, model_version=str(result["version"]), labels=labels,
                                       evidence=result["explanations"][:3] or None, settings=registry.settings,
                                       client=registry.client)
    return {**result, "notifications": len(notifications)}


def entity_outliers(name: str, kind: str = "users", *, k: int = 10, alert: bool = False,
                    registry: ModelRegistry | None = None) -> pd.DataFrame:
    """Users or items of a published graph model scored by kNN distance among their peers.

    The vectors each model's entities are compared by come from :func:`recsys.entities.entity_vectors`
    (recsys owns its stored format); the rule is :func:`anomaly.knn_outliers`.

    Args:
        name: a published recommendation model.
        kind: ``"users"`` or ``"items"``.
        alert: also feed each entity's score to :func:`alerts.observe` (``kind="entity"``).

    Returns:
        ``knn_outliers``'s frame (``id``, ``score``, ``is_outlier``), highest first.

    Raises:
        anomaly.InvalidParameter: ``kind`` is unknown or the model is not a graph model.
    """
    from recsys import ModelUnavailable, entity_vectors

    if kind not in ("users", "items"):
        raise InvalidParameter(f"kind={kind!r} must be 'users' or 'items'")
    registry = registry or ModelRegistry()
    try:
        entities = entity_vectors(registry, name, kind)
    except ModelUnavailable:
        raise InvalidParameter(f"model {name!r} is not a graph model") from None
    df = knn_outliers(entities.vectors, entities.ids, k=k, space="cosine")
    df.attrs.update(model=name, version=entities.version, kind=kind)
    if alert:
        now = pd.Timestamp.now(tz="UTC")
        for row in df.itertuples():
            alerts.observe(str(row.id), [now], [float(row.score)], df.attrs["threshold"], kind="entity",
                           model=name, model_version=str(entities.version), labels={"entity_kind": kind},
                           settings=registry.settings, client=registry.client)
    return df
