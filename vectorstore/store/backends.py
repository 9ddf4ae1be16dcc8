"""The index backends by name, and the backend of a published version.

The one place that knows which :class:`~vectorstore.store.index.backend.IndexBackend` implementations exist:
:class:`~vectorstore.store.index.backend.HnswlibBackend` (in process, the default) and
:class:`~vectorstore.store.milvus.MilvusBackend` (pymilvus is imported only when a Milvus-backed version is
published, served or changed: a deployment on hnswlib never loads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError
from .index.backend import HnswlibBackend, IndexBackend
from .milvus import MilvusBackend

__all__ = ["DEFAULT_BACKEND", "INDEX_BACKENDS", "index_backend", "version_backend"]

_BACKENDS: dict[str, IndexBackend] = {b.name: b for b in (HnswlibBackend(), MilvusBackend())}
#: the backends' names, the default first (``index_backend=`` of a publication, ``ea train graph --index-backend``)
INDEX_BACKENDS = tuple(_BACKENDS)
#: where a version's index lives unless told otherwise (and where it lived before there was a choice)
DEFAULT_BACKEND = HnswlibBackend.name


def index_backend(name: str | IndexBackend) -> IndexBackend:
    """The backend called ``name`` (a backend is returned as is).

    Raises:
        ConfigurationError: no backend has that name (the message lists those that exist).
    """
    if isinstance(name, IndexBackend):
        return name
    try:
        return _BACKENDS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(f"index_backend={name!r}: must be one of {', '.join(INDEX_BACKENDS)}") from None


def version_backend(meta: Mapping[str, Any] | None) -> IndexBackend:
    """The backend a version was published with, told by its manifest's ``meta`` (a version no backend
    recorded itself in is in process: every version published before there was a choice)."""
    for backend in _BACKENDS.values():
        if backend.name != DEFAULT_BACKEND and isinstance(meta, Mapping) and backend.record(meta):
            return backend
    return _BACKENDS[DEFAULT_BACKEND]
