"""A serving client's leases on the versions it holds, so that version cleanup never deletes them under it.

The client leases a version before it loads it (a version is never loaded unprotected), renews its leases
every third of ``EA_LEASE_TTL`` and gives them up when it moves on or closes (:mod:`vectorstore.store.registry.leases`).
A client that may not write (a read-only ACL user) serves without leases: it says so once, at WARNING.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable

import redis

from vectorstore import ModelRegistry, VectorStoreError

__all__ = ["LeaseKeeper"]

log = logging.getLogger(__name__)


class LeaseKeeper:
    """The leases of one client on versions of one model.

    Args:
        registry: where the model is published.
        name: the model.
        ttl: seconds a lease lasts unless renewed.
    """

    def __init__(self, registry: ModelRegistry, name: str, ttl: float) -> None:
        self.registry = registry
        self.name = name
        self.ttl = ttl
        self.holder = uuid.uuid4().hex
        self._held: frozenset[int] = frozenset()
        self._due = 0.0
        self._warned = False
        self._lock = threading.Lock()

    @property
    def held(self) -> frozenset[int]:
        """The versions leased now."""
        return self._held

    def hold(self, versions: Iterable[int]) -> bool:
        """Lease exactly ``versions`` (renewing them; others of this client are given up); ``False`` if Redis
        refused or did not answer (logged; serving goes on)."""
        wanted = frozenset(int(v) for v in versions)
        with self._lock:
            try:
                self.registry.leases(self.name).hold(self.holder, wanted, self.ttl)
            except (VectorStoreError, redis.RedisError) as exc:
                level = logging.DEBUG if self._warned else logging.WARNING
                self._warned = True
                log.log(level, "%s: cannot lease versions %s (%s); cleanup may delete a version this client "
                        "serves", self.name, sorted(wanted), exc)
                self._due = time.monotonic() + min(5.0, self.ttl / 3)
                return False
            self._held = wanted
            self._due = time.monotonic() + self.ttl / 3
            return True

    def renew_if_due(self, versions: Iterable[int]) -> None:
        """Renew when a third of the lease has passed, or when the versions held changed."""
        wanted = frozenset(int(v) for v in versions)
        if time.monotonic() >= self._due or wanted != self._held:
            self.hold(wanted)

    def release(self) -> None:
        """Give up every lease of this client (on close)."""
        if self._held:
            self.hold(())

    def after_fork(self) -> None:
        """A forked child is another client: its own holder id (the parent keeps its leases)."""
        self.holder = uuid.uuid4().hex
        self._held = frozenset()
        self._due = 0.0
        self._lock = threading.Lock()
