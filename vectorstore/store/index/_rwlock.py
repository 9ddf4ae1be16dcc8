"""A readers-writer lock: many queries at once, or one change to an index (hnswlib's ``resize_index``,
``add_items`` and ``mark_deleted`` must not run while ``knn_query`` reads the graph).

A writer waiting stops new readers, so a steady stream of queries cannot starve it; it waits only for the
queries already running. After ``os.fork()`` a child gets every lock fresh: a reader or writer of the parent
that held one at the fork does not exist in the child.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ReadWriteLock"]

_locks: weakref.WeakSet[ReadWriteLock] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for lock in list(_locks):
        lock._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


class ReadWriteLock:
    """Shared (:meth:`read`) or exclusive (:meth:`write`) access; neither is re-entrant."""

    def __init__(self) -> None:
        self._reset()
        _locks.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Shared access: waits while a writer holds or waits for the lock."""
        cond = self._cond
        with cond:
            while self._writing or self._waiting:
                cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with cond:
                self._readers -= 1
                if not self._readers:
                    cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Exclusive access: waits for the readers already in."""
        cond = self._cond
        with cond:
            self._waiting += 1
            try:
                while self._writing or self._readers:
                    cond.wait()
            finally:
                self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with cond:
                self._writing = False
                cond.notify_all()
