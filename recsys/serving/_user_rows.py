"""A request's per-user rows: one pipelined Redis round trip, opened and checked, remembered for outages.

:meth:`UserRows.fetch` reads each user's vector, seen items and (when asked) precomputed top-N list of the
served version, plus the rows deltas rewrote (:mod:`recsys.live.delta_log`), which win over the published
ones. Rows are opened through the version's row seals (signatures checked with ``EA_SIGNING_KEY``) and their
sizes checked (:mod:`recsys.publish.wire`): a bad row is logged and not served.

When Redis is down the rows of users read lately come from memory, and the others raise
:class:`~vectorstore.RedisUnavailable`; a Redis that hangs costs one ``EA_REQUEST_TIMEOUT``, then a circuit
breaker (:mod:`recsys.serving._breaker`) answers from memory at once until Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import redis

from vectorstore import UNAVAILABLE_ERRORS, IntegrityError, ModelRegistry, RedisUnavailable, Settings, connect

from ..exceptions import VersionGone
from ..publish.wire import decode_ids, decode_top, decode_vector
from ._breaker import CircuitBreaker
from ._watcher import VersionWatcher
from .serving_model import ServingModel

__all__ = ["UserRow", "UserRows"]

log = logging.getLogger(__name__)


class UserRow(NamedTuple):
    """One user's rows in the served version."""

    vector: np.ndarray | None  # None: the version does not know the user (or their row was not served)
    seen: np.ndarray  # dense ids of the user's items
    top: bytes | None  # the precomputed top-N list (opened, still encoded), when asked for and present


