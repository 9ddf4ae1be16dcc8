"""The error tree of :mod:`recsys`.

::

    RecsysError
    ├── InvalidInteractions   input interactions are malformed (missing columns or ids, bad weights,
    │                         unparsable lines, empty input); the message names the count and first bad rows
    ├── UnknownUser           an external user id is not in the id map (also a KeyError)
    ├── UnknownItem           an external item id is not in the id map (also a KeyError)
    ├── TrainingError         a model failed while fitting (diverged, produced non-finite vectors...)
    ├── InvalidParameter      a model hyper-parameter or function argument has a value that cannot work
    ├── InvalidRequest        a serving request is malformed (k <= 0 or huge, wrong types)
    │   └── InvalidFilter     a filter expression does not parse, or names an unknown field or a wrong type
    ├── InvalidDelta          a catalogue delta is malformed (wrong vector dimension, NaN, bad metadata value)
    │   └── UnsupportedDelta  an item upsert (or a field it lacks) on a version whose items are a Milvus collection
    └── ModelUnavailable      the serving client has no model version to answer from
        └── VersionGone       the version being served was deleted from Redis and none other could be loaded
"""

from __future__ import annotations

__all__ = [
    "RecsysError",
    "InvalidInteractions",
    "UnknownUser",
    "UnknownItem",
    "TrainingError",
    "InvalidParameter",
    "InvalidRequest",
    "InvalidFilter",
    "InvalidDelta",
    "UnsupportedDelta",
    "ModelUnavailable",
    "VersionGone",
]


class RecsysError(Exception):
    """Base class of every error raised by :mod:`recsys`."""


class InvalidInteractions(RecsysError, ValueError):
    """Interactions are malformed; nothing was built. The message names the count and the first bad rows."""


class UnknownUser(RecsysError, KeyError):
    """An external user id that the interactions' id map does not know."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class UnknownItem(RecsysError, KeyError):
    """An external item id that the interactions' id map does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TrainingError(RecsysError, RuntimeError):
    """A model failed while fitting; no embeddings were returned."""


class InvalidParameter(RecsysError, ValueError):
    """A hyper-parameter or argument has a value that cannot work; the message names it."""


class InvalidRequest(RecsysError, ValueError):
    """A serving request is malformed (k out of range, wrong types); nothing was looked up."""


class InvalidFilter(InvalidRequest):
    """A filter expression that cannot be applied: bad syntax, an unknown field, or a value of the wrong type.

    The message names the offending token and its position in the expression (never the whole expression).
    """


class InvalidDelta(RecsysError, ValueError):
    """A catalogue delta (an upsert, user update or metadata change) is malformed; nothing was written. The
    message names the item or user and what is wrong (never the values themselves)."""


class UnsupportedDelta(InvalidDelta):
    """A delta the version cannot take: on a version whose items are a Milvus collection, an item upsert, or a
    field update naming a field the collection lacks or a value of another type than its column's (deletions
    and other field updates are written to the collection). Nothing was written; the message names the model,
    version and operation."""


class ModelUnavailable(RecsysError, RuntimeError):
    """The serving client has no model to answer from (none published yet, or it could not be loaded)."""


class VersionGone(ModelUnavailable):
    """The per-user data of the version being served is gone from Redis (deleted while this client served it)
    and no other version could be loaded: a known user cannot be told from an unknown one, so neither is
    answered with popular items."""
