"""Similar users, and similar items by cosine: exact searches over vectors a client loads on first use.

* :meth:`Similarity.users`: users are compared by the vectors the model says users are compared by
  (:func:`recsys.publish.entities.entity_vectors`: a user's scoring vector, or for Node2Vec the centred mean of
  their items' input vectors), by cosine (default) or inner product. They are read from Redis once per
  version (one HGETALL) and searched exactly: a product over a few hundred thousand users costs
  milliseconds, less than building an index nobody may ask again.
* :meth:`Similarity.items_cosine`: the model's own similarity path (its similarity vectors against its
  similarity targets, else its fold-in vectors against the item vectors), each side L2-normalised. By raw
  inner product an item's neighbours are led by items whose vectors are long, the popular ones (LightGCN on
  ml-100k: Star Wars -> Return of the Jedi, Liar Liar, Contact, Fargo, Toy Story); cosine ranks by
  direction only (The Empire Strikes Back comes first).

Both caches are keyed on what they were built from (the version; for items also the catalogue's size and
deleted count, which deltas change), so a swapped version or a changed catalogue is rebuilt on the next call.
Users rewritten by deltas (``CatalogueWriter.update_users``) are patched into the users' copy on the next call
(their rows read again: the query user and every neighbour are compared by their vectors as updated; a user
a delta created joins them).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorstore import AllowedIds, ModelRegistry

from ..exceptions import InvalidRequest, UnknownUser
from ..publish.entities import entity_vectors

__all__ = ["METRICS", "SimilarUsers", "Similarity", "check_metric"]

#: how similar_items / similar_users may compare: the model's raw inner product, or cosine
METRICS = ("ip", "cosine")


@dataclass(frozen=True)
class SimilarUsers:
    """The users most similar to one user.

    Attributes:
        users: external user ids, most similar first (the user asked about is never among them).
        scores: their similarity (cosine in [-1, 1], or raw inner product).
        model, model_version: which model version answered.
        user: the user asked about; metric: ``"cosine"`` or ``"ip"``.
    """

    users: list[str]
    scores: np.ndarray
    model: str
    model_version: int
    user: str
    metric: str

    def __len__(self) -> int:
        return len(self.users)


def check_metric(metric: Any) -> str:
    """``metric`` if it is one of :data:`METRICS`.

    Raises:
        InvalidRequest: anything else.
    """
    if not isinstance(metric, str) or metric not in METRICS:
        raise InvalidRequest(f"metric={metric!r} must be one of {list(METRICS)}")
    return metric


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and values of the ``k`` highest finite scores, best first (ties: lower position first)."""
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    order = part[np.lexsort((part, -scores[part]))]
    return order.astype(np.int64), scores[order].astype(np.float32)


class _Users:
    def __init__(self, ids: list[str], vectors: np.ndarray, source: str) -> None:
        self.ids = np.asarray(ids, dtype=object)
        self.pos = {u: i for i, u in enumerate(ids)}
        self.raw = np.ascontiguousarray(vectors, dtype=np.float32)
        self.unit = _normalised(self.raw)
        self.source = source  # what a user's vector is (recsys.publish.entities): 'user_vectors' or 'history'
        self.history: np.ndarray | None = None  # for 'history': the centred item rows users' means are taken over
        self.revision = 0  # the follower's users_revision patched in

    def patch(self, rows: dict[str, np.ndarray]) -> None:
        """Set the users' vectors (new users appended): arrays replaced whole, the id map last (it only grows),
        so a reader that finds a user finds its row."""
        raw, ids, pos = self.raw.copy(), list(self.ids), dict(self.pos)
        new = [u for u in rows if u not in pos]
        if new:
            pos.update((u, len(ids) + n) for n, u in enumerate(new))
            ids += new
            raw = np.vstack([raw, np.zeros((len(new), raw.shape[1]), np.float32)])
        for user, vector in rows.items():
            raw[pos[user]] = vector
        self.raw, self.unit, self.ids = raw, _normalised(raw), np.asarray(ids, dtype=object)
        self.pos = pos