class UserRows:
    """The per-user reads of one client.

    Args:
        registry: where the model is published (errors are typed by it).
        settings: ``request_timeout`` bounds each read.
        watcher: the client's watcher: a version whose rows are gone is replaced through it.
        cache_size: users whose vector and seen items are kept in memory (answers during Redis outages).
    """

    def __init__(self, registry: ModelRegistry, settings: Settings, watcher: VersionWatcher,
                 cache_size: int) -> None:
        self.registry = registry
        self._watcher = watcher
        self._timeout = settings.request_timeout
        # Per-request reads wait EA_REQUEST_TIMEOUT, not the socket timeout loads need; a Redis that stops
        # answering opens the breaker, so cached users are answered at once.
        self._requests = connect(settings.with_(socket_timeout=settings.request_timeout))
        self._breaker = CircuitBreaker()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, str], tuple[np.ndarray | None, np.ndarray]] = OrderedDict()
        self._cache_size = cache_size

    def close(self) -> None:
        """Close the connection of the per-request reads."""
        self._requests.close()

    def rewritten(self, key: str, users: list[str]) -> list[bytes | None] | None:
        """Users' rows rewritten by deltas (``key``: a follower's ``users_key``), read like :meth:`fetch`: on the
        per-request connection and through the breaker. ``None``: Redis does not answer (the breaker is open,
        or this read failed: a slow failure opens it), so the caller serves what it has.

        Raises:
            vectorstore errors: Redis refused the read (credentials, memory): not an outage.
        """
        if not self._breaker.allow():
            return None
        started = time.monotonic()
        try:
            rows = self._requests.hmget(key, users)
        except (redis.RedisError, *UNAVAILABLE_ERRORS) as exc:
            error = self.registry.typed_error(exc, "cannot read rewritten user rows")
            if not isinstance(error, RedisUnavailable):
                raise error from None
            if time.monotonic() - started >= self._timeout / 2:
                self._breaker.failure()
            return None
        self._breaker.success()
        return list(rows)

    def fetch(self, model: ServingModel, users: Sequence[str], topn: bool, strict: bool = False) -> list[UserRow]:
        """Each user's :class:`UserRow`: one pipelined round trip.

        A row that fails its signature or is malformed is logged and not served (the user is answered as
        unknown; ``strict``: the typed error is raised). Raises :class:`VersionGone` when the version's rows
        are gone from Redis (a user it lacks may be one it knew).
        """
        if not self._breaker.allow():
            return self._cached(model, users, "Redis did not answer lately (circuit open)")
        pipe = self._requests.pipeline(transaction=False)
        pipe.hmget(model.vectors_key, users)
        pipe.hmget(model.seen_key, users)
        if topn:
            pipe.hmget(model.topn_key, users)
        live = model.live if model.live is not None and model.live.users_updated else None
        if live is not None:  # rows rewritten by user-update deltas (recsys.live.delta_log) win over the published ones
            pipe.hmget(live.users_key, users)
        started = time.monotonic()
        try:
            replies = pipe.execute()
        except (redis.RedisError, *UNAVAILABLE_ERRORS) as exc:  # on a cluster also a failover under way
            error = self.registry.typed_error(exc, "cannot fetch user rows")
            if not isinstance(error, RedisUnavailable):  # refused (credentials, memory): not an outage
                raise error from None
            # Only a slow failure (a hung server, a lost network) opens the breaker: a refused connection
            # costs nothing, and the next request may already reach a promoted replica.
            if time.monotonic() - started >= self._timeout / 2:
                self._breaker.failure()
            return self._cached(model, users, f"Redis did not answer ({type(exc).__name__})")
        self._breaker.success()
        vectors, seens = replies[0], replies[1]
        tops = replies[2] if topn else [None] * len(users)
        updated = replies[-1] if live is not None else [None] * len(users)
        out = []
        for user, vec, seen, top, row in zip(users, vectors, seens, tops, updated):
            try:
                v, s, top = self._open(model, user, vec, seen, top)
            except IntegrityError as exc:
                if strict:
                    raise
                log.error("%s v%s: user %r not served from their rows: %s", model.name, model.version, user[:64], exc)
                v, s, top = None, np.empty(0, np.int32), None
            if live is not None and row is not None and (fresh := live.user_row(user, row)) is not None:
                v, s, top = fresh[0], fresh[1], None  # a precomputed list predates the update
            if v is not None and self._cache_size:
                self._remember(model.version, user, v, s)
            out.append(UserRow(v, s, top))
        if any(row.vector is None for row in out) and not self._exist(model):
            switched = self._watcher.refresh()
            now = (f"now serving v{self._watcher.model.version}: ask again" if switched
                   else "no other version could be loaded")
            raise VersionGone(f"{model.name!r} v{model.version}: its per-user rows are gone from Redis; {now}")
        return out

    @staticmethod
    def _open(model: ServingModel, user: str, vec: bytes | None, seen: bytes | None,
              top: bytes | None) -> tuple[np.ndarray | None, np.ndarray, bytes | None]:
        """A user's stored rows opened (signatures checked with a signing key) and decoded (sizes checked)."""
        if vec is None:
            return None, np.empty(0, np.int32), None
        opened = model.vector_seal.open(user, vec) if model.vector_seal is not None else vec
        vector = decode_vector(opened, model.dim)
        if seen is None and model.seen_seal is not None and model.seen_seal.tagged:
            raise IntegrityError(f"{model.name!r} v{model.version}: user {user[:64]!r} has a vector but no seen row")
        if seen is not None and model.seen_seal is not None:
            seen = model.seen_seal.open(user, seen)
        ids = decode_ids(seen, model.n_items)
        if top is not None and model.topn_seal is not None:
            try:  # a bad precomputed list is not served: the index answers instead
                top = model.topn_seal.open(user, top)
                decode_top(top, model.n_items)
            except IntegrityError as exc:
                log.error("%s v%s: precomputed list of %r not served: %s", model.name, model.version, user[:64], exc)
                top = None
        return vector, ids, top

    def _exist(self, model: ServingModel) -> bool:
        """Whether the version's per-user rows are still in Redis (``True`` when Redis cannot say)."""
        try:
            return bool(self._requests.exists(model.vectors_key))
        except (redis.RedisError, *UNAVAILABLE_ERRORS):
            return True

    def _cached(self, model: ServingModel, users: Sequence[str], why: str) -> list[UserRow]:
        """Rows of cached users when Redis cannot be asked; :class:`RedisUnavailable` if one is not cached."""
        cached = [self._cache.get((model.version, u)) for u in users]
        if all(c is not None for c in cached):
            return [UserRow(c[0], c[1], None) for c in cached if c is not None]
        raise RedisUnavailable(f"cannot fetch user vectors: {why}")

    def _remember(self, version: int, user: str, vector: np.ndarray, seen: np.ndarray) -> None:
        with self._lock:
            self._cache[(version, user)] = (vector, seen)
            self._cache.move_to_end((version, user))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
