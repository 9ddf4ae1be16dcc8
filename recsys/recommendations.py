"""What the serving client answers: :class:`Recommendations`, and the checks every request's arguments pass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .exceptions import InvalidRequest

__all__ = ["MAX_ID_CHARS", "MAX_K", "Recommendations", "check_fields", "check_id", "check_ids", "check_k"]

#: the largest k a request may ask for
MAX_K = 10_000
#: the longest id a request may name (ids are text; longer ones cannot be in a model)
MAX_ID_CHARS = 1024


@dataclass(frozen=True)
class Recommendations:
    """Ranked items for one request.

    Attributes:
        items: external item ids, best first.
        scores: their scores (inner product of scoring vectors; higher is better).
        model, model_version: which model version answered.
        source: ``"index"``, ``"precomputed"``, ``"history"`` (fold-in), ``"similar"`` or ``"popularity"``
            (unknown user fallback).
        user: the user asked about (``None`` for item-based requests).
        fields: requested item metadata columns, aligned with ``items``.
    """

    items: list[str]
    scores: np.ndarray
    model: str
    model_version: int
    source: str
    user: str | None = None
    fields: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def to_pandas(self):
        """A DataFrame with ``rank``, ``item``, ``score`` and the requested fields."""
        import pandas as pd

        df = pd.DataFrame({"rank": np.arange(1, len(self.items) + 1), "item": self.items, "score": self.scores})
        for name, values in self.fields.items():
            df[name] = values
        return df


def check_k(k: Any) -> int:
    """``k`` as an int in 1..MAX_K.

    Raises:
        InvalidRequest: not an integer, or out of range.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InvalidRequest(f"k must be an integer, got {type(k).__name__} {k!r}")
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k={k} must be between 1 and {MAX_K}")
    return int(k)


def check_id(value: Any, what: str) -> str:
    """A user or item id (str or int) as the str the id maps hold.

    Raises:
        InvalidRequest: another type (float, bytes, list, None...).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | np.integer):
        raise InvalidRequest(f"{what} id must be a str or int, got {type(value).__name__}")
    if isinstance(value, int | np.integer):
        if abs(int(value)) >= 10**MAX_ID_CHARS:  # str() of a huge int raises ValueError
            raise InvalidRequest(f"{what} id is an integer of more than {MAX_ID_CHARS} digits")
        return str(value)
    if len(value) > MAX_ID_CHARS:
        raise InvalidRequest(f"{what} id is {len(value)} characters long (at most {MAX_ID_CHARS})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"{what} id is not valid text (a lone surrogate at position {exc.start})") from None
    return value


def check_ids(values: Any, what: str) -> list[str]:
    """A sequence of ids (users, items) as str ids; a single str is refused, not read letter by letter.

    Raises:
        InvalidRequest: ``None``, a str or bytes, something not iterable, or a bad id in it.
    """
    if values is None or isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
        raise InvalidRequest(f"{what} ids must be a collection of ids (a list), got {type(values).__name__}"
                             + (" (wrap a single id in a list)" if isinstance(values, str) else ""))
    return [check_id(v, what) for v in values]


def check_fields(fields: Any) -> list[str] | None:
    """Metadata column names asked for: ``None`` or a list of str (a single str is refused).

    Raises:
        InvalidRequest: another type.
    """
    if fields is None:
        return None
    if isinstance(fields, str | bytes) or not isinstance(fields, list | tuple):
        raise InvalidRequest(f"fields must be a list of column names, got {type(fields).__name__}"
                             + (" (wrap a single name in a list)" if isinstance(fields, str) else ""))
    if not all(isinstance(f, str) for f in fields):
        raise InvalidRequest("fields must be column names (str)")
    return list(fields)
