"""Reading and validating interactions: DataFrame chunks and the supported file formats.

Every reader feeds chunks to :class:`_Builder`, which validates them row by row, encodes ids to dense ints
as it goes (so a large file is never held as strings twice) and returns the encoded arrays, or raises
:class:`~recsys.exceptions.InvalidInteractions` naming the number of bad rows and the first few.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._files import COMPRESSED_SUFFIXES, TextFormat, excerpt
from .exceptions import InvalidInteractions

REQUIRED = ("user", "item")
OPTIONAL = ("weight", "timestamp")
MAX_REPORTED = 5  # bad rows named in an error message

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
        user_s, user_bad = _ids(user)
        item_s, item_bad = _ids(item)
        if weight is None:
            w = np.ones(n, dtype=np.float64)
            w_bad = np.zeros(n, dtype=bool)
        else:
            w = pd.to_numeric(weight, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            w_bad = ~(np.isfinite(w) & (w > 0))
        ts = ts_bad = None
        if timestamp is not None:
            ts, ts_bad = _timestamps(timestamp)
        bad = user_bad | item_bad | w_bad
        if ts_bad is not None:
            bad |= ts_bad
        if bad.any():
            room = max(MAX_REPORTED - len(self.bad), 0)
            for i in np.flatnonzero(bad)[:room]:
                reasons = []
                if user_bad[i]:
                    reasons.append("missing user id")
                if item_bad[i]:
                    reasons.append("missing item id")
                if w_bad[i]:
                    reasons.append(f"weight={excerpt(weight.iloc[i])} is not a finite number > 0")
                if ts_bad is not None and ts_bad[i]:
                    reasons.append(f"timestamp={excerpt(timestamp.iloc[i])} is not a number or date")
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


def _ids(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(ids as str objects, bad mask): missing (NaN/None) or blank ids are bad."""
    missing = col.isna().to_numpy()
    s = col.astype(object).where(~missing, "").map(str).str.strip()
    bad = missing | (s == "").to_numpy()
    return s.to_numpy(dtype=object), bad


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


def _check_columns(columns: Iterable[Any], source: str, names: Mapping[str, str] | None = None) -> None:
    names = names or {c: c for c in (*REQUIRED, *OPTIONAL)}
    present = {str(c) for c in columns}
    absent = [names[c] for c in REQUIRED if names[c] not in present]
    if absent:
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
        return read_udata(path, chunksize, fmt)
    if "," in first:
        return read_csv(path, chunksize, fmt, names)
    return read_user_lines(path, chunksize, fmt)


def read_csv(path: Path, chunksize: int, fmt: TextFormat, names: Mapping[str, str] | None = None) -> Codes:
    names = names or column_names(None)
    try:
        header = pd.read_csv(path, nrows=0, **fmt.pandas())
        _check_columns(header.columns, str(path), names)
        usecols, rename = _mapped(header.columns, names)
        builder = _Builder(str(path), "line")
        line = 2  # line 1 is the header
        # All as str: a bad weight is reported with its line number, not a pandas parse error.
        reader = pd.read_csv(path, usecols=usecols, dtype=str, chunksize=chunksize, skip_blank_lines=False,
                             **fmt.pandas())
        for chunk in reader:
            builder.add(*_columns(chunk.rename(columns=rename)), first_number=line)
            line += len(chunk)
    except pd.errors.EmptyDataError:
        raise InvalidInteractions(f"{path}: the file is empty (expected a header with user,item)") from None
    except pd.errors.ParserError as exc:
        raise InvalidInteractions(f"{path}: not valid CSV: {exc}") from None
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
    _check_columns(pf.schema_arrow.names, str(path), names)
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
        reader = pd.read_csv(path, sep="\t", header=None, names=names, dtype=str, chunksize=chunksize,
                             **fmt.pandas())
        for chunk in reader:
            builder.add(chunk["user"], chunk["item"], None, chunk["timestamp"], first_number=line)
            line += len(chunk)
    except pd.errors.ParserError as exc:  # e.g. "Expected 4 fields in line 7, saw 5"
        raise InvalidInteractions(f"{path}: unparsable tab-separated line: {exc}") from None
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
            try:
                ids = np.array(tokens, dtype=np.int64)
            except ValueError:
                bad = next(t for t in tokens if not t.lstrip("-").isdigit())
                builder.reject(number, f"{excerpt(bad)} is not an integer id")
                continue
            if len(ids) < 2:
                continue  # a user without interactions
            users.append(np.full(len(ids) - 1, ids[0]))
            items.append(ids[1:])
            size += len(ids) - 1
            if size >= block:
                yield users, items, first
                users, items, first, size = [], [], number + 1, 0
    yield users, items, first


def read_user_lines(path: Path, chunksize: int, fmt: TextFormat) -> Codes:
    builder = _Builder(str(path), "line")
    for users, items, first in _user_line_blocks(path, builder, chunksize, fmt):
        if builder.bad_count or not users:
            continue
        u = pd.Series(np.concatenate(users).astype(str))
        i = pd.Series(np.concatenate(items).astype(str))
        builder.add(u, i, None, None, first_number=first)
    return builder.build()
