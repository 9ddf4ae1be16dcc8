"""Item metadata tables (``item,title,genre...``): read, checked and aligned to a model's items.

A file whose first line is not plainly a table header with an ``item`` column is refused without quoting
it; repeated items are named by line number (and a short excerpt). See :mod:`vectorstore.platform.inputs`.
:func:`item_metadata_columns` turns a table into the ``{column: [value per item]}`` a version publishes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from vectorstore import plain_header

from ..exceptions import InvalidParameter
from ._files import TextFormat, excerpt, text_format
from ._ingest import MAX_REPORTED

__all__ = ["item_metadata_columns", "read_item_table"]

log = logging.getLogger(__name__)


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
    items = table["item"].astype(str).str.strip()
    repeated = items.duplicated(keep="first").to_numpy()
    if repeated.any():
        lines = [int(i) + 2 for i in repeated.nonzero()[0][:MAX_REPORTED]]  # line 1 is the header
        shown = ", ".join(excerpt(v) for v in items[repeated].head(3))
        raise InvalidParameter(f"item metadata {path}: {int(repeated.sum())} repeated item(s) at lines {lines} "
                               f"({shown}); one row per item")
    return table.assign(item=items)


def _read(path: Path, fmt: TextFormat) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0, **fmt.pandas())
    if "item" not in header.columns:
        if not plain_header(header.columns):
            raise InvalidParameter(f"item metadata {path}: line 1 is not a table header with an 'item' column "
                                   "(not quoted: the file is not plainly a table)")
        found = ", ".join(excerpt(c, 24) for c in list(header.columns)[:12])
        raise InvalidParameter(f"item metadata {path} needs an 'item' column, found {found}")
    return pd.read_csv(path, dtype={"item": str}, **fmt.pandas())


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
    aligned = aligned.astype(object).where(aligned.notna(), None)
    return {str(col): aligned[col].tolist() for col in aligned.columns}
