"""Time series in: the rules for reading ``timestamp,value[,series]`` data (window maths: :mod:`anomaly.windows`).

Real exports are scored, not refused. :func:`read_series` and :func:`read_one_series` apply these rules to
every input: a DataFrame, a CSV file (plain, or gzip/bz2/xz/zip-compressed) or a Parquet file.

**Files.** The format is told by the file's first bytes, not its name (a renamed ``.csv.gz`` is still read).
CSV text is read as UTF-8 (a UTF-16 file with a byte-order mark too); text that is not UTF-8 is read again
as latin-1, with a warning. The delimiter is a comma, or ``;``, tab or ``|`` when the header line has no
comma. A file that is not a table (NUL bytes: binary content), an empty file and a missing file are
:class:`~anomaly.exceptions.InvalidSeries` naming the file; its content is never quoted.

**Columns.** ``timestamp_col`` (default ``timestamp``), ``value_col`` (``value``) and ``series_col``
(``series``) name the columns: an exact match, else the one column whose name matches ignoring case and
surrounding spaces (``Timestamp``). Other columns are ignored. A missing timestamp or value column is
``InvalidSeries`` listing the columns found. The series column is optional under its default name (without
it the one series is called ``"default"``); a name the caller gives must exist; ``series_col=None`` reads
one series whatever the columns. Each series id becomes one :class:`Series`, in order of first appearance.

**Rows.** One output row per input row (unless a ``duplicates`` policy below collapses them). Row numbers,
in messages and in ``Series.rows``, count data rows from 0 (the header is not a row).

**Order.** Rows are stable-sorted by time (logged at INFO when they were not in order). One exception: a
clock that steps back by at most 3 hours and then replays, in increasing order, time it already showed
(a DST fall-back hour written in local time without offsets, an hour exported twice: at least 2 rows that
reach back to where the clock stepped back) keeps the file's order, since sorting would interleave two
different hours; ``Series.timestamps`` then steps back there too. A file with any other disorder is sorted
throughout.

**Repeated timestamps** (rows of one series sharing a timestamp) are counted in ``Series.duplicates`` and
follow the ``duplicates`` policy:

* ``"keep"`` (default): every row is kept, equal timestamps in input order, with a warning that counts them
  and names the first few;
* ``"mean"``: each group of equal timestamps becomes one row holding the mean of its values (missing
  values left out; all missing gives a missing value), with the first row's raw timestamp and row number;
* ``"last"``: each group becomes its last input row (its value, even when missing: the last write wins);
* ``"error"``: :class:`~anomaly.exceptions.InvalidSeries` naming the timestamps and input rows.

**Values.** An empty cell, NaN, or a missing token (``""``, ``NA``, ``N/A``, ``null``, ``None``, ``nan``,
``-``, in any case) is a missing value, kept as NaN in ``Series.values``: nothing is interpolated (filling
in is not causal) and nothing is dropped; what a window holding a missing value means is the detector's
rule. Gaps in time (rows that are absent) are not filled in either. Infinite values, and text that is not a
number, are missing values too, with a warning that counts the rows and names the first few; when more than
half of the rows are text that is not a number, the column is not a value column: ``InvalidSeries`` naming
it and the first bad rows. A series whose every value is missing is ``InvalidSeries``. Messages quote at
most 5 cells, each cut to 20 characters, non-printable characters replaced.

**Timestamps.** Text in ISO 8601 or any format pandas reads. UTC offsets are converted to UTC, so offsets
that change across DST (``+02:00`` then ``+01:00``) are one clock; naive timestamps mixed with zone-aware
ones are read as UTC, with a warning. Numbers (and numeric text) are epoch times, the unit told by
magnitude: seconds (~1e9), milliseconds (~1e12), microseconds (~1e15) or nanoseconds (~1e18); a column
mixing magnitudes is ``InvalidSeries`` (numbers below 1e8 are read as seconds, with a warning). Datetime
columns are taken as they are. ``Series.timestamps`` is UTC when the input carried zones or epoch numbers,
naive otherwise. Empty or unparseable timestamps are ``InvalidSeries`` naming the rows: a row without a
time cannot be placed. ``Series.raw_timestamps`` keeps every timestamp cell exactly as given (the CSV
text, e.g. ``1704067200`` or ``2024-10-27 02:30:00+02:00``), in the series' order, to be written back.

**Length.** A series with fewer than ``min_length`` rows is :class:`~anomaly.exceptions.SeriesTooShort`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np
import pandas as pd

from ._reading import (
    DEFAULT_SERIES_COL,
    Columns,
    as_text,
    excerpt,
    first_rows,
    load_columns,
    parse_timestamps,
    parse_values,
)
from .exceptions import InvalidParameter, InvalidSeries, SeriesTooShort

__all__ = ["Series", "read_series", "read_one_series", "ReadOptions", "DUPLICATE_POLICIES"]

log = logging.getLogger(__name__)

#: What :func:`read_series` does with rows sharing a timestamp (see the module rules).
DUPLICATE_POLICIES = ("keep", "mean", "last", "error")
#: The longest step back of the clock that is read as a replay (DST moves clocks by 1 hour, rarely 2).
MAX_REPLAY = pd.Timedelta(hours=3)


@dataclass(frozen=True)
class Series:
    """One series as read: timestamps, float64 values (NaN where missing) and where each row came from.

    Attributes:
        id: the series id (``"default"`` without a series column).
        timestamps: parsed times in the series' order (see the module rules): UTC when the input carried
            zones or epoch numbers, naive otherwise.
        values: float64, NaN for a missing value.
        raw_timestamps: the timestamp cells exactly as given (object array), same order.
        rows: the input row number of each row (int64, 0 = first data row), same order.
        duplicates: how many input rows shared their timestamp with another row of this series.

    ``raw_timestamps`` and ``rows`` default to the timestamps' text and ``0..n-1``.
    """

    id: str
    timestamps: pd.DatetimeIndex
    values: np.ndarray
    raw_timestamps: np.ndarray = field(default=None)  # type: ignore[arg-type]
    rows: np.ndarray = field(default=None)  # type: ignore[arg-type]
    duplicates: int = 0

    def __post_init__(self) -> None:
        n = len(self.values)
        if self.raw_timestamps is None:
            object.__setattr__(self, "raw_timestamps", np.array([str(t) for t in self.timestamps], dtype=object))
        if self.rows is None:
            object.__setattr__(self, "rows", np.arange(n, dtype=np.int64))
        if not len(self.timestamps) == len(self.raw_timestamps) == len(self.rows) == n:
            raise InvalidParameter(f"series {self.id!r}: timestamps, raw_timestamps, rows and values differ in "
                                   "length")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """The series as a ``timestamp,value`` DataFrame."""
        return pd.DataFrame({"timestamp": self.timestamps, "value": self.values})


# -- reading --------------------------------------------------------------------------------------------
def read_series(
    source: str | Path | pd.DataFrame,
    *,
    timestamp_col: str = "timestamp",
    value_col: str = "value",
    series_col: str | None = DEFAULT_SERIES_COL,
    duplicates: str = "keep",
    min_length: int = 2,
) -> dict[str, Series]:
    """Read ``source`` into one :class:`Series` per series id, by the rules of this module's docstring.

    Args:
        source: a DataFrame, or the path of a CSV (plain or compressed) or Parquet file.
        timestamp_col, value_col: names of the timestamp and value columns.
        series_col: name of the series-id column (optional under its default name); ``None``: one series.
        duplicates: ``"keep"``, ``"mean"``, ``"last"`` or ``"error"``: what rows sharing a timestamp become.
        min_length: fewest rows a series may have.

    Returns:
        ``{series_id: Series}`` in order of first appearance.

    Raises:
        InvalidParameter: an unknown ``duplicates`` policy.
        InvalidSeries: unreadable, empty or binary file, missing column, no rows, unparseable timestamps,
            epoch units mixed, a value column that is mostly text, a series without any value, repeated
            timestamps under ``duplicates="error"``.
        SeriesTooShort: a series has fewer than ``min_length`` rows.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise InvalidParameter(f"duplicates={duplicates!r}; accepted: {', '.join(DUPLICATE_POLICIES)}")
    cols = load_columns(source, timestamp_col=timestamp_col, value_col=value_col, series_col=series_col)
    if len(cols) == 0:
        raise InvalidSeries(f"{cols.where}: the input has no rows")
    timestamps = parse_timestamps(cols.timestamp, cols.names["timestamp"], cols.where)
    values = parse_values(cols.value, cols.names["value"], cols.where)
    raw = cols.timestamp.to_numpy(dtype=object)
    return {sid: _build(f"{cols.where}: series {sid!r}", sid, timestamps[rows], values[rows], raw[rows], rows,
                        duplicates, min_length)
            for sid, rows in _split(cols)}


