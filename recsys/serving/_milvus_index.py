"""A version whose item index is a Milvus collection (published with ``index_backend="milvus"``).

:class:`MilvusIndex` is the Milvus implementation of :class:`~recsys.serving.version_index.VersionIndex`, and
stands where a version's :class:`~vectorstore.ItemIndex` stands in
:class:`~recsys.serving.serving_model.ServingModel`: the client's paths query it alike (``query`` takes the same
arguments and answers dense ids and scores, the filter expression passed on for Milvus to evaluate), and
:meth:`MilvusIndex.rank` serves ``recommend`` in one search that filters (the caller's expression, the user's
seen items, an ``include`` list) and returns the asked-for metadata as Milvus ``output_fields``. User vectors
and seen items still come from the version's Redis tables; the collection searched is always the served
version's own (never the model's alias), so a user vector is never scored against another version's items
during a swap.

Deltas: its searches, filters and fields run in Milvus, so the writer changes the collection itself, before it
logs the delta (a failure there writes nothing; :meth:`MilvusIndex.write`): deletions are deleted by primary
key, field updates upserted as whole rows (Milvus replaces a row whole: the other fields and the vector come
from the writer's copy of the catalogue). Clients also exclude deleted items from every search
(:meth:`MilvusIndex.admit`, :meth:`MilvusIndex.change`). Item upserts are refused
(:class:`~recsys.exceptions.UnsupportedDelta`), as are fields the collection does not have or values of
another type than its column's (:meth:`MilvusIndex.refuse`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vectorstore import AllowedIds, Hits, MilvusRefused, MilvusStore, ModelVersion, Settings, index_backend

from ..exceptions import InvalidFilter, UnsupportedDelta
from ..live.delta_log import DELETE_ITEMS, UPDATE_METADATA, UPSERT_ITEMS
from ._filter_grammar import fields_of, parse_filter
from .version_index import Ranked, VersionIndex

__all__ = ["MilvusIndex"]

log = logging.getLogger(__name__)

_TYPES: dict[str, Any] = {"BOOL": lambda v: isinstance(v, bool),
                          "INT64": lambda v: isinstance(v, int) and not isinstance(v, bool),
                          "DOUBLE": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
                          "VARCHAR": lambda v: isinstance(v, str)}


class MilvusIndex(VersionIndex):
    """A version's collection (its manifest's ``meta["milvus"]`` spec) on the Milvus of ``settings``, reached
    at the first call that needs it (:meth:`indexes`, when a client loads the version; a writer's first write).

    Raises:
        vectorstore.ConfigurationError: ``EA_MILVUS_URI`` unset or pymilvus missing.
        vectorstore.MilvusUnavailable: Milvus did not answer.
    """

    backend = index_backend("milvus")

    def __init__(self, settings: Settings, spec: Mapping[str, Any]) -> None:
        self.settings = settings
        self.collection = str(spec["collection"])
        self.kinds: dict[str, str] = dict(spec.get("fields", {}))
        self.names = sorted(self.kinds)
        self.dim = int(spec["dim"])
        self.params = dict(spec.get("index", {}))
        self.ef = 200
        #: dense ids deleted by deltas: excluded from every search here too (the writer deletes them from the
        #: collection before it logs the delta, but a search at Milvus' bounded consistency may still see them)
        self.deleted: frozenset[int] = frozenset()

    @property
    def store(self) -> MilvusStore:
        """The process's connection to the Milvus of ``EA_MILVUS_URI``."""
        return MilvusStore.get(self.settings)

    # -- the seam (VersionIndex) --------------------------------------------------------------------------
    def indexes(self, mv: ModelVersion) -> tuple[MilvusIndex, MilvusIndex]:
        self.store  # noqa: B018 - connect now: a version Milvus cannot serve is refused when it loads
        return self, self

    def held_ids(self, index: Any) -> np.ndarray | None:
        return None  # the collection is the version's items: its arrays say which

    def field_names(self, model: Any) -> list[str]:
        return self.names

    def fields(self, model: Any, dense: np.ndarray, names: list[str]) -> dict[str, list]:
        """Metadata ``names`` of dense item ids (``None`` where unknown), read from the collection."""
        return self.store.fetch(self.collection, [int(i) for i in dense], names)

    def allowed(self, model: Any, expression: str, filters: Any) -> AllowedIds | None:
        self.check_filter(expression)  # Milvus evaluates it in each search
        return None

    def search(self, model: Any, index: Any, vectors: Any, k: int, *, exclude: Any, allowed: AllowedIds | None,
               expression: str | None, args: Mapping[str, Any]) -> Ranked:
        extra = {"filter": expression} if expression is not None else {}  # Milvus evaluates it itself
        return index.query(vectors, k=min(k, model.n_items), exclude=exclude, **args, **extra)

    def rank(self, model: Any, vector: np.ndarray, k: int, *, exclude: np.ndarray, include: set[int] | None,
             passing: AllowedIds | None, expression: str | None,
             fields: list[str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, list] | None]:
        """One search filters (``expression``, the user's seen items, ``include``) and returns the fields."""
        names = model.check_fields(fields)
        hits = self.hits(vector, min(k, model.n_items), exclude=exclude.tolist(), allowed=include, filter=expression,
                         fields=names)
        return hits.ids, hits.scores, hits.fields

    def keep_passing(self, order: np.ndarray, passing: AllowedIds | None, expression: str | None,
                     k: int) -> np.ndarray:
        # Milvus evaluates the filter on the most popular
        return self.passing(expression, order[: max(100 * k, 10_000)]) if expression is not None else order

    def refuse(self, where: str, op: str, payload: Mapping[str, Any] | None = None) -> None:
        """Item upserts; a field the collection lacks, or a value not of its column's type.

        Raises:
            UnsupportedDelta: naming the item, the field and the version (``where``).
        """
        if op == UPSERT_ITEMS:
            raise UnsupportedDelta(f"{op}: {where} keeps its items in a Milvus collection, which takes deletions "
                                   "and field updates only; nothing was written (new items wait for the next "
                                   "training)")
        if op != UPDATE_METADATA or payload is None:
            return
        for item, values in payload["items"].items():
            for name, value in values.items():
                kind = self.kinds.get(name)
                if kind is None:
                    raise UnsupportedDelta(f"{op}: item {item!r}: the Milvus collection of {where} has no field "
                                           f"{name!r} (it has {self.names}); nothing was written")
                if value is not None and not _TYPES.get(kind, _TYPES["VARCHAR"])(value):
                    raise UnsupportedDelta(f"{op}: item {item!r}: field {name!r} is {kind} in the Milvus collection "
                                           f"of {where}, not {type(value).__name__}; nothing was written")

    def write(self, catalogue: Any, op: str, payload: Mapping[str, Any]) -> None:
        """Apply a checked delete or field update to the collection (before the log entry is written).

        Raises:
            vectorstore.MilvusUnavailable, vectorstore.MilvusRefused: Milvus failed (nothing was logged).
        """
        if op == DELETE_ITEMS:
            self.store.delete(self.collection, [catalogue.pos[i] for i in payload["items"]])
        elif op == UPDATE_METADATA:
            items = list(payload["items"])
            positions = [catalogue.pos[i] for i in items]
            fields = {name: [payload["items"][i].get(name, _current(catalogue, name, p))
                             for i, p in zip(items, positions)] for name in self.kinds}
            self.store.upsert(self.collection, positions, items, catalogue.vectors.view()[np.asarray(positions)],
                              fields, self.kinds)

    def admit(self, change: Any, where: str) -> Any:
        """Deletions only: their items leave every path (the collection's searches exclude them, the id map and
        the popular order drop them); the writer deleted them from the collection."""
        if change.upserted:  # logged by writers that did not refuse them
            log.warning("%s: item upserts are not applied to a Milvus-backed version", where)
        return dataclasses.replace(change, upserted=[], fields=set())

    def change(self, vectors: Any, ids: Any, deleted: Iterable[int] = ()) -> int:
        """:meth:`vectorstore.ItemIndex.change` for deletions (the items :meth:`admit` lets through): excluded
        from every search here too (a search at Milvus' bounded consistency may still see them)."""
        gone = frozenset(int(i) for i in deleted) - self.deleted
        self.deleted = self.deleted | gone
        return len(gone)

    def check_filter(self, expression: str | None) -> str:
        """``expression`` (``""`` for none) once it parses (:func:`~recsys.serving._filter_grammar.parse_filter`:
        the grammar the hnswlib path evaluates, a subset of Milvus') and names only fields of the collection.

        Raises:
            InvalidFilter: it does not parse, or names an unknown field.
        """
        if expression is None:
            return ""
        unknown = sorted(fields_of(parse_filter(expression)) - set(self.names))
        if unknown:
            raise InvalidFilter(f"filter names unknown field(s) {unknown}; the collection has {self.names}")
        return expression

    def hits(self, vector: np.ndarray, k: int, *, exclude: Iterable[int] = (), allowed: Iterable[int] | None = None,
             filter: str | None = None, fields: Sequence[str] = ()) -> Hits:
        """One query: the ``k`` best items passing ``filter``, not in ``exclude``, in ``allowed`` if given.

        Raises:
            InvalidFilter: a bad filter (see :meth:`check_filter`), or one Milvus refused (e.g. a string
                compared with a number field).
        """
        expression = self.check_filter(filter)
        try:
            return self.store.search(self.collection, vector, k, filter=expression,
                                     exclude=[[*exclude, *self.deleted]],
                                     allowed=None if allowed is None else sorted(allowed), output_fields=fields,
                                     ef=self.ef)[0]
        except MilvusRefused as exc:
            raise InvalidFilter(f"Milvus refused the filter: {exc}") from None

    def query(self, vectors: Any, k: int = 10, *, exclude: Any = None, num_threads: int = 1, exact: bool | None = None,
              ef: int | None = None, filter: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`vectorstore.ItemIndex.query` on the collection (``num_threads`` and ``exact`` do not apply).

        Returns:
            ``(ids, scores)``: 1-D for one vector, else m x k padded with id -1 and score NaN.
        """
        single = np.ndim(vectors) == 1
        rows = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if exclude is None:
            per_row: list[Any] = [()] * len(rows)
        elif len(exclude) and not np.isscalar(next(iter(exclude))):
            per_row = list(exclude)
        else:
            per_row = [exclude] * len(rows)
        expression = self.check_filter(filter)
        try:
            hits = self.store.search(self.collection, rows, k, filter=expression,
                                     exclude=[[*np.asarray(list(e), dtype=np.int64).tolist(), *self.deleted]
                                              for e in per_row],
                                     ef=max(self.ef, ef or 0))
        except MilvusRefused as exc:
            raise InvalidFilter(f"Milvus refused the filter: {exc}") from None
        ids = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), np.nan, dtype=np.float32)
        for row, hit in enumerate(hits):
            ids[row, : len(hit.ids)] = hit.ids
            scores[row, : len(hit.ids)] = hit.scores
        return (ids[0], scores[0]) if single else (ids, scores)

    def passing(self, expression: str, candidates: np.ndarray) -> np.ndarray:
        """The dense ids of ``candidates`` (in their order) whose items pass ``expression``: one Milvus query.

        Raises:
            InvalidFilter: a bad filter (see :meth:`check_filter`), or one Milvus refused.
        """
        expression = self.check_filter(expression)
        try:
            found = self.store.fetch(self.collection, candidates.tolist(), ["pos"], filter=expression)["pos"]
        except MilvusRefused as exc:
            raise InvalidFilter(f"Milvus refused the filter: {exc}") from None
        return candidates[np.asarray([p is not None for p in found], dtype=bool)] if len(candidates) else candidates


def _current(catalogue: Any, name: str, pos: int) -> Any:
    column = catalogue.metadata.get(name)
    return column[pos] if column is not None and pos < len(column) else None
