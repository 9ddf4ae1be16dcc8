"""detect_file (contract 2, ``ea detect``: the detector's scores, the alerting layer's decisions): one output
row per input row, timestamps as given, plots and explanations, messy exports scored."""

import json

import numpy as np
import pandas as pd
import pytest
from anomaly_synth import PLANTED, TRAIN, planted_series, series_frame

from anomaly import InvalidParameter, InvalidSeries, SeriesTooShort
from workers.detection import detect_file


@pytest.fixture
def series_csv(tmp_path):
    path = tmp_path / "series.csv"
    series_frame(planted_series()).to_csv(path, index=False)
    return path


def test_detect_file_writes_scores_plot_and_explanations(tmp_path, series_csv):
    out, png, why = tmp_path / "out" / "SCORES.csv", tmp_path / "plot", tmp_path / "why.jsonl"
    result = detect_file(series_csv, TRAIN, out, plot=png, explain=why)
    df = pd.read_csv(out)
    assert list(df.columns)[:4] == ["timestamp", "value", "score", "is_anomaly"]
    assert df["timestamp"].tolist() == pd.read_csv(series_csv)["timestamp"].tolist()
    assert df["score"].between(0, 1).all() and set(df["is_anomaly"].unique()) <= {0, 1}
    spike = PLANTED["spike"][0]
    assert df["is_anomaly"].iloc[spike : spike + 16].any()
    assert result.summary["plot"].endswith("plot.png") and (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    lines = [json.loads(line) for line in why.read_text().splitlines()]
    assert len(lines) == df["is_anomaly"].sum() == result.summary["anomalies"]
    assert [e["row"] for e in lines] == df.index[df["is_anomaly"] == 1].tolist()  # each alert explained
    # Every incident starts with an alert, and every alert is in an incident.
    starts = df.index[(df["incident"].diff().fillna(df["incident"]) == 1)].tolist()
    assert set(starts) <= set(df.index[df["is_anomaly"] == 1]) and (df["incident"][df["is_anomaly"] == 1] == 1).all()
    assert {"row", "timestamp", "score", "reason", "summary"} <= set(lines[0])


def test_epoch_seconds_and_milliseconds_come_back_as_given(tmp_path):
    v = planted_series()[:2000]
    for unit, scale in (("s", 1), ("ms", 1000)):
        path = tmp_path / f"epoch_{unit}.csv"
        epochs = (1704067200 + 300 * np.arange(v.size)) * scale
        pd.DataFrame({"timestamp": epochs, "value": v}).to_csv(path, index=False)
        out = tmp_path / f"out_{unit}.csv"
        result = detect_file(path, TRAIN, out, explain=tmp_path / f"why_{unit}.jsonl")
        written = pd.read_csv(out, dtype={"timestamp": str})
        assert written["timestamp"].tolist() == [str(e) for e in epochs]
        # Incidents are dated 2024, not 1970.
        assert all(e["timestamp"].startswith("2024-01-") for e in result.explanations)


def test_messy_export_is_scored_not_refused(tmp_path):
    v = planted_series()[:2000]
    frame = series_frame(v)
    frame["host"] = "web-1"  # extra column
    frame.loc[1000, "value"] = None  # an empty value
    messy = pd.concat([frame.iloc[:1500], frame.iloc[[1499, 1499]], frame.iloc[1500:]])  # a retried write
    messy = messy.sample(frac=1.0, random_state=0)  # unsorted
    path = tmp_path / "messy.csv"
    messy.to_csv(path, index=False)
    out = tmp_path / "scores.csv"
    result = detect_file(path, TRAIN, out)
    df = pd.read_csv(out)
    assert len(df) == len(messy) == result.summary["rows"] and result.summary["duplicate_rows"] == 3
    assert pd.to_datetime(df["timestamp"]).is_monotonic_increasing
    assert np.isnan(df.loc[pd.to_datetime(df["timestamp"]) == frame.loc[1000, "timestamp"], "score"]).all()
    assert df["score"].notna().sum() == len(df) - 1 and result.summary["missing_values"] == 1
    # The same file, averaging repeated timestamps: one row per distinct timestamp.
    merged = detect_file(path, TRAIN, tmp_path / "merged.csv", read_options={"duplicates": "mean"})
    assert merged.summary["rows"] == len(frame)


def test_named_columns(tmp_path):
    path = tmp_path / "export.csv"
    frame = series_frame(planted_series()[:1500]).rename(columns={"timestamp": "time", "value": "cpu"})
    frame.to_csv(path, index=False)
    result = detect_file(path, TRAIN, None, read_options={"timestamp_col": "time", "value_col": "cpu"})
    assert result.summary["rows"] == 1500


def test_detect_file_bad_inputs(tmp_path, series_csv):
    with pytest.raises(SeriesTooShort, match="at least"):
        detect_file(series_csv, 20, None)
    with pytest.raises(InvalidParameter, match="train_until"):
        detect_file(series_csv, 10**6, None)
    with pytest.raises(InvalidParameter, match="unknown detector parameter"):
        detect_file(series_csv, TRAIN, None, kk=3)
    dup = tmp_path / "dup.csv"
    dup.write_text("timestamp,value\n2024-01-01,1\n2024-01-01,2\n")
    with pytest.raises(InvalidSeries, match="duplicate timestamps"):
        detect_file(dup, 1, None, read_options={"duplicates": "error"})
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n")
    with pytest.raises(InvalidSeries, match="no rows"):
        detect_file(empty, 1, None)
