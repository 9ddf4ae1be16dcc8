import numpy as np
import pandas as pd
import pytest
from anomaly_synth import PLANTED, TRAIN, planted_series

from anomaly import InvalidParameter, InvalidSeries, SeriesTooShort, detect_file


@pytest.fixture
def series_csv(tmp_path):
    v = planted_series()
    ts = pd.date_range("2024-01-01", periods=v.size, freq="5min")
    path = tmp_path / "series.csv"
    pd.DataFrame({"timestamp": ts, "value": v}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("embedding", ["raw", "gru"])
def test_detect_file_writes_scores_and_plot(tmp_path, series_csv, embedding):
    out, png = tmp_path / "out" / "SCORES.csv", tmp_path / "plot.png"
    result = detect_file(series_csv, TRAIN, out, plot=png, embedding=embedding, c=8.0, hidden=8, epochs=12,
                         max_windows=300)
    df = pd.read_csv(out)
    assert list(df.columns) == ["timestamp", "value", "score", "is_anomaly"]
    assert len(df) == len(pd.read_csv(series_csv))
    assert np.isfinite(df["score"]).all() and set(df["is_anomaly"].unique()) <= {0, 1}
    assert df["is_anomaly"].sum() >= 1
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert result.summary["window"] == result.detector.window == 25
    assert result.summary["rows"] == len(df) and result.summary["anomalies"] == df["is_anomaly"].sum()
    spike = PLANTED["spike"][0]
    assert df["is_anomaly"].iloc[spike : spike + 25].any()


def test_detect_file_bad_inputs(tmp_path, series_csv):
    with pytest.raises(SeriesTooShort, match="at least"):
        detect_file(series_csv, 20, None, embedding="raw")
    with pytest.raises(InvalidParameter, match="train_until"):
        detect_file(series_csv, 10**6, None, embedding="raw")
    dup = tmp_path / "dup.csv"
    dup.write_text("timestamp,value\n2024-01-01,1\n2024-01-01,2\n")
    with pytest.raises(InvalidSeries, match="duplicate"):
        detect_file(dup, 1, None, embedding="raw")
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,value\n")
    with pytest.raises(InvalidSeries, match="no rows"):
        detect_file(empty, 1, None, embedding="raw")
