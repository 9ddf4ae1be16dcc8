"""Deltas written while a version trained, carried to the version that training published (none is lost).

The training reads the active version's log (:func:`recsys.live.recorded.recorded`) before it trains; writes
made after that go on into the old version's log until the new one is active. :func:`carry_over` writes
them to the new version, checked against it.
"""

from __future__ import annotations

import logging

from vectorstore import ModelRegistry

from .delta_log import DELETE_ITEMS, UPDATE_METADATA, UPDATE_USERS, UPSERT_ITEMS, read_log
from .writer import CatalogueWriter

__all__ = ["carry_over"]

log = logging.getLogger(__name__)


def carry_over(registry: ModelRegistry, model: str, old: int, after: str, new: int) -> int:
    """Write to version ``new`` the deltas of version ``old`` logged after entry ``after`` (those a training
    did not read: written while it trained). Deletions, field updates and user interactions are checked
    against the new version (items it does not hold are left out); item vectors belong to the old model's
    space and are not carried (log: a warning).

    Returns:
        How many entries were carried.
    """
    writer = CatalogueWriter(model, settings=registry.settings, version=new)
    carried = 0
    for entry in read_log(registry, model, old, after):
        body, op = entry.body, entry.op
        state = writer._current()
        if op == DELETE_ITEMS:
            items = [i for i in body["items"] if state.catalogue.live(str(i)) is not None]
            if items:
                writer.delete_items(items, token=f"carry:{old}:{entry.id}")
        elif op == UPDATE_METADATA:
            values = {i: v for i, v in body["items"].items() if state.catalogue.live(str(i)) is not None}
            if values:
                writer.update_metadata(values, token=f"carry:{old}:{entry.id}")
        elif op == UPDATE_USERS:
            users = {u["id"]: [i for i in u["items"] if state.catalogue.live(str(i)) is not None]
                     for u in body["users"]}
            users = {u: items for u, items in users.items() if items}
            if users:
                writer.update_users(users, token=f"carry:{old}:{entry.id}")
        elif op == UPSERT_ITEMS:
            log.warning("%s: v%s's upsert %s (items %s) is not carried to v%s: its vectors are the old model's",
                        model, old, entry.id, [i["id"] for i in body["items"]][:5], new)
            continue
        else:
            continue
        carried += 1
    return carried
