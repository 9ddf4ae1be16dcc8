import logging

import numpy as np
import pandas as pd
import pytest

from anomaly import InvalidSeries, SeriesTooShort, choose_window, read_one_series, read_series
from anomaly.series import RobustScaler, sliding_windows


def frame(n=10, start="2024-01-01", freq="h"):
    ts = pd.date_range(start, periods=n, freq=freq)
    return pd.DataFrame({"timestamp": ts.astype(str), "value": np.arange(n, dtype=float)})


def test_reads_csv_and_parquet(tmp_path):
    df = frame()
    df.to_csv(tmp_path / "s.csv", index=False)
    paths = [tmp_path / "s.csv"]
    try:
        df.to_parquet(tmp_path / "s.parquet")
        paths.append(tmp_path / "s.parquet")
    except ImportError:  # pyarrow is in the `train` extra only
        pass
    for path in paths:
        s = read_one_series(path)
        assert s.id == "default" and len(s) == 10
        np.testing.assert_array_equal(s.values, np.arange(10.0))


def test_splits_by_series_column():
    a, b = frame(5), frame(7)
    a["series"], b["series"] = "a", "b"
    found = read_series(pd.concat([a, b]))
    assert list(found) == ["a", "b"] and len(found["b"]) == 7


def test_unsorted_is_sorted_and_logged(caplog):
    df = frame().iloc[::-1]
    with caplog.at_level(logging.INFO, logger="anomaly.series"):
        s = read_one_series(df)
    assert s.timestamps.is_monotonic_increasing
    np.testing.assert_array_equal(s.values, np.arange(10.0))
    assert "not sorted" in caplog.text


def test_duplicate_timestamps_named():
    df = frame()
    df.loc[3, "timestamp"] = df.loc[2, "timestamp"]
    with pytest.raises(InvalidSeries, match="duplicate timestamps.*2024-01-01 02:00"):
        read_one_series(df)


def test_mixed_time_zones_rejected():
    df = frame(4)
    df["timestamp"] = ["2024-01-01 00:00+00:00", "2024-01-01 01:00+01:00", "2024-01-01 03:00+00:00",
                       "2024-01-01 04:00+00:00"]
    with pytest.raises(InvalidSeries, match="mixes time zones"):
        read_one_series(df)
    df["timestamp"] = ["2024-01-01 00:00", "2024-01-01 01:00+01:00", "2024-01-01 03:00", "2024-01-01 04:00"]
    with pytest.raises(InvalidSeries, match="naive"):
        read_one_series(df)


def test_non_numeric_rows_named(tmp_path):
    (tmp_path / "s.csv").write_text("timestamp,value\n2024-01-01,1\n2024-01-02,abc\n2024-01-03,3\n")
    with pytest.raises(InvalidSeries, match="row 1: 'abc'"):
        read_one_series(tmp_path / "s.csv")


def test_short_gaps_interpolated_long_gaps_rejected():
    df = frame(10)
    df.loc[[3, 4], "value"] = np.nan
    np.testing.assert_allclose(read_one_series(df).values, np.arange(10.0))
    df.loc[[3, 4, 5, 6], "value"] = np.nan
    with pytest.raises(InvalidSeries, match="4 consecutive missing values.*rows 3..6"):
        read_one_series(df)


def test_too_short_and_empty(tmp_path):
    with pytest.raises(SeriesTooShort, match="at least 20"):
        read_one_series(frame(5), min_length=20)
    with pytest.raises(InvalidSeries, match="no rows"):
        read_one_series(frame(0))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InvalidSeries, match="empty"):
        read_one_series(tmp_path / "e.csv")
    with pytest.raises(InvalidSeries, match="missing column"):
        read_one_series(pd.DataFrame({"timestamp": ["2024-01-01"]}))


def test_sliding_windows_are_views():
    v = np.arange(10.0)
    w = sliding_windows(v, 4)
    assert w.shape == (7, 4) and np.shares_memory(w, v)
    np.testing.assert_array_equal(w[2], [2, 3, 4, 5])
    with pytest.raises(SeriesTooShort, match="at least 11"):
        sliding_windows(v, 11)


def test_scaler_uses_training_prefix_only():
    sc = RobustScaler.fit(np.array([0.0, 1, 2, 3, 4]))
    assert sc.center == 2 and sc.scale == 2
    assert RobustScaler.fit(np.zeros(10)).scale == 1.0


def test_choose_window_finds_period():
    t = np.arange(600)
    rng = np.random.default_rng(0)
    assert choose_window(np.sin(2 * np.pi * t / 30) + 0.1 * rng.standard_normal(600)) == 30
    # A period above the maximum is halved until it fits.
    assert choose_window(np.sin(2 * np.pi * t / 144), max_window=64) in (35, 36)
    assert choose_window(rng.standard_normal(600)) == 16
