"""Item metadata tables (``item,title,genre...``): read, checked and aligned to a model's items.

A file whose first line is not plainly a table header with an ``item`` column is refused without quoting
it; repeated items are named by line number (and a short excerpt). See :mod:`vectorstore.platform.inputs`.
:func:`item_metadata_columns` turns a table into the ``{column: [value per item]}`` a version publishes.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vectorstore import plain_header

from ..exceptions import InvalidParameter
from ._files import TextFormat, excerpt, text_format
from ._ingest import MAX_REPORTED

__all__ = ["MAX_METADATA_INT", "item_metadata_columns", "metadata_value_problem", "read_item_table"]

log = logging.getLogger(__name__)

#: the largest integer a metadata value may be: every integer up to it is exactly a float64, which is how
#: filters compare numbers (and how Milvus stores them); ``year=1`` followed by 400 zeros broke every filter on
#: ``year`` with a raw OverflowError
MAX_METADATA_INT = 2**53


def _check_column(column: pd.Series, name: str, item_ids: np.ndarray) -> None:
    """Raise :class:`InvalidParameter` naming the first item whose value :func:`metadata_value_problem` refuses:
    whole-column tests for float and integer columns, value by value only for columns of mixed objects."""
    present = column.notna().to_numpy()
    if pd.api.types.is_bool_dtype(column) or isinstance(column.dtype, pd.StringDtype):
        return  # every value is fine
    if pd.api.types.is_float_dtype(column):
        bad = present & ~np.isfinite(column.to_numpy(dtype=np.float64, na_value=0.0))
    elif pd.api.types.is_integer_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=0.0)  # exact at the bound: 2**53 is a float64
        bad = present & (np.abs(values) > MAX_METADATA_INT)
    else:
        bad = np.array([metadata_value_problem(v) is not None for v in column.to_numpy(dtype=object)], dtype=bool)
        bad &= present
    if bad.any():
        n = int(np.flatnonzero(bad)[0])
        value = column.iloc[n]
        problem = metadata_value_problem(value.item() if isinstance(value, np.generic) else value)
        raise InvalidParameter(f"item metadata: field {excerpt(name, 24)} of item {excerpt(item_ids[n])} is {problem}")


def metadata_value_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as an item metadata value, or None: values are str, bool, None, finite
    floats and integers within +-:data:`MAX_METADATA_INT` (the writer, training and filters agree on it)."""
    if value is None or isinstance(value, str | bool):
        return None
    if isinstance(value, int):
        if abs(value) > MAX_METADATA_INT:
            return (f"an integer of {value.bit_length()} bits, beyond +-2**53 (what filters compare exactly): "
                    "store it as a string")
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value} (numbers must be finite)"
    return f"a {type(value).__name__} (a str, finite number, bool or None)"


