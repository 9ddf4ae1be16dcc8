"""A circuit breaker for the client's per-request Redis reads: a Redis that stopped answering costs one timeout,
not one per request.

After a read fails slowly (it timed out: a hung server, a lost network; the client decides, a refused
connection costs nothing and opens nothing) the breaker opens: for ``cooldown`` seconds requests do not ask
Redis at all, so users the client has cached are answered from memory at once and the others get
:class:`~vectorstore.RedisUnavailable` at once. Then one request probes Redis (the others still skip it);
its success closes the breaker, its failure opens it again for twice as long (up to ``max_cooldown``).
"""

from __future__ import annotations

import threading
import time

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Whether to ask Redis now (see the module docstring).

    Args:
        cooldown: seconds the breaker stays open after the first failure.
        max_cooldown: the longest it stays open (after repeated failures).
        probe_timeout: seconds after which a probe that has not reported is presumed lost (another may go).
    """

    def __init__(self, cooldown: float = 0.5, max_cooldown: float = 4.0, probe_timeout: float = 10.0) -> None:
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.probe_timeout = probe_timeout
        self._lock = threading.Lock()
        self._open_until = 0.0  # monotonic time; 0: closed
        self._wait = cooldown

    @property
    def is_open(self) -> bool:
        """Whether requests are skipping Redis now."""
        return self._open_until > time.monotonic()

    def allow(self) -> bool:
        """Whether this request may ask Redis (closed, or it is the one probe after the cool-down)."""
        if self._open_until == 0.0:
            return True
        with self._lock:
            now = time.monotonic()
            if self._open_until > now:
                return False
            if self._open_until:  # cool-down over: this request probes; the others wait for its verdict
                self._open_until = now + self.probe_timeout
            return True

    def failure(self) -> None:
        """Redis did not answer: open (or keep open, waiting longer each time)."""
        with self._lock:
            self._open_until = time.monotonic() + self._wait
            self._wait = min(self._wait * 2, self.max_cooldown)

    def success(self) -> None:
        """Redis answered: close."""
        if self._open_until:
            with self._lock:
                self._open_until = 0.0
                self._wait = self.cooldown
