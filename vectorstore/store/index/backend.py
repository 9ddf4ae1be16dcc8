"""Where a model version's item index lives: the storage side of the index-backend seam.

:class:`IndexBackend` is what the registry and the publisher ask of a backend, whichever it is: write a
version's items where the backend keeps them before the commit (:meth:`~IndexBackend.publish`), follow the
version's activation (:meth:`~IndexBackend.activated`) and its deletion (:meth:`~IndexBackend.dropped`), say
what the version's manifest records about it (:meth:`~IndexBackend.record`) and which of its parts a serving
process loads (:meth:`~IndexBackend.serving_parts`). :class:`HnswlibBackend`, the default, keeps the index in
each serving process: it is a part of the version (an :class:`~vectorstore.ItemIndex` blob the publisher
builds), so the backend has nothing to write, move or drop. The other implementation is
:class:`vectorstore.store.milvus.MilvusBackend`; :mod:`vectorstore.store.backends` chooses between them, by
name (:func:`~vectorstore.store.backends.index_backend`) or by a version's manifest
(:func:`~vectorstore.store.backends.version_backend`). Callers hold an :class:`IndexBackend` and never ask
which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ...platform.settings import Settings

__all__ = ["HnswlibBackend", "IndexBackend", "IndexItems"]


@dataclass(frozen=True)
class IndexItems:
    """A version's items as a backend that keeps them outside the version's parts writes them.

    Attributes:
        vectors: float32 ``n_items x d`` scoring vectors (row ``i`` is dense item ``i``).
        ids: the external item id of each row.
        fields: metadata columns ``{name: [value per item]}`` (``None`` where unknown), returned with hits.
    """

    vectors: np.ndarray
    ids: Sequence[str]
    fields: Mapping[str, list] = field(default_factory=dict)


class IndexBackend(ABC):
    """Where a version's item index lives, as the registry and the publisher see it.

    Attributes:
        name: the backend's name (``index_backend=`` of a publication).
        in_process: the index is a part of the version, built by the publisher and held by each serving
            process; else the backend holds the items (:meth:`publish` writes them) and serves the searches.
    """

    name: ClassVar[str]
    in_process: ClassVar[bool]

    @abstractmethod
    def record(self, meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """What a version's manifest ``meta`` records about this backend (``None``: it records nothing, the
        version is not this backend's)."""

    @abstractmethod
    def publish(self, settings: Settings, model: str, version: int, items: IndexItems) -> dict[str, Any]:
        """Write ``items`` where the backend keeps them, before ``model`` v``version`` is committed.

        Returns:
            The entries the version's manifest ``meta`` records (:meth:`record` reads them back).

        Raises:
            VectorStoreError: the backend refused or did not answer; nothing of the items is left behind.
        """

    @abstractmethod
    def activated(self, settings: Settings, meta: Mapping[str, Any], *, strict: bool = True) -> None:
        """Follow the activation of the version whose manifest ``meta`` this is.

        Args:
            strict: raise when the backend fails (an explicit activation: nothing switched yet); else log it
                (a publication already committed).
        """

    @abstractmethod
    def dropped(self, settings: Settings, meta: Mapping[str, Any]) -> None:
        """Remove what the backend holds of a version being deleted (a failure is logged, never raised)."""

    def serving_parts(self, parts: Iterable[str]) -> list[str] | None:
        """Which of a version's ``parts`` a serving process loads (``None``: all of them)."""
        return None


class HnswlibBackend(IndexBackend):
    """The index in each serving process: an :class:`~vectorstore.ItemIndex` part of the version (the default)."""

    name = "hnswlib"
    in_process = True

    def record(self, meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return meta.get("index") if isinstance(meta, Mapping) else None

    def publish(self, settings: Settings, model: str, version: int, items: IndexItems) -> dict[str, Any]:
        return {}  # the index is one of the version's parts: the commit writes it

    def activated(self, settings: Settings, meta: Mapping[str, Any], *, strict: bool = True) -> None:
        return None  # clients follow the active pointer: nothing outside Redis moves

    def dropped(self, settings: Settings, meta: Mapping[str, Any]) -> None:
        return None  # the index goes with the version's parts
