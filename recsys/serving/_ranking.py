"""The ranking steps the client's queries are composed of, each a function of one served version.

* :func:`search`: a path's index query (``"recommend"``, ``"history"``, ``"similar"``) with the search
  arguments settled for it at publication, filtered inside the search (by the set of items a filter allows,
  or by the expression for a backend that evaluates it);
* :func:`precomputed`: a user's precomputed top-N list, corrected for the deltas since, when it serves;
* :func:`popular`: the most popular items (an unknown user, an empty history);
* :func:`answer`: dense ids and scores as the :class:`~recsys.serving.recommendations.Recommendations` returned;
* :func:`positions`, :func:`position`: external item ids as the version's dense ids.

Each step asks the version's backend (``model.backend``, :class:`~recsys.serving.version_index.VersionIndex`)
for what depends on where its items live: the search, the filter on popular items, the fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from vectorstore import AllowedIds

from ..data.ids import check_ids
from ..exceptions import UnknownItem, UnknownUser
from ..publish.wire import decode_top
from .recommendations import Recommendations, check_fields
from .serving_model import ServingModel

__all__ = ["answer", "excluded", "popular", "position", "positions", "precomputed", "search"]


def position(model: ServingModel, item: str) -> int:
    """The dense id of ``item``.

    Raises:
        UnknownItem: the version does not hold it (or a delta deleted it).
    """
    try:
        return model.item_pos[item]
    except KeyError:
        raise UnknownItem(f"item {item!r} is not in model {model.name!r} v{model.version}") from None


def positions(model: ServingModel, items: Iterable[Any] | None) -> set[int]:
    """The dense ids of the ``items`` the version holds (others are ignored; ``None``: none).

    Raises:
        InvalidRequest: ``items`` is not a collection of ids.
    """
    if items is None:
        return set()
    out = set()
    for item in check_ids(items, "item"):
        pos = model.item_pos.get(item)
        if pos is not None:
            out.add(pos)
    return out


def excluded(model: ServingModel, seen: np.ndarray | None, exclude: Iterable[Any] | None) -> np.ndarray:
    """The dense ids a request leaves out: the user's ``seen`` items (``None``: kept) and ``exclude``'s."""
    banned = seen.astype(np.int64) if seen is not None else np.empty(0, np.int64)
    extra = positions(model, exclude)
    if extra:
        banned = np.concatenate([banned, np.fromiter(extra, np.int64, len(extra))])
    return banned


def search(model: ServingModel, path: str, vectors: Any, k: int, exclude: Any, allowed: AllowedIds | None, *,
           index: Any = None, expression: str | None = None, **extra: Any) -> tuple[np.ndarray, np.ndarray]:
    """A path's index query with its search arguments, filtered inside the search (``allowed``: the items a
    filter allows, ``expression``: the filter, for a backend that evaluates it).

    Returns:
        ``(ids, scores)`` as :meth:`vectorstore.ItemIndex.query` gives them (padded with id -1).
    """
    index = model.index if index is None else index
    args = {**model.search.get(path, {}), **extra}
    return model.backend.search(model, index, vectors, k, exclude=exclude, allowed=allowed, expression=expression,
                                args=args)


def precomputed(model: ServingModel, top: bytes, vector: np.ndarray, seen: np.ndarray, k: int,
                passing: AllowedIds | None) -> tuple[np.ndarray, np.ndarray] | None:
    """A user's precomputed list (``top``, opened) as it serves this request: its first ``k`` items after the
    deltas since the precompute (deleted items out, upserted ones scored in) and ``passing``'s filter; ``None``
    when fewer than ``k`` remain (the index answers)."""
    ids, scores = decode_top(top, model.n_items)
    if model.live is not None:  # deleted items out, items upserted since the precompute scored in
        ids, scores = model.live.adjust_top(ids, scores, vector, seen) or (ids[:0], scores[:0])
    if passing is not None:  # the list serves a filter when k of its items pass it; else the index does
        keep = np.isin(ids, passing.ids)
        ids, scores = ids[keep], scores[keep]
    return (ids[:k], scores[:k]) if len(ids) >= k else None


def popular(model: ServingModel, user: str | None, k: int, *, strict: bool, fields: list[str] | None,
            exclude: Iterable[Any] | None = None, include: Iterable[Any] | None = None,
            passing: AllowedIds | None = None, expression: str | None = None) -> Recommendations:
    """The ``k`` most popular items allowed (``source="popularity"``), for a ``user`` the version does not know
    (``None``: a request about no user).

    Raises:
        UnknownUser: ``strict`` and ``user`` is given.
    """
    if strict and user is not None:
        raise UnknownUser(f"user {user!r} is not in model {model.name!r} v{model.version}")
    order = model.popular
    banned = positions(model, exclude)
    allowed = positions(model, include) if include is not None else None
    if banned or allowed is not None:
        order = np.array([i for i in order if i not in banned and (allowed is None or i in allowed)], np.int64)
    order = model.backend.keep_passing(order, passing, expression, k)
    ids = order[:k]
    return answer(model, ids, model.popularity[ids], "popularity", user, fields)


def answer(model: ServingModel, ids: np.ndarray, scores: np.ndarray, source: str, user: str | None,
           fields: list[str] | None, found: dict[str, list] | None = None) -> Recommendations:
    """Dense ids and their scores as the :class:`Recommendations` returned (an index's padding, id -1, left out),
    with the asked-for metadata ``fields`` (``found``: as the search returned them with its hits).

    Raises:
        InvalidRequest: ``fields`` is not a list of the version's fields.
    """
    ids = np.asarray(ids, dtype=np.int64)
    keep = ids >= 0
    ids, scores = ids[keep], np.asarray(scores)[keep]
    names = check_fields(fields)
    if found is not None:
        found = {n: [v for v, kept in zip(values, keep.tolist()) if kept] for n, values in found.items()}
    return Recommendations(items=model.item_ids[ids].tolist(), scores=np.asarray(scores, dtype=np.float32),
                           model=model.name, model_version=model.version, source=source, user=user,
                           fields=model.fields(ids, names) if found is None else found)
