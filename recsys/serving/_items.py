"""Items read by id or by filter (``RecommendationClient.get`` and ``.query``, as pymilvus' ``get(ids)`` and
``query(filter)``): the served version's live items, each a ``{"id", field: value, ...}`` dict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..exceptions import InvalidRequest
from .recommendations import MAX_K

if TYPE_CHECKING:
    from vectorstore import AllowedIds

    from .serving_model import ServingModel

__all__ = ["get_items", "query_items"]

#: the largest offset a query may start at
MAX_OFFSET = 10**12


def get_items(model: ServingModel, ids: list[str], fields: list[str] | None) -> list[dict[str, Any]]:
    """The items of ``ids`` the version holds live (unknown and deleted ones left out, as pymilvus' ``get``),
    in the order asked, with metadata ``fields`` (default: every field).

    Raises:
        InvalidRequest: an unknown field.
    """
    found = [(i, model.item_pos[i]) for i in dict.fromkeys(ids) if i in model.item_pos]
    return _rows(model, [i for i, _ in found], np.asarray([p for _, p in found], np.int64), fields)


def query_items(model: ServingModel, allowed: AllowedIds | None, fields: list[str] | None, limit: int,
                offset: int) -> list[dict[str, Any]]:
    """The live items ``allowed`` lets through (``None``: every live item), in the catalogue's order, from
    ``offset``, at most ``limit``, with metadata ``fields`` (default: every field).

    Raises:
        InvalidRequest: ``limit`` not in 1..MAX_K, ``offset`` not an integer >= 0, an unknown field.
    """
    for name, value, low, high in (("limit", limit, 1, MAX_K), ("offset", offset, 0, MAX_OFFSET)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
            shown = "a huge integer" if isinstance(value, int) and abs(value) >= 10**18 else repr(value)[:60]
            raise InvalidRequest(f"{name}={shown} must be an integer in {low}..{high}")
    live = np.fromiter(model.item_pos.values(), np.int64, len(model.item_pos))
    live.sort()
    if allowed is not None:
        live = live[np.isin(live, allowed.ids, assume_unique=True)]
    dense = live[int(offset): int(offset) + int(limit)]
    return _rows(model, model.item_ids[dense].tolist(), dense, fields)


def _rows(model: ServingModel, ids: list[str], dense: np.ndarray, fields: list[str] | None) -> list[dict[str, Any]]:
    if fields is None:  # every field of the version
        names = list(model.backend.field_names(model))
    else:
        names = model.check_fields(fields)
    columns = model.fields(dense, names) if names else {}
    return [{"id": str(item), **{n: columns[n][j] for n in names}} for j, item in enumerate(ids)]
