"""Item deltas on a version whose items are a Milvus collection (``index_backend="milvus"``).

Its searches, filters and fields run in Milvus, so the writer changes the collection itself, before it logs
the delta (a failure there writes nothing): deletions are deleted by primary key, field updates upserted as
whole rows (Milvus replaces a row whole: the other fields and the vector come from the writer's copy of the
catalogue). Clients also exclude deleted items from every search (:func:`recsys.live._apply.apply_deletions`).
Item upserts are refused (:class:`~recsys.exceptions.UnsupportedDelta`), as are fields the collection does not
have or values of another type than its column's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vectorstore import Settings

from ..exceptions import UnsupportedDelta
from .catalogue import Catalogue
from .delta_log import DELETE_ITEMS, UPDATE_METADATA, UPSERT_ITEMS

__all__ = ["check", "write"]

_TYPES: dict[str, Any] = {"BOOL": lambda v: isinstance(v, bool),
                          "INT64": lambda v: isinstance(v, int) and not isinstance(v, bool),
                          "DOUBLE": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
                          "VARCHAR": lambda v: isinstance(v, str)}


def check(spec: Mapping[str, Any], where: str, op: str, payload: Mapping[str, Any]) -> None:
    """Refuse what the collection cannot take (``where`` names the model and version).

    Raises:
        UnsupportedDelta: an item upsert; a field the collection lacks, or a value not of its column's type.
    """
    if op == UPSERT_ITEMS:
        raise UnsupportedDelta(f"{op}: {where} keeps its items in a Milvus collection, which takes deletions and "
                               "field updates only; nothing was written (new items wait for the next training)")
    if op != UPDATE_METADATA:
        return
    kinds = spec.get("fields", {})
    for item, values in payload["items"].items():
        for name, value in values.items():
            kind = kinds.get(name)
            if kind is None:
                raise UnsupportedDelta(f"{op}: item {item!r}: the Milvus collection of {where} has no field "
                                       f"{name!r} (it has {sorted(kinds)}); nothing was written")
            if value is not None and not _TYPES.get(kind, _TYPES["VARCHAR"])(value):
                raise UnsupportedDelta(f"{op}: item {item!r}: field {name!r} is {kind} in the Milvus collection of "
                                       f"{where}, not {type(value).__name__}; nothing was written")


def write(settings: Settings, spec: Mapping[str, Any], catalogue: Catalogue, op: str,
          payload: Mapping[str, Any]) -> None:
    """Apply a checked delete or field update to the collection (before the log entry is written).

    Raises:
        vectorstore.MilvusUnavailable, vectorstore.MilvusRefused: Milvus failed (nothing was logged).
    """
    if op not in (DELETE_ITEMS, UPDATE_METADATA):
        return
    from vectorstore import MilvusStore  # imports pymilvus: only for a Milvus-backed version

    store = MilvusStore.get(settings)
    if op == DELETE_ITEMS:
        store.delete(spec["collection"], [catalogue.pos[i] for i in payload["items"]])
        return
    items = list(payload["items"])
    positions = [catalogue.pos[i] for i in items]
    kinds = dict(spec.get("fields", {}))
    fields = {name: [payload["items"][i].get(name, _current(catalogue, name, p)) for i, p in zip(items, positions)]
              for name in kinds}
    store.upsert(spec["collection"], positions, items, catalogue.vectors.view()[np.asarray(positions)], fields, kinds)


def _current(catalogue: Catalogue, name: str, pos: int) -> Any:
    column = catalogue.metadata.get(name)
    return column[pos] if column is not None and pos < len(column) else None
