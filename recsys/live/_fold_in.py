"""What an item upsert and a user update write, computed against the version (folded in where not given).

* an item upserted with its vector keeps it (scaled as the version stores scoring vectors); one given by its
  users gets, in each space, the mean over those users of their items' mean vector: the centre of what its
  users chose (user vectors need not live in the items' space: Node2Vec scores users' input vectors against
  items' context vectors);
* a user's new interactions fold the new items' fold-in vectors in beside the history the user's vector stands
  for (a user the model does not know gets their mean), and extend the user's seen items.

Both raise the typed errors of :class:`~recsys.live.writer.CatalogueWriter`'s operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..exceptions import InvalidDelta, UnknownItem, UnknownUser
from ._checks import delta_id, delta_ids, field_values, vector
from ._target_version import TargetVersion
from .delta_log import encode_user_row

__all__ = ["upserted_item", "updated_users"]


def upserted_item(target: TargetVersion, item: Mapping[str, Any]) -> dict[str, Any]:
    """One item of an ``upsert_items`` entry: ``{"id", "vector", "fold_in"?, "metadata"?, "popularity"?}``."""
    if not isinstance(item, Mapping) or "id" not in item:
        raise InvalidDelta(f"upsert_items: each item is a mapping with an 'id', got {type(item).__name__}")
    name = delta_id(item["id"], "item")
    out: dict[str, Any] = {"id": name}
    cat = target.catalogue
    if item.get("vector") is not None:
        out["vector"] = target.scoring(vector(item["vector"], cat.dim, f"item {name!r} vector")).tolist()
        if item.get("fold_in") is not None:
            out["fold_in"] = vector(item["fold_in"], cat.dim, f"item {name!r} fold_in")
    elif item.get("users"):
        users = delta_ids(item["users"], "user")
        rows = target.user_rows(users)[0]
        known = [(u, r) for u, r in zip(users, rows) if r is not None]
        if not known:
            raise UnknownUser(f"item {name!r}: none of its users {users[:5]} is in {target.where}")
        seen = [r[1] for _, r in known if len(r[1])]
        if not seen:
            raise InvalidDelta(f"item {name!r}: its users {users[:5]} have no items to fold it in from")
        out["vector"] = target.scoring(np.mean([cat.vectors.view()[s].mean(axis=0) for s in seen], axis=0)).tolist()
        if cat.fold_in is not cat.vectors:
            out["fold_in"] = np.mean([cat.fold_in.view()[s].mean(axis=0) for s in seen], axis=0).tolist()
        out["popularity"] = float(len(known))
    else:
        raise InvalidDelta(f"upsert_items: item {name!r} needs a 'vector' or 'users' to fold it in from")
    if item.get("metadata"):
        out["metadata"] = field_values(name, item["metadata"])
    return out


def updated_users(target: TargetVersion, wanted: dict[str, list[str]],
                  given: dict[str, list[float]]) -> tuple[dict, int, list[tuple[str, bytes | None, bytes]]]:
    """An ``update_users`` entry's payload and count, and each user's ``(user, row it was computed from or None,
    new sealed row)`` (the write checks no other writer changed the row meanwhile)."""
    cat = target.catalogue
    users = list(wanted)
    current, raw = target.user_rows(users)
    fold = cat.fold_in.view()
    records, rows = [], []
    for user, row, old in zip(users, current, raw):
        dense = []
        for item in wanted[user]:
            pos = cat.live(item)
            if pos is None:
                raise UnknownItem(f"user {user!r}: {target.missing(item)}")
            dense.append(pos)
        old_vector, old_seen = row if row is not None else (None, np.empty(0, np.int32))
        new = [p for p in dict.fromkeys(dense) if p not in set(old_seen.tolist())]
        seen = np.concatenate([old_seen.astype(np.int32), np.asarray(new, np.int32)])
        if old_vector is None or not len(old_seen):
            user_vector = fold[seen].mean(axis=0) if len(seen) else fold[dense].mean(axis=0)
        else:  # fold the new items in beside the history the vector stands for
            n_old = len(old_seen)
            user_vector = (old_vector * n_old + fold[new].sum(axis=0)) / (n_old + len(new)) if new else old_vector
        rows.append((user, old, encode_user_row(target.seals[1], user, target.scoring(user_vector), seen)))
        records.append({"id": user, "items": wanted[user], **({"weights": given[user]} if user in given else {})})
    return {"users": records}, len(records), rows
