"""Files and cells in: the helpers behind :func:`anomaly.series.read_series`.

The rules they apply are stated once, in the docstring of :mod:`anomaly.series`. Row numbers here are
positions among the data rows of the input (0 is the first row under the header), the numbers that
``Series.rows`` holds. Messages quote cell content only through :func:`excerpt`, so a binary or hostile
file never ends up in a log or an HTTP error body, and a file's columns only when its first line is plainly
a header (:func:`vectorstore.platform.inputs.plain_header`): a file that is not a table is never quoted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import NulGuard, open_decompressed, plain_header, sniff_compression
from vectorstore import excerpt_values as excerpt

from .exceptions import InvalidSeries

__all__ = ["DEFAULT_SERIES_COL", "MISSING_TOKENS", "Columns", "as_text", "excerpt", "first_rows", "load_columns",
           "parse_timestamps", "parse_values"]

log = logging.getLogger(__name__)

#: Cell texts that mean "no value" (compared stripped and lower-cased).
MISSING_TOKENS = frozenset({"", "na", "n/a", "null", "none", "nan", "-", "#n/a", "<na>"})
#: The series column may be absent under this default name; any other name must exist.
DEFAULT_SERIES_COL = "series"

SHOWN_ROWS = 5
_HEAD_BYTES = 1 << 16

# Epoch units by magnitude of |x|: seconds below 1e11 (year 5138), milliseconds below 1e14, microseconds
# below 1e17, nanoseconds above. Adjacent bands, so every number has exactly one unit.
_EPOCH_BOUNDS = np.array([1e11, 1e14, 1e17])
_EPOCH_UNITS = ("s", "ms", "us", "ns")
_EPOCH_NAMES = ("seconds", "milliseconds", "microseconds", "nanoseconds")
# Below this (before 1973 in seconds) a number is more likely a counter than an epoch: read as seconds, warned.
_SMALL_EPOCH = 1e8

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# A zone after a time of day: Z, +hh, +hhmm, +hh:mm, UTC or GMT. Requiring the time part keeps
# "2024-01-01" (which ends in "-01") from counting as an offset.
_TIME = r"\d:\d\d(?::\d\d(?:[.,]\d+)?)?"
_OFFSET_SHAPES = ((r"[+-]\d\d:\d\d", 6), (r"[+-]\d\d\d\d", 5), (r"[+-]\d\d", 3), (r"[Zz]", 1),
                  (r"\s*(?:UTC|GMT|utc|gmt)", 3))
_ZONE = "(?:" + "|".join(shape for shape, _ in _OFFSET_SHAPES) + ")"

_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class Columns:
    """The cells of the columns a read needs, as given, and how messages name the input.

    Attributes:
        timestamp, value: the timestamp and value cells (0-based positional index).
        series: the series-id cells, or ``None`` when the input has no series column.
        names: the column names as found in the input, keyed ``timestamp``, ``value`` (and ``series``).
        where: the file name, or ``"the DataFrame"``.
    """

    timestamp: pd.Series
    value: pd.Series
    series: pd.Series | None
    names: dict[str, str]
    where: str

    def __len__(self) -> int:
        return len(self.timestamp)


# -- messages ---------------------------------------------------------------------------------------------
def as_text(cells: pd.Series) -> pd.Series:
    """Cells as stripped text, ``""`` where missing (before ``astype(str)``, which would write ``"nan"``)."""
    if isinstance(cells.dtype, pd.StringDtype):  # CSV cells: already text, kept in pandas' string storage
        return cells.fillna("").str.strip()
    return cells.astype(object).where(cells.notna(), "").astype(str).str.strip()


def first_rows(rows: np.ndarray) -> list[int]:
    """The first few row numbers of ``rows`` (a boolean mask or an array of row numbers), for messages."""
    rows = np.asarray(rows)
    picked = np.flatnonzero(rows) if rows.dtype == bool else rows
    return [int(r) for r in picked[:SHOWN_ROWS]]


# -- sources ----------------------------------------------------------------------------------------------
def load_columns(source: str | Path | pd.DataFrame, *, timestamp_col: str, value_col: str,
                 series_col: str | None) -> Columns:
    """The timestamp, value and (optional) series cells of ``source``, as given.

    Args:
        source: a DataFrame, or the path of a CSV (plain or gzip/bz2/xz/zip-compressed) or Parquet file;
            the format is told by the file's first bytes.
        timestamp_col, value_col: column names (an exact match, else a unique case-insensitive one).
        series_col: series-id column; optional under its default name, required under any other;
            ``None``: one series whatever the columns.

    Returns:
        :class:`Columns` (CSV cells are strings exactly as in the file; other sources keep their dtypes).

    Raises:
        InvalidSeries: missing file, empty file, binary content, unreadable table, missing or ambiguous
            column.
    """
    if isinstance(source, pd.DataFrame):
        return _select(source, "the DataFrame", timestamp_col, value_col, series_col, from_file=False)
    path = Path(source)
    kind, compression, encoding, head = _sniff(path)
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:  # ImportError (no pyarrow) is the install's problem, not the file's
            raise InvalidSeries(f"{path}: cannot be read as Parquet ({type(exc).__name__})") from None
        return _select(frame, str(path), timestamp_col, value_col, series_col)
    return _read_csv(path, compression, encoding, _delimiter(head, encoding), timestamp_col, value_col, series_col)


def _select(frame: pd.DataFrame, where: str, timestamp_col: str, value_col: str,
            series_col: str | None, *, from_file: bool = True) -> Columns:
    found = list(frame.columns)
    # A file's columns are quoted only when its first line is plainly a header (vectorstore.platform.inputs).
    quote = not from_file or plain_header(found)
    ts_name = _resolve(found, timestamp_col, where, required=True, quote=quote)
    value_name = _resolve(found, value_col, where, required=True, quote=quote)
    series_name = None if series_col is None else _resolve(found, series_col, where, quote=quote,
                                                           required=series_col != DEFAULT_SERIES_COL)
    names = {"timestamp": str(ts_name), "value": str(value_name)}
    if series_name is not None:
        names["series"] = str(series_name)

    def cells(name: Any) -> pd.Series:
        return frame[name].reset_index(drop=True)

    return Columns(cells(ts_name), cells(value_name), None if series_name is None else cells(series_name),
                   names, where)


def _resolve(found: list[Any], wanted: str, where: str, *, required: bool, quote: bool = True) -> Any:
    """The column of ``found`` called ``wanted``: exact, else the one equal ignoring case and spaces."""
    if found.count(wanted) > 1:  # only a DataFrame can hold this (pandas renames a CSV's repeated names)
        raise InvalidSeries(f"{where}: {found.count(wanted)} columns are called {wanted!r}")
    if wanted in found:
        return wanted
    key = wanted.strip().lower()
    matches = [c for c in found if str(c).strip().lower() == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InvalidSeries(f"{where}: column {wanted!r} matches {len(matches)} columns {excerpt(matches)}; "
                            "name one exactly")
    if required and not quote:
        raise InvalidSeries(f"{where}: missing column {wanted!r}; line 1 is not plainly a table header (not quoted: "
                            "this is not a timestamp,value file)")
    if required:
        raise InvalidSeries(f"{where}: missing column {wanted!r}; columns found ({len(found)}): {excerpt(found)}")
    return None


def _sniff(path: Path) -> tuple[str, str | None, str, bytes]:
    """``(kind, compression, encoding, head)`` of a file from its first bytes: Parquet, or a text table.

    ``head`` is the start of the (decompressed) content.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
    except FileNotFoundError:
        raise InvalidSeries(f"{path}: file not found") from None
    except OSError as exc:
        raise InvalidSeries(f"{path}: cannot be read ({type(exc).__name__})") from None
    if not magic:
        raise InvalidSeries(f"{path}: the file is empty")
    if magic.startswith(b"PAR1"):
        return "parquet", None, "", magic
    compression, head = sniff_compression(path, InvalidSeries, _HEAD_BYTES)
    if not head.strip():
        raise InvalidSeries(f"{path}: the file is empty")
    if head.startswith(_UTF16_BOMS):  # spreadsheet "Unicode text" exports: NUL bytes that are text
        return "csv", compression, "utf-16", head
    if b"\x00" in head:
        raise InvalidSeries(f"{path}: not a text table (binary content)")
    return "csv", compression, "utf-8", head


