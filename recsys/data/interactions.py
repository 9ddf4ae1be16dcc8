"""User-item interactions: external ids mapped to dense ints, duplicates summed, validated once.

:class:`Interactions` is the input of every graph model and of the metrics. It is immutable: built by
:meth:`Interactions.from_frame` or :meth:`Interactions.read`, never partially. Users are numbered
``0..n_users-1`` and items ``0..n_items-1`` in order of first appearance; the external ids are kept as
strings in :attr:`Interactions.user_ids` / :attr:`Interactions.item_ids`.

Input is validated row by row; every problem (missing column, missing or empty id, weight that is not a
finite number in ``MIN_WEIGHT..MAX_WEIGHT``, unparsable line, empty input) raises
:class:`~recsys.exceptions.InvalidInteractions` naming the number of bad rows and the first few, by their
1-based row (DataFrame) or line (file) number.

At the edges:

* ids are text: a 20-digit id is read as its digits (never as an int64); a float id that is a whole number
  is written as one (``1.0`` -> ``"1"``: Parquet stores an integer column with gaps as floats), so a test
  file read separately names the same ids; a float id with a fraction or at or beyond 2**53 (not an exact
  integer) is refused, and so is an id holding a NUL byte (it would be cut there, merging two ids);
* weights lie in ``1e-12..1e12`` (:data:`~recsys.data._ingest.MIN_WEIGHT`, ``MAX_WEIGHT``): 1e308 overflowed in
  training and 1e-320 became 0; a weight outside is refused with its line;
* a file whose first line is not plainly one of the formats is refused without quoting any of it, and a
  bad cell of a file that is plainly one is quoted by a short excerpt only (:mod:`vectorstore.platform.inputs`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..exceptions import InvalidInteractions, UnknownItem, UnknownUser
from . import _files, _ingest
from ._ingest import MAX_WEIGHT, MIN_WEIGHT

__all__ = ["MAX_WEIGHT", "MIN_WEIGHT", "Interactions"]

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1_000_000


class Interactions:
    """Immutable user-item interactions over dense ids.

    Attributes:
        user_ids: external user ids (str), indexed by dense user id.
        item_ids: external item ids (str), indexed by dense item id.
        users, items: int32 dense ids of each unique (user, item) pair, sorted by (user, item).
        weights: float32 weight of each pair (duplicates summed).
        timestamps: float64 latest timestamp of each pair, or None.
        dropped: for the result of :meth:`align`, how many rows/users/items were dropped; else zeros.
    """

    def __init__(
        self,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        weights: np.ndarray,
        timestamps: np.ndarray | None = None,
        dropped: dict[str, int] | None = None,
    ) -> None:
        # Internal: use from_frame / read. Arrays are expected deduplicated and sorted.
        self._user_ids = _frozen(np.asarray(user_ids, dtype=str))
        self._item_ids = _frozen(np.asarray(item_ids, dtype=str))
        self._users = _frozen(np.asarray(users, dtype=np.int32))
        self._items = _frozen(np.asarray(items, dtype=np.int32))
        self._weights = _frozen(np.asarray(weights, dtype=np.float32))
        self._timestamps = None if timestamps is None else _frozen(np.asarray(timestamps, dtype=np.float64))
        self._dropped = dict(dropped or {"rows": 0, "users": 0, "items": 0})
        self._cache: dict[str, Any] = {}

    # -- constructors -------------------------------------------------------------------------------

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Interactions:
        """Build from a DataFrame with columns ``user``, ``item`` and optional ``weight``, ``timestamp``.

        Raises:
            InvalidInteractions: a required column is missing, the frame is empty, or some rows have a
                missing id or a weight that is not a finite number > 0 (named by 1-based row number).
        """
        if not isinstance(df, pd.DataFrame):
            raise InvalidInteractions(f"expected a pandas DataFrame, got {type(df).__name__}")
        _ingest._check_columns(df.columns, "DataFrame")
        builder = _ingest._Builder("DataFrame", "row")
        builder.add(*_ingest._columns(df), first_number=1)
        return cls._from_codes(*builder.build())

    @classmethod
    def read(cls, path: str | os.PathLike, *, chunksize: int = CHUNK_ROWS, columns: Mapping[str, str] | None = None,
             encoding: str | None = None) -> Interactions:
        """Read interactions from a file, detecting its format.

        Formats: CSV (``.csv``, header with ``user,item[,weight,timestamp]``, read in chunks of
        ``chunksize`` rows), Parquet (told by its first bytes, read by row batches), MovieLens ``u.data``
        (tab-separated ``user item rating timestamp``, no header; weight 1, ratings ignored) and the
        LightGCN text format, one line per user: ``user item item ...`` (integer ids). Text files may be
        gzip, bz2, xz or zip-compressed (told by their first bytes) and in any encoding (see
        :mod:`recsys.data._files`: UTF-8, else latin-1 with a warning, unless ``encoding`` is given).

        Args:
            columns: the file's names of ``user``, ``item``, ``weight``, ``timestamp`` when they differ,
                e.g. ``{"user": "userId", "item": "movieId", "weight": "rating"}`` (CSV and Parquet).
            encoding: the text encoding (e.g. ``"latin-1"``), instead of detecting it.

        Raises:
            InvalidInteractions: missing file columns, bad rows or lines (by 1-based line number), empty,
                binary or undecodable file (named, never quoted beyond a short excerpt).
            FileNotFoundError: no such file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no interactions file at {path}")
        names = _ingest.column_names(columns)
        if _files.is_parquet(path):
            return cls._from_codes(*_ingest.read_parquet(path, chunksize, names))
        fmt = _files.text_format(path, encoding)
        try:
            return cls._from_codes(*_ingest.read_text(path, chunksize, fmt, names))
        except UnicodeDecodeError as exc:
            if fmt.explicit:
                raise InvalidInteractions(f"{path}: not valid {fmt.encoding} text ({exc.reason}); give its encoding, "
                                          "e.g. latin-1") from None
        logger.warning("%s is not UTF-8: read as %s (give its encoding to choose another)", path,
                       _files.FALLBACK_ENCODING)
        return cls._from_codes(*_ingest.read_text(path, chunksize, fmt.fallback(), names))

    @classmethod
    def _from_codes(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        users: np.ndarray,
        items: np.ndarray,
        weights: np.ndarray,
        timestamps: np.ndarray | None = None,
        dropped: dict[str, int] | None = None,
    ) -> Interactions:
        """Deduplicate (user, item) pairs, summing weights and keeping the latest timestamp."""
        n_items = max(len(item_ids), 1)
        keys = users.astype(np.int64) * n_items + items.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        w = np.add.reduceat(np.asarray(weights, dtype=np.float64)[order], starts) if len(keys) else weights
        ts = None
        if timestamps is not None:
            ts = np.maximum.reduceat(timestamps[order], starts) if len(keys) else timestamps
        uk = keys[starts]
        return cls(user_ids, item_ids, uk // n_items, uk % n_items, w, ts, dropped)

    # -- attributes ---------------------------------------------------------------------------------

    user_ids = property(lambda self: self._user_ids, doc="External user ids (str) by dense id.")
    item_ids = property(lambda self: self._item_ids, doc="External item ids (str) by dense id.")
    users = property(lambda self: self._users, doc="int32 user of each pair.")
    items = property(lambda self: self._items, doc="int32 item of each pair.")
    weights = property(lambda self: self._weights, doc="float32 summed weight of each pair.")
    timestamps = property(lambda self: self._timestamps, doc="float64 latest time of each pair, or None.")
    dropped = property(lambda self: dict(self._dropped), doc="Rows, users, items dropped by align().")

    @property
    def n_users(self) -> int:
        """Number of users (size of the user id map)."""
        return len(self._user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (size of the item id map)."""
        return len(self._item_ids)

    def __len__(self) -> int:
        return len(self._users)

    def __repr__(self) -> str:
        return f"Interactions(users={self.n_users}, items={self.n_items}, edges={len(self)})"

    # -- matrices -----------------------------------------------------------------------------------

    def user_matrix(self) -> sp.csr_matrix:
        """users x items CSR of weights (float32), column indices sorted within each row."""
        if "user_matrix" not in self._cache:
            indptr = np.zeros(self.n_users + 1, dtype=np.int64)
            np.cumsum(np.bincount(self._users, minlength=self.n_users), out=indptr[1:])
            m = sp.csr_matrix(
                (self._weights.copy(), self._items.copy(), indptr), shape=(self.n_users, self.n_items)
            )
            m.has_sorted_indices = True
            self._cache["user_matrix"] = m
        return self._cache["user_matrix"]

    def graph(self) -> sp.csr_matrix:
        """Symmetric bipartite adjacency CSR over ``n_users + n_items`` nodes; item j is node n_users + j."""
        if "graph" not in self._cache:
            n = self.n_users + self.n_items
            items = self._items.astype(np.int64) + self.n_users
            rows = np.concatenate([self._users.astype(np.int64), items])
            cols = np.concatenate([items, self._users.astype(np.int64)])
            data = np.concatenate([self._weights, self._weights])
            g = sp.csr_matrix((data, (rows, cols)), shape=(n, n))
            g.sort_indices()
            self._cache["graph"] = g
        return self._cache["graph"]

    def seen(self, user: int) -> np.ndarray:
        """Sorted int32 item ids the dense ``user`` interacted with."""
        if not 0 <= user < self.n_users:
            raise UnknownUser(f"dense user {user} out of range 0..{self.n_users - 1}")
        m = self.user_matrix()
        return m.indices[m.indptr[user] : m.indptr[user + 1]].astype(np.int32)

    # -- id maps ------------------------------------------------------------------------------------

    def user_index(self, ids: Any, *, missing: int | None = None) -> Any:
        """External user id(s) -> dense id(s): a scalar gives an int, a sequence an int64 array.

        Raises:
            UnknownUser: an id is not known and ``missing`` is None (else unknown ids map to ``missing``).
        """
        return _lookup(self._index("user"), ids, missing, UnknownUser, "user")

    def item_index(self, ids: Any, *, missing: int | None = None) -> Any:
        """External item id(s) -> dense id(s); like :meth:`user_index`, raising :class:`UnknownItem`."""
        return _lookup(self._index("item"), ids, missing, UnknownItem, "item")

    def _index(self, kind: str) -> pd.Index:
        key = f"{kind}_index"
        if key not in self._cache:
            self._cache[key] = pd.Index(self._user_ids if kind == "user" else self._item_ids)
        return self._cache[key]

    def to_frame(self) -> pd.DataFrame:
        """DataFrame with external ``user``, ``item``, ``weight`` (and ``timestamp`` if known)."""
        df = pd.DataFrame(
            {
                "user": self._user_ids[self._users],
                "item": self._item_ids[self._items],
                "weight": self._weights,
            }
        )
        if self._timestamps is not None:
            df["timestamp"] = self._timestamps
        return df

    def align(self, other: Interactions) -> Interactions:
        """Re-express ``other`` (e.g. a test split) in this one's id maps.

        Pairs whose user or item this one does not know are dropped; the counts are in the result's
        :attr:`dropped` (``rows``, ``users``, ``items``) and logged. The result has this one's
        ``user_ids``/``item_ids``, so dense ids are interchangeable.
        """
        u_map = self.user_index(other.user_ids, missing=-1)
        i_map = self.item_index(other.item_ids, missing=-1)
        users = u_map[other.users]
        items = i_map[other.items]
        keep = (users >= 0) & (items >= 0)
        dropped = {
            "rows": int((~keep).sum()),
            "users": int((u_map < 0).sum()),
            "items": int((i_map < 0).sum()),
        }
        if dropped["rows"]:
            logger.info("align: dropped %(rows)d pairs (%(users)d unknown users, %(items)d unknown items)",
                        dropped)
        ts = None if other.timestamps is None else other.timestamps[keep]
        return Interactions._from_codes(
            self._user_ids,
            self._item_ids,
            users[keep].astype(np.int32),
            items[keep].astype(np.int32),
            other.weights[keep],
            ts,
            dropped,
        )


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _lookup(index: pd.Index, ids: Any, missing: int | None, error: type[KeyError], kind: str) -> Any:
    scalar = np.ndim(ids) == 0
    keys = np.atleast_1d(np.asarray(ids, dtype=object)).astype(str)
    codes = index.get_indexer(keys).astype(np.int64)
    unknown = codes < 0
    if unknown.any():
        if missing is None:
            shown = ", ".join(repr(k) for k in keys[unknown][: _ingest.MAX_REPORTED])
            raise error(f"{int(unknown.sum())} unknown {kind} id(s): {shown}")
        codes[unknown] = missing
    return int(codes[0]) if scalar else codes