class ReadOptions(TypedDict, total=False):
    """The keyword arguments of :func:`read_series` (defaults there), as callers pass them on (``read_options``)."""

    timestamp_col: str
    value_col: str
    series_col: str | None
    duplicates: str
    min_length: int


def read_one_series(source: str | Path | pd.DataFrame, **options: Unpack[ReadOptions]) -> Series:
    """Like :func:`read_series` (same keyword arguments) for an input holding exactly one series.

    Raises:
        InvalidSeries: as :func:`read_series`, or the input holds several series.
        InvalidParameter, SeriesTooShort: as :func:`read_series`.
        TypeError: a keyword :func:`read_series` does not take.
    """
    found = read_series(source, **options)
    if len(found) != 1:
        raise InvalidSeries(f"expected one series, found {len(found)}: {excerpt(found)}")
    return next(iter(found.values()))


def _split(cols: Columns) -> list[tuple[str, np.ndarray]]:
    """``(series id, input rows)`` per series, in order of first appearance (one sort, not one scan per id)."""
    n = len(cols)
    if cols.series is None:
        return [("default", np.arange(n, dtype=np.int64))]
    ids = as_text(cols.series)
    empty = (ids == "").to_numpy()
    if empty.any():
        raise InvalidSeries(f"{cols.where}: column {cols.names['series']!r} has no series id in {int(empty.sum())} "
                            f"rows (rows {first_rows(empty)})")
    codes, uniques = pd.factorize(ids)
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
    return [(str(sid), rows) for sid, rows in zip(uniques, np.split(order.astype(np.int64), bounds))]


