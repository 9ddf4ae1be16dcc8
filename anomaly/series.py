"""Time series in: reading and validating ``timestamp,value[,series]`` data, scaling and sliding windows.

The rules applied to every input (CSV, Parquet or DataFrame):

* ``timestamp`` and ``value`` columns are required; an optional ``series`` column splits the rows into
  one :class:`Series` per id (without it, the single series is called ``"default"``).
* Unsorted timestamps are sorted (logged at INFO); duplicate timestamps within a series are an error
  naming them; timestamps mixing time zones (or naive and zone-aware ones) are an error.
* Values must be numeric: text that is not a number is an error naming the rows.
* Missing values (NaN, empty cells): runs of at most ``max_gap`` consecutive missing values are filled by
  linear interpolation between their neighbours (a run at either end takes the nearest value); a longer
  run is an error naming its rows, since inventing that much data would hide real outages.
* A series with fewer than ``min_length`` rows is :class:`~anomaly.exceptions.SeriesTooShort`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import InvalidParameter, InvalidSeries, SeriesTooShort

__all__ = [
    "Series",
    "RobustScaler",
    "read_series",
    "read_one_series",
    "sliding_windows",
    "choose_window",
    "MAX_GAP",
    "MIN_WINDOW",
    "MAX_WINDOW",
    "DEFAULT_WINDOW",
]

log = logging.getLogger(__name__)

MAX_GAP = 3
MIN_WINDOW = 8
MAX_WINDOW = 64
DEFAULT_WINDOW = 16


@dataclass(frozen=True)
class Series:
    """One validated series: sorted unique timestamps and finite float64 values of the same length."""

    id: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """The series as a ``timestamp,value`` DataFrame."""
        return pd.DataFrame({"timestamp": self.timestamps, "value": self.values})


# -- reading --------------------------------------------------------------------------------------------
def read_series(
    source: str | Path | pd.DataFrame, *, max_gap: int = MAX_GAP, min_length: int = 2
) -> dict[str, Series]:
    """Read and validate ``source`` into one :class:`Series` per series id (see the module rules).

    Args:
        source: a DataFrame, or the path of a ``.csv`` or ``.parquet`` file.
        max_gap: longest run of missing values that is interpolated.
        min_length: fewest rows a series may have.

    Returns:
        ``{series_id: Series}`` in order of first appearance.

    Raises:
        InvalidSeries: missing columns, empty input, duplicates, mixed time zones, non-numeric values,
            gaps longer than ``max_gap``, unreadable file.
        SeriesTooShort: a series has fewer than ``min_length`` rows.
    """
    frame = _load(source)
    missing = [c for c in ("timestamp", "value") if c not in frame.columns]
    if missing:
        raise InvalidSeries(f"missing column(s) {missing}; got columns {list(frame.columns)}")
    if len(frame) == 0:
        raise InvalidSeries("the input has no rows")
    frame = frame.reset_index(drop=True)
    timestamps = _parse_timestamps(frame["timestamp"])
    values = _parse_values(frame["value"])
    ids = frame["series"].astype(str) if "series" in frame.columns else pd.Series("default", index=frame.index)
    out: dict[str, Series] = {}
    for sid in pd.unique(ids):
        rows = np.flatnonzero((ids == sid).to_numpy())
        out[str(sid)] = _build(str(sid), timestamps[rows], values[rows], rows, max_gap, min_length)
    return out


def read_one_series(
    source: str | Path | pd.DataFrame, *, max_gap: int = MAX_GAP, min_length: int = 2
) -> Series:
    """Like :func:`read_series` for an input holding exactly one series.

    Raises:
        InvalidSeries: as :func:`read_series`, or the input holds several series.
    """
    found = read_series(source, max_gap=max_gap, min_length=min_length)
    if len(found) != 1:
        raise InvalidSeries(f"expected one series, found {len(found)}: {list(found)[:5]}")
    return next(iter(found.values()))


def _load(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source
    path = Path(source)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"value": object})
    except FileNotFoundError:
        raise InvalidSeries(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise InvalidSeries(f"{path}: the file is empty") from None
    except (ValueError, OSError) as exc:
        raise InvalidSeries(f"{path}: cannot be read: {exc}") from None


def _parse_timestamps(col: pd.Series) -> pd.DatetimeIndex:
    if isinstance(col.dtype, pd.DatetimeTZDtype) or col.dtype.kind == "M":
        parsed = pd.DatetimeIndex(col)
    else:
        text = col.astype(str)
        # Per-element offsets: a string carries a zone if it ends in Z or +hh:mm / -hh:mm after the time.
        aware = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        zones = text[aware].str.extract(r"(Z|[+-]\d\d:?\d\d)$")[0].str.replace(":", "").replace("Z", "+0000")
        if aware.any() and not aware.all():
            naive_rows = np.flatnonzero(~aware.to_numpy())[:5].tolist()
            raise InvalidSeries(
                f"column 'timestamp' mixes zone-aware and naive timestamps (naive at rows {naive_rows})"
            )
        if zones.nunique() > 1:
            raise InvalidSeries(f"column 'timestamp' mixes time zones {sorted(zones.unique())[:5]}")
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(col, format="mixed"))
        except (ValueError, TypeError) as exc:
            bad = [i for i, t in enumerate(col) if _bad_time(t)][:5]
            raise InvalidSeries(f"column 'timestamp' has unparseable values at rows {bad}: {exc}") from None
    if parsed.isna().any():
        bad = np.flatnonzero(parsed.isna())[:5].tolist()
        raise InvalidSeries(f"column 'timestamp' is missing at rows {bad}")
    return parsed


def _bad_time(value: Any) -> bool:
    try:
        return pd.isna(pd.Timestamp(value))
    except (ValueError, TypeError):
        return True


def _parse_values(col: pd.Series) -> np.ndarray:
    numeric = pd.to_numeric(col, errors="coerce")
    was_given = col.notna() & (col.astype(str).str.strip() != "")
    bad = np.flatnonzero((numeric.isna() & was_given).to_numpy())
    if bad.size:
        shown = [f"row {i}: {col.iloc[i]!r}" for i in bad[:5]]
        raise InvalidSeries(f"column 'value' is not numeric in {bad.size} rows ({', '.join(shown)})")
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.flatnonzero(np.isinf(values))
    if inf.size:
        raise InvalidSeries(f"column 'value' is infinite at rows {inf[:5].tolist()}")
    return values


def _build(
    sid: str, ts: pd.DatetimeIndex, values: np.ndarray, rows: np.ndarray, max_gap: int, min_length: int
) -> Series:
    order = np.argsort(ts.asi8, kind="stable")
    if not np.array_equal(order, np.arange(order.size)):
        log.info("series %r: timestamps were not sorted; sorted %d rows", sid, order.size)
        ts, values, rows = ts[order], values[order], rows[order]
    dup = ts.duplicated(keep=False)
    if dup.any():
        shown = sorted({str(t) for t in ts[dup][:10]})[:5]
        raise InvalidSeries(
            f"series {sid!r}: {int(dup.sum())} rows have duplicate timestamps {shown} (input rows "
            f"{sorted(rows[dup][:5].tolist())})"
        )
    values = _fill_gaps(sid, values, rows, max_gap)
    if values.size < min_length:
        raise SeriesTooShort(f"series {sid!r} has {values.size} rows; at least {min_length} are needed")
    return Series(sid, ts, values)


def _fill_gaps(sid: str, values: np.ndarray, rows: np.ndarray, max_gap: int) -> np.ndarray:
    nan = np.isnan(values)
    if not nan.any():
        return values
    if nan.all():
        raise InvalidSeries(f"series {sid!r}: every value is missing")
    # Runs of consecutive NaN: start/end positions from the edges of the mask.
    edges = np.diff(np.concatenate(([0], nan.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int((ends - starts).max())
    if longest > max_gap:
        i = int(np.argmax(ends - starts))
        raise InvalidSeries(
            f"series {sid!r}: {longest} consecutive missing values (input rows {rows[starts[i]]}.."
            f"{rows[ends[i] - 1]}); at most {max_gap} are interpolated"
        )
    idx = np.arange(values.size)
    filled = values.copy()
    filled[nan] = np.interp(idx[nan], idx[~nan], values[~nan])
    log.info("series %r: interpolated %d missing values", sid, int(nan.sum()))
    return filled


# -- scaling ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustScaler:
    """``(x - median) / scale`` with the median and IQR of the training prefix only.

    ``scale`` is the IQR, or the standard deviation when the IQR is 0 (mostly constant prefixes), or 1
    when both are 0, so that a flat training prefix still gives finite scaled values.
    """

    center: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> RobustScaler:
        """Statistics of ``values`` (the training prefix).

        Raises:
            InvalidSeries: empty or non-finite values.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0 or not np.isfinite(v).all():
            raise InvalidSeries("the scaler needs a non-empty finite training prefix")
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        scale = float(q3 - q1)
        if scale <= 1e-12 * max(1.0, abs(med)):
            scale = float(v.std())
        if scale <= 1e-12 * max(1.0, abs(med)):
            scale = 1.0
        return cls(float(med), scale)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float64 copy of ``values``."""
        return (np.asarray(values, dtype=np.float64) - self.center) / self.scale


# -- windows ----------------------------------------------------------------------------------------------
def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Read-only view of the windows of ``values``: row ``i`` is ``values[i*stride : i*stride + window]``.

    No copy is made (numpy stride tricks); copy before writing.

    Raises:
        InvalidParameter: ``window`` or ``stride`` < 1.
        SeriesTooShort: fewer than ``window`` values.
    """
    if window < 1 or stride < 1:
        raise InvalidParameter(f"window={window} and stride={stride} must be >= 1")
    v = np.asarray(values)
    if v.shape[0] < window:
        raise SeriesTooShort(f"{v.shape[0]} values give no window of length {window}; at least {window} needed")
    return np.lib.stride_tricks.sliding_window_view(v, window)[::stride]


