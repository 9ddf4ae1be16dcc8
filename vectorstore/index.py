"""An hnswlib index over item (or window) vectors, with ids, exclusions and pickle-free bytes."""

from __future__ import annotations

import json
import os
import struct
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import hnswlib
import numpy as np

from .exceptions import IntegrityError, InvalidModelData

__all__ = ["ItemIndex", "SPACES"]

SPACES = ("ip", "l2", "cosine")
_MAGIC = b"EAIDX1\n"


def as_vectors(vectors: Any, *, name: str = "vectors") -> np.ndarray:
    """Validate a 2-D finite float matrix and return it as C-contiguous float32.

    Raises:
        InvalidModelData: not 2-D, not numeric, empty, or holding NaN/inf (names the first bad row).
    """
    arr = np.asarray(vectors)
    if arr.dtype.kind not in "fiu":
        raise InvalidModelData(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidModelData(f"{name} must be a non-empty 2-D array, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidModelData(f"{name} has {bad.size} rows with NaN or inf, first at rows {bad[:5].tolist()}")
    return arr


class ItemIndex:
    """Approximate nearest-neighbour search over vectors with integer ids (hnswlib HNSW graph).

    ``space`` is ``"ip"`` (inner product: score = dot product), ``"cosine"`` (score = cosine similarity)
    or ``"l2"`` (score = squared L2 distance, lower is nearer). ``query`` returns ids and scores; for ip
    and cosine higher scores are better, for l2 lower distances are.

    Build with :meth:`build`; serialise with :meth:`to_bytes` / :meth:`from_bytes`, which carry the
    parameters (including ``ef``, which hnswlib itself does not save) in a JSON header, never pickle.
    """

    def __init__(self, index: hnswlib.Index, params: dict[str, Any]) -> None:
        self._index = index
        self.params = params
        index.set_ef(int(params["ef"]))

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        vectors: Any,
        ids: Sequence[int] | np.ndarray | None = None,
        *,
        space: str = "ip",
        M: int = 16,
        ef_construction: int = 200,
        ef: int = 100,
        num_threads: int = -1,
        seed: int = 100,
    ) -> ItemIndex:
        """Index ``vectors`` (n x d) under ``ids`` (default ``0..n-1``).

        Raises:
            InvalidModelData: bad vectors, ids of the wrong length or repeated, unknown space or params.
        """
        if space not in SPACES:
            raise InvalidModelData(f"space={space!r} is not one of {SPACES}")
        if M < 2 or ef_construction < 1 or ef < 1:
            raise InvalidModelData(f"M={M}, ef_construction={ef_construction}, ef={ef} must be positive (M>=2)")
        arr = as_vectors(vectors)
        n, dim = arr.shape
        if ids is None:
            labels = np.arange(n, dtype=np.int64)
        else:
            labels = np.asarray(ids)
            if labels.dtype.kind not in "iu" or labels.shape != (n,):
                raise InvalidModelData(
                    f"ids must be {n} integers (one per vector), got shape {labels.shape} dtype {labels.dtype}"
                )
            if labels.min() < 0:
                raise InvalidModelData(f"ids must be >= 0, got {int(labels.min())}")
            if np.unique(labels).size != n:
                raise InvalidModelData("ids must be unique")
        index = hnswlib.Index(space=space, dim=dim)
        index.init_index(max_elements=n, ef_construction=ef_construction, M=M, random_seed=seed)
        index.add_items(arr, labels, num_threads=num_threads)
        params = {"space": space, "dim": dim, "M": M, "ef_construction": ef_construction, "ef": ef, "count": n}
        return cls(index, params)

    # -- properties -----------------------------------------------------------------------------------
    @property
    def space(self) -> str:
        return self.params["space"]

    @property
    def dim(self) -> int:
        return int(self.params["dim"])

    @property
    def ef(self) -> int:
        return int(self.params["ef"])

    def set_ef(self, ef: int) -> None:
        """Change the query-time beam width (recall/speed trade-off); kept in :attr:`params`."""
        if ef < 1:
            raise InvalidModelData(f"ef={ef} must be >= 1")
        self.params["ef"] = int(ef)
        self._index.set_ef(int(ef))

    def __len__(self) -> int:
        return self._index.get_current_count()

    def ids(self) -> np.ndarray:
        """All ids in the index."""
        return np.asarray(self._index.get_ids_list(), dtype=np.int64)

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors for ``ids`` (for cosine space these are normalised)."""
        return np.asarray(self._index.get_items(list(ids)), dtype=np.float32)

    # -- queries --------------------------------------------------------------------------------------
    def _to_scores(self, distances: np.ndarray) -> np.ndarray:
        # hnswlib returns 1 - dot for ip and cosine; turn that back into a similarity.
        return distances if self.space == "l2" else 1.0 - distances

    def query(
        self,
        vectors: Any,
        k: int = 10,
        *,
        exclude: Iterable[int] | Sequence[Iterable[int]] | None = None,
        num_threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids of each query vector, best first.

        Args:
            vectors: one vector (d,) or a batch (m x d).
            k: neighbours wanted; more than the index holds gives what it holds.
            exclude: ids never to return: one collection for every query, or one per query row.
            num_threads: hnswlib threads for a batch.

        Returns:
            ``(ids, scores)``, each m x k' (k' <= k). Rows that run out of candidates after exclusion are
            padded with id -1 and score NaN. A single query vector gives 1-D arrays.

        Raises:
            InvalidModelData: wrong dimension, non-finite query or k < 1.
        """
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise InvalidModelData(f"k={k!r} must be a positive integer")
        single = np.ndim(vectors) == 1
        q = as_vectors(np.atleast_2d(vectors), name="query")
        if q.shape[1] != self.dim:
            raise InvalidModelData(f"query has dimension {q.shape[1]}, the index has {self.dim}")
        per_row = _exclusions(exclude, q.shape[0])
        n = len(self)
        extra = max((len(e) for e in per_row), default=0)
        fetch = min(n, k + extra)
        if fetch == 0:
            empty = np.empty((q.shape[0], 0))
            return (empty[0].astype(np.int64), empty[0]) if single else (empty.astype(np.int64), empty)
        if self.ef < fetch:
            self._index.set_ef(fetch)
        try:
            labels, dist = self._index.knn_query(q, k=fetch, num_threads=num_threads)
        finally:
            if self.ef < fetch:
                self._index.set_ef(self.ef)
        scores = self._to_scores(dist)
        labels = labels.astype(np.int64)
        if extra:
            labels, scores = _drop_excluded(labels, scores, per_row, min(k, fetch))
        else:
            labels, scores = labels[:, :k], scores[:, :k]
        return (labels[0], scores[0]) if single else (labels, scores)

    # -- serialisation --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index as bytes: a JSON header (params, including ef) then hnswlib's own file format."""
        header = json.dumps(self.params, sort_keys=True).encode()
        fd, path = tempfile.mkstemp(suffix=".hnsw")
        os.close(fd)
        try:
            self._index.save_index(path)
            with open(path, "rb") as f:
                body = f.read()
        finally:
            os.unlink(path)
        return _MAGIC + struct.pack("<I", len(header)) + header + body

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemIndex:
        """Rebuild an index written by :meth:`to_bytes` (ef set again from the header).

        Raises:
            IntegrityError: not an index blob, or truncated.
        """
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
            raise IntegrityError("not an ItemIndex blob (bad magic)")
        (hlen,) = struct.unpack_from("<I", data, len(_MAGIC))
        start = len(_MAGIC) + 4
        try:
            params = json.loads(data[start : start + hlen])
        except ValueError as exc:
            raise IntegrityError(f"ItemIndex header is not valid JSON: {exc}") from None
        body = memoryview(data)[start + hlen :]
        fd, path = tempfile.mkstemp(suffix=".hnsw")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            index = hnswlib.Index(space=params["space"], dim=int(params["dim"]))
            try:
                index.load_index(path, max_elements=int(params["count"]))
            except RuntimeError as exc:
                raise IntegrityError(f"ItemIndex body does not load: {exc}") from None
        finally:
            os.unlink(path)
        if index.get_current_count() != int(params["count"]):
            raise IntegrityError(f"ItemIndex holds {index.get_current_count()} items, header says {params['count']}")
        return cls(index, params)


def _exclusions(exclude: Any, rows: int) -> list[set[int]]:
    if exclude is None:
        return [set() for _ in range(rows)]
    exclude = list(exclude)
    if exclude and all(isinstance(e, Iterable) and not isinstance(e, str | bytes) for e in exclude):
        if len(exclude) != rows:
            raise InvalidModelData(f"exclude has {len(exclude)} rows for {rows} queries")
        return [set(map(int, e)) for e in exclude]
    shared = set(map(int, exclude))
    return [shared for _ in range(rows)]


def _drop_excluded(
    labels: np.ndarray, scores: np.ndarray, per_row: list[set[int]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    out_l = np.full((labels.shape[0], k), -1, dtype=np.int64)
    out_s = np.full((labels.shape[0], k), np.nan, dtype=scores.dtype)
    for r, ex in enumerate(per_row):
        if ex:
            keep = np.fromiter((lab not in ex for lab in labels[r]), bool, labels.shape[1])
            row_l, row_s = labels[r][keep][:k], scores[r][keep][:k]
        else:
            row_l, row_s = labels[r][:k], scores[r][:k]
        out_l[r, : row_l.size] = row_l
        out_s[r, : row_s.size] = row_s
    return out_l, out_s
