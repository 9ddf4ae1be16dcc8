"""A version's item index as the client and the catalogue writer use it, whichever backend holds it.

:class:`VersionIndex` is the recsys side of the index-backend seam (the storage side, publication, activation
and deletion, is :class:`vectorstore.IndexBackend`, which it carries as :attr:`VersionIndex.backend`). A
served :class:`~recsys.serving.serving_model.ServingModel` holds one as ``model.backend`` and the writer's
:class:`~recsys.live._target_version.TargetVersion` as ``backend``; they ask it for the version's search
indexes, its metadata fields, what a filter allows, a path's search, a user's ranking, the popular items a
filter passes, and what deltas it takes, and never ask which backend it is.

Two implementations: :class:`InProcessIndex` (hnswlib: the version's :class:`~vectorstore.ItemIndex` parts in
the serving process, filters evaluated on its metadata by :class:`~recsys.serving._filter_cache.FilterCache`,
deltas applied to its indexes by each client) and :class:`~recsys.serving._milvus_index.MilvusIndex` (a Milvus
collection that evaluates filters and returns fields itself; deltas written to it by the writer).
:func:`recsys.serving.index_backends.open_index` gives a version's. ``model`` arguments are the serving model
(this module is below :mod:`~recsys.serving.serving_model`, which holds it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from vectorstore import AllowedIds, IndexBackend, IntegrityError, ItemIndex, ModelVersion, index_backend, search_allowed

__all__ = ["InProcessIndex", "VersionIndex"]

#: ``(dense ids, scores)`` best first, as :meth:`vectorstore.ItemIndex.query` answers (padded with id -1)
Ranked = tuple[np.ndarray, np.ndarray]


class VersionIndex(ABC):
    """One version's item index behind its backend.

    Attributes:
        backend: the storage side (:class:`vectorstore.IndexBackend`): which parts a client loads.
    """

    backend: IndexBackend

    # -- loading ------------------------------------------------------------------------------------------
    def serving_parts(self, parts: Iterable[str]) -> list[str] | None:
        """Which of the version's ``parts`` a client loads (``None``: all of them)."""
        return self.backend.serving_parts(parts)

    @abstractmethod
    def indexes(self, mv: ModelVersion) -> tuple[Any, Any]:
        """``(index, similar_index)``: what the paths' queries go to (``query`` as
        :meth:`vectorstore.ItemIndex.query`), from the loaded version ``mv``.

        Raises:
            vectorstore.IntegrityError: an index part that passes its checksum but is no index.
            vectorstore.VectorStoreError: the backend is not configured or did not answer.
        """

    @abstractmethod
    def held_ids(self, index: Any) -> np.ndarray | None:
        """The dense ids ``index`` (one of :meth:`indexes`) holds, deleted ones left out (``None``: the
        backend does not list them: every item of the version's arrays)."""

    # -- fields and filters -------------------------------------------------------------------------------
    @abstractmethod
    def field_names(self, model: Any) -> list[str]:
        """The version's metadata fields."""

    @abstractmethod
    def fields(self, model: Any, dense: np.ndarray, names: list[str]) -> dict[str, list]:
        """Metadata ``names`` (known fields) of dense item ids, ``None`` where unknown."""

    @abstractmethod
    def allowed(self, model: Any, expression: str, filters: Any) -> AllowedIds | None:
        """The items ``expression`` allows, evaluated by ``filters`` (the client's
        :class:`~recsys.serving._filter_cache.FilterCache`); ``None`` when the index evaluates it in its searches.

        Raises:
            InvalidFilter: a bad expression.
        """

    # -- searches -----------------------------------------------------------------------------------------
    @abstractmethod
    def search(self, model: Any, index: Any, vectors: Any, k: int, *, exclude: Any, allowed: AllowedIds | None,
               expression: str | None, args: Mapping[str, Any]) -> Ranked:
        """A path's query of ``index`` with its search ``args``: the ``k`` best items not in ``exclude``, in
        ``allowed`` if given, passing ``expression`` (the filter ``allowed`` came from, if any)."""

    @abstractmethod
    def rank(self, model: Any, vector: np.ndarray, k: int, *, exclude: np.ndarray, include: set[int] | None,
             passing: AllowedIds | None, expression: str | None,
             fields: list[str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, list] | None]:
        """A known user's ``recommend``: the ``k`` best items for ``vector`` not in ``exclude``, among ``include``
        if given, passing the filter (``passing``, ``expression``).

        Returns:
            ``(dense ids, scores, fields)``: ``fields`` are the asked-for metadata when the search returned
            them (``None``: read them with :meth:`fields`).
        """

    @abstractmethod
    def keep_passing(self, order: np.ndarray, passing: AllowedIds | None, expression: str | None,
                     k: int) -> np.ndarray:
        """The items of ``order`` (in order) that pass the filter: at least the first ``k`` that do."""

    # -- deltas -------------------------------------------------------------------------------------------
    @abstractmethod
    def refuse(self, where: str, op: str, payload: Mapping[str, Any] | None = None) -> None:
        """Raise :class:`~recsys.exceptions.UnsupportedDelta` for a delta the index cannot take (``payload``
        ``None``: the operation alone, before its payload is built); ``where`` names the version."""

    @abstractmethod
    def write(self, catalogue: Any, op: str, payload: Mapping[str, Any]) -> None:
        """Apply a checked delta to what the backend holds, before the writer logs it (``catalogue``: the
        version's items as the log leaves them, :class:`~recsys.live.catalogue.Catalogue`).

        Raises:
            vectorstore.VectorStoreError: the backend failed (nothing was logged).
        """

    @abstractmethod
    def admit(self, change: Any, where: str) -> Any:
        """The part of a batch of deltas (:class:`~recsys.live.catalogue.Change`) a client applies to the
        version it serves (:func:`recsys.live._apply.apply_to_model`)."""


