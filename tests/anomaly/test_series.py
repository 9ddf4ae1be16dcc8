"""The reading rules of anomaly.series (its docstring), each through the public API on every kind of input:
a DataFrame, a CSV file and a Parquet file; then scaling and windows.

File formats, epoch numbers, DST files, the shared NAB files and speed are in test_reading.py.
"""

import logging
import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from anomaly import InvalidParameter, InvalidSeries, SeriesTooShort, choose_window, read_one_series, read_series
from anomaly.series import DUPLICATE_POLICIES, Series
from anomaly.windows import RobustScaler, sliding_windows

KINDS = ["frame", "csv", "parquet"]


def frame(n=10, start="2024-01-01", freq="h"):
    ts = pd.date_range(start, periods=n, freq=freq)
    return pd.DataFrame({"timestamp": ts.astype(str), "value": np.arange(n, dtype=float)})


@pytest.fixture(params=KINDS)
def source(request, tmp_path):
    """Turns a DataFrame into the input under test: itself, a CSV file or a Parquet file."""

    def make(df: pd.DataFrame):
        if request.param == "frame":
            return df
        path = tmp_path / f"series.{request.param}"
        if request.param == "csv":
            df.to_csv(path, index=False)
        else:
            pytest.importorskip("pyarrow")  # in the `train` extra only
            df.to_parquet(path, index=False)
        return path

    make.kind = request.param
    return make


def test_reads_csv_and_parquet(source):
    s = read_one_series(source(frame()))
    assert s.id == "default" and len(s) == 10 and s.duplicates == 0
    np.testing.assert_array_equal(s.values, np.arange(10.0))
    np.testing.assert_array_equal(s.rows, np.arange(10))
    assert s.timestamps.tz is None and s.timestamps[3] == pd.Timestamp("2024-01-01 03:00")
    assert isinstance(s, Series) and list(s.to_frame().columns) == ["timestamp", "value"]


def test_splits_by_series_column(source):
    a, b = frame(5), frame(7)
    a["host"], b["host"] = "b-host", "a-host"
    found = read_series(source(pd.concat([a, b, a.iloc[:0]])), series_col="host")
    assert list(found) == ["b-host", "a-host"] and len(found["a-host"]) == 7
    np.testing.assert_array_equal(found["a-host"].rows, np.arange(5, 12))
    with pytest.raises(InvalidSeries, match="expected one series, found 2"):
        read_one_series(source(pd.concat([a, b])), series_col="host")
    # Under another name than the default the series column is required; None reads one series anyway.
    with pytest.raises(InvalidSeries, match="missing column 'site'"):
        read_series(source(a), series_col="site")
    a["series"] = ["x", "y", "x", "y", "x"]
    assert list(read_series(source(a))) == ["x", "y"]
    assert list(read_series(source(a), series_col=None)) == ["default"]


# -- 1. repeated timestamps ----------------------------------------------------------------------------------
def retried(df=None):
    """Hours 0..9 with hour 2 written again right away (row 3) and hour 5 retried at the end (row 10)."""
    df = frame() if df is None else df
    df.loc[3, "timestamp"] = df.loc[2, "timestamp"]
    extra = pd.DataFrame({"timestamp": [df.loc[5, "timestamp"]], "value": [50.0]})
    return pd.concat([df, extra], ignore_index=True)


def test_repeated_timestamps_are_kept_and_warned(source, caplog):
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(retried()))
    # One row per input row, stable-sorted by time: each retry sits after the row it repeats.
    assert len(s) == 11 and s.duplicates == 4
    np.testing.assert_array_equal(s.rows, [0, 1, 2, 3, 4, 5, 10, 6, 7, 8, 9])
    np.testing.assert_array_equal(s.values, [0, 1, 2, 3, 4, 5, 50, 6, 7, 8, 9])
    assert s.timestamps.is_monotonic_increasing
    warning = caplog.records[-1]
    assert warning.levelno == logging.WARNING
    assert "4 rows share their timestamp" in warning.getMessage() and "2024-01-01 02:00:00" in warning.getMessage()


def test_duplicates_policies(source):
    df = retried()
    df.loc[2, "value"] = np.nan  # a group's missing value is left out of its mean
    src = source(df)
    mean = read_one_series(src, duplicates="mean")
    assert len(mean) == 9 and mean.duplicates == 4 and mean.timestamps.is_unique
    np.testing.assert_array_equal(mean.values, [0, 1, 3, 4, 27.5, 6, 7, 8, 9])
    np.testing.assert_array_equal(mean.rows, [0, 1, 2, 4, 5, 6, 7, 8, 9])  # the first row of a group
    last = read_one_series(src, duplicates="last")
    np.testing.assert_array_equal(last.values, [0, 1, 3, 4, 50, 6, 7, 8, 9])
    np.testing.assert_array_equal(last.rows, [0, 1, 3, 4, 10, 6, 7, 8, 9])  # the last input row of a group
    assert list(last.raw_timestamps[:3].astype(str)) == list(df["timestamp"].iloc[[0, 1, 3]])
    refused = r"4 rows have duplicate timestamps.*2024-01-01 02:00.*rows \[2, 3, 5, 10\]"
    with pytest.raises(InvalidSeries, match=refused):
        read_one_series(src, duplicates="error")
    with pytest.raises(InvalidParameter, match="keep, mean, last, error"):
        read_one_series(src, duplicates="first")
    assert DUPLICATE_POLICIES == ("keep", "mean", "last", "error")


