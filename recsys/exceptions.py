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
    └── ModelUnavailable      the serving client has no model version to answer from
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
    "ModelUnavailable",
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


class ModelUnavailable(RecsysError, RuntimeError):
    """The serving client has no model to answer from (none published yet, or it could not be loaded)."""
