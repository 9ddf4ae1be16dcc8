"""An hnswlib index over item (or window) vectors, with ids, exclusions and pickle-free bytes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import hnswlib
import numpy as np

from ...exceptions import InvalidModelData
from ._blob import hnsw_space, index_bytes, read_index
from ._mutation import ALIAS_BASE, SPAN_LIMIT, add_items, change, mark_deleted
from ._rwlock import ReadWriteLock
from ._search import exclusions, merge_outside, normalised, query_exact, query_graph

__all__ = ["ItemIndex", "MIPS", "SPACES"]

SPACES = ("ip", "l2", "cosine")
MIPS = ("augmented", "native")


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
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise InvalidModelData(f"{name} has {bad.size} rows with NaN or inf, first at rows {bad[:5].tolist()}")
    return arr


class ItemIndex:
    """Nearest-neighbour search over vectors with integer ids: an hnswlib HNSW graph, exact when cheaper.

    ``space`` is ``"ip"`` (inner product: score = dot product), ``"cosine"`` (score = cosine similarity)
    or ``"l2"`` (score = squared L2 distance, lower is nearer). ``query`` returns ids and scores; for ip
    and cosine higher scores are better, for l2 lower distances are.

    Inner product is not a metric, and which HNSW graph keeps its recall depends on the data, so ``"ip"``
    is served one of two ways (``mips``):

    * ``"augmented"`` (default): an L2 search over vectors augmented with one coordinate
      ``sqrt(R^2 - |x|^2)`` (R = the largest norm; Bachrach et al. 2014): the L2 order of ``[q, 0]``
      against them is exactly the inner-product order. Recall@10 at M=32, ef=200: 0.9998 on Node2Vec
      vectors of ml-1m (users' input vectors against items' context vectors), but 0.48 on 100k clustered
      vectors whose norms vary 0.3-3x, where the augmented coordinate crowds the graph.
    * ``"native"``: hnswlib's own ``ip`` space: 1.0 on those clustered vectors, 0.90 on Node2Vec's.

    Neither wins everywhere: :func:`vectorstore.tune_index` measures both on the queries a model
    will serve and keeps one that reaches the recall asked for, or exact search (``exact=True``).

    Batches of queries on small catalogues, queries whose exclusions cover much of the catalogue, and
    every query of an index built or set ``exact`` are answered by exact blocked matrix products: faster
    there, and exact.

    Build with :meth:`build`; serialise with :meth:`to_bytes` / :meth:`from_bytes`, which carry the
    parameters (including ``ef``, which hnswlib itself does not save) in a JSON header, never pickle.
    A loaded index changes in place with :meth:`add_items`, :meth:`mark_deleted` and :meth:`change` (both
    at once; see :mod:`vectorstore.store.index._mutation`); queries meanwhile wait only for the change itself.
    """

    #: a batch is answered exactly when rows x items is at most this (and the catalogue is small).
    EXACT_BUDGET = 64_000_000
    EXACT_MAX_ITEMS = 50_000

    def __init__(self, index: hnswlib.Index, params: dict[str, Any]) -> None:
        self._index = index
        self.params = params
        # The exact-search copy: (vectors, sorted labels, rows in use); replaced in one assignment.
        self._exact: tuple[np.ndarray, np.ndarray, int] | None = None
        self._span: int | None | bool = False  # not computed yet
        self._gate = ReadWriteLock()  # queries read; add_items / mark_deleted / resize write
        self._deleted: set[int] = set()
        # ids whose vector changed live in fresh nodes (see ._mutation): id -> label, label - base -> id
        self._alias: dict[int, int] = {}
        self._owners = np.empty(0, np.int64)
        self._dead: np.ndarray | None = None  # columns of the exact copy that are deleted labels
        self._outside: dict[int, np.ndarray] = {}  # ids added longer than the MIPS radius (._mutation)
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
        mips: str = "augmented",
        exact: bool = False,
    ) -> ItemIndex:
        """Index ``vectors`` (n x d) under ``ids`` (default ``0..n-1``).

        Args:
            mips: how ``space="ip"`` is searched: ``"augmented"`` (L2 on augmented vectors) or
                ``"native"`` (hnswlib's ip space); see the class docstring. Ignored for other spaces.
            exact: answer every query by exact search (the graph is still built, for :meth:`set_exact`).

        Raises:
            InvalidModelData: bad vectors, ids of the wrong length or repeated, unknown space, mips or params.
        """
        if space not in SPACES:
            raise InvalidModelData(f"space={space!r} is not one of {SPACES}")
        if mips not in MIPS:
            raise InvalidModelData(f"mips={mips!r} is not one of {MIPS}")
        if M < 2 or ef_construction < 1 or ef < 1:
            raise InvalidModelData(f"M={M}, ef_construction={ef_construction}, ef={ef} must be >= 1 (M >= 2)")
        arr = as_vectors(vectors)
        n, dim = arr.shape
        if ids is None:
            labels = np.arange(n, dtype=np.int64)
        else:
            labels = np.asarray(ids)
            if labels.dtype.kind not in "iu" or labels.shape != (n,):
                raise InvalidModelData(f"ids must be {n} integers (one per vector), got shape {labels.shape} "
                                       f"dtype {labels.dtype}")
            if labels.min() < 0:
                raise InvalidModelData(f"ids must be >= 0, got {int(labels.min())}")
            if np.unique(labels).size != n:
                raise InvalidModelData("ids must be unique")
        params: dict[str, Any] = {"space": space, "dim": dim, "M": M, "ef_construction": ef_construction,
                                  "ef": ef, "count": n, "exact": bool(exact)}
        if space == "ip":
            params["mips"] = mips
        stored = arr
        if space == "ip" and mips == "augmented":
            norms = np.linalg.norm(arr.astype(np.float64), axis=1)
            radius = float(norms.max())
            extra = np.sqrt(np.maximum(radius**2 - norms**2, 0.0)).astype(np.float32)[:, None]
            stored = np.ascontiguousarray(np.hstack([arr, extra]))
            params["mips_radius"] = radius
        index = hnswlib.Index(space=hnsw_space(params), dim=stored.shape[1])
        index.init_index(max_elements=n, ef_construction=ef_construction, M=M, random_seed=seed)
        index.add_items(stored, labels, num_threads=num_threads)
        out = cls(index, params)
        order = np.argsort(labels, kind="stable")
        out._exact = ((arr if space != "cosine" else normalised(arr))[order], labels[order].astype(np.int64), n)
        return out

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

    @property
    def exact(self) -> bool:
        """Whether every query is answered by exact search."""
        return bool(self.params.get("exact", False))

    @property
    def _augmented(self) -> bool:
        # Blobs written before ``mips`` existed are augmented inner-product indexes.
        return self.space == "ip" and self.params.get("mips", "augmented") == "augmented"

    def set_exact(self, exact: bool) -> None:
        """Answer every query by exact search (True) or let :meth:`query` choose (False); kept in :attr:`params`."""
        self.params["exact"] = bool(exact)

    def set_ef(self, ef: int) -> None:
        """Change the query-time beam width (recall/speed trade-off); kept in :attr:`params`."""
        if ef < 1:
            raise InvalidModelData(f"ef={ef} must be >= 1")
        self.params["ef"] = int(ef)
        self._index.set_ef(int(ef))

    def __len__(self) -> int:
        """Items the index can return (deleted ones not counted)."""
        return self._index.element_count - len(self._deleted) - len(self._owners)

    @property
    def deleted(self) -> int:
        """Items marked deleted since the index was loaded or built."""
        return len(self._deleted)

    def ids(self) -> np.ndarray:
        """All ids the index can return (deleted ones left out)."""
        ids = self._all_ids()
        return ids[~np.isin(ids, list(self._deleted))] if self._deleted else ids

    def _all_ids(self) -> np.ndarray:
        labels = np.asarray(self._index.get_ids_list(), dtype=np.int64)
        if not len(self._owners):
            return labels
        # a changed id's old nodes and its current one are one id
        return np.unique(self._ids_of(labels))

    def _ids_of(self, labels: np.ndarray) -> np.ndarray:
        """Graph labels as ids (fresh nodes of changed ids mapped back; -1 stays -1)."""
        owners = self._owners
        if not len(owners):
            return labels
        moved = labels >= ALIAS_BASE
        if moved.any():
            labels = labels.copy()
            labels[moved] = owners[labels[moved] - ALIAS_BASE]
        return labels

    def add_items(self, vectors: Any, ids: Sequence[int] | np.ndarray) -> None:
        """Insert vectors under ``ids``, or replace the vector of an id already held (a deleted one comes back).

        Raises:
            InvalidModelData: wrong dimension, NaN or inf, bad or repeated ids.
        """
        arr = as_vectors(vectors)
        if arr.shape[1] != self.dim:
            raise InvalidModelData(f"vectors have dimension {arr.shape[1]}, the index has {self.dim}")
        add_items(self, arr, ids, normalised(arr) if self.space == "cosine" else arr)

    def change(self, vectors: Any, ids: Sequence[int] | np.ndarray, deleted: Iterable[int] = ()) -> int:
        """:meth:`add_items` of ``vectors`` under ``ids`` (none: ``vectors`` is ``None``), then
        :meth:`mark_deleted` of ``deleted`` (ids the index does not hold are skipped), as one change: queries
        wait once, for the whole batch. Returns how many ids were newly deleted.

        Raises:
            InvalidModelData: wrong dimension, NaN or inf, bad or repeated ids.
        """
        if vectors is None or not len(ids):
            arr = np.empty((0, self.dim), np.float32)
        else:
            arr = as_vectors(vectors)
            if arr.shape[1] != self.dim:
                raise InvalidModelData(f"vectors have dimension {arr.shape[1]}, the index has {self.dim}")
        return change(self, arr, np.asarray(ids, dtype=np.int64), normalised(arr) if self.space == "cosine" else arr,
                      np.fromiter(deleted, np.int64))

    def mark_deleted(self, ids: Iterable[int]) -> int:
        """Never return ``ids`` again (until added anew); returns how many were newly deleted.

        Raises:
            InvalidModelData: an id the index does not hold.
        """
        return mark_deleted(self, np.fromiter(ids, np.int64))

    def get_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors for ``ids`` (for cosine space these are normalised)."""
        alias = self._alias
        labels = [alias.get(int(i), int(i)) for i in ids] if alias else list(ids)
        return np.asarray(self._index.get_items(labels), dtype=np.float32)[:, : self.dim]

    def _label_span(self) -> int | None:
        """``max id + 1`` when the ids fit a small boolean table (exclusion filtering), else ``None``."""
        if self._span is False:
            top = int(self._all_ids().max()) + 1 if len(self) else 0
            self._span = top if top <= SPAN_LIMIT else None
        return self._span

    # -- queries --------------------------------------------------------------------------------------
    def query(
        self,
        vectors: Any,
        k: int = 10,
        *,
        exclude: Iterable[int] | Sequence[Iterable[int]] | None = None,
        num_threads: int = 1,
        exact: bool | None = None,
        ef: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest ids of each query vector, best first.

        Args:
            vectors: one vector (d,) or a batch (m x d).
            k: neighbours wanted; more than the index holds gives what it holds.
            exclude: ids never to return: one collection (or int array) for every query, or one per row.
            num_threads: hnswlib threads for a batch.
            exact: force exact search (True) or the HNSW graph (False); ``None``: exact if the index is
                set so (:attr:`exact`), else the faster.
            ef: search the graph with a beam at least this wide (default: the index's ``ef``). hnswlib
                searches with ``max(ef, neighbours asked)``, so this asks for more neighbours instead of
                calling ``set_ef``, which would race with concurrent queries; a client path that needs a
                wider beam than the index's (see :func:`vectorstore.tune_index`) passes it here.

        Returns:
            ``(ids, scores)``, each m x k' (k' <= k). Rows that run out of candidates after exclusion are
            padded with id -1 and score NaN. A single query vector gives 1-D arrays.

        Raises:
            InvalidModelData: wrong dimension, non-finite query or k < 1.
        """
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise InvalidModelData(f"k={k!r} must be a positive integer")
        with self._gate.read():
            return self._query(vectors, k, exclude, num_threads, exact, ef)

    def _query(self, vectors, k, exclude, num_threads, exact, ef) -> tuple[np.ndarray, np.ndarray]:
        single = np.ndim(vectors) == 1
        q = as_vectors(np.atleast_2d(vectors), name="query")
        if q.shape[1] != self.dim:
            raise InvalidModelData(f"query has dimension {q.shape[1]}, the index has {self.dim}")
        n, rows = len(self), q.shape[0]
        per_row = exclusions(exclude, rows)
        k_out = min(int(k), n)
        labels = np.full((rows, k_out), -1, dtype=np.int64)
        scores = np.full((rows, k_out), np.nan, dtype=np.float32)
        if k_out:
            excluded = np.array([e.size for e in per_row], dtype=np.int64)
            fetch = np.minimum(n, k_out + excluded)
            wide = np.minimum(n, np.maximum(fetch, int(ef or 0)))  # what the graph is asked for
            if exact is None:
                exact = self.exact or n <= self.EXACT_MAX_ITEMS and rows * n <= self.EXACT_BUDGET and rows >= 16
            heavy = fetch > n // 2  # most of the catalogue excluded: a graph search would need it all
            if rows == 1:  # the latency path: no bucketing, no set algebra
                if exact or heavy[0]:
                    query_exact(self, q, np.zeros(1, np.int64), per_row, k_out, labels, scores)
                else:
                    query_graph(self, q, np.zeros(1, np.int64), per_row, int(wide[0]), k_out, labels, scores, 1,
                                filtered=bool(excluded[0]))
                    merge_outside(self, q, np.zeros(1, np.int64), per_row, labels, scores)
            else:
                exact_rows = np.arange(rows) if exact else np.flatnonzero(heavy)
                if exact_rows.size:
                    query_exact(self, q, exact_rows, per_row, k_out, labels, scores)
                graph_rows = np.setdiff1d(np.arange(rows), exact_rows, assume_unique=True)
                # Rows grouped by how many neighbours they need, so one heavy row does not slow the batch.
                buckets = np.ceil(np.log2(fetch[graph_rows] + 1)).astype(int)
                for b in np.unique(buckets):
                    sel = graph_rows[buckets == b]
                    query_graph(self, q, sel, per_row, int(wide[sel].max()), k_out, labels, scores, num_threads,
                                filtered=bool(excluded[sel].any()))
                    merge_outside(self, q, sel, per_row, labels, scores)
        return (labels[0], scores[0]) if single else (labels, scores)

    def _scores(self, distances: np.ndarray, queries: np.ndarray) -> np.ndarray:
        if self.space == "l2":
            return distances
        if self.space == "cosine" or not self._augmented:
            return 1.0 - distances  # hnswlib returns 1 - cosine, and 1 - q.x in its ip space
        # Augmented L2: |q|^2 + R^2 - 2 q.x = d, so q.x = (|q|^2 + R^2 - d) / 2.
        radius2 = float(self.params["mips_radius"]) ** 2
        if len(queries) == 1:
            q = queries[0]
            return (float(q @ q) + radius2 - distances) * np.float32(0.5)
        norms2 = np.einsum("ij,ij->i", queries, queries)
        return (norms2[:, None] + (radius2 - distances)) * np.float32(0.5)

    # -- serialisation --------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The index as bytes: a JSON header (params, including ef) then hnswlib's own file format
        (:mod:`._blob`).

        Raises:
            InvalidModelData: vectors were replaced in place (their old nodes are still in the graph, marked
                deleted, which :meth:`from_bytes` refuses): build the index anew.
        """
        if len(self._owners):
            raise InvalidModelData(f"{len(self._owners)} vectors were replaced in place: build the index anew")
        return index_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemIndex:
        """Rebuild an index written by :meth:`to_bytes` (ef set again from the header).

        Raises:
            IntegrityError: not an index blob, truncated, or its header or graph out of range (checked before
                hnswlib reads it: see :mod:`._hnsw_file`).
        """
        return cls(*read_index(data))
