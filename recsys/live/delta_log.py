"""The delta log of a model version: its format, its one owner (keys, entries, rewritten user rows, reading).

A :class:`~recsys.live.writer.CatalogueWriter` appends one entry per write through a :class:`LogAppender`
(one script: the entry, signed, its token, the user rows from :func:`encode_user_row`, and the ``delta``
notice, :class:`vectorstore.ModelNotice`); a client's :class:`~recsys.live.follower.DeltaFollower` and the
writer itself read the entries back with :func:`read_log`; a training reads what they recorded through
:mod:`recsys.live.recorded`. The keys are :func:`log_keys`'.

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
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from vectorstore import CorruptRow, ModelNotice, ModelRegistry, RowSeal, SignatureError

from ..publish.wire import IDS, VECTOR

__all__ = ["DELETE_ITEMS", "DELTAS", "DELTA_TOKENS", "DELTA_USERS", "OPS", "REFUSED", "UPDATE_METADATA",
           "UPDATE_USERS", "UPSERT_ITEMS", "Entry", "LogAppender", "LogKeys", "decode_user_row", "delta_seals",
           "encode_user_row", "log_keys", "read_log"]

log = logging.getLogger(__name__)

DELTAS = "deltas"
DELTA_USERS = "delta_users"
DELTA_TOKENS = "delta_tokens"
#: the operations (an entry's ``op``)
UPSERT_ITEMS, DELETE_ITEMS = "upsert_items", "delete_items"
UPDATE_USERS, UPDATE_METADATA = "update_users", "update_metadata"
OPS = (UPSERT_ITEMS, DELETE_ITEMS, UPDATE_USERS, UPDATE_METADATA)
#: the op of an entry :func:`read_log` refused (never applied)
REFUSED = "refused"
_BODY, _TAG = "body", "tag"  # a stream entry's fields
#: entries read per round trip when a log is replayed
READ_BATCH = 2000


@dataclass(frozen=True)
class Entry:
    """One verified log entry: its stream id and body (``{"op": REFUSED}`` for a refused one)."""

    id: str
    body: dict[str, Any]

    @property
    def op(self) -> str:
        """The entry's operation (one of :data:`OPS`, or :data:`REFUSED`)."""
        return str(self.body.get("op"))

    @property
    def at(self) -> float:
        """When it was written (Unix seconds; 0 when not said)."""
        return float(self.body.get("at", 0.0))


class LogKeys(NamedTuple):
    """A version's log keys (derived keys of the version, deleted with it)."""

    stream: str
    users: str
    tokens: str


def log_keys(registry: ModelRegistry, model: str, version: int, *, register: bool = False) -> LogKeys:
    """The keys of version ``version``'s log; ``register=True`` (a writer) records them among the version's
    derived keys, so that they are deleted with it."""
    return LogKeys(*(registry.derived_key(model, version, name, register=register)
                     for name in (DELTAS, DELTA_USERS, DELTA_TOKENS)))


def delta_seals(registry: ModelRegistry, model: str, version: int) -> tuple[RowSeal, RowSeal]:
    """The seals of a version's log entries and of its rewritten user rows (tagged when its rows are).

    Raises:
        as :meth:`vectorstore.ModelRegistry.manifest` (no such version, a bad signature).
    """
    manifest = registry.manifest(model, version)
    return (registry.row_seal(model, version, DELTAS, derived=True, manifest=manifest),
            registry.row_seal(model, version, DELTA_USERS, derived=True, manifest=manifest))


def _sign_body(seal: RowSeal, body: bytes) -> str:
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
    key = log_keys(registry, model, version).stream
    start = f"({after}"
    while True:
        rows = registry.client.xrange(key, min=start, max="+", count=READ_BATCH)
        for raw_id, fields in rows:
            entry_id = raw_id.decode()
            body, tag = fields.get(_BODY.encode(), b""), fields.get(_TAG.encode(), b"")
            try:
                _verify(seal, body, tag, registry.settings.signing_key is not None)
                parsed = json.loads(body)
                if parsed.get("model") != model or int(parsed.get("version", -1)) != version:
                    raise SignatureError(f"entry names {parsed.get('model')!r} v{parsed.get('version')}")
            except (SignatureError, ValueError, TypeError, AttributeError) as exc:
                log.error("%s v%s: delta %s refused: %s", model, version, entry_id, exc)
                yield Entry(entry_id, {"op": REFUSED})
                continue
            yield Entry(entry_id, parsed)
        if len(rows) < READ_BATCH:
            return
        start = f"({rows[-1][0].decode()}"


