"""The recommendation client's metrics for Prometheus: request latency by path and source, and errors.

Registered in ``prometheus_client``'s default registry when the first client request is timed, so that an
application serving its own ``/metrics`` (``prometheus_client.make_wsgi_app()``, ``start_http_server``)
shows them beside its own:

* ``ea_client_request_seconds`` (histogram): ``path`` (``recommend``, ``recommend_many``, ``similar_items``,
  ``recommend_for_history``, ``similar_users``) and ``source`` (``index``, ``precomputed``, ``popularity``,
  ``similar``, ``history``, ``milvus``, ``-`` when the answer has none);
* ``ea_client_errors_total`` (counter): ``path`` and ``error`` (the exception's class).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["timed"]

F = TypeVar("F", bound=Callable[..., Any])
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_lock = threading.Lock()
_metrics: tuple[Any, Any] | None = None


def _instruments() -> tuple[Any, Any]:
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Histogram

            _metrics = (Histogram("ea_client_request_seconds", "Recommendation client request latency",
                                  ["path", "source"], buckets=_BUCKETS),
                        Counter("ea_client_errors_total", "Recommendation client requests that raised",
                                ["path", "error"]))
        return _metrics


def timed(path: str) -> Callable[[F], F]:
    """Time a client method under ``path``: its latency by the answer's ``source``, and its errors."""
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            except Exception as exc:
                _instruments()[1].labels(path, type(exc).__name__).inc()
                raise
            first = out[0] if isinstance(out, list) and out else out
            source = getattr(first, "source", None) or "-"
            _instruments()[0].labels(path, source).observe(time.perf_counter() - start)
            return out
        return inner  # type: ignore[return-value]
    return wrap
