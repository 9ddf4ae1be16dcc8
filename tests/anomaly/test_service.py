"""Detectors as published models: Celery training and streaming scoring on a real worker and Redis,
`ea detect` (contract 2) and entity outliers of a graph model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anomaly_synth import PLANTED, TRAIN, clean_series, planted_series, series_frame
from click.testing import CliRunner

from anomaly import KnnDetector
from anomaly._stream_state import former_state_key, state_key
from anomaly.exceptions import InvalidSeries
from anomaly.service import score_points, train_detector
from vectorstore import ModelRegistry
from workers.cli import main
from workers.detection import IncidentDecider
from workers.jobs import submit
from workers.scoring import entity_outliers


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("series") / "planted.csv"
    series_frame(planted_series()).to_csv(path, index=False)
    return path


def _stream(model: str, series_id: str, frame: pd.DataFrame, start: int, step: int = 400) -> tuple[list[int], int]:
    flagged, notified = [], 0
    for a in range(start, len(frame), step):
        chunk = frame.iloc[a : a + step]
        out = submit("ea.score_series", name=model, series_id=series_id,
                     timestamps=chunk.timestamp.astype(str).tolist(), values=chunk.value.tolist()).wait(timeout=60)
        flagged += [a + i for i, f in enumerate(out["is_anomaly"]) if f]
        notified += out["notifications"]
    return flagged, notified


def test_train_series_job_publishes_and_score_series_continues_the_training_series(celery_worker, series_csv,
                                                                                    model_name, settings):
    handle = submit("ea.train_series", series=str(series_csv), name=model_name, train_until=TRAIN,
                    series_id="cpu-1")
    result = handle.wait(timeout=120)
    assert result["version"] == ModelRegistry(settings).active_version(model_name)
    assert result["series_id"] == "cpu-1" and result["embedding"] == "raw+paa"
    df = pd.read_csv(series_csv)
    flagged, notified = _stream(model_name, "cpu-1", df, TRAIN)
    # Streaming through the task, state in Redis between batches, decides exactly as batch detection.
    batch = KnnDetector().fit_detect(df.value.to_numpy(), TRAIN, decide=IncidentDecider())
    assert flagged == np.flatnonzero(batch.is_anomaly).tolist()
    for kind, (a, b) in PLANTED.items():
        assert any(a <= i <= b + 16 for i in flagged), f"the planted {kind} was not flagged: {flagged}"
    # Scores became incidents: a few notifications (firing/resolved), not one per point.
    assert 2 <= notified <= 4 * len(PLANTED)


def test_a_new_series_id_warms_up_before_it_can_page(celery_worker, series_csv, model_name, settings):
    train_detector(str(series_csv), name=model_name, train_until=TRAIN)
    other = clean_series(seed=3, n=1500) * 2 + 10  # another host, another level: new, but not anomalous
    other[1000] += 15
    frame = series_frame(other)
    flagged, _ = _stream(model_name, "host-2", frame, 0, step=100)
    assert flagged == [1000]
    state = redis_state(settings, model_name, "host-2")
    assert b"meta" in state and json.loads(state[b"meta"])["position"] == 1500


def redis_state(settings, model: str, series_id: str) -> dict:
    return ModelRegistry(settings).client.hgetall(state_key(settings.key_prefix, model, series_id))


def test_a_state_under_the_former_key_is_carried_over_and_series_have_slots_of_their_own(series_csv, model_name,
                                                                                           settings):
    from redis.cluster import key_slot

    train_detector(str(series_csv), name=model_name, train_until=TRAIN)
    score_points(model_name, "web-1", ["2026-02-01 00:00", "2026-02-01 00:05"], [1.0, 1.1])
    # As a worker of the former layout left it: the state under {model}, nothing under the series' own key.
    client = ModelRegistry(settings).client
    state = client.hgetall(state_key(settings.key_prefix, model_name, "web-1"))
    client.delete(state_key(settings.key_prefix, model_name, "web-1"))
    client.hset(former_state_key(settings.key_prefix, model_name, "web-1"), mapping=state)
    from anomaly import service

    service._live.clear()  # another worker: nothing of this stream in memory
    out = score_points(model_name, "web-1", ["2026-02-01 00:10"], [1.2])
    assert out["position"] == json.loads(state[b"meta"])["position"] + 1  # continued, not started again
    assert not client.exists(former_state_key(settings.key_prefix, model_name, "web-1"))
    slots = {key_slot(state_key(settings.key_prefix, model_name, f"web-{i}").encode()) for i in range(20)}
    assert len(slots) > 10  # a detector's series spread over a cluster's slots


def test_lasting_level_shift_is_one_incident(celery_worker, series_csv, model_name, settings):
    train_detector(str(series_csv), name=model_name, train_until=TRAIN, series_id="cpu-9")
    values = clean_series(n=3500)
    values[1500:] += 3.0
    flagged, notified = _stream(model_name, "cpu-9", series_frame(values), TRAIN, step=250)
    assert flagged == [1500] and notified == 2  # firing, then resolved once it is the new normal
    # The notification explains itself: the anomalous window, its nearest earlier window, the score.
    from alerts import Notification
    from alerts.keys import AlertKeys

    entries = ModelRegistry(settings).client.xrange(AlertKeys(settings.key_prefix).outbox)
    notes = [Notification.from_json(f[b"n"]) for _, f in entries]
    firing = [n for n in notes if n.incident.key == "cpu-9" and n.state == "firing"]
    assert len(firing) == 1 and firing[0].incident.model == model_name
    assert firing[0].incident.model_version == str(ModelRegistry(settings).active_version(model_name))
    evidence = firing[0].incident.evidence[0]
    assert evidence["row"] == 1500 and evidence["score"] >= 0.5 and evidence["summary"]


def test_score_points_accepts_missing_values_and_rejects_bad_batches(series_csv, model_name, settings):
    train_detector(str(series_csv), name=model_name, train_until=TRAIN)
    out = score_points(model_name, "s", ["2026-02-01 00:00", "2026-02-01 00:05"], [None, 1.0])
    assert out["scores"][0] is None and out["new_series"] and "is_anomaly" not in out  # scores, no decision
    with pytest.raises(InvalidSeries, match="infinite"):
        score_points(model_name, "s", ["2026-02-01 00:10"], [float("inf")])
    with pytest.raises(InvalidSeries, match="timestamps"):
        score_points(model_name, "s", ["2026-02-01 00:10"], [1.0, 2.0])
    with pytest.raises(InvalidSeries, match="not after"):
        score_points(model_name, "s", ["2026-01-31 00:00"], [1.0])


def test_ea_detect_writes_scores_and_plot(series_csv, tmp_path):
    scores, png = tmp_path / "scores.csv", tmp_path / "plot.png"
    out = CliRunner().invoke(main, ["detect", "--input", str(series_csv), "--train-until", str(TRAIN),
                                    "--scores-out", str(scores), "--plot", str(png)])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.output.strip().splitlines()[-1])
    df = pd.read_csv(scores)
    assert list(df.columns)[:4] == ["timestamp", "value", "score", "is_anomaly"]
    assert len(df) == len(pd.read_csv(series_csv)) and np.isfinite(df.score).all()
    assert set(df.is_anomaly.unique()) <= {0, 1} and summary["anomalies"] == df.is_anomaly.sum() >= 4
    assert png.stat().st_size > 10_000
    bad = CliRunner().invoke(main, ["detect", "--input", str(series_csv), "--train-until", "5",
                                    "--scores-out", str(scores)])
    assert bad.exit_code == 2 and "at least" in bad.output


def test_entity_outliers_of_a_graph_model(settings, model_name):
    from recsys import GraphEmbeddings, Interactions, publish_embeddings

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
