"""Series tasks: ``ea.train_series`` (queue ``train``) and ``ea.score_series`` (queue ``score``)."""

from __future__ import annotations

from typing import Any

from vectorstore import input_path

from ..app import app
from ._progress import Progress

__all__ = ["score_series", "train_series"]


@app.task(name="ea.train_series", bind=True)
def train_series(self, series: str, name: str, train_until: int | None = None, embedding: str | None = None,
                 params: dict | None = None, read_options: dict | None = None, series_id: str | None = None) -> dict:
    """Fit a kNN-distance detector on a series file (by reference) and publish it (training windows' index,
    learned embedders, calibration state).

    ``embedding=None``: the detector's default (``anomaly.detector.DEFAULT_EMBEDDING``); ``read_options``:
    column names and the duplicate policy (``anomaly.series.read_series``'s keywords); ``series_id``: the
    id of the series trained on (scoring it later continues after the training rows). Under ``EA_DATA_ROOT``
    the path must lie inside it (``vectorstore.input_path``), else the job fails with
    ``InputNotAllowed`` before the file is opened.
    """
    from anomaly import train_detector

    series = str(input_path(series, what="series"))
    progress = Progress(self)
    result = train_detector(series, name=name, train_until=train_until, embedding=embedding, params=params,
                            read_options=read_options or None,  # type: ignore[arg-type]  # a JSON message
                            series_id=series_id, token=self.request.id,
                            progress=progress)
    progress.flush()
    return result


@app.task(name="ea.score_series")
def score_series(name: str, series_id: str, timestamps: list[Any], values: list[float | None],
                 labels: dict | None = None) -> dict:
    """Score new points of a series causally, learn from them (state kept in Redis), and raise incidents.

    When the batch changed an incident's state, an ``ea.alerts_deliver`` job goes to the ``alerts`` queue,
    so a deployment with only Celery workers delivers without a separate consumer process.
    """
    from ..scoring import score_series as score_and_alert

    result = score_and_alert(name, series_id, timestamps, values, labels=labels)
    if result["notifications"]:
        app.send_task("ea.alerts_deliver")
    return result