# KEYS: stream, tokens, manifest, active, users. ARGV: version, body, tag, token, channel, notice head, notice
# tail, pinned ('1': the version was named, '': it must be the active one), then (user, row it was computed
# from or '', new row) triples. One round trip per write; a user row another writer changed meanwhile (-3) or
# a new active version (-2) sends the writer back to read and compute again (writers never lose an update).
_APPEND = """
if ARGV[4] ~= '' then
  local done = redis.call('HGET', KEYS[2], ARGV[4])
  if done then return {0, done} end
end
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, ''} end
local active = redis.call('GET', KEYS[4]) or ''
if ARGV[8] == '' and active ~= ARGV[1] then return {-2, active} end
for i = 9, #ARGV, 3 do
  if (redis.call('HGET', KEYS[5], ARGV[i]) or '') ~= ARGV[i + 1] then return {-3, ARGV[i]} end
end
local id = redis.call('XADD', KEYS[1], '*', '""" + _BODY + """', ARGV[2], '""" + _TAG + """', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[2], ARGV[4], id) end
for i = 9, #ARGV, 3 do redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 2]) end
redis.call('PUBLISH', ARGV[5], ARGV[6] .. id .. ARGV[7])
return {1, id}
"""


class LogAppender:
    """Appends entries to the logs of a model's versions: the entry, its token, the user rows it rewrote and
    its ``delta`` notice in one script.

    Args:
        registry: where the model is published.

    :meth:`append` answers one of :attr:`APPENDED`, :attr:`REPEATED` (the token was written: the value is
    the first write's entry id), :attr:`GONE` (the version was deleted), :attr:`NOT_ACTIVE` (the value is
    the active version) or :attr:`USER_CHANGED` (the value names the user whose row changed meanwhile), and
    the entry id or value. Nothing is written unless it answers :attr:`APPENDED`.
    """

    APPENDED, REPEATED, GONE, NOT_ACTIVE, USER_CHANGED = 1, 0, -1, -2, -3

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._script = registry.client.register_script(_APPEND)

    def written(self, keys: LogKeys, token: str) -> str | None:
        """The entry id a write with ``token`` wrote to the log of ``keys``, or ``None``."""
        done = self.registry.client.hget(keys.tokens, token)
        return done.decode() if done is not None else None

    def append(self, model: str, version: int, op: str, payload: dict[str, Any], *, keys: LogKeys, seal: RowSeal,
               token: str | None = None, pinned: bool = False,
               rows: Sequence[tuple[str, bytes | None, bytes]] = ()) -> tuple[int, bytes | None]:
        """Append an ``op`` entry with ``payload`` to version ``version``'s log (``keys``; ``seal``: the log's
        seal, :func:`delta_seals`' first).

        Args:
            token: an idempotency token: a write with a token already written is not written again.
            pinned: the version was named (else it must still be the active one).
            rows: ``(user, row the write was computed from or None, new row)``: each new row is written only if
                the user's row is still the one it was computed from.

        Returns:
            ``(status, value)`` (see the class).
        """
        body = json.dumps({"op": op, "model": model, "version": int(version), "uid": uuid.uuid4().hex,
                           "at": time.time(), **payload}, separators=(",", ":")).encode()
        head, tail = ModelNotice.delta_frame(model, version)
        args: list[Any] = [int(version), body, _sign_body(seal, body), token or "", self.registry.channel(model),
                           head, tail, "1" if pinned else ""]
        for user, old, row in rows:
            args += [user, old or b"", row]
        status, value = self._script(keys=[keys.stream, keys.tokens, self.registry.keys.manifest(model, version),
                                           self.registry.keys.active(model), keys.users], args=args)
        return int(status), value
