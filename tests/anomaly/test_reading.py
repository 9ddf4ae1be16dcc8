"""Real exports in (issue 15, part 1): files as they come, epoch numbers, DST, the shared NAB files that were
refused for repeated timestamps, and the speed of a million rows. The per-rule tests on every kind of input
are in test_series.py.
"""

import bz2
import gzip
import logging

import numpy as np
import pandas as pd
import pytest

from anomaly import InvalidSeries, read_one_series

EPOCH = 1704067200  # 2024-01-01 00:00:00 UTC


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# -- 5. epoch numbers ------------------------------------------------------------------------------------------
def test_epoch_seconds_file(tmp_path):
    stamps = [EPOCH + 300 * i for i in range(6)]
    # A missing value would make pandas read the column as floats: the timestamps must not become 1704067200.0.
    lines = [f"{t},{v}" for t, v in zip(stamps, ["1.5", "", "2", "NA", "3", "4"])]
    s = read_one_series(write(tmp_path / "s.csv", "timestamp,value\n" + "\n".join(lines) + "\n"))
    assert str(s.timestamps.tz) == "UTC"
    assert list(s.timestamps) == list(pd.date_range("2024-01-01", periods=6, freq="5min", tz="UTC"))
    assert list(s.raw_timestamps) == [str(t) for t in stamps]
    np.testing.assert_array_equal(s.values, [1.5, np.nan, 2, np.nan, 3, 4])


def test_epoch_milliseconds_file(tmp_path):
    stamps = [EPOCH * 1000 + 250 * i for i in (3, 0, 1, 2)]  # unsorted, sub-second steps
    lines = [f"{t},{i}" for i, t in enumerate(stamps)]
    s = read_one_series(write(tmp_path / "s.csv", "timestamp,value\n" + "\n".join(lines) + "\n"))
    assert list(s.timestamps) == list(pd.date_range("2024-01-01", periods=4, freq="250ms", tz="UTC"))
    assert list(s.raw_timestamps) == [str(t) for t in sorted(stamps)]
    np.testing.assert_array_equal(s.rows, [1, 2, 3, 0])


@pytest.mark.parametrize("scale", [1, 1000, 10**6, 10**9])
def test_epoch_units_recognised_by_magnitude_in_frames_and_parquet(tmp_path, scale):
    df = pd.DataFrame({"timestamp": [(EPOCH + 60 * i) * scale for i in range(5)], "value": np.arange(5.0)})
    expected = list(pd.date_range("2024-01-01", periods=5, freq="min", tz="UTC"))
    assert list(read_one_series(df).timestamps) == expected
    assert list(read_one_series(df.astype({"timestamp": float})).timestamps) == expected  # integer-valued floats
    pytest.importorskip("pyarrow")
    df.to_parquet(tmp_path / "s.parquet")
    assert list(read_one_series(tmp_path / "s.parquet").timestamps) == expected


def test_epoch_units_mixed_are_refused(tmp_path):
    lines = [f"{EPOCH + i},{i}" for i in range(6)] + [f"{(EPOCH + 7) * 1000},7"]
    with pytest.raises(InvalidSeries, match=r"6 rows in seconds, 1 rows in milliseconds.*\[6\]"):
        read_one_series(write(tmp_path / "s.csv", "timestamp,value\n" + "\n".join(lines) + "\n"))


# -- DST -------------------------------------------------------------------------------------------------------
def berlin_fall_back():
    """Quarter hours across the night Berlin's clocks went back (2024-10-27, 03:00 CEST -> 02:00 CET)."""
    utc = pd.date_range("2024-10-26 23:00", periods=14, freq="15min", tz="UTC")
    return utc, utc.tz_convert("Europe/Berlin")


def test_dst_fall_back_naive_local_clock(tmp_path, caplog):
    utc, local = berlin_fall_back()
    naive = local.strftime("%Y-%m-%d %H:%M:%S")
    assert naive[4] == naive[8] == "2024-10-27 02:00:00"  # the 02:00-03:00 hour is written twice
    path = tmp_path / "s.csv"
    pd.DataFrame({"timestamp": naive, "value": np.arange(14.0)}).to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="anomaly"):
        s = read_one_series(path)
    # The file's order is the only record of which 02:15 came first: it is kept, nothing is interleaved.
    np.testing.assert_array_equal(s.rows, np.arange(14))
    np.testing.assert_array_equal(s.values, np.arange(14.0))
    assert list(s.raw_timestamps) == list(naive) and s.timestamps.tz is None and s.duplicates == 8
    assert "replays time" in caplog.text and "8 rows share their timestamp" in caplog.text
    # Asked to, the repeated hour collapses to one row per clock reading.
    mean = read_one_series(path, duplicates="mean")
    assert len(mean) == 10 and mean.timestamps.is_unique and mean.values[4] == 6.0


def test_dst_fall_back_with_offsets(tmp_path, caplog):
    utc, local = berlin_fall_back()
    given = [t.isoformat(sep=" ") for t in local]
    assert given[4] == "2024-10-27 02:00:00+02:00" and given[8] == "2024-10-27 02:00:00+01:00"
    path = tmp_path / "s.csv"
    pd.DataFrame({"timestamp": given, "value": np.arange(14.0)}).to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="anomaly"):
        s = read_one_series(path)
    assert list(s.timestamps) == list(utc) and s.duplicates == 0 and not caplog.text
    assert list(s.raw_timestamps) == given


