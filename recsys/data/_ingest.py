"""Reading and validating interactions: DataFrame chunks and the supported file formats.

Every reader feeds chunks to :class:`_Builder`, which validates them row by row, encodes ids to dense ints
as it goes (so a large file is never held as strings twice) and returns the encoded arrays, or raises
:class:`~recsys.exceptions.InvalidInteractions` naming the number of bad rows and the first few.

The rules at the edges (stated in :mod:`recsys.data.interactions`): ids are text; a float id that is a whole
number is written as one (``1.0`` -> ``"1"``), one at or beyond 2**53 (not an exact integer) is refused,
so is an id holding a NUL byte; weights lie in ``MIN_WEIGHT..MAX_WEIGHT``. A file is read only when its
first line is plainly one of the formats; otherwise it is refused without quoting it (see
:mod:`vectorstore.platform.inputs`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import plain_header

from ..exceptions import InvalidInteractions
from ._files import COMPRESSED_SUFFIXES, TextFormat, excerpt

REQUIRED = ("user", "item")
OPTIONAL = ("weight", "timestamp")
MAX_REPORTED = 5  # bad rows named in an error message
#: Accepted weights: finite, and far enough inside float32 that sums of them and the models' products
#: stay finite and normal (1e308 overflowed to inf in training, 1e-320 became 0).
MIN_WEIGHT, MAX_WEIGHT = 1e-12, 1e12
#: A float id at or beyond this is not an exact integer: two ids could read as one.
_EXACT_FLOAT_ID = 2.0**53
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NOT_PLAIN = ("not an interactions file: line 1 is not a CSV header naming the user and item columns, a "
              "tab-separated MovieLens line (user, item, rating, timestamp) nor a line of integer ids "
              "(user item item ...); nothing of it is quoted")

#: (user_ids, item_ids, users, items, weights, timestamps or None), not yet deduplicated.
Codes = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


class _Builder:
    """Accumulates validated chunks as int codes, so a large file is never held as strings twice."""

    def __init__(self, source: str, unit: str) -> None:
        self.source, self.unit = source, unit
        self.user_map: dict[str, int] = {}
        self.item_map: dict[str, int] = {}
        self.users: list[np.ndarray] = []
        self.items: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.timestamps: list[np.ndarray] | None = None
        self.rows = 0
        self.bad_count = 0
        self.bad: list[str] = []

    def reject(self, number: int, reason: str) -> None:
        self.bad_count += 1
        if len(self.bad) < MAX_REPORTED:
            self.bad.append(f"{self.unit} {number}: {reason}")

    def add(
        self,
        user: pd.Series,
        item: pd.Series,
        weight: pd.Series | None,
        timestamp: pd.Series | None,
        first_number: int,
    ) -> None:
        """Validate one chunk; ``first_number`` is the row/line number of its first row."""
        n = len(user)
        numbers = np.arange(first_number, first_number + n)
        user_s, user_why = _ids(user)
        item_s, item_why = _ids(item)
        if weight is None:
            w = np.ones(n, dtype=np.float64)
            w_bad = np.zeros(n, dtype=bool)
        else:
            w = pd.to_numeric(weight, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            w_bad = ~((w >= MIN_WEIGHT) & (w <= MAX_WEIGHT))  # NaN is neither
        ts = ts_bad = None
        if timestamp is not None:
            ts, ts_bad = _timestamps(timestamp)
        user_bad, item_bad = user_why != "", item_why != ""
        bad = user_bad | item_bad | w_bad
        if ts_bad is not None:
            bad |= ts_bad
        if bad.any():
            room = max(MAX_REPORTED - len(self.bad), 0)
            for i in np.flatnonzero(bad)[:room]:
                reasons = []
                if user_bad[i]:
                    reasons.append(user_why[i].format(kind="user"))
                if item_bad[i]:
                    reasons.append(item_why[i].format(kind="item"))
                if w_bad[i]:
                    reasons.append(_weight_problem(weight.iloc[i], w[i]))  # type: ignore[union-attr]
                if ts_bad is not None and ts_bad[i]:
                    reasons.append(f"timestamp={excerpt(timestamp.iloc[i])} is not a number or date")  # type: ignore[union-attr]
                self.bad.append(f"{self.unit} {numbers[i]}: {', '.join(reasons)}")
            self.bad_count += int(bad.sum())
        self.rows += n
        if self.bad_count:
            return  # nothing partial is kept once the input is known to be bad
        self.users.append(_encode(user_s, self.user_map))
        self.items.append(_encode(item_s, self.item_map))
        self.weights.append(w)
        if ts is not None:
            self.timestamps = (self.timestamps or []) + [ts]

    def build(self) -> Codes:
        if self.bad_count:
            raise InvalidInteractions(
                f"{self.source}: {self.bad_count} bad {self.unit}(s) of {self.rows}; first: "
                + "; ".join(self.bad)
            )
        if self.rows == 0:
            raise InvalidInteractions(f"{self.source}: no interactions (empty input)")
        ts = np.concatenate(self.timestamps) if self.timestamps else None
        return (
            np.array(list(self.user_map), dtype=object).astype(str),
            np.array(list(self.item_map), dtype=object).astype(str),
            np.concatenate(self.users),
            np.concatenate(self.items),
            np.concatenate(self.weights),
            ts,
        )


def _weight_problem(raw: object, value: float) -> str:
    if np.isfinite(value) and value > 0:
        return f"weight={excerpt(raw)} is outside {MIN_WEIGHT:g}..{MAX_WEIGHT:g}"
    return f"weight={excerpt(raw)} is not a finite number > 0"


def _ids(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ids as str objects, problem of each: ``""`` or a reason with a ``{kind}`` field).

    Missing (NaN/None) or blank ids, ids holding a NUL byte (C strings and numpy's would cut them there,
    merging two ids) and float ids that are not exact integers below 2**53 are problems. A float id that
    is a whole number is written as an integer (Parquet turns an integer column with gaps into floats).
    """
    missing = col.isna().to_numpy()
    why = np.full(len(col), "", dtype=object)
    if col.dtype.kind == "f":
        text, inexact = _float_ids(col.to_numpy(dtype=np.float64, na_value=np.nan))
        s = pd.Series(text, index=col.index, dtype=object)
    elif col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) not in ("string", "empty", "integer"):
        pairs = [_float_id(float(v)) if isinstance(v, float | np.floating) else (v, False) for v in col.to_numpy()]
        s = pd.Series([p[0] for p in pairs], index=col.index, dtype=object)
        inexact = np.fromiter((p[1] for p in pairs), bool, len(pairs))
    else:
        s, inexact = col, np.zeros(len(col), dtype=bool)
    s = s.astype(object).where(~missing, "").map(str).str.strip()
    why[inexact] = "{kind} id is a float beyond 2**53 or with a fraction: not an exact id (store ids as text)"
    why[s.str.contains("\x00", regex=False).to_numpy()] = "{kind} id holds a NUL byte"
    why[missing | (s == "").to_numpy()] = "missing {kind} id"
    return s.to_numpy(dtype=object), why