@hsettings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 30), st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))), min_size=2,
                max_size=25))
def test_any_rows_come_back_row_for_row(rows):
    """Whatever the order, repeats and gaps: one row per input row, each with its own time and value."""
    hours = [h for h, _ in rows]
    df = pd.DataFrame({"timestamp": [pd.Timestamp("2024-01-01") + pd.Timedelta(hours=h) for h in hours],
                       "value": [v for _, v in rows]})
    if df["value"].isna().all():
        with pytest.raises(InvalidSeries, match="every value is missing"):
            read_one_series(df)
        return
    s = read_one_series(df)
    assert sorted(s.rows) == list(range(len(rows)))
    assert s.duplicates == sum(hours.count(h) for h in set(hours) if hours.count(h) > 1)
    np.testing.assert_array_equal(s.values, df["value"].to_numpy()[s.rows])
    assert (s.timestamps == pd.DatetimeIndex(df["timestamp"])[s.rows]).all()
    # In time order, equal times in input order, unless the file's order was kept for a replayed clock.
    kept = (s.rows == np.arange(len(rows))).all()
    assert kept or list(s.rows) == sorted(range(len(rows)), key=lambda i: (hours[i], i))
    mean = read_one_series(df, duplicates="mean", min_length=1)
    assert len(mean) == len(set(hours)) and mean.timestamps.is_unique and mean.timestamps.is_monotonic_increasing
    assert np.nansum(mean.values) == pytest.approx(np.nansum(df.groupby("timestamp")["value"].mean()), abs=1e-6)


# -- 2. unsorted rows ----------------------------------------------------------------------------------------
def test_unsorted_is_sorted_and_logged(source, caplog):
    df = frame().iloc[[3, 0, 9, 1, 2, 8, 4, 5, 7, 6]]
    with caplog.at_level(logging.INFO, logger="anomaly.series"):
        s = read_one_series(source(df))
    assert s.timestamps.is_monotonic_increasing
    np.testing.assert_array_equal(s.values, np.arange(10.0))
    np.testing.assert_array_equal(s.rows, [1, 3, 4, 0, 6, 7, 9, 8, 5, 2])
    assert "not sorted" in caplog.text


# -- 3. empty values and gaps ----------------------------------------------------------------------------------
def test_missing_values_are_kept_as_nan(source, caplog):
    df = frame(12)
    tokens = ["", "NA", "N/A", "null", "None", "nan", "-", " NaN "]
    df["value"] = ["1", *tokens, "2.5", " 3 ", "1e3"]
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(df))
    assert len(s) == 12  # nothing dropped, nothing interpolated
    np.testing.assert_array_equal(s.values, [1, *[np.nan] * 8, 2.5, 3, 1000])
    assert not caplog.records, "missing tokens are not worth a warning"
    numeric = frame(6)
    numeric.loc[[1, 2, 3], "value"] = np.nan  # a long gap of missing values is no longer refused
    np.testing.assert_array_equal(read_one_series(source(numeric)).values, [0, np.nan, np.nan, np.nan, 4, 5])


def test_text_values_are_missing_with_a_warning_unless_most_are_text(source, caplog):
    df = frame(10)
    df["value"] = ["1", "abc", "3", "4,5", "5", "6", "7", "8", "ok", "10"]
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(df))
    assert np.isnan(s.values[[1, 3, 8]]).all() and np.isfinite(np.delete(s.values, [1, 3, 8])).all()
    assert re.search(r"3 rows hold text that is not a number.*rows \[1, 3, 8\]", caplog.text)
    df["value"] = ["x", "1", "y", "z", "w", "v", "u", "2", "t", "s"]
    refused = r"column 'value' is not a value column: 8 of 10 rows.*rows \[0, 2, 3, 4, 5\]"
    with pytest.raises(InvalidSeries, match=refused):
        read_one_series(source(df))


def test_messages_quote_a_short_excerpt_only(source):
    df = frame(8)
    long = "\x1b[31m" + "A" * 500 + "\x07"
    df["value"] = [long, long + "1", long + "2", long + "3", long + "4", long + "5", "1", "2"]
    with pytest.raises(InvalidSeries) as err:
        read_one_series(source(df))
    message = str(err.value)
    quoted = re.findall(r"'([^']*)'", message.split("e.g.")[1])
    assert len(quoted) == 5 and all(len(q) <= 21 for q in quoted)  # 20 characters and an ellipsis
    assert "\x1b" not in message and "\x07" not in message and "A" * 21 not in message


