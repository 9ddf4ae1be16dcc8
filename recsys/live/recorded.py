"""What a version's delta log recorded, for the next training: interactions to learn, items to leave out.

The next full training reads the active version's log (:func:`recorded`): its users' interactions are added
to the training input and its deleted items left out, its field updates applied to the item metadata, so the
new version, which starts with an empty log, learns what the deltas said (:func:`recsys.train_and_publish`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import redis

from vectorstore import ModelRegistry

from ..data.interactions import Interactions
from ..data.item_table import metadata_value_problem
from .delta_log import DELETE_ITEMS, UPDATE_METADATA, UPDATE_USERS, UPSERT_ITEMS, read_log

__all__ = ["Recorded", "recorded"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What a version's delta log recorded, for the next training (:func:`recorded`).

    Attributes:
        version: the version whose log this is (``None``: no active version).
        interactions: ``(user, item, weight, time)`` of every user update, oldest first.
        deleted: items deleted (and not upserted again since).
        metadata: ``{item: {field: value}}`` as the updates left them (upserts' fields included).
        last_id: the newest entry read (a training records it: later entries are carried over).
    """

    version: int | None
    interactions: list[tuple[str, str, float, float]]
    deleted: set[str]
    metadata: dict[str, dict[str, Any]]
    last_id: str

    def summary(self) -> dict[str, Any]:
        """What a training took from the log (recorded in the new version's meta as ``deltas``)."""
        return {"version": self.version, "through": self.last_id, "interactions": len(self.interactions),
                "deleted": len(self.deleted), "metadata": len(self.metadata)}

    def merged(self, train: Interactions) -> Interactions:
        """``train`` with the recorded interactions added and the deleted items' interactions left out."""
        if not self.interactions and not self.deleted:
            return train
        frame = train.to_frame()
        if self.interactions:
            extra = pd.DataFrame(self.interactions, columns=["user", "item", "weight", "timestamp"])
            if "timestamp" not in frame.columns:
                extra = extra.drop(columns="timestamp")
            frame = pd.concat([frame, extra], ignore_index=True)
        if self.deleted:
            frame = frame[~frame["item"].isin(self.deleted)]
        log.info("training on v%s's deltas too: %d interactions added, %d items deleted", self.version,
                 len(self.interactions), len(self.deleted))
        return Interactions.from_frame(frame.reset_index(drop=True))

    def merged_metadata(self, metadata: dict[str, list] | None, item_ids: np.ndarray) -> dict[str, list] | None:
        """Item metadata columns (aligned to ``item_ids``) with the recorded field updates applied."""
        if not self.metadata:
            return metadata
        out = {k: list(v) for k, v in (metadata or {}).items()}
        pos = {str(i): n for n, i in enumerate(item_ids)}
        for item, values in self.metadata.items():
            if item not in pos:
                continue
            for name, value in values.items():
                problem = metadata_value_problem(value)
                if problem is not None:  # recorded before writers refused it: it costs this value, not the training
                    log.warning("item %r: field %r left out of the training's metadata: %s", item, name, problem)
                    continue
                out.setdefault(name, [None] * len(item_ids))[pos[item]] = value
        return out


def recorded(registry: ModelRegistry, model: str, version: int | None = None) -> Recorded:
    """Read the delta log of ``version`` (default: the active one) of ``model`` for a training.

    Raises:
        RedisUnavailable: Redis did not answer.
    """
    version = version if version is not None else registry.active_version(model)
    interactions: list[tuple[str, str, float, float]] = []
    deleted: set[str] = set()
    metadata: dict[str, dict[str, Any]] = {}
    last = "0-0"
    if version is None:
        return Recorded(None, interactions, deleted, metadata, last)
    try:
        entries = list(read_log(registry, model, version))
    except redis.ResponseError:  # not a stream: nothing recorded
        entries = []
    for entry in entries:
        body, last = entry.body, entry.id
        if entry.op == UPDATE_USERS:
            for user in body["users"]:
                weights = user.get("weights") or [1.0] * len(user["items"])
                at = entry.at
                interactions += [(str(user["id"]), str(i), float(w), at) for i, w in zip(user["items"], weights)]
        elif entry.op == DELETE_ITEMS:
            deleted.update(str(i) for i in body["items"])
        elif entry.op == UPSERT_ITEMS:
            for item in body["items"]:
                deleted.discard(str(item["id"]))
                if item.get("metadata"):
                    metadata.setdefault(str(item["id"]), {}).update(item["metadata"])
        elif entry.op == UPDATE_METADATA:
            for item, values in body["items"].items():
                metadata.setdefault(str(item), {}).update(values)
    return Recorded(version, interactions, deleted, metadata, last)
