"""The error tree of :mod:`anomaly`.

::

    AnomalyError
    ├── InvalidSeries           input series unreadable (no such column, no value at all, unparseable times)
    │   └── SeriesTooShort      fewer rows than the model needs (the message names the minimum)
    ├── InvalidParameter        a constructor or function argument has a value that cannot work
    └── NotFitted               a detector or encoder used before ``fit`` (or loaded from bad parts)

Every class also derives from the matching builtin (``ValueError``, ``RuntimeError``) so callers that
do not know this package can still catch them.
"""

from __future__ import annotations

__all__ = ["AnomalyError", "InvalidSeries", "SeriesTooShort", "InvalidParameter", "NotFitted"]


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


# --- Alerts (anomaly.alerts) ------------------------------------------------------------------------
#
#   AnomalyError
#   └── AlertError              anything raised by anomaly.alerts
#       ├── HookError           one delivery attempt to a hook failed; retried with backoff
#       │   └── DeliveryError   permanent failure (a 4xx, a bad payload): dead-lettered, not retried
#       │       └── HookDisabled  the endpoint is gone (HTTP 410): the hook is disabled until re-enabled
#       ├── DeadLetterNotFound  ``retry`` was given a dead-letter id that does not exist
#       └── HookNotFound        no hook of that name is registered in Redis

__all__ += ["AlertError", "HookError", "DeliveryError", "HookDisabled", "DeadLetterNotFound", "HookNotFound"]


class AlertError(AnomalyError):
    """Base class of every error raised by :mod:`anomaly.alerts`."""


class HookError(AlertError, RuntimeError):
    """A delivery attempt failed in a way worth retrying (5xx, timeout, connection refused).

    Attributes:
        status: the HTTP status when there was one, else ``None``.
    """

    retryable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryError(HookError):
    """A delivery failed for good (e.g. HTTP 4xx): the alert goes to the dead-letter stream at once."""

    retryable = False


class HookDisabled(DeliveryError):
    """The endpoint answered 410 Gone: the hook is disabled (``ea alerts hooks`` shows it)."""


class DeadLetterNotFound(AlertError, LookupError):
    """No dead-letter entry has that id."""


class HookNotFound(AlertError, LookupError):
    """No hook of that name is registered in Redis (``ea alerts hooks`` lists them)."""