def test_every_value_missing_and_infinite_values(source, caplog):
    df = frame(4)
    df["value"] = ["", "NA", "-", ""]
    with pytest.raises(InvalidSeries, match="every value is missing"):
        read_one_series(source(df))
    df["value"] = ["1", "inf", "-inf", "4"]
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(df))
    np.testing.assert_array_equal(s.values, [1, np.nan, np.nan, 4])
    assert "2 infinite values read as missing (rows [1, 2])" in caplog.text


# -- 4. extra columns, column names ----------------------------------------------------------------------------
def test_extra_columns_ignored_and_names_mapped(source):
    df = frame(5).rename(columns={"timestamp": "Time", "value": "cpu_pct"})
    df["host"], df["note"] = "web-1", ["a", "", "b,c", "d", "e"]
    s = read_one_series(source(df), timestamp_col="time", value_col="CPU_pct")
    np.testing.assert_array_equal(s.values, np.arange(5.0))
    with pytest.raises(InvalidSeries, match=r"missing column 'timestamp'; columns found \(4\): \['Time', 'cpu_pct'"):
        read_one_series(source(df))
    twice = frame(3)
    twice["TIMESTAMP"] = twice["timestamp"]
    assert len(read_one_series(source(twice))) == 3  # the exact name wins
    with pytest.raises(InvalidSeries, match="matches 2 columns"):
        read_one_series(source(twice.rename(columns={"timestamp": "Timestamp"})))


# -- 6. timestamps come back as given ----------------------------------------------------------------------------
def test_raw_timestamps_come_back_as_given_in_series_order(source):
    given = ["2024-01-01T02:00:00Z", "2024-01-01 00:30", "2024-01-01T01:00:00.500+00:00", "2024-01-01 03:00:00"]
    df = pd.DataFrame({"timestamp": given, "value": ["1", "2", "", "4"]})
    s = read_one_series(source(df))
    assert s.raw_timestamps.dtype == object
    assert list(s.raw_timestamps) == [given[i] for i in (1, 2, 0, 3)]
    np.testing.assert_array_equal(s.rows, [1, 2, 0, 3])
    assert s.timestamps.tz is not None and s.timestamps[1] == pd.Timestamp("2024-01-01 01:00:00.5", tz="UTC")


# -- 7. UTC offsets, naive and aware, unparseable --------------------------------------------------------------
def test_changing_offsets_are_one_clock(source, caplog):
    df = pd.DataFrame({"timestamp": ["2024-10-27 01:30:00+02:00", "2024-10-27 02:30:00+02:00",
                                     "2024-10-27 02:30:00+01:00", "2024-10-27T03:30:00+0100", "2024-10-27 03:00Z"],
                       "value": np.arange(5.0)})
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(df))
    assert not caplog.records and s.duplicates == 0
    assert list(s.timestamps) == list(pd.to_datetime(["2024-10-26 23:30", "2024-10-27 00:30", "2024-10-27 01:30",
                                                      "2024-10-27 02:30", "2024-10-27 03:00"], utc=True))
    np.testing.assert_array_equal(s.rows, [0, 1, 2, 3, 4])


def test_naive_and_aware_mixed_read_as_utc_with_a_warning(source, caplog):
    df = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 01:00+01:00", "2024-01-01 03:00",
                                     "2024-01-01T04:00:00Z"], "value": np.arange(4.0)})
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(source(df))
    assert "2 of 4 timestamps carry no UTC offset; read as UTC (rows [0, 2])" in caplog.text
    assert s.timestamps.tz is not None and len(s) == 4
    assert list(s.timestamps.strftime("%H:%M")) == ["00:00", "00:00", "03:00", "04:00"]


def test_unparseable_timestamps_name_rows(source):
    df = frame(8)
    df.loc[[2, 5], "timestamp"] = ["someday", "x" * 300]
    with pytest.raises(InvalidSeries, match=r"2 unparseable timestamps \(rows \[2, 5\]") as err:
        read_one_series(source(df))
    assert "x" * 21 not in str(err.value)
    df.loc[[2, 5], "timestamp"] = ""
    with pytest.raises(InvalidSeries, match=r"no timestamp in 2 rows \(rows \[2, 5\]\)"):
        read_one_series(source(df))


# -- 9. length --------------------------------------------------------------------------------------------------
def test_too_short_and_empty(tmp_path):
    with pytest.raises(SeriesTooShort, match="at least 20"):
        read_one_series(frame(5), min_length=20)
    with pytest.raises(SeriesTooShort, match="has 3 rows"):  # counted after duplicates are collapsed
        read_one_series(retried().iloc[:4], duplicates="last", min_length=4)
    with pytest.raises(InvalidSeries, match="no rows"):
        read_one_series(frame(0))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InvalidSeries, match="empty"):
        read_one_series(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("timestamp,value\n")
    with pytest.raises(InvalidSeries, match="no rows"):
        read_one_series(tmp_path / "h.csv")
    with pytest.raises(InvalidSeries, match="missing column"):
        read_one_series(pd.DataFrame({"timestamp": ["2024-01-01"]}))


# -- scaling and windows ----------------------------------------------------------------------------------------
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