def _build(label: str, sid: str, timestamps: pd.DatetimeIndex, values: np.ndarray, raw: np.ndarray,
           rows: np.ndarray, policy: str, min_length: int) -> Series:
    """One series from its rows in input order: ordered, repeated timestamps handled, checked."""
    order = _time_order(timestamps.asi8, label)
    if order is not None:
        timestamps, values, raw, rows = timestamps[order], values[order], raw[order], rows[order]
    repeated = pd.Series(timestamps.asi8).duplicated(keep=False).to_numpy()
    n_repeated = int(repeated.sum())
    if n_repeated:
        shown, at = excerpt(pd.unique(raw[repeated])), first_rows(rows[repeated])
        groups = len(np.unique(timestamps.asi8[repeated]))
        if policy == "error":
            raise InvalidSeries(f"{label}: {n_repeated} rows have duplicate timestamps {shown} (input rows {at}; "
                                "duplicates='error')")
        if policy == "keep":
            log.warning("%s: %d rows share their timestamp with another row (%d timestamps repeated: %s, input "
                        "rows %s); all kept (duplicates='keep')", label, n_repeated, groups, shown, at)
        else:
            timestamps, values, raw, rows = _collapse(timestamps, values, raw, rows, policy)
            log.info("%s: %d rows sharing %d timestamps collapsed by duplicates=%r", label, n_repeated, groups,
                     policy)
    missing = np.isnan(values)
    if missing.all():
        raise InvalidSeries(f"{label}: every value is missing ({values.size} rows)")
    if missing.any():
        log.info("%s: %d missing values kept as NaN (input rows %s)", label, int(missing.sum()),
                 first_rows(rows[missing]))
    if values.size < min_length:
        raise SeriesTooShort(f"series {sid!r} has {values.size} rows; at least {min_length} are needed")
    return Series(sid, timestamps, values, raw, rows, n_repeated)


def _time_order(t: np.ndarray, label: str) -> np.ndarray | None:
    """The permutation that puts rows in time order, or ``None`` when the input's order stands."""
    if t.size < 2 or bool((t[1:] >= t[:-1]).all()):
        return None
    replays = _replays(t)
    if replays:
        log.info("%s: the clock steps back %d time(s) and replays time it already showed (a DST fall-back or "
                 "repeated hour); the file's order is kept", label, replays)
        return None
    log.info("%s: timestamps were not sorted; sorted %d rows by time", label, t.size)
    return np.argsort(t, kind="stable")


def _replays(t: np.ndarray) -> int:
    """How many times the clock replays (see the module rules), or 0 when any disorder is not a replay.

    A replay starts where the clock steps back below the latest time seen so far (``t[a] < max(t[:a])``)
    and runs while rows stay at or below that latest time. It must step back exactly once (then rise steadily), hold at
    least 2 rows, step back by at most :data:`MAX_REPLAY`, and end no earlier than the time it repeats
    from (``t[end] >= t[a - len]``). Vectorised: one pass of numpy over the rows, whatever their number.
    """
    before = np.maximum.accumulate(t)[:-1]  # the latest time before each row from row 1
    in_run = np.concatenate(([False], t[1:] <= before))
    back = np.concatenate(([False], t[1:] < t[:-1]))  # every step back lies in a run
    starts = np.flatnonzero(in_run & ~np.concatenate(([False], in_run[:-1])))
    ends = np.flatnonzero(in_run & ~np.concatenate((in_run[1:], [False])))
    a = np.flatnonzero(back)
    run = np.searchsorted(starts, a, side="right") - 1
    if np.bincount(run).max() > 1:
        return 0
    end = ends[run]
    length = end - a + 1
    ok = (length >= 2) & (before[a - 1] - t[a] <= MAX_REPLAY.value) & (t[end] >= t[np.maximum(a - length, 0)])
    return int(a.size) if bool(ok.all()) else 0


def _collapse(timestamps: pd.DatetimeIndex, values: np.ndarray, raw: np.ndarray, rows: np.ndarray,
              policy: str) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray, np.ndarray]:
    """One row per timestamp, in time order: the group's mean (``"mean"``) or last input row (``"last"``)."""
    order = np.lexsort((rows, timestamps.asi8))
    t = timestamps.asi8[order]
    starts = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1])))
    ends = np.concatenate((starts[1:], [t.size])) - 1
    values = values[order]
    if policy == "last":
        pick, out = ends, values[ends]
    else:
        given = ~np.isnan(values)
        sums = np.add.reduceat(np.where(given, values, 0.0), starts)
        counts = np.add.reduceat(given.astype(np.int64), starts)
        pick = starts
        out = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    keep = order[pick]
    return timestamps[keep], out, raw[keep], rows[keep]
