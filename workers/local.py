"""An in-process Celery worker (a thread), for ``ea demo`` and for notebooks.

Production runs ``ea worker`` processes; this is the zero-setup path where one process plays both roles.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from .app import QUEUES, app

__all__ = ["local_worker"]


@contextmanager
def local_worker(queues: tuple[str, ...] = QUEUES, concurrency: int = 2) -> Iterator[object]:
    """Run a threads-pool worker consuming ``queues`` for the duration of the ``with`` block."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(app, pool="threads", concurrency=concurrency, queues=list(queues),
                      perform_ping_check=False, shutdown_timeout=60,
                      loglevel=logging.getLogger().getEffectiveLevel() or "WARNING") as worker:
        yield worker
