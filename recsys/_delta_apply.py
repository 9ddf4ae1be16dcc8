"""Deltas applied in memory: the items of one version as its delta log leaves them.

:class:`Catalogue` holds what the writer validates against and what a client serves from: item ids and
their dense positions, scoring and fold-in vectors (growing buffers: a new item is appended, never copied
with the rest), popularity, metadata, the deleted items and the items changed since publication. The
writer (:mod:`recsys.deltas`) keeps one to check each write; a client keeps one per serving model and
:func:`apply_to_model` moves each change into the model's arrays and hnswlib indexes (``add_items``,
``mark_deleted``; a full index grows with ``resize_index``), in an order that keeps concurrent queries
right: a new item's id, vectors and metadata exist before the index can return it; a deleted item leaves
the index before its id leaves the id map.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from vectorstore import ItemIndex

if TYPE_CHECKING:
    from ._serving import ServingModel

__all__ = ["Catalogue", "Change", "Rows", "apply_deletions", "apply_to_model"]

log = logging.getLogger(__name__)

#: neighbours whose rows a new item borrows in a space its delta does not give (a model's own similarity)
BORROW = 3


class Rows:
    """A growing array: rows appended into spare capacity, read as ``view()`` (the rows in use).

    The published arrays are read-only views of the stored bytes: the first change copies them once.
    """

    def __init__(self, base: np.ndarray) -> None:
        self._buf = base
        self.n = len(base)
        self._owned = False

    def view(self) -> np.ndarray:
        return self._buf[: self.n]

    def _own(self, extra: int) -> None:
        need = self.n + extra
        if self._owned and need <= len(self._buf):
            return
        capacity = max(need, len(self._buf) * 3 // 2 + 256) if extra else len(self._buf)
        grown = np.empty((capacity, *self._buf.shape[1:]), dtype=self._buf.dtype)
        grown[: self.n] = self._buf[: self.n]
        self._buf, self._owned = grown, True

    def put(self, pos: int, value: Any) -> None:
        """Set row ``pos`` (``pos == n`` appends)."""
        if pos >= self.n:
            self._own(pos + 1 - self.n)
            self._buf[pos] = value
            self.n = pos + 1
        else:
            self._own(0)
            self._buf[pos] = value


@dataclass
class Change:
    """What deltas changed: dense ids (re)written with their rows, ids deleted, users and fields touched."""

    upserted: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)

    def merge(self, other: Change) -> None:
        """Add ``other`` (a later delta) to this batch."""
        self.upserted += other.upserted
        self.deleted += other.deleted
        self.users += other.users
        self.fields |= other.fields


class Catalogue:
    """The items of one model version with its deltas applied.

    Args:
        item_ids: external item ids by dense id (as published).
        vectors: scoring vectors; fold_in: fold-in vectors (``None``: the scoring vectors).
        popularity: per item; metadata: ``{column: [value per item]}``.
    """

    def __init__(self, item_ids: np.ndarray, vectors: np.ndarray, fold_in: np.ndarray | None,
                 popularity: np.ndarray, metadata: Mapping[str, list]) -> None:
        self.ids = Rows(np.asarray(item_ids, dtype=object))
        self.pos: dict[str, int] = {str(i): n for n, i in enumerate(item_ids)}
        self.vectors = Rows(vectors)
        self.fold_in = self.vectors if fold_in is None or fold_in is vectors else Rows(fold_in)
        self.popularity = Rows(np.asarray(popularity, dtype=np.float32))
        self.metadata: dict[str, list] = {k: list(v) for k, v in metadata.items()}
        self.deleted: set[int] = set()
        self.changed: set[int] = set()  # dense ids whose vectors differ from the publication's
        self.users_updated = False
        self.last_id = "0-0"  # the newest log entry applied
        self.published = len(item_ids)
        self.similar: Rows | None = None  # a model's own similarity vectors, once a new item needs a row

    @property
    def dim(self) -> int:
        return int(self.vectors.view().shape[1])

    def live(self, item: str) -> int | None:
        """The dense id of a live (known, not deleted) item, else ``None``."""
        pos = self.pos.get(item)
        return None if pos is None or pos in self.deleted else pos

    def apply(self, body: Mapping[str, Any]) -> Change:
        """Apply one delta (a verified log entry's body); see :mod:`recsys.deltas` for the operations."""
        op = body.get("op")
        change = Change()
        if op == "upsert_items":
            for item in body["items"]:
                change.upserted.append(self._upsert(item))
        elif op == "delete_items":
            for item in body["items"]:
                pos = self.live(str(item))
                if pos is not None:
                    self.deleted.add(pos)
                    change.deleted.append(pos)
        elif op == "update_users":
            self.users_updated = True
            for user in body["users"]:
                change.users.append(str(user["id"]))
                for item in user.get("items", ()):
                    pos = self.live(str(item))
                    if pos is not None:
                        self.popularity.put(pos, self.popularity.view()[pos] + 1.0)
        elif op == "update_metadata":
            for item, values in body["items"].items():
                pos = self.pos.get(str(item))
                if pos is not None:
                    self._set_metadata(pos, values)
                    change.fields.update(values)
        else:
            log.warning("delta op %r is not one this client knows; skipped", op)
        return change

    def _upsert(self, item: Mapping[str, Any]) -> int:
        key = str(item["id"])
        pos = self.pos.get(key)
        if pos is None:
            pos = self.ids.n
            self.ids.put(pos, key)
            self.popularity.put(pos, float(item.get("popularity", 0.0)))
        vector = np.asarray(item["vector"], dtype=np.float32)
        self.vectors.put(pos, vector)
        if self.fold_in is not self.vectors:
            self.fold_in.put(pos, np.asarray(item.get("fold_in", item["vector"]), dtype=np.float32))
        for column in self.metadata.values():  # a new item's fields start empty
            while len(column) <= pos:
                column.append(None)
        self._set_metadata(pos, item.get("metadata") or {})
        self.deleted.discard(pos)
        self.changed.add(pos)
        self.pos[key] = pos  # last: a reader finding the id finds its rows
        return pos

    def _set_metadata(self, pos: int, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            column = self.metadata.get(name)
            if column is None:
                column = [None] * self.ids.n
            while len(column) < self.ids.n:
                column.append(None)
            column[pos] = value
            self.metadata[name] = column


def apply_to_model(model: ServingModel, catalogue: Catalogue, change: Change) -> None:
    """Move ``change`` (one or many deltas, already applied to ``catalogue``) into ``model``'s arrays and
    hnswlib indexes: each item touched ends as the catalogue has it (live with its vector, or deleted)."""
    index, similar = model.index, model.similar_index
    assert isinstance(index, ItemIndex) and isinstance(similar, ItemIndex)  # the follower checks
    touched = set(change.upserted) | set(change.deleted)
    live = np.asarray(sorted(i for i in touched if i not in catalogue.deleted), dtype=np.int64)
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
        model.metadata_revision += 1  # filters' allowed sets (recsys._filtering) are computed again
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


def apply_deletions(model: ServingModel, catalogue: Catalogue, change: Change) -> bool:
    """A version whose items are a Milvus collection: its deleted items leave every path here (the
    collection's searches exclude them, the id map and the popular order drop them); the writer deleted them
    from the collection. Returns whether ``change`` also held what this path cannot apply (upserts: logged
    by writers that did not refuse them)."""
    gone = np.asarray(sorted(i for i in set(change.deleted) if i in catalogue.deleted), dtype=np.int64)
    if gone.size and model.milvus is not None:
        model.milvus.deleted = model.milvus.deleted | frozenset(gone.tolist())
        for i in gone.tolist():
            model.item_pos.pop(str(model.item_ids[i]), None)
        order = model.popular
        dropped = np.zeros(max(int(order.max()) + 1, 1) if order.size else 1, bool)
        dropped[gone[gone < dropped.size]] = True
        model.popular = order[~dropped[order]]
    return bool(change.upserted)


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
