"""``CatalogueWriter``: deltas on a model's active version for applications that update inline.

::

    writer = CatalogueWriter("shop", redis_url)
    writer.upsert_items([{"id": "sku-9", "vector": v}, {"id": "sku-10", "users": ["u1", "u7"]}])
    writer.delete_items(["sku-3"])                      # never recommended again, at once
    writer.update_users({"u1": ["sku-9", "sku-4"]})     # vector folded in, seen items extended
    writer.update_metadata({"sku-9": {"in_stock": False}})

A version whose items are a Milvus collection (``index_backend="milvus"``) has its deletions and field updates
written to the collection too, before the log entry (:mod:`recsys.live._milvus_deltas`); item upserts raise
:class:`~recsys.exceptions.UnsupportedDelta`.

Each call checks its input against the version as its log leaves it (:mod:`recsys.live._target_version`;
what an upsert or a user update writes is folded in by :mod:`recsys.live._fold_in`), then appends one entry
to the log and notifies clients in one Redis script (:class:`recsys.live.delta_log.LogAppender`, with the
format). A write with a ``token`` that was already written returns the first write's receipt (Celery
redeliveries write once). A write aimed at the active version that finds another version active (a training
finished meanwhile) is checked again against that version and written there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vectorstore import ModelRegistry, Settings, get_settings

from ..data.interactions import MAX_WEIGHT, MIN_WEIGHT
from ..exceptions import InvalidDelta, ModelUnavailable, UnknownItem, UnknownUser
from . import _milvus_deltas
from ._checks import delta_id, delta_ids, field_values, positive
from ._fold_in import updated_users, upserted_item
from ._target_version import TargetVersion, answered
from .delta_log import DELETE_ITEMS, UPDATE_METADATA, UPDATE_USERS, UPSERT_ITEMS, LogAppender, read_log

__all__ = ["CatalogueWriter", "DeltaReceipt"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class DeltaReceipt:
    """A written delta: which version's log holds it, its entry id, what it did, whether it was a repeat."""

    model: str
    version: int
    id: str
    op: str
    count: int
    duplicate: bool = False