# -- 8. files --------------------------------------------------------------------------------------------------
CSV = "timestamp,value\n" + "".join(f"2024-01-01 {h:02d}:00:00,{h}\n" for h in range(6))


@pytest.mark.parametrize("name", ["s.csv.gz", "renamed.csv", "no_suffix"])
def test_gzip_detected_by_magic_bytes(tmp_path, name):
    (tmp_path / name).write_bytes(gzip.compress(CSV.encode()))
    np.testing.assert_array_equal(read_one_series(tmp_path / name).values, np.arange(6.0))


def test_other_compressions_and_a_plain_file_named_gz(tmp_path):
    (tmp_path / "s.csv.bz2").write_bytes(bz2.compress(CSV.encode()))
    pd.read_csv(tmp_path / "s.csv.bz2").to_csv(tmp_path / "s.zip", index=False)  # pandas writes one-file zips
    write(tmp_path / "plain.csv.gz", CSV)
    for name in ("s.csv.bz2", "s.zip", "plain.csv.gz"):
        assert len(read_one_series(tmp_path / name)) == 6, name


def test_latin1_file_falls_back_with_a_warning(tmp_path, caplog):
    text = "Zeitpunkt;Température;Ort\n" + "".join(f"2024-01-01 {h:02d}:00;{h}.5;Zürich\n" for h in range(4))
    path = write(tmp_path / "s.csv", text, encoding="latin-1")
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(path, timestamp_col="zeitpunkt", value_col="température")
    np.testing.assert_array_equal(s.values, [0.5, 1.5, 2.5, 3.5])
    assert "not UTF-8; read as latin-1" in caplog.text


def test_utf16_and_byte_order_marks(tmp_path):
    assert len(read_one_series(write(tmp_path / "a.csv", CSV, encoding="utf-16"))) == 6
    assert len(read_one_series(write(tmp_path / "b.csv", CSV, encoding="utf-8-sig"))) == 6


def test_parquet_detected_by_magic_bytes(tmp_path):
    pytest.importorskip("pyarrow")
    pd.read_csv(write(tmp_path / "x.csv", CSV)).to_parquet(tmp_path / "p.csv")
    assert len(read_one_series(tmp_path / "p.csv")) == 6


def test_binary_and_missing_files_are_refused_without_quoting(tmp_path):
    binary = tmp_path / "export.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    with pytest.raises(InvalidSeries) as err:
        read_one_series(binary)
    assert str(err.value) == f"{binary}: not a text table (binary content)"
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b" + b"\x00garbage" * 10)
    with pytest.raises(InvalidSeries, match=r"broken.csv.gz: not a readable gzip file \(\w+\)$"):
        read_one_series(broken)
    with pytest.raises(InvalidSeries, match=r"nowhere.csv: file not found"):
        read_one_series(tmp_path / "nowhere.csv")
    with pytest.raises(InvalidSeries, match="cannot be read"):
        read_one_series(tmp_path)  # a folder


# -- the shared NAB files that were refused for repeated timestamps ---------------------------------------------
NAB_REFUSED = [
    "realKnownCause/machine_temperature_system_failure.csv",  # an hour written twice (02:00-02:55 again)
    "realKnownCause/ec2_request_latency_system_failure.csv",  # 12 rows at 2014-03-09 03:00:00
    "realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
    "realAWSCloudwatch/ec2_network_in_5abac7.csv",
]


@pytest.mark.parametrize("name", NAB_REFUSED)
def test_nab_files_with_repeated_timestamps_read_row_for_row(shared_data, name, caplog):
    path = shared_data / "anomaly" / "nab" / name
    raw = pd.read_csv(path, dtype=str)
    with caplog.at_level(logging.WARNING, logger="anomaly"):
        s = read_one_series(path)
    # One row per input row, in the file's order, every timestamp as the file wrote it.
    assert len(s) == len(raw) and s.duplicates > 0
    np.testing.assert_array_equal(s.rows, np.arange(len(raw)))
    assert (s.raw_timestamps == raw["timestamp"].to_numpy(dtype=object)).all()
    np.testing.assert_array_equal(s.values, raw["value"].astype(float).to_numpy())
    assert f"{s.duplicates} rows share their timestamp" in caplog.text


# -- 10. the reader's slow paths at once (its speed is measured by bench/reading.py) -----------------------------
def test_offsets_reversed_rows_and_missing_values_at_once(tmp_path):
    n = 20_000
    ts = pd.date_range("2020-01-01", periods=n, freq="min")
    values = np.round(np.random.default_rng(0).normal(size=n), 3).astype(str).astype(object)
    values[::97] = ""
    path = tmp_path / "big.csv"
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S+01:00"), "value": values, "host": "web-1"}).iloc[
        ::-1].to_csv(path, index=False)
    s = read_one_series(path)
    assert len(s) == n and s.timestamps.is_monotonic_increasing and np.isnan(s.values).sum() == len(values[::97])
    assert s.timestamps[0] == pd.Timestamp("2019-12-31T23:00:00Z")  # +01:00 read as UTC
