"""The delta log of a model version: its format, its one owner (keys, entries, rewritten user rows, reading).

A :class:`~recsys.live.writer.CatalogueWriter` appends one entry per write (its script, with the entry's
signature from :func:`sign_body` and the rows from :func:`encode_user_row`); a client's
:class:`~recsys.live.follower.DeltaFollower` and the writer itself read the entries back with :func:`read_log`;
a training reads what they recorded through :mod:`recsys.live.recorded`.

Keys (per version; derived keys, deleted with it, under ``<prefix>model:{M}:v:{N}:x:``):

==============  =======  ========================================================================
key             type     content
==============  =======  ========================================================================
``deltas``      STREAM   the log: one entry per write, fields ``body`` (JSON, below) and ``tag``
``delta_users`` HASH     user -> the user's row as updated (vector and seen items, see below)
``delta_tokens`` HASH    idempotency token -> the entry it wrote
==============  =======  ========================================================================

An entry's ``body`` is ``{"op", "model", "version", "uid", "at", ...}`` with, per ``op``:

* ``upsert_items``: ``"items": [{"id", "vector", "fold_in"?, "metadata"?, "popularity"?}]``;
* ``delete_items``: ``"items": [id, ...]``;
* ``update_users``: ``"users": [{"id", "items": [id, ...], "weights": [w, ...]}]`` (the interactions;
  the resulting row is in ``delta_users``);
* ``update_metadata``: ``"items": {id: {field: value}}``.

A version published with ``EA_SIGNING_KEY`` (its rows tagged, :meth:`vectorstore.ModelRegistry.row_seal`)
signs its deltas the same way: ``tag`` is the hex :class:`~vectorstore.RowSeal` tag of the body (derived
table ``deltas``, row ``delta``; the body names its model, version and a unique ``uid``), and a reader with
the key refuses an entry whose tag is missing or wrong. A ``delta_users`` row is ``<u4 d> || d <f4 vector ||
<i4 seen ids``, sealed like the version's own user rows (derived table ``delta_users``, row the user id).
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vectorstore import CorruptRow, ModelRegistry, RowSeal, SignatureError

from ..publish.wire import IDS, VECTOR

__all__ = ["DELTAS", "DELTA_TOKENS", "DELTA_USERS", "OPS", "Entry", "decode_user_row", "delta_seals",
           "encode_user_row", "read_log", "sign_body"]

log = logging.getLogger(__name__)

DELTAS = "deltas"
DELTA_USERS = "delta_users"
DELTA_TOKENS = "delta_tokens"
OPS = ("upsert_items", "delete_items", "update_users", "update_metadata")
#: entries read per round trip when a log is replayed
READ_BATCH = 2000


@dataclass(frozen=True)
class Entry:
    """One verified log entry: its stream id and body."""

    id: str
    body: dict[str, Any]


def delta_seals(registry: ModelRegistry, model: str, version: int) -> tuple[RowSeal, RowSeal]:
    """The seals of a version's log entries and of its rewritten user rows (tagged when its rows are).

    Raises:
        as :meth:`vectorstore.ModelRegistry.manifest` (no such version, a bad signature).
    """
    manifest = registry.manifest(model, version)
    return (registry.row_seal(model, version, DELTAS, derived=True, manifest=manifest),
            registry.row_seal(model, version, DELTA_USERS, derived=True, manifest=manifest))


def sign_body(seal: RowSeal, body: bytes) -> str:
    """The hex tag of an entry's body ('' for a version whose rows are not tagged)."""
    return seal.seal("delta", body)[len(body):].hex() if seal.tagged else ""


def _verify(seal: RowSeal, body: bytes, tag: bytes, checks: bool) -> None:
    if not seal.tagged:
        return
    if tag:
        seal.open("delta", body + bytes.fromhex(tag.decode()))
    elif checks:
        raise SignatureError(f"{seal.where}: an entry has no signature and EA_SIGNING_KEY is set")


def encode_user_row(seal: RowSeal, user: str, vector: np.ndarray, seen: np.ndarray) -> bytes:
    """A ``delta_users`` row, sealed."""
    vector = np.ascontiguousarray(vector, dtype=VECTOR)
    return seal.seal(user, struct.pack("<I", vector.size) + vector.tobytes()
                     + np.ascontiguousarray(seen, dtype=IDS).tobytes())


def decode_user_row(seal: RowSeal, user: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(vector, seen dense ids)`` of a ``delta_users`` row.

    Raises:
        SignatureError: a signing key is set and the row's tag does not verify.
        CorruptRow: too short for its parts.
    """
    body = seal.open(user, raw)
    (d,) = struct.unpack_from("<I", body)
    if len(body) < 4 + 4 * d or (len(body) - 4 - 4 * d) % 4:
        raise CorruptRow(f"{seal.where}: row {user[:64]!r} is {len(body)} bytes, not a vector of {d} and ids")
    return np.frombuffer(body, dtype=VECTOR, count=d, offset=4), np.frombuffer(body, dtype=IDS, offset=4 + 4 * d)


def read_log(registry: ModelRegistry, model: str, version: int, after: str = "0-0", *,
             seal: RowSeal | None = None) -> Iterator[Entry]:
    """The verified entries of a version's log newer than stream id ``after``, oldest first.

    An entry that fails its signature (or is not JSON, or names another model or version) is logged at
    ERROR and comes as ``{"op": "refused"}``: it is never applied. ``seal``: :func:`delta_seals`' first.
    """
    seal = seal or delta_seals(registry, model, version)[0]
    key = registry.derived_key(model, version, DELTAS, register=False)
    start = f"({after}"
    while True:
        rows = registry.client.xrange(key, min=start, max="+", count=READ_BATCH)
        for raw_id, fields in rows:
            entry_id = raw_id.decode()
            body, tag = fields.get(b"body", b""), fields.get(b"tag", b"")
            try:
                _verify(seal, body, tag, registry.settings.signing_key is not None)
                parsed = json.loads(body)
                if parsed.get("model") != model or int(parsed.get("version", -1)) != version:
                    raise SignatureError(f"entry names {parsed.get('model')!r} v{parsed.get('version')}")
            except (SignatureError, ValueError, TypeError, AttributeError) as exc:
                log.error("%s v%s: delta %s refused: %s", model, version, entry_id, exc)
                yield Entry(entry_id, {"op": "refused"})
                continue
            yield Entry(entry_id, parsed)
        if len(rows) < READ_BATCH:
            return
        start = f"({rows[-1][0].decode()}"