def choose_window(
    values_train: np.ndarray, *, min_window: int = MIN_WINDOW, max_window: int = MAX_WINDOW
) -> int:
    """Window length from the training prefix alone, without labels.

    The dominant period is the lag of the highest autocorrelation peak (computed by FFT on the
    detrended prefix) between ``min_window`` and half the prefix, provided that peak is clear
    (autocorrelation > 0.3). A period above ``max_window`` is halved until it fits, so the window spans
    a whole fraction of the cycle; no clear period gives :data:`DEFAULT_WINDOW`. Short windows keep
    detection early, which is what matters most when alerting.

    Raises:
        InvalidParameter: ``min_window`` < 2 or ``max_window`` < ``min_window``.
    """
    if min_window < 2 or max_window < min_window:
        raise InvalidParameter(f"need 2 <= min_window <= max_window, got {min_window}, {max_window}")
    v = np.asarray(values_train, dtype=np.float64)
    n = v.size
    if n < 4 * min_window:
        return int(np.clip(DEFAULT_WINDOW, min_window, max(min_window, n // 4)))
    x = v - np.polyval(np.polyfit(np.arange(n), v, 1), np.arange(n))
    if not np.any(np.abs(x) > 1e-12):
        return DEFAULT_WINDOW
    size = 1 << math.ceil(math.log2(2 * n))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[:n]
    acf = acf / acf[0]
    hi = n // 2
    lags = np.arange(min_window, hi)
    if lags.size < 3:
        return DEFAULT_WINDOW
    seg = acf[min_window:hi]
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if peaks.size == 0 or seg[peaks].max() < 0.3:
        return DEFAULT_WINDOW
    period = int(lags[peaks[np.argmax(seg[peaks])]])
    while period > max_window:
        period //= 2
    return int(max(min_window, period))
