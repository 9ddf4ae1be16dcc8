"""The error tree of :mod:`alerts`.

::

    AlertError
    ├── InvalidAlertSetting     an argument or setting of the alerting machinery cannot work (names it)
    ├── HookError               one delivery attempt to a hook failed; retried with backoff
    │   └── DeliveryError       permanent failure (a 4xx, a bad payload): dead-lettered, not retried
    │       └── HookDisabled    the endpoint is gone (HTTP 410): the hook is disabled until re-enabled
    ├── DeadLetterNotFound      ``retry`` was given a dead-letter id that does not exist
    ├── HookNotFound            no hook of that name is registered in Redis
    ├── IncidentNotFound        no incident of that id in the history (or not open, to acknowledge)
    ├── SilenceNotFound         no silence of that id
    └── CorruptRecord           a record read from Redis (outbox entry, incident, hook) holds garbage

Every class also derives from the matching builtin (``ValueError``, ``RuntimeError``, ``LookupError``).
"""

from __future__ import annotations

__all__ = ["AlertError", "InvalidAlertSetting", "HookError", "DeliveryError", "HookDisabled", "DeadLetterNotFound",
           "HookNotFound", "IncidentNotFound", "SilenceNotFound", "CorruptRecord"]


class AlertError(Exception):
    """Base class of every error raised by :mod:`alerts`."""


class InvalidAlertSetting(AlertError, ValueError):
    """An argument or setting has a value that cannot work (the message names it and the accepted range)."""


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


class IncidentNotFound(AlertError, LookupError):
    """No incident of that id is in the history (``ea alerts incidents --all`` lists them), or it is not open
    where an open one is needed (acknowledging)."""


class SilenceNotFound(AlertError, LookupError):
    """No silence has that id (``ea alerts silence list``)."""


class CorruptRecord(AlertError, ValueError):
    """A record read from Redis (an outbox entry, an incident or its state, a hook) is not what this package
    writes: a field is missing or of the wrong type. The message names the record and the field, never the
    content. Consumers skip or dead-letter such a record and go on."""
