"""Incidents are keyed by detector and series: two detectors scoring one series id have incidents of their own,
through `ea score` and through the `ea.score_series` task on a real Celery worker (real Redis)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from alerts import Notification, open_incidents
from alerts.keys import AlertKeys
from anomaly.service import train_detector
from vectorstore import ModelRegistry
from workers.cli import main
from workers.jobs import submit

TRAIN = 800


def _series(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = np.sin(2 * np.pi * np.arange(n) / 25) + 0.05 * rng.standard_normal(n)
    return pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"), "value": values})


def _notes(settings, model: str) -> list[Notification]:
    entries = ModelRegistry(settings).client.xrange(AlertKeys(settings.key_prefix).outbox)
    return [n for n in (Notification.from_json(f[b"n"]) for _, f in entries) if n.incident.model == model]


def test_two_detectors_scoring_one_series_id_have_incidents_of_their_own(celery_worker, settings, model_name,
                                                                          tmp_path):
    frame = _series(TRAIN + 300)
    dup_a, dup_b = f"{model_name}a", f"{model_name}b"
    for name in (dup_a, dup_b):  # two detectors of the same series, each continuing it as web-1
        train_detector(frame.iloc[:TRAIN], name=name, series_id="web-1")
    # dupA scores a spike near the end of its batch: an incident of (dupA, web-1) opens.
    batch = frame.iloc[TRAIN : TRAIN + 60].copy()
    batch.iloc[50, batch.columns.get_loc("value")] += 5.0
    path = tmp_path / "a.csv"
    batch.to_csv(path, index=False)
    out = CliRunner().invoke(main, ["score", "--model", dup_a, "--series-id", "web-1", "--input", str(path)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["anomalies"] == 1
    [opened] = [i for i in open_incidents(settings=settings) if i.model == dup_a]
    assert opened.key == "web-1"
    # dupB scores normal rows of web-1, later in time, through the score task: dupA's incident stays open.
    later = frame.iloc[TRAIN : TRAIN + 150]
    stamps = frame.timestamp.iloc[TRAIN + 60 : TRAIN + 210].astype(str).tolist()
    result = submit("ea.score_series", name=dup_b, series_id="web-1", timestamps=stamps,
                    values=later.value.tolist()).wait(timeout=60)
    assert sum(result["is_anomaly"]) == 0 and result["notifications"] == 0
    assert opened.id in {i.id for i in open_incidents(settings=settings)}
    assert [n.state for n in _notes(settings, dup_a)] == ["firing"]
    # A spike scored by dupB is dupB's own incident, besides dupA's: both open, one notification each.
    spike = frame.iloc[TRAIN + 150 : TRAIN + 160].copy()
    spike.iloc[5, spike.columns.get_loc("value")] += 5.0
    stamps = frame.timestamp.iloc[TRAIN + 210 : TRAIN + 220].astype(str).tolist()
    submit("ea.score_series", name=dup_b, series_id="web-1", timestamps=stamps,
           values=spike.value.tolist()).wait(timeout=60)
    mine = {i.model: i for i in open_incidents(settings=settings) if i.model in (dup_a, dup_b)}
    assert set(mine) == {dup_a, dup_b} and mine[dup_a].id != mine[dup_b].id
    assert mine[dup_b].group_key == f"series=web-1,model={dup_b}"
    assert [n.state for n in _notes(settings, dup_b)] == ["firing"]
