"""Leases: which versions of a model clients are serving, so that version cleanup never deletes them.

A serving client holds a lease on each version it serves or has loaded ahead, renewed while it runs (a
heartbeat) and given up when it closes or moves on. Leases live in one sorted set per model,
``<prefix>model:{<name>}:leases``, member ``<version>:<holder>``, score = when the lease ends (Redis's own
clock, read in the script, so clients' clocks do not matter). A client that dies without releasing its
lease loses it after ``EA_LEASE_TTL`` seconds. :meth:`~vectorstore.ModelRegistry.collect_garbage` keeps
every version with a live lease besides the newest ``EA_KEEP_VERSIONS`` and the active one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import redis

__all__ = ["Leases"]

# KEYS[1]: the leases set. ARGV[1]: lease seconds, ARGV[2]: holder ('' to only read), ARGV[3..]: versions the
# holder serves now (its other leases are given up). Returns the live members.
_LEASE = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[2] ~= '' then
  local suffix = ':' .. ARGV[2]
  local keep = {}
  for i = 3, #ARGV do
    keep[ARGV[i] .. suffix] = true
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i] .. suffix)
  end
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.sub(member, -#suffix) == suffix and not keep[member] then redis.call('ZREM', KEYS[1], member) end
  end
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class Leases:
    """The leases of one model (made by :meth:`vectorstore.ModelRegistry.leases`).

    Args:
        client: the registry's Redis client.
        key: the model's leases set.
        call: runs a Redis call, turning its failures into the registry's typed errors.
    """

    def __init__(self, client: redis.Redis, key: str, call: Callable[..., Any]) -> None:
        self._script = client.register_script(_LEASE)
        self.key = key
        self._call = call

    def hold(self, holder: str, versions: Iterable[int], ttl: float) -> None:
        """Lease ``versions`` for ``holder`` for ``ttl`` seconds from now, and give up its other leases.

        An empty ``versions`` releases all of the holder's leases.
        """
        if not holder or ":" in holder:
            raise ValueError("a lease holder is a non-empty id without ':'")
        self._call(self._script, keys=[self.key], args=[float(ttl), holder, *sorted({int(v) for v in versions})])

    def release(self, holder: str) -> None:
        """Give up every lease of ``holder``."""
        self.hold(holder, (), 0)

    def leased(self) -> set[int]:
        """Versions with a live lease (expired leases are removed on the way)."""
        members = self._call(self._script, keys=[self.key], args=[0, ""])
        out = set()
        for member in members:
            head = member.split(b":", 1)[0] if isinstance(member, bytes) else str(member).split(":", 1)[0]
            if head.isdigit():
                out.add(int(head))
        return out
