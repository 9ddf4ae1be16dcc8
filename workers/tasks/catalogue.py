"""Catalogue deltas as Celery tasks (queue ``score``): thin wrappers over :class:`recsys.CatalogueWriter`.

Each task writes with its job id as the idempotency token, so a redelivered job (a worker killed after the
write) returns the first write's receipt instead of writing again. A worker keeps one writer per model (its
catalogue is loaded once, then caught up with the log at each write).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from ..app import app

__all__ = ["delete_items", "update_metadata", "update_users", "upsert_items"]

_writers: dict[str, Any] = {}
_lock = threading.Lock()


def _writer(name: str) -> Any:
    from recsys import CatalogueWriter

    with _lock:
        writer = _writers.get(name)
        if writer is None:
            writer = _writers[name] = CatalogueWriter(name)
        return writer


@app.task(name="ea.catalogue_upsert_items", bind=True)
def upsert_items(self, name: str, items: list[dict[str, Any]], token: str | None = None) -> dict:
    """Add items or replace their vectors (``CatalogueWriter.upsert_items``); returns the receipt."""
    return asdict(_writer(name).upsert_items(items, token=token or self.request.id))


@app.task(name="ea.catalogue_delete_items", bind=True)
def delete_items(self, name: str, items: list[str], token: str | None = None) -> dict:
    """Delete items (``CatalogueWriter.delete_items``); returns the receipt."""
    return asdict(_writer(name).delete_items(items, token=token or self.request.id))


@app.task(name="ea.catalogue_update_users", bind=True)
def update_users(self, name: str, interactions: dict[str, list[str]], weights: dict[str, list[float]] | None = None,
                 token: str | None = None) -> dict:
    """Record users' new interactions (``CatalogueWriter.update_users``); returns the receipt."""
    return asdict(_writer(name).update_users(interactions, weights=weights, token=token or self.request.id))


@app.task(name="ea.catalogue_update_metadata", bind=True)
def update_metadata(self, name: str, items: dict[str, dict[str, Any]], token: str | None = None) -> dict:
    """Set item fields (``CatalogueWriter.update_metadata``); returns the receipt."""
    return asdict(_writer(name).update_metadata(items, token=token or self.request.id))
