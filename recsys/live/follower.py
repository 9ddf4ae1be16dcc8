"""A client's side of the delta log: one :class:`DeltaFollower` per serving model keeps its deltas applied.

The watcher (:mod:`recsys.serving._watcher`) makes one when it loads a version (which replays the log: a client
started later serves what the others serve) and calls :meth:`DeltaFollower.catch_up` on each ``delta``
notice and at each periodic check (notices sent while disconnected are lost). The client asks it for the
users whose rows a delta rewrote (:attr:`users_key`) and to correct precomputed top-N lists
(:meth:`adjust_top`): deleted items dropped, items upserted since the precompute scored anew.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import TYPE_CHECKING

import numpy as np
import redis

from vectorstore import IntegrityError, ItemIndex, ModelRegistry

from ._apply import apply_deletions, apply_to_model
from .catalogue import Catalogue, Change
from .delta_log import REFUSED, Entry, decode_user_row, delta_seals, log_keys, read_log

if TYPE_CHECKING:
    from ..serving.serving_model import ServingModel

__all__ = ["MAX_RESCORED", "DeltaFollower"]

log = logging.getLogger(__name__)

#: past this many items changed since publication, precomputed lists are set aside for the index
MAX_RESCORED = 4096


def _stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


class DeltaFollower:
    """The deltas of ``model`` (one version), applied to it in place.

    Args:
        registry: where the log is.
        model: the serving model (its ``live`` is set to this follower).
    """

    def __init__(self, registry: ModelRegistry, model: ServingModel) -> None:
        self.registry = registry
        self.model = model
        self.catalogue: Catalogue | None = None  # made at the first delta: most versions never get one
        self.users_key = log_keys(registry, model.name, model.version).users
        self._seals = delta_seals(registry, model.name, model.version)
        self.applied = 0
        self.refused = 0
        #: user -> :attr:`users_revision` when a delta last rewrote the user's row (similar_users patches its
        #: copy of the users' vectors from it)
        self.user_revisions: dict[str, int] = {}
        self.users_revision = 0
        self._lock = threading.Lock()
        self._supported = isinstance(model.index, ItemIndex)
        model.live = self

    @property
    def users_updated(self) -> bool:
        """Whether a delta has rewritten some user's row (requests then read :attr:`users_key` too)."""
        return self.catalogue is not None and self.catalogue.users_updated

    @property
    def last_id(self) -> str:
        return self.catalogue.last_id if self.catalogue is not None else "0-0"

    def seen_id(self, entry_id: str | None) -> bool:
        """Whether the entry ``entry_id`` (from a notice) is already applied."""
        if not entry_id:
            return False
        try:
            return _stream_id(entry_id) <= _stream_id(self.last_id)
        except ValueError:
            return False

    def catch_up(self) -> int:
        """Apply the log's entries not applied yet (to the indexes as one batch); returns how many.

        Raises:
            redis.RedisError: Redis did not answer (the caller retries at the next notice or check).
        """
        with self._lock:
            try:
                entries = list(read_log(self.registry, self.model.name, self.model.version, self.last_id,
                                        seal=self._seals[0]))
            except redis.ResponseError:  # the key is not a stream (nothing a writer made)
                return 0
            if not entries:
                return 0
            if self.catalogue is None:
                m = self.model
                self.catalogue = Catalogue(m.item_ids, m.item_vectors,
                                           None if m.fold_in_vectors is m.item_vectors else m.fold_in_vectors,
                                           m.popularity, m.metadata)
            batch = Change()
            for entry in entries:
                batch.merge(self._apply(entry))
            for user in batch.users:  # the user's mark first: a reader seeing the revision finds the user
                self.user_revisions[user] = self.users_revision + 1
                self.users_revision += 1
            if self._supported:
                apply_to_model(self.model, self.catalogue, batch)
            elif apply_deletions(self.model, self.catalogue, batch):
                log.warning("%s v%s: item upserts are not applied to a Milvus-backed version", self.model.name,
                            self.model.version)
            self.applied += len(entries)
            return len(entries)

    def _apply(self, entry: Entry) -> Change:
        """One entry to the catalogue (the indexes follow once per batch)."""
        assert self.catalogue is not None
        change = Change()
        if entry.op == REFUSED:
            self.refused += 1
        else:
            change = self.catalogue.apply(entry)
        self.catalogue.last_id = entry.id
        return change

    def user_row(self, user: str, raw: bytes) -> tuple[np.ndarray, np.ndarray] | None:
        """A rewritten user's ``(vector, seen)``; ``None`` (and logged) when its signature fails."""
        try:
            return decode_user_row(self._seals[1], user, raw)
        except (IntegrityError, struct.error) as exc:  # a refused row: serve the published one
            log.error("%s v%s: updated row of user %r refused: %s", self.model.name, self.model.version, user[:64],
                      exc)
            return None

    def adjust_top(self, ids: np.ndarray, scores: np.ndarray, vector: np.ndarray,
                   seen: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """A precomputed list corrected for the deltas: deleted and changed items out, changed items (live,
        unseen) scored against ``vector`` and merged in. ``None``: too many changes, ask the index."""
        cat = self.catalogue
        if cat is None or not (cat.deleted or cat.changed):
            return ids, scores
        if len(cat.changed) > MAX_RESCORED:
            return None
        drop = cat.deleted | cat.changed
        keep = np.fromiter((i not in drop for i in ids.tolist()), bool, len(ids))
        ids, scores = ids[keep], scores[keep]
        if not ids.size:
            return None
        floor = scores[-1]  # below it, items the list left out may outrank a changed one
        changed = np.fromiter((i for i in cat.changed if i not in cat.deleted), np.int64)
        if changed.size:
            changed = changed[~np.isin(changed, seen)]
            fresh = (self.model.item_vectors[changed] @ vector).astype(np.float32)
            ids = np.concatenate([ids, changed[fresh >= floor]])
            scores = np.concatenate([scores, fresh[fresh >= floor]])
            order = np.argsort(-scores, kind="stable")
            ids, scores = ids[order], scores[order]
        return ids, scores