def _float_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(text of each float id, inexact mask): whole numbers below 2**53 as integers, NaN as NaN."""
    whole = np.isfinite(values) & (np.abs(values) < _EXACT_FLOAT_ID) & (values == np.trunc(values))
    text = values.astype(object)
    text[whole] = values[whole].astype(np.int64).astype(str)
    return text, ~whole & ~np.isnan(values)


def _float_id(value: float) -> tuple[object, bool]:
    text, inexact = _float_ids(np.array([value], dtype=np.float64))
    return text[0], bool(inexact[0])


def _timestamps(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps as float64, bad mask). Numbers are kept; dates become POSIX seconds."""
    ts = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isnan(ts).any():
        dates = pd.to_datetime(col, errors="coerce", utc=True)
        seconds = (dates - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        as_seconds = seconds.to_numpy(dtype=np.float64, na_value=np.nan)
        ts = np.where(np.isnan(ts), as_seconds, ts)
    return ts, ~np.isfinite(ts)


def _encode(values: np.ndarray, mapping: dict[str, int]) -> np.ndarray:
    codes, uniques = pd.factorize(values)
    global_codes = np.fromiter((mapping.setdefault(u, len(mapping)) for u in uniques), np.int64, len(uniques))
    return global_codes[codes].astype(np.int32)


def column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    """``{user, item, weight, timestamp}`` -> the file's column for each (its own name unless mapped).

    Raises:
        InvalidInteractions: a key that is not one of those four, or an empty column name.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - {*REQUIRED, *OPTIONAL})
    if unknown:
        known = ", ".join((*REQUIRED, *OPTIONAL))
        raise InvalidInteractions(f"cannot map column(s) {unknown}: the columns are {known}")
    if not all(isinstance(v, str) and v.strip() for v in columns.values()):
        raise InvalidInteractions(f"column names must be non-empty strings, got {columns}")
    return {name: columns.get(name, name) for name in (*REQUIRED, *OPTIONAL)}


def _check_columns(columns: Iterable[Any], source: str, names: Mapping[str, str] | None = None, *,
                   file: bool = False) -> None:
    """Refuse a table without the user and item columns. A file's columns are listed only when its first
    line is plainly a header (:func:`vectorstore.platform.inputs.plain_header`): a file that is not a table is
    never quoted."""
    names = names or {c: c for c in (*REQUIRED, *OPTIONAL)}
    columns = list(columns)
    present = {str(c) for c in columns}
    absent = [names[c] for c in REQUIRED if names[c] not in present]
    if absent:
        if file and not plain_header(columns):
            raise InvalidInteractions(f"{source}: missing column(s) {', '.join(absent)}; " + _NOT_PLAIN)
        found = ", ".join(excerpt(c, 24) for c in sorted(present)[:12]) or "none"
        more = f" and {len(present) - 12} more" if len(present) > 12 else ""
        raise InvalidInteractions(f"{source}: missing column(s) {', '.join(absent)}; found {found}{more}")


def _mapped(header: Iterable[Any], names: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The file columns to read and their renaming to ``user, item, weight, timestamp``."""
    present = {str(c) for c in header}
    rename = {names[c]: c for c in (*REQUIRED, *OPTIONAL) if names[c] in present}
    return list(rename), rename


def _columns(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series | None, pd.Series | None]:
    return (
        df["user"],
        df["item"],
        df["weight"] if "weight" in df.columns else None,
        df["timestamp"] if "timestamp" in df.columns else None,
    )


def first_line(path: Path, fmt: TextFormat) -> str | None:
    with fmt.open(path) as f:
        for line in f:
            if line.strip():
                return line
    return None


def read_text(path: Path, chunksize: int, fmt: TextFormat, names: Mapping[str, str]) -> Codes:
    """A text file in the format its name or first line tells: CSV with a header, MovieLens ``u.data``
    (tab-separated), or one line per user (``user item item ...``)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes.pop()
    if suffixes and suffixes[-1] == ".csv":
        return read_csv(path, chunksize, fmt, names)
    first = first_line(path, fmt)
    if first is None:
        raise InvalidInteractions(f"{path}: no interactions (empty file)")
    if "\t" in first:
        fields = first.rstrip("\r\n").split("\t")
        if len(fields) != 4 or not all(_NUMBER.fullmatch(f.strip()) for f in fields[2:]):
            raise InvalidInteractions(f"{path}: {_NOT_PLAIN}")
        return read_udata(path, chunksize, fmt)
    if "," in first:
        return read_csv(path, chunksize, fmt, names)
    tokens = first.split()
    if len(tokens) < 2 or not all(_INTEGER.fullmatch(token) for token in tokens):
        raise InvalidInteractions(f"{path}: {_NOT_PLAIN}")
    return read_user_lines(path, chunksize, fmt)


def _parser_error(path: Path, exc: Exception, what: str) -> InvalidInteractions:
    """A pandas parse error as a message naming the line and field counts, never the content."""
    text = str(exc)
    line = re.search(r"line (\d+)", text)
    fields = re.search(r"Expected (\d+) fields in line \d+, saw (\d+)", text)
    where = f" at line {line.group(1)}" if line else ""
    counts = f" ({fields.group(1)} fields expected, {fields.group(2)} found)" if fields else ""
    return InvalidInteractions(f"{path}: not valid {what}{where}{counts}")


def read_csv(path: Path, chunksize: int, fmt: TextFormat, names: Mapping[str, str] | None = None) -> Codes:
    names = names or column_names(None)
    try:
        with fmt.guarded(path) as f:
            header = pd.read_csv(f, nrows=0)
        _check_columns(header.columns, str(path), names, file=True)
        usecols, rename = _mapped(header.columns, names)
        builder = _Builder(str(path), "line")
        line = 2  # line 1 is the header
        # All as str: a bad weight is reported with its line number, not a pandas parse error.
        with fmt.guarded(path) as f:
            for chunk in pd.read_csv(f, usecols=usecols, dtype=str, chunksize=chunksize, skip_blank_lines=False):
                builder.add(*_columns(chunk.rename(columns=rename)), first_number=line)
                line += len(chunk)
    except pd.errors.EmptyDataError:
        raise InvalidInteractions(f"{path}: the file is empty (expected a header with user,item)") from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc, "CSV") from None
    except (OSError, EOFError) as exc:  # a damaged compressed file
        raise InvalidInteractions(f"{path}: cannot be read ({type(exc).__name__})") from None
    return builder.build()


def read_parquet(path: Path, chunksize: int, names: Mapping[str, str] | None = None) -> Codes:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"reading Parquet ({path}) needs a working pyarrow: {exc}") from exc

    names = names or column_names(None)
    pf = pq.ParquetFile(path)
    _check_columns(pf.schema_arrow.names, str(path), names, file=True)
    columns, rename = _mapped(pf.schema_arrow.names, names)
    builder = _Builder(str(path), "row")
    row = 1
    for batch in pf.iter_batches(batch_size=chunksize, columns=columns):
        chunk = batch.to_pandas().rename(columns=rename)
        builder.add(*_columns(chunk), first_number=row)
        row += len(chunk)
    return builder.build()


def read_udata(path: Path, chunksize: int, fmt: TextFormat) -> Codes:
    names = ["user", "item", "rating", "timestamp"]
    builder = _Builder(str(path), "line")
    line = 1
    try:
        with fmt.guarded(path) as f:
            for chunk in pd.read_csv(f, sep="\t", header=None, names=names, dtype=str, chunksize=chunksize):
                builder.add(chunk["user"], chunk["item"], None, chunk["timestamp"], first_number=line)
                line += len(chunk)
    except pd.errors.ParserError as exc:  # e.g. "Expected 4 fields in line 7, saw 5"
        raise _parser_error(path, exc, "tab-separated text") from None
    except (OSError, EOFError) as exc:
        raise InvalidInteractions(f"{path}: cannot be read ({type(exc).__name__})") from None
    return builder.build()


def _user_line_blocks(path: Path, builder: _Builder, block: int,
                      fmt: TextFormat) -> Iterator[tuple[list, list, int]]:
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    first, size = 1, 0
    with fmt.open(path) as f:
        for number, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            ids = _integer_ids(tokens)
            if isinstance(ids, int):
                builder.reject(number, f"{excerpt(tokens[ids])} is not an integer id (field {ids + 1})")
                continue
            if len(ids) < 2:
                continue  # a user without interactions
            users.append(np.full(len(ids) - 1, ids[0], dtype=ids.dtype))
            items.append(ids[1:])
            size += len(ids) - 1
            if size >= block:
                yield users, items, first
                users, items, first, size = [], [], number + 1, 0
    yield users, items, first


def _integer_ids(tokens: list[str]) -> np.ndarray | int:
    """The ids of one ``user item item ...`` line (int64, or their text when one is beyond int64: ids are
    text), or the 0-based position of the first token that is not an integer."""
    try:
        return np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    for position, token in enumerate(tokens):
        if not _INTEGER.fullmatch(token):
            return position
    return np.array([str(int(t)) for t in tokens], dtype=object)


def read_user_lines(path: Path, chunksize: int, fmt: TextFormat) -> Codes:
    builder = _Builder(str(path), "line")
    for users, items, first in _user_line_blocks(path, builder, chunksize, fmt):
        if builder.bad_count or not users:
            continue
        u = pd.Series(np.concatenate(users).astype(str))
        i = pd.Series(np.concatenate(items).astype(str))
        builder.add(u, i, None, None, first_number=first)
    return builder.build()
