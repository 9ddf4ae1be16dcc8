"""Detectors as published models: Celery training and streaming scoring on a real worker and Redis,
`ea detect` (contract 2) and entity outliers of a graph model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomaly_synth import PLANTED, TRAIN, planted_series
from click.testing import CliRunner

from anomaly.exceptions import InvalidSeries
from anomaly.service import entity_outliers, score_points, train_detector
from vectorstore import ModelRegistry
from workers.cli import main
from workers.jobs import submit


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("series") / "planted.csv"
    values = planted_series()
    ts = pd.date_range("2026-01-01", periods=len(values), freq="5min")
    pd.DataFrame({"timestamp": ts, "value": values}).to_csv(path, index=False)
    return path


def test_train_series_job_publishes_and_score_series_streams(celery_worker, series_csv, model_name, settings):
    handle = submit("ea.train_series", series=str(series_csv), name=model_name, train_until=TRAIN,
                    embedding="raw")
    result = handle.wait(timeout=120)
    assert result["version"] == ModelRegistry(settings).active_version(model_name)
    df = pd.read_csv(series_csv)
    flagged, notified = [], 0
    for start in range(TRAIN, len(df), 400):
        chunk = df.iloc[start : start + 400]
        out = submit("ea.score_series", name=model_name, series_id="cpu-1", timestamps=chunk.timestamp.tolist(),
                     values=chunk.value.tolist()).wait(timeout=60)
        flagged += [start + i for i, f in enumerate(out["is_anomaly"]) if f]
        notified += out["notifications"]
    # Streaming through the task gives the same alerts as batch detection with the same detector.
    from anomaly.service import load_detector

    _, detector = load_detector(ModelRegistry(settings), model_name)
    batch = detector.alerts(detector.score(df.value.to_numpy()))
    assert flagged == [i for i in np.flatnonzero(batch) if i >= TRAIN]
    spike = PLANTED["spike"][0]
    assert any(spike <= i <= spike + detector.window for i in flagged), "the planted spike was not flagged"
    # Threshold crossings became incidents: a few notifications (firing/resolved), not one per point.
    assert 1 <= notified <= 2 * len(PLANTED) + 2


def test_score_points_rejects_bad_batches(series_csv, model_name, settings):
    train_detector(str(series_csv), name=model_name, train_until=TRAIN, embedding="raw")
    with pytest.raises(InvalidSeries, match="finite"):
        score_points(model_name, "s", ["2026-02-01 00:00"], [float("nan")], alert=False)
    with pytest.raises(InvalidSeries, match="timestamps"):
        score_points(model_name, "s", ["2026-02-01 00:00"], [1.0, 2.0], alert=False)
    score_points(model_name, "s", ["2026-02-01 00:00"], [1.0], alert=False)
    with pytest.raises(InvalidSeries, match="not after"):
        score_points(model_name, "s", ["2026-01-31 00:00"], [1.0], alert=False)


def test_ea_detect_writes_scores_and_plot(series_csv, tmp_path):
    scores, png = tmp_path / "scores.csv", tmp_path / "plot.png"
    out = CliRunner().invoke(main, ["detect", "--input", str(series_csv), "--train-until", str(TRAIN),
                                    "--scores-out", str(scores), "--plot", str(png), "--embedding", "raw"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    df = pd.read_csv(scores)
    assert list(df.columns) == ["timestamp", "value", "score", "is_anomaly"]
    assert len(df) == len(pd.read_csv(series_csv)) and np.isfinite(df.score).all()
    assert set(df.is_anomaly.unique()) <= {0, 1} and summary["window"] >= 2
    assert png.stat().st_size > 10_000
    bad = CliRunner().invoke(main, ["detect", "--input", str(series_csv), "--train-until", "5",
                                    "--scores-out", str(scores)])
    assert bad.exit_code == 2 and "at least" in bad.output


def test_entity_outliers_of_a_graph_model(settings, model_name):
    from recsys import GraphEmbeddings, Interactions
    from recsys.publish import publish_embeddings

    rng = np.random.default_rng(0)
    users = [f"u{i}" for i in range(60)]
    frame = pd.DataFrame([(u, f"i{j}") for u in users for j in rng.choice(30, 5, replace=False)],
                         columns=["user", "item"])
    inter = Interactions.from_frame(frame)
    centres = np.eye(8, dtype=np.float32)[:3]
    user_vecs = centres[np.arange(inter.n_users) % 3] + 0.15 * rng.standard_normal((inter.n_users, 8))
    user_vecs[inter.user_index("u7")] = np.eye(8)[7]
    emb = GraphEmbeddings(user_vecs, rng.standard_normal((inter.n_items, 8)).astype(np.float32), "cosine")
    publish_embeddings(ModelRegistry(settings), model_name, inter, emb, algorithm="test")
    df = entity_outliers(model_name, "users", k=5)
    assert df.iloc[0]["id"] == "u7" and df.iloc[0]["is_outlier"] and df["is_outlier"].sum() <= 3
    out = CliRunner().invoke(main, ["outliers", "--model", model_name, "--kind", "users", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)[0]["id"] == "u7"
