"""Scoring composed with alerting: what the ``score`` workers, ``ea score`` and ``ea outliers`` run.

The packages do one job each and never import each other: :mod:`anomaly` scores, :mod:`recsys` owns the
graph models' stored vectors, :mod:`alerts` decides which scores alert and turns them into incidents and
notifications. This module is where they meet: a detector's readings of each batch go to the alerting
layer's incident machine of that (detector, series), under the series' lock, so that the detector can
explain the rows that alert and the batch's decisions are saved with its state (``ea detect`` composes the
same two in :mod:`workers.detection`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

import alerts
from anomaly import THRESHOLD, InvalidParameter, Readings, Scored, knn_outliers, score_points
from vectorstore import ModelRegistry

from . import metrics

__all__ = ["entity_outliers", "score_series"]


class _Incidents:
    """The alerting side of one scored batch: the (detector, series)'s incident session, opened when the
    first readings arrive (under the series' lock) and committed with the batch's evidence."""

    def __init__(self, name: str, series_id: str, labels: dict[str, Any] | None, registry: ModelRegistry) -> None:
        self.name, self.series_id, self.labels, self.registry = name, series_id, labels, registry
        self.session: alerts.IncidentSession | None = None
        self.notifications: list[alerts.Notification] = []
        self.sent: list[alerts.Notification] = []  # those that went to the outbox (not silenced or muted)

    def decide(self, readings: Readings) -> np.ndarray:
        if self.session is None:
            self.session = alerts.IncidentSession(self.name, self.series_id, THRESHOLD, labels=self.labels,
                                                  new_series=readings.new_series, settings=self.registry.settings,
                                                  client=self.registry.client)
        return self.session.feed(readings.epoch_seconds(), readings.score, rows=readings.rows,
                                 sources=readings.sources).alerts

    def commit(self, scored: Scored, version: int) -> None:
        if self.session is None:  # an empty batch
            return
        # The alert rows' explanations first: they are why the incident opened (score crossings follow).
        evidence = [e for e in scored.explanations if e.get("alert")] + \
            [e for e in scored.explanations if not e.get("alert")]
        self.notifications = self.session.commit(evidence=evidence[:3] or None, model_version=version)
        self.sent = self.session.sent

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def decisions(self) -> dict[str, Any]:
        """The batch's decisions, as committed (decided anew if another writer had changed the state)."""
        made = self.session.decisions if self.session else []
        return {"is_anomaly": [int(x) for d in made for x in d.alerts],
                "in_incident": [int(x) for d in made for x in d.in_incident],
                "warming_up": bool(self.session and self.session.warming_up),
                "notifications": len(self.sent), "incident_changes": len(self.notifications)}


def score_series(name: str, series_id: str, timestamps: list[Any], values: list[float | None], *,
                 labels: dict[str, Any] | None = None, alert: bool = True,
                 registry: ModelRegistry | None = None) -> dict[str, Any]:
    """Score new points of one series (:func:`anomaly.score_points`) and decide its alerts with the incident
    machine of this detector and series (:class:`alerts.IncidentSession`), the detector's explanations of
    the alert rows as evidence.

    Returns:
        ``score_points``'s result plus ``"is_anomaly"``, ``"in_incident"``, ``"warming_up"`` and
        ``"notifications"`` (how many state changes went to the outbox), ``"incident_changes"`` (how many
        there were, silenced ones included); with ``alert=False`` the scores
        only (no decision).

    Raises:
        anomaly.InvalidSeries: a bad batch (see ``score_points``); nothing is scored or alerted.
    """
    registry = registry or ModelRegistry()
    if not alert:
        result = score_points(name, series_id, timestamps, values, registry=registry)
        metrics.count_points(name, len(values), settings=registry.settings, client=registry.client)
        return {**result, "notifications": 0}
    incidents = _Incidents(name, series_id, labels, registry)
    try:
        result = score_points(name, series_id, timestamps, values, registry=registry, decide=incidents.decide,
                              commit=incidents.commit)
    finally:
        incidents.close()
    metrics.count_points(name, len(values), settings=registry.settings, client=registry.client)
    metrics.count_incidents(sum(n.state == "firing" and n.incident.alerts == 1 for n in incidents.notifications),
                            sum(n.state == "resolved" for n in incidents.notifications),
                            settings=registry.settings, client=registry.client)
    return {**result, **incidents.decisions()}


def entity_outliers(name: str, kind: str = "users", *, k: int = 10, alert: bool = False,
                    registry: ModelRegistry | None = None) -> pd.DataFrame:
    """Users or items of a published graph model scored by kNN distance among their peers.

    The vectors each model's entities are compared by come from :func:`recsys.entity_vectors`
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
        # knn_outliers flags scores above its threshold; the incident machine, scores at or above its own.
        threshold = float(np.nextafter(df.attrs["threshold"], np.inf))
        for row in df.itertuples():
            alerts.observe(name, str(row.id), [now], [float(row.score)], threshold, kind="entity",
                           model_version=str(entities.version), labels={"entity_kind": kind},
                           settings=registry.settings, client=registry.client)
    return df
