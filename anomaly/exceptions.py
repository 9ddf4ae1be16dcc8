"""The error tree of :mod:`anomaly`.

::

    AnomalyError
    ├── InvalidSeries           input series unreadable (no such column, no value at all, unparseable times)
    │   └── SeriesTooShort      fewer rows than the model needs (the message names the minimum)
    ├── InvalidParameter        a constructor or function argument has a value that cannot work
    ├── NotFitted               a detector or encoder used before ``fit`` (or loaded from bad parts)
    └── CorruptState            a series' stream state in Redis holds garbage (names the key and the field)

Every class also derives from the matching builtin (``ValueError``, ``RuntimeError``) so callers that
do not know this package can still catch them.
"""

from __future__ import annotations

__all__ = ["AnomalyError", "InvalidSeries", "SeriesTooShort", "InvalidParameter", "NotFitted", "CorruptState"]


class AnomalyError(Exception):
    """Base class of every error raised by :mod:`anomaly`."""


class InvalidSeries(AnomalyError, ValueError):
    """The input series is malformed; the message names the bad rows, columns or values."""


class SeriesTooShort(InvalidSeries):
    """The series has fewer rows than the model needs; the message names the minimum."""


class InvalidParameter(AnomalyError, ValueError):
    """An argument has a value that cannot work (the message names it and the accepted range)."""


class NotFitted(AnomalyError, RuntimeError):
    """The model was used before it was fitted."""


class CorruptState(AnomalyError, ValueError):
    """A series' stream state read from Redis is not what :meth:`StreamScorer.to_state` writes (a field is
    missing, truncated or not of its type). The message names the key and the field, never the content."""