def read_item_table(path: str | os.PathLike) -> pd.DataFrame:
    """The item table at ``path`` (CSV, compressed or not, UTF-8 or else latin-1), ``item`` read as text.

    Returns:
        The table with one row per item (its ``item`` column is str).

    Raises:
        FileNotFoundError: no such file.
        InvalidInteractions: an empty, binary or damaged file (from :func:`recsys.data._files.text_format`).
        InvalidParameter: not a table with an ``item`` column (its header is listed only when it is plainly
            one), an unreadable CSV, or repeated items (named by line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no item metadata file at {path}")
    fmt = text_format(path)
    try:
        try:
            table = _read(path, fmt)
        except UnicodeDecodeError:
            log.warning("%s is not UTF-8: read as %s", path, fmt.fallback().encoding)
            table = _read(path, fmt.fallback())
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, OSError, EOFError) as exc:
        raise InvalidParameter(f"item metadata {path}: not a readable CSV table ({type(exc).__name__})") from None
    except OverflowError:  # pandas' own type inference, before any column is ours to check
        raise InvalidParameter(f"item metadata {path}: a column holds a number beyond float64's range "
                               "(integers up to 2**53 are compared exactly; write longer ones as text, e.g. with a "
                               "letter)") from None
    items = table["item"].astype(str).str.strip()
    repeated = items.duplicated(keep="first").to_numpy()
    if repeated.any():
        lines = [int(i) + 2 for i in repeated.nonzero()[0][:MAX_REPORTED]]  # line 1 is the header
        shown = ", ".join(excerpt(v) for v in items[repeated].head(3))
        raise InvalidParameter(f"item metadata {path}: {int(repeated.sum())} repeated item(s) at lines {lines} "
                               f"({shown}); one row per item")
    _refuse_overflowed_numbers(table.assign(item=items), path)
    return table.assign(item=items)


_NUMBER = r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*$"


def _refuse_overflowed_numbers(table: pd.DataFrame, path: Path) -> None:
    """A column of numbers read as text because one of them is beyond float64 (pandas keeps such a column as
    text, so ``1994`` would become ``"1994"`` and every numeric filter on it would be refused)."""
    for name in table.columns:
        column = table[name]
        if name == "item" or pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        present = column.dropna().astype(str)
        if present.empty or not present.str.match(_NUMBER).all():
            continue
        digits = present.str.strip().str.lstrip("+-").str.split(r"[.eE]", n=1, regex=True).str[0].str.len()
        at = int(digits.to_numpy().argmax())
        item = table["item"].iloc[present.index[at]]
        raise InvalidParameter(f"item metadata {path}: column {excerpt(str(name), 24)} holds numbers, one of "
                               f"{int(digits.iloc[at])} digits (item {excerpt(item)}): a number beyond float64's "
                               "range (integers up to 2**53 are compared exactly; write longer ones as text, e.g. "
                               "with a letter)")


def _read(path: Path, fmt: TextFormat) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0, **fmt.pandas())
    if "item" not in header.columns:
        if not plain_header(header.columns):
            raise InvalidParameter(f"item metadata {path}: line 1 is not a table header with an 'item' column "
                                   "(not quoted: the file is not plainly a table)")
        found = ", ".join(excerpt(c, 24) for c in list(header.columns)[:12])
        raise InvalidParameter(f"item metadata {path} needs an 'item' column, found {found}")
    # nullable dtypes: an integer column with a gap stays integers (1994, not 1994.0), booleans stay booleans
    return pd.read_csv(path, dtype={"item": str}, dtype_backend="numpy_nullable", **fmt.pandas())


def item_metadata_columns(table: pd.DataFrame | str | None, item_ids: np.ndarray) -> dict[str, list] | None:
    """Align an item metadata table (a DataFrame or CSV path with an ``item`` column) to dense item ids.

    Items missing from the table get ``None``; extra rows are ignored.

    Raises:
        InvalidParameter: no ``item`` column (the columns are listed only when they are plainly a header), or
            repeated items (by a short excerpt); a path is read by :func:`read_item_table`, which quotes nothing
            of a file that is not plainly a table.
    """
    if table is None:
        return None
    df = read_item_table(table) if isinstance(table, str) else table.copy()
    if "item" not in df.columns:
        found = (", ".join(excerpt(c, 24) for c in list(df.columns)[:12]) if plain_header(df.columns)
                 else "no plain header (not quoted)")
        raise InvalidParameter(f"item metadata needs an 'item' column, found {found}")
    df["item"] = df["item"].astype(str)
    if df["item"].duplicated().any():
        dup = ", ".join(excerpt(v) for v in df.loc[df["item"].duplicated(), "item"].head(3))
        raise InvalidParameter(f"item metadata repeats items {dup}")
    aligned = df.set_index("item").reindex(pd.Index(item_ids, dtype=str))
    for name in aligned.columns:
        _check_column(aligned[name], str(name), item_ids)
    aligned = aligned.astype(object).where(aligned.notna(), None)
    columns = {str(col): aligned[col].tolist() for col in aligned.columns}
    return columns
