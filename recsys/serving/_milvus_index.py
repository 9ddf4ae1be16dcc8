"""Serving a version whose item index is a Milvus collection (published with ``index_backend="milvus"``).

:class:`MilvusIndex` stands where a version's :class:`~vectorstore.ItemIndex` stands in
:class:`~recsys.serving.serving_model.ServingModel`: the client's paths query it alike (``query`` takes the same
arguments and answers dense ids and scores), and :func:`milvus_recommendations` serves ``recommend`` in one
search that filters (the caller's expression, the user's seen items, an ``include`` list) and returns the
asked-for metadata as Milvus ``output_fields``. User vectors and seen items still come from the version's
Redis tables; the collection searched is always the served version's own (never the model's alias), so a
user vector is never scored against another version's items during a swap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from vectorstore import Hits, MilvusRefused, MilvusStore, Settings

from ..exceptions import InvalidFilter
from ._filter_grammar import fields_of, parse_filter
from .recommendations import Recommendations

__all__ = ["MilvusIndex", "milvus_recommendations"]


class MilvusIndex:
    """A version's collection (its manifest's ``meta["milvus"]`` spec) on the Milvus of ``settings``.

    Raises:
        vectorstore.ConfigurationError: ``EA_MILVUS_URI`` unset or pymilvus missing.
        vectorstore.MilvusUnavailable: Milvus did not answer.
    """

    def __init__(self, settings: Settings, spec: Mapping[str, Any]) -> None:
        self.store = MilvusStore.get(settings)
        self.collection = str(spec["collection"])
        self.field_names = sorted(spec.get("fields", {}))
        self.dim = int(spec["dim"])
        self.params = dict(spec.get("index", {}))
        self.ef = 200
        #: dense ids deleted by deltas: excluded from every search here too (the writer deletes them from the
        #: collection before it logs the delta, but a search at Milvus' bounded consistency may still see them)
        self.deleted: frozenset[int] = frozenset()

    def check_filter(self, expression: str | None) -> str:
        """``expression`` (``""`` for none) once it parses (:func:`~recsys.serving._filter_grammar.parse_filter`:
        the grammar the hnswlib path evaluates, a subset of Milvus') and names only fields of the collection.

        Raises:
            InvalidFilter: it does not parse, or names an unknown field.
        """
        if expression is None:
            return ""
        unknown = sorted(fields_of(parse_filter(expression)) - set(self.field_names))
        if unknown:
            raise InvalidFilter(f"filter names unknown field(s) {unknown}; the collection has {self.field_names}")
        return expression

    def search(self, vector: np.ndarray, k: int, *, exclude: Iterable[int] = (), allowed: Iterable[int] | None = None,
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

    def fields(self, dense: np.ndarray, names: list[str]) -> dict[str, list]:
        """Metadata ``names`` of dense item ids (``None`` where unknown), read from the collection."""
        return self.store.fetch(self.collection, [int(i) for i in dense], names)


def milvus_recommendations(model: Any, index: MilvusIndex, vector: np.ndarray, k: int, *,
                           exclude: np.ndarray, allowed: set[int] | None, filter: str | None,
                           fields: list[str] | None, user: str | None) -> Recommendations:
    """``recommend`` on a Milvus-backed version (``model``: its
    :class:`~recsys.serving.serving_model.ServingModel`): one search, its hits' fields from ``output_fields``."""
    names = model.check_fields(fields)
    hits = index.search(vector, min(k, model.n_items), exclude=exclude.tolist(), allowed=allowed, filter=filter,
                        fields=names)
    return Recommendations(items=model.item_ids[hits.ids].tolist(), scores=hits.scores, model=model.name,
                           model_version=model.version, source="index", user=user, fields=hits.fields)