class Similarity:
    """The per-client caches behind ``similar_users`` and ``similar_items(metric="cosine")``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: tuple[Hashable, _Users] | None = None
        self._targets: tuple[Hashable, Any, np.ndarray, np.ndarray | None] | None = None

    # -- users ----------------------------------------------------------------------------------------
    def users(self, registry: ModelRegistry, model: Any, user: str, k: int,
              metric: str) -> tuple[list[str], np.ndarray]:
        """The ``k`` users most similar to ``user`` (``user`` left out) and their scores.

        Raises:
            UnknownUser: the version has no such user.
            vectorstore errors: Redis down on the first call for this version.
        """
        table = self._user_table(registry, model)
        live = getattr(model, "live", None)
        if live is not None and live.users_revision > table.revision:
            table = self._patch_users(registry, model, table, live)
        me = table.pos.get(user)
        if me is None:
            raise UnknownUser(f"user {user!r} is not in model {model.name!r} v{model.version}")
        vectors = table.unit if metric == "cosine" else table.raw
        scores = vectors @ vectors[me]
        scores[me] = -np.inf
        pos, values = _top(scores, k)
        return table.ids[pos].tolist(), values

    def _user_table(self, registry: ModelRegistry, model: Any) -> _Users:
        key = (model.name, model.version)
        cached = self._users
        if cached is not None and cached[0] == key:
            return cached[1]
        with self._lock:  # one loader per version, however many threads ask at once
            cached = self._users
            if cached is not None and cached[0] == key:
                return cached[1]
            found = entity_vectors(registry, model.name, "users", model.version)
            table = _Users(found.ids, found.vectors, found.source)
            self._users = (key, table)
            return table

    def _patch_users(self, registry: ModelRegistry, model: Any, table: _Users, live: Any) -> _Users:
        """``table`` with the users deltas rewrote since it was read (or last patched) patched in."""
        with self._lock:
            revision = live.users_revision
            if revision <= table.revision:
                return table
            changed = [u for u, r in dict(live.user_revisions).items() if r > table.revision]
            raws = registry.client.hmget(live.users_key, changed) if changed else []
            rows: dict[str, np.ndarray] = {}
            for user, raw in zip(changed, raws):
                decoded = live.user_row(user, raw) if raw is not None else None
                if decoded is not None:
                    rows[user] = self._user_vector(registry, model, table, *decoded)
            if rows:
                table.patch(rows)
            table.revision = revision
            return table

    @staticmethod
    def _user_vector(registry: ModelRegistry, model: Any, table: _Users, vector: np.ndarray,
                     seen: np.ndarray) -> np.ndarray:
        """A rewritten user's vector as :func:`recsys.publish.entities.entity_vectors` reads the published ones."""
        if table.source != "history":
            return vector
        if table.history is None:  # as entity_vectors centres them: each row minus the mean row
            meta = registry.manifest(model.name, model.version)["meta"]
            part = meta.get("outliers", {}).get("history_vectors", "item_vectors")
            rows = np.asarray(registry.load(model.name, model.version, parts=[part]).arrays[part], np.float32)
            table.history = (rows - rows.mean(axis=0)).astype(np.float32)
        items = table.history
        seen = seen[(seen >= 0) & (seen < len(items))]  # items added by deltas have no published row
        return items[seen].mean(axis=0) if seen.size else np.zeros(items.shape[1], np.float32)

    # -- items ----------------------------------------------------------------------------------------
    def items_cosine(self, model: Any, pos: int, k: int,
                     allowed: AllowedIds | None) -> tuple[np.ndarray, np.ndarray]:
        """Dense ids and cosine similarities of the ``k`` items nearest ``pos`` on the model's similarity path
        (the item itself, deleted items and items outside ``allowed`` left out)."""
        targets, live = self._item_targets(model)
        query = model.similar_vectors[pos] if model.similar_index is not model.index else model.fold_in_vectors[pos]
        scores = targets @ _normalised(np.asarray(query, dtype=np.float32))
        if live is not None:
            scores[~live[: scores.size]] = -np.inf
        if allowed is not None:
            keep = np.zeros(scores.size, bool)
            keep[allowed.ids[allowed.ids < scores.size]] = True
            scores[~keep] = -np.inf
        if pos < scores.size:
            scores[pos] = -np.inf
        return _top(scores, k)

    def _item_targets(self, model: Any) -> tuple[np.ndarray, np.ndarray | None]:
        index = model.similar_index
        # what deltas change: the catalogue's size and its deleted items (new ones are added to the index)
        key = (model.name, model.version, id(index), len(model.item_ids), getattr(index, "deleted", 0))
        cached = self._targets
        if cached is not None and cached[0] == key and cached[1] is index:
            return cached[2], cached[3]
        with self._lock:
            live_ids = model.backend.held_ids(index)
            if index is model.index:
                raw = np.asarray(model.item_vectors, dtype=np.float32)
            else:  # a model's own similarity targets live only in its similar-items index
                assert live_ids is not None
                raw = np.zeros((int(live_ids.max()) + 1 if live_ids.size else 0, index.dim), np.float32)
                raw[live_ids] = index.get_vectors(live_ids.tolist())
            live = None
            if live_ids is not None and live_ids.size != raw.shape[0]:
                live = np.zeros(raw.shape[0], bool)
                live[live_ids[live_ids < raw.shape[0]]] = True
            targets = _normalised(raw)
            self._targets = (key, index, targets, live)
            return targets, live
