"""A published version's :class:`~recsys.serving.version_index.VersionIndex`, by the backend it was published with.

The one place in recsys that knows which implementations exist: the in-process one
(:class:`~recsys.serving.version_index.InProcessIndex`) and the Milvus one
(:class:`~recsys.serving._milvus_index.MilvusIndex`, imported only for a Milvus-backed version).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vectorstore import Settings, version_backend

from .version_index import InProcessIndex, VersionIndex

__all__ = ["open_index"]


def open_index(settings: Settings, meta: Mapping[str, Any]) -> VersionIndex:
    """The index of the version whose manifest ``meta`` this is (nothing is loaded, nor connected to, yet).

    Raises:
        KeyError, TypeError: the backend's record in ``meta`` does not decode (a corrupt manifest).
    """
    backend = version_backend(meta)
    if backend.name == "milvus":
        from ._milvus_index import MilvusIndex  # pymilvus itself is imported when it first connects

        return MilvusIndex(settings, backend.record(meta) or {})
    return InProcessIndex()
