"""The items of one model version as its delta log leaves them: :class:`Catalogue`.

A catalogue holds what the writer checks each write against and what a client serves from: item ids and
their dense positions, scoring and fold-in vectors (growing :class:`Rows`: a new item is appended, never
copied with the rest), popularity, metadata, the deleted items and the items changed since publication.
The writer (:mod:`recsys.live.writer`) keeps one to check each write; a client's follower
(:mod:`recsys.live.follower`) keeps one per serving model and moves each batch of changes (:class:`Change`)
into the model's arrays and indexes (:mod:`recsys.live._apply`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .delta_log import DELETE_ITEMS, UPDATE_METADATA, UPDATE_USERS, UPSERT_ITEMS, Entry

__all__ = ["Catalogue", "Change", "Rows"]

log = logging.getLogger(__name__)


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

    def apply(self, entry: Entry) -> Change:
        """Apply one delta (a verified log entry); see :mod:`recsys.live.delta_log` for the operations."""
        op, body = entry.op, entry.body
        change = Change()
        if op == UPSERT_ITEMS:
            for item in body["items"]:
                change.upserted.append(self._upsert(item))
        elif op == DELETE_ITEMS:
            for item in body["items"]:
                pos = self.live(str(item))
                if pos is not None:
                    self.deleted.add(pos)
                    change.deleted.append(pos)
        elif op == UPDATE_USERS:
            self.users_updated = True
            for user in body["users"]:
                change.users.append(str(user["id"]))
                for item in user.get("items", ()):
                    pos = self.live(str(item))
                    if pos is not None:
                        self.popularity.put(pos, self.popularity.view()[pos] + 1.0)
        elif op == UPDATE_METADATA:
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