def _text(path: Path, compression: str | None, encoding: str) -> NulGuard:
    """The file's text for pandas, refusing a NUL character (pandas would cut a cell short there, reading
    ``12\\x0034`` as 12) with :class:`InvalidSeries` naming its line."""
    def error(line: int) -> InvalidSeries:
        return InvalidSeries(f"{path}: line {line} holds a NUL byte (a cell would be cut short there)")
    return NulGuard(io.TextIOWrapper(open_decompressed(path, compression, InvalidSeries), encoding=encoding), error)


def _delimiter(head: bytes, encoding: str) -> str:
    """The delimiter of the header line: a comma when there is one, else the commonest of ``; \\t |``."""
    lines = head.decode(encoding, errors="replace").lstrip("\ufeff").splitlines()
    line = lines[0] if lines else ""
    if "," in line:
        return ","
    counts = {sep: line.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _read_csv(path: Path, compression: str | None, encoding: str, sep: str, timestamp_col: str, value_col: str,
              series_col: str | None) -> Columns:
    def read(enc: str) -> Columns:
        # Every cell as the exact text of the file: missing tokens, epoch numbers and timestamps are told
        # apart here, not by pandas' guesses (which would turn 1704067200 into 1704067200.0 next to a blank).
        options: dict[str, Any] = {"sep": sep, "dtype": str, "keep_default_na": False, "na_filter": False}
        with _text(path, compression, enc) as f:
            header = pd.read_csv(f, nrows=0, **options)
        picked = _select(header, str(path), timestamp_col, value_col, series_col)
        usecols = list(picked.names.values())
        with _text(path, compression, enc) as f:
            table = pd.read_csv(f, usecols=usecols, **options)
        return _select(table, str(path), timestamp_col, value_col, series_col)

    try:
        try:
            return read(encoding)
        except UnicodeDecodeError:
            if encoding != "utf-8":
                raise
            log.warning("%s: not UTF-8; read as latin-1", path)
            return read("latin-1")
    except pd.errors.EmptyDataError:
        raise InvalidSeries(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        where = re.search(r"(?:line|row) \d+", str(exc))
        raise InvalidSeries(f"{path}: not a readable table{f' at {where.group(0)}' if where else ''}") from None
    except (UnicodeError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidSeries(f"{path}: cannot be read ({type(exc).__name__})") from None


# -- timestamps -------------------------------------------------------------------------------------------
def parse_timestamps(cells: pd.Series, name: str, where: str) -> pd.DatetimeIndex:
    """Parse timestamp cells to one clock (nanosecond unit).

    Datetime columns are taken as they are (zone-aware ones converted to UTC); numbers (and numeric text)
    are epoch times whose unit is told by magnitude; text is ISO 8601 or any format pandas reads, with
    offsets converted to UTC. Naive text mixed with zone-aware text is read as UTC, with a warning.

    Returns:
        A DatetimeIndex in input order: UTC when the input carried zones or epoch numbers, else naive.

    Raises:
        InvalidSeries: empty, unparseable or out-of-range timestamps, or epoch numbers mixing units (the
            message names the rows).
    """
    label = f"{where}: column {name!r}"
    try:
        if isinstance(cells.dtype, pd.DatetimeTZDtype):
            parsed = pd.DatetimeIndex(cells).tz_convert("UTC")
        elif cells.dtype.kind == "M":
            parsed = pd.DatetimeIndex(cells)
        elif cells.dtype.kind in "iuf":
            parsed = _from_epoch(cells.to_numpy(), label)
        else:
            parsed = _from_text(cells, label)
        parsed = parsed.as_unit("ns")
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        # pandas' nanosecond clock spans 1677-2262: a timestamp beyond it is a unit or format mistake.
        raise InvalidSeries(f"{label}: timestamps outside the years 1677-2262") from None
    if parsed.isna().any():
        rows = parsed.isna()
        raise InvalidSeries(f"{label}: no timestamp in {int(rows.sum())} rows (rows {first_rows(rows)})")
    return parsed


def _from_epoch(numbers: np.ndarray, label: str) -> pd.DatetimeIndex:
    """Epoch numbers to UTC, the unit told by magnitude (all rows must agree)."""
    x = numbers if numbers.dtype.kind in "iu" else np.asarray(numbers, dtype=np.float64)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        rows = ~np.isfinite(x)
        raise InvalidSeries(f"{label}: no timestamp in {int(rows.sum())} rows (rows {first_rows(rows)})")
    magnitude = np.abs(x.astype(np.float64))
    unit_of = np.searchsorted(_EPOCH_BOUNDS, magnitude, side="right")
    counts = np.bincount(unit_of, minlength=len(_EPOCH_UNITS))
    if np.count_nonzero(counts) > 1:
        major = int(np.argmax(counts))
        seen = ", ".join(f"{c} rows in {_EPOCH_NAMES[u]}" for u, c in enumerate(counts) if c)
        raise InvalidSeries(f"{label}: epoch numbers of different magnitudes ({seen}); rows not in "
                            f"{_EPOCH_NAMES[major]}: {first_rows(unit_of != major)}")
    unit = int(unit_of[0])
    if unit == 0 and (magnitude < _SMALL_EPOCH).any():
        log.warning("%s: numbers below 1e8 are not a recognisable epoch; read as seconds since 1970 "
                    "(rows %s)", label, first_rows(magnitude < _SMALL_EPOCH))
    if x.dtype.kind == "f" and np.array_equal(x, np.round(x)) and magnitude.max() < 2**63:
        x = x.astype(np.int64)  # integer-valued floats: exact integer conversion, no float rounding in ns
    return pd.DatetimeIndex(pd.to_datetime(x, unit=_EPOCH_UNITS[unit], utc=True))


def _from_text(cells: pd.Series, label: str) -> pd.DatetimeIndex:
    """Timestamp text (or objects, through their text) to one clock."""
    text = as_text(cells)
    empty = (text == "").to_numpy()
    if empty.any():
        raise InvalidSeries(f"{label}: no timestamp in {int(empty.sum())} rows (rows {first_rows(empty)})")
    if _NUMBER.fullmatch(text.iloc[0]):
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().all():
            return _from_epoch(numbers.to_numpy(), label)
    aware = text.str.contains(_TIME + _ZONE + "$", regex=True).to_numpy()
    # Offsets are split off and applied here, since pandas parses offset text about 20 times slower than
    # naive ISO 8601: wall-clock time minus offset gives UTC, so offsets that change across DST are one clock.
    wall, minutes = _split_offsets(text, aware) if aware.any() else (text, np.zeros(text.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas' "could not infer format, falling back"
        if pd.to_datetime(_spread(wall), format="ISO8601", errors="coerce").notna().any():
            utc = pd.to_datetime(wall, format="ISO8601", errors="coerce").dt.as_unit("ns")
            utc = utc - pd.to_timedelta(minutes, unit="min")
        else:  # no ISO 8601 at all: failing it row by row would cost a second per million rows
            utc = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
        bad = utc.isna().to_numpy()
        if bad.any():
            utc[bad] = _parse_other(text[bad])
    bad = utc.isna().to_numpy()
    if bad.any():
        raise InvalidSeries(f"{label}: {int(bad.sum())} unparseable timestamps (rows {first_rows(bad)}, "
                            f"e.g. {excerpt(text[bad])})")
    if not aware.any():
        return pd.DatetimeIndex(utc)
    if not aware.all():
        log.warning("%s: %d of %d timestamps carry no UTC offset; read as UTC (rows %s)", label,
                    int((~aware).sum()), aware.size, first_rows(~aware))
    return pd.DatetimeIndex(utc).tz_localize("UTC")


def _split_offsets(text: pd.Series, aware: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """``(wall-clock text, UTC offset in minutes)`` of each row; naive rows keep their text and offset 0.

    One vectorised pass per offset shape present (``+hh:mm``, ``+hhmm``, ``+hh``, ``Z``, ``UTC``); the
    offsets themselves take few distinct values, each converted once.
    """
    wall, minutes, left = text.copy(), np.zeros(text.size), aware.copy()
    for shape, width in _OFFSET_SHAPES:
        hit = left & text.str.contains(_TIME + shape + "$", regex=True).to_numpy()
        if not hit.any():
            continue
        left &= ~hit
        suffix = text[hit].str.slice(-width).str.strip()
        wall[hit] = text[hit].str.slice(0, -width).str.strip()
        minutes[hit] = suffix.map({z: _offset_minutes(z) for z in pd.unique(suffix)}).to_numpy(dtype=np.float64)
        if not left.any():
            break
    return wall, minutes


def _offset_minutes(zone: str) -> float:
    """Minutes east of UTC of an offset text: ``Z``, ``UTC``, ``GMT``, ``+hh``, ``+hhmm`` or ``+hh:mm``."""
    if zone[0] not in "+-":
        return 0.0
    digits = zone[1:].replace(":", "")
    value = int(digits[:2]) * 60 + int(digits[2:4] or 0)
    return float(-value if zone[0] == "-" else value)


def _spread(cells: pd.Series, size: int = 1000) -> pd.Series:
    """Up to ``size`` cells spread evenly over the column, first and last included."""
    return cells.iloc[np.unique(np.linspace(0, cells.size - 1, min(cells.size, size)).astype(np.int64))]


def _parse_other(text: pd.Series) -> pd.Series:
    """UTC wall times (naive, ns) of text that is not ISO 8601; NaT where nothing reads it.

    pandas infers one format from the first row, month first; day first is chosen when it reads more of
    rows spread over the column (a 13th day), so one convention holds for the whole column. Only what
    the chosen format does not read is parsed element by element (slow, and for columns that mix formats).
    """
    sample = _spread(text)
    read = [pd.to_datetime(sample, utc=True, errors="coerce", dayfirst=d).notna().sum() for d in (False, True)]
    best = pd.to_datetime(text, utc=True, errors="coerce", dayfirst=read[1] > read[0])
    still = best.isna()
    if still.any():
        best[still] = pd.to_datetime(text[still], format="mixed", utc=True, errors="coerce")
    return best.dt.tz_localize(None).dt.as_unit("ns")


# -- values -----------------------------------------------------------------------------------------------
def parse_values(cells: pd.Series, name: str, where: str) -> np.ndarray:
    """Value cells to float64, NaN for every missing value.

    Missing: an empty cell, NaN, a :data:`MISSING_TOKENS` text, an infinite number (warned), or text that
    is not a number (warned, counted, rows named).

    Raises:
        InvalidSeries: more than half of the rows are text that is not a number (not a value column).
    """
    label = f"{where}: column {name!r}"
    if pd.api.types.is_numeric_dtype(cells.dtype):
        values = cells.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = _exact_floats(cells)
        unread = np.isnan(values) & cells.notna().to_numpy()
        if unread.any():
            words = as_text(cells[unread]).str.lower()
            text = np.flatnonzero(unread)[~words.isin(MISSING_TOKENS).to_numpy()]
            if text.size * 2 > values.size:
                raise InvalidSeries(f"{label} is not a value column: {text.size} of {values.size} rows are text, "
                                    f"not numbers (rows {first_rows(text)}, e.g. {excerpt(cells.iloc[text])})")
            if text.size:
                log.warning("%s: %d rows hold text that is not a number; read as missing values (rows %s, "
                            "e.g. %s)", label, text.size, first_rows(text), excerpt(cells.iloc[text]))
    infinite = np.isinf(values)
    if infinite.any():
        log.warning("%s: %d infinite values read as missing (rows %s)", label, int(infinite.sum()),
                    first_rows(infinite))
        values = np.where(infinite, np.nan, values)
    return values


def _exact_floats(cells: pd.Series) -> np.ndarray:
    """Numbers of text cells, NaN where a cell is not a number.

    ``astype(float)`` reads each number exactly (``pd.to_numeric`` can be one unit in the last place off),
    so it reads the cells that ``pd.to_numeric`` finds to be numbers.
    """
    try:
        return cells.astype(np.float64).to_numpy()
    except (ValueError, TypeError):  # some cells are not numbers: the slower path, for them only
        pass
    numbers = pd.to_numeric(cells, errors="coerce")
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    ok = ~np.isnan(values)
    with contextlib.suppress(ValueError, TypeError):  # a form only pd.to_numeric reads: keep its reading
        values[ok] = as_text(cells[ok]).astype(np.float64).to_numpy()
    return values
