"""A batch of deltas moved into a served model: its arrays, indexes, id map and popular order.

:func:`apply_to_model` applies a :class:`~recsys.live.catalogue.Change` (already applied to the follower's
catalogue, and cut to what the version's index backend admits, ``model.backend.admit``) in place, with the
indexes' ``change`` (hnswlib: ``add_items`` and ``mark_deleted``, a full index grows with ``resize_index``;
a backend that holds the items itself admits deletions only, which its searches exclude), in an order that
keeps concurrent queries right: a new item's id, vectors and metadata exist before the index can return it;
a deleted item leaves the index before its id leaves the id map.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vectorstore import ItemIndex

from .catalogue import Catalogue, Change, Rows

if TYPE_CHECKING:
    from ..serving.serving_model import ServingModel

__all__ = ["apply_to_model"]

#: neighbours whose rows a new item borrows in a space its delta does not give (a model's own similarity)
BORROW = 3


def apply_to_model(model: ServingModel, catalogue: Catalogue, change: Change) -> None:
    """Move ``change`` (one or many deltas, already applied to ``catalogue``) into ``model``'s arrays and
    indexes: each item touched ends as the catalogue has it (live with its vector, or deleted)."""
    index, similar = model.index, model.similar_index
    touched = set(change.upserted) | set(change.deleted)
    # an item leaves catalogue.deleted only when upserted again: the live ones are upserted ones
    live = np.asarray(sorted(i for i in set(change.upserted) if i not in catalogue.deleted), dtype=np.int64)
    gone = np.asarray(sorted(i for i in touched if i in catalogue.deleted), dtype=np.int64)
    if live.size:
        # Arrays first (new views in one assignment each), then the index: a query that finds a new id
        # finds its vectors and metadata.
        model.item_ids = catalogue.ids.view()
        model.item_vectors = catalogue.vectors.view()
        model.fold_in_vectors = catalogue.fold_in.view()
        model.popularity = catalogue.popularity.view()
        model.metadata = catalogue.metadata
    if touched:  # the whole batch in one change per index (one add_items call, then the deletions)
        index.change(model.item_vectors[live] if live.size else None, live, gone)
    if touched and similar is not index:
        targets, with_rows = _borrow_similar(model, index, similar, catalogue, live) if live.size else (None, live)
        similar.change(targets, with_rows, gone)  # a new item without similarity rows is not in it
    elif live.size:
        model.similar_vectors = model.fold_in_vectors
    for i in live.tolist():
        model.item_pos[str(model.item_ids[i])] = i
    for i in gone.tolist():
        model.item_pos.pop(str(model.item_ids[i]), None)
    if change.fields or touched:
        model.metadata = catalogue.metadata
        model.metadata_revision += 1  # filters' allowed sets (recsys.serving._filter_cache) are computed again
    if touched:
        # Popular items without the deleted, new ones after the rest (their popularity is what deltas gave
        # them; the order by it is refreshed by the next training): O(items), no sort.
        order = model.popular
        if live.size:
            listed = np.zeros(max(int(live.max()) + 1, 1), bool)  # which of the batch's ids the order holds
            listed[order[order < listed.size]] = True
            fresh = live[~listed[live]]
            order = np.concatenate([order, fresh]) if fresh.size else order
        if gone.size:
            dropped = np.zeros(max(int(order.max()) + 1, 1) if order.size else 1, bool)
            dropped[gone[gone < dropped.size]] = True
            order = order[~dropped[order]]
        model.popular = order


def _borrow_similar(model: ServingModel, index: ItemIndex, similar: ItemIndex, catalogue: Catalogue,
                    ids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """A model with its own similarity space: a new item borrows its nearest items' rows there.

    Its similarity vector (its query) and target (what others' queries meet) are the means of those of the
    :data:`BORROW` published items nearest to it by the scoring vectors (an updated published item keeps
    its own rows). Returns the targets to add to ``similar`` and their ids (``None`` and none: nothing new).
    """
    if catalogue.similar is None:
        catalogue.similar = Rows(model.similar_vectors)
    rows, published = catalogue.similar, catalogue.published
    added, targets = [], []
    for i in ids.tolist():
        if i < published or i < rows.n:
            continue
        near, _ = index.query(model.item_vectors[i], k=min(BORROW + 16, len(index)))
        near = near[(near >= 0) & (near < published)][:BORROW]
        if not near.size:
            continue
        targets.append(similar.get_vectors(near.tolist()).mean(axis=0))
        rows.put(i, model.similar_vectors[near].mean(axis=0))
        added.append(i)
    if not added:
        return None, np.empty(0, np.int64)
    model.similar_vectors = rows.view()
    return np.stack(targets), np.asarray(added, np.int64)