class InProcessIndex(VersionIndex):
    """The version's hnswlib indexes in the serving process (:class:`vectorstore.ItemIndex` parts)."""

    backend = index_backend("hnswlib")

    def indexes(self, mv: ModelVersion) -> tuple[ItemIndex, ItemIndex]:
        index = _index(mv, "index")
        return index, _index(mv, "similar_index") if "similar_index" in mv.blobs else index

    def held_ids(self, index: Any) -> np.ndarray | None:
        return index.ids()

    def field_names(self, model: Any) -> list[str]:
        return sorted(model.metadata)

    def fields(self, model: Any, dense: np.ndarray, names: list[str]) -> dict[str, list]:
        return {n: [model.metadata[n][int(i)] for i in dense] for n in names}

    def allowed(self, model: Any, expression: str, filters: Any) -> AllowedIds | None:
        return filters.allowed(model, expression)

    def search(self, model: Any, index: Any, vectors: Any, k: int, *, exclude: Any, allowed: AllowedIds | None,
               expression: str | None, args: Mapping[str, Any]) -> Ranked:
        # A filter is its allowed set here (evaluated on the metadata in memory): the expression adds nothing.
        if allowed is not None:
            return search_allowed(index, vectors, k, allowed, exclude=exclude, ef=args.get("ef"),
                                  exact=args.get("exact"))
        return index.query(vectors, k=min(k, model.n_items), exclude=exclude, **args)

    def rank(self, model: Any, vector: np.ndarray, k: int, *, exclude: np.ndarray, include: set[int] | None,
             passing: AllowedIds | None, expression: str | None,
             fields: list[str] | None) -> tuple[np.ndarray, np.ndarray, dict[str, list] | None]:
        if include is None:
            ids, scores = self.search(model, model.index, vector, k, exclude=exclude if exclude.size else None,
                                      allowed=passing, expression=expression, args=model.search.get("recommend", {}))
            return ids, scores, None
        # A whitelist is usually small: exact scores over it beat filtering the ANN results.
        listed = include - set(exclude.tolist())
        allowed = {i for i in listed if passing is None or i in passing}
        if not allowed:
            return np.empty(0, np.int64), np.empty(0, np.float32), None
        cand = np.fromiter(allowed, np.int64, len(allowed))
        scores = model.item_vectors[cand] @ vector
        order = np.argsort(-scores, kind="stable")[:k]
        return cand[order], scores[order], None

    def keep_passing(self, order: np.ndarray, passing: AllowedIds | None, expression: str | None,
                     k: int) -> np.ndarray:
        return order[np.isin(order, passing.ids)] if passing is not None else order

    def refuse(self, where: str, op: str, payload: Mapping[str, Any] | None = None) -> None:
        return None  # every delta: clients apply it to their indexes

    def write(self, catalogue: Any, op: str, payload: Mapping[str, Any]) -> None:
        return None  # the log is all there is to write: each client changes its own indexes

    def admit(self, change: Any, where: str) -> Any:
        return change


def _index(mv: ModelVersion, part: str) -> ItemIndex:
    """An index part of a version; a blob that passes its checksum but is no index names the version."""
    try:
        return ItemIndex.from_bytes(mv.blobs[part])
    except IntegrityError as exc:
        raise IntegrityError(f"{mv.model!r} v{mv.version}: part {part!r}: {exc}") from None