class CatalogueWriter:
    """Write deltas to a model's active version (or to ``version``).

    Args:
        model: the model name.
        redis_url: the service's Redis (default ``EA_REDIS_URL``); ``settings`` overrides it.
        version: write to this version instead of the active one.

    Every method raises :class:`~recsys.exceptions.ModelUnavailable` when the model or version does not
    exist (naming it), and ``vectorstore.RedisUnavailable`` when Redis does not answer; nothing is written
    when an input is refused.
    """

    def __init__(self, model: str = "default", redis_url: str | None = None, *, version: int | None = None,
                 settings: Settings | None = None) -> None:
        settings = settings or get_settings()
        if redis_url:
            settings = settings.with_(redis_url=redis_url)
        self.registry = ModelRegistry(settings)
        self.name = model
        self.pinned = version
        self._state: TargetVersion | None = None
        self._lock = threading.Lock()  # one write at a time (a worker's threads share a writer)
        self._appender = LogAppender(self.registry)

    def _current(self, refresh: bool = True) -> TargetVersion:
        """The version written to, its catalogue caught up with its log (``refresh=False``: as last seen; the
        write script tells when that is stale)."""
        if self._state is not None and not refresh:
            return self._state
        version = self.pinned if self.pinned is not None else self.registry.active_version(self.name)
        if version is None:
            raise ModelUnavailable(f"cannot write deltas: model {self.name!r} has no active version")
        if self._state is None or self._state.version != version:
            self._state = TargetVersion.load(self.registry, self.name, version)
        state = self._state
        self._catch_up(state)
        return state

    def _catch_up(self, state: TargetVersion) -> None:
        """Apply the log's entries newer than the catalogue's, in the log's order (the clients' order: a new
        item's position is its place in it, whichever writer added it)."""
        for entry in read_log(self.registry, self.name, state.version, state.catalogue.last_id, seal=state.seals[0]):
            state.catalogue.apply(entry)
            state.catalogue.last_id = entry.id

    @property
    def version(self) -> int:
        """The version the next write goes to."""
        return self._current().version

    def _write(self, op: str, build: Any, token: str | None) -> DeltaReceipt:
        """Check the input against the current version (``build(state) -> (payload, count, user rows)``) and
        append it; once more against the new version if another became active meanwhile."""
        with self._lock:
            return self._write_locked(op, build, token)

    def _write_locked(self, op: str, build: Any, token: str | None) -> DeltaReceipt:
        stale = False
        for _ in range(8):
            state = self._current(refresh=stale)
            done = answered(self._appender.written, state.log, token) if token else None
            if done is not None:  # written before (a redelivered job): checking it again could only fail
                return DeltaReceipt(self.name, state.version, done, op, 0, duplicate=True)
            if state.milvus and op == UPSERT_ITEMS:
                _milvus_deltas.check(state.milvus, state.where, op, {})
            try:
                payload, count, rows = build(state)
            except (UnknownItem, UnknownUser):
                if stale:
                    raise
                stale = True  # another writer may have added it: read the log and check again
                continue
            if state.milvus:  # the collection changed before the log says so (recsys.live._milvus_deltas)
                _milvus_deltas.check(state.milvus, state.where, op, payload)
                _milvus_deltas.write(self.registry.settings, state.milvus, state.catalogue, op, payload)
            status, value = answered(self._appender.append, self.name, state.version, op, payload, keys=state.log,
                                     seal=state.seals[0], token=token, pinned=self.pinned is not None, rows=rows)
            if status == LogAppender.GONE:
                raise ModelUnavailable(f"model {self.name!r} v{state.version} was deleted")
            if status in (LogAppender.NOT_ACTIVE, LogAppender.USER_CHANGED):  # another version is active, or
                # another writer changed a user: again
                if status == LogAppender.NOT_ACTIVE:
                    log.info("%s: v%s is no longer active (v%s is); writing there", self.name, state.version,
                             value.decode() if value else None)
                stale = True
                continue
            entry = value.decode()
            if status == LogAppender.APPENDED:  # read the log up to our entry: others' entries before it came
                # first for clients too
                self._catch_up(state)
            return DeltaReceipt(self.name, state.version, entry, op, count, duplicate=status == LogAppender.REPEATED)
        raise ModelUnavailable(f"model {self.name!r}: the active version or the users' rows kept changing; "
                               "write again")

    # -- operations -----------------------------------------------------------------------------------------
    def upsert_items(self, items: Iterable[Mapping[str, Any]], *, token: str | None = None) -> DeltaReceipt:
        """Add items or replace their vectors (a deleted item comes back).

        Each item is ``{"id", "vector"}`` (the scoring vector; optional ``"fold_in"``, its fold-in vector,
        for a model that has them, else the scoring vector stands in) or ``{"id", "users": [...]}``: folded
        in from the users who interacted with it (in each space, the mean over those users of their items'
        mean vector: the centre of what its users chose). Optional ``"metadata": {field: value}``.

        Raises:
            InvalidDelta: not a list, no items, an item without a vector or users, a vector of the wrong dimension or
                with NaN/inf, a bad metadata value (each names the item).
            UnknownUser: none of an item's users is known (names them).
        """
        if items is None or isinstance(items, str | bytes | Mapping) or not hasattr(items, "__iter__"):
            raise InvalidDelta(f"upsert_items: give a list of {{'id', 'vector' or 'users'}} items, got "
                               f"{type(items).__name__}")
        items = list(items)
        if not items:
            raise InvalidDelta("upsert_items: no items given")

        def build(state: TargetVersion) -> tuple[dict, int, list]:
            out = [upserted_item(state, item) for item in items]
            return {"items": out}, len(out), []

        return self._write(UPSERT_ITEMS, build, token)

    def delete_items(self, items: Iterable[str | int], *, token: str | None = None) -> DeltaReceipt:
        """Delete items: no client returns them from then on (recommendations, similar items, fold-in,
        precomputed lists, popular items).

        Raises:
            UnknownItem: an item the version does not hold, or already deleted (names it).
        """
        names = delta_ids(items, "item")

        def build(state: TargetVersion) -> tuple[dict, int, list]:
            state.require_live(names)
            return {"items": names}, len(names), []

        return self._write(DELETE_ITEMS, build, token)

    def update_users(self, interactions: Mapping[str | int, Iterable[str | int]] | Mapping[str, Any],
                     *, weights: Mapping[str, Sequence[float]] | None = None,
                     token: str | None = None) -> DeltaReceipt:
        """Record new interactions: each user's vector takes the items' fold-in vectors in (a user the model
        does not know gets the mean of them) and their seen items grow; the next training learns them.

        Args:
            interactions: ``{user: [item, ...]}``.
            weights: optional ``{user: [weight per item]}`` (finite, > 0; default 1), kept for training.

        Raises:
            UnknownItem: an item the version does not hold (or deleted), naming user and item.
            InvalidDelta: no interactions, or a bad weight.
        """
        if not isinstance(interactions, Mapping) or not interactions:
            raise InvalidDelta("update_users: give {user: [item, ...]} with at least one user")
        wanted = {delta_id(u, "user"): delta_ids(v, "item") for u, v in interactions.items()}
        given = {delta_id(u, "user"): list(w) for u, w in (weights or {}).items()}
        for user, w in given.items():
            if user not in wanted or len(w) != len(wanted[user]) or not all(positive(x) for x in w):
                raise InvalidDelta(f"update_users: weights of user {user!r} must be one number in "
                                   f"{MIN_WEIGHT:g}..{MAX_WEIGHT:g} per item (as training takes them)")

        def build(state: TargetVersion) -> tuple[dict, int, list]:
            return updated_users(state, wanted, given)

        return self._write(UPDATE_USERS, build, token)

    def update_metadata(self, items: Mapping[str | int, Mapping[str, Any]], *,
                        token: str | None = None) -> DeltaReceipt:
        """Set item fields (``{item: {field: value}}``; a new field starts empty for the other items).

        Raises:
            UnknownItem: an item the version does not hold. InvalidDelta: a value that is not a str, finite
                number, bool or None, or a field name that is not a non-empty str.
        """
        if not isinstance(items, Mapping) or not items:
            raise InvalidDelta("update_metadata: give {item: {field: value}} with at least one item")
        values: dict[str, Any] = {}
        for item, fields in items.items():
            name = delta_id(item, "item")
            values[name] = field_values(name, fields)

        def build(state: TargetVersion) -> tuple[dict, int, list]:
            state.require_live(values)
            return {"items": values}, len(values), []

        return self._write(UPDATE_METADATA, build, token)
