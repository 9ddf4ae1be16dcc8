"""What the serving client answers, :class:`Recommendations`, and the checks of a request's ``k`` and ``fields``
(its ids: :mod:`recsys.data.ids`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..exceptions import InvalidRequest

__all__ = ["MAX_K", "Recommendations", "check_fields", "check_k"]

#: the largest k a request may ask for
MAX_K = 10_000


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
        raise InvalidRequest(f"k must be an integer, got {type(k).__name__} {_shown(k)}")
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k={_shown(k)} must be between 1 and {MAX_K}")
    return int(k)


def _shown(value: Any) -> str:
    """``value`` as a message names it, bounded (an integer of 5,000 digits cannot even be printed whole:
    Python refuses to convert one past 4,300 digits)."""
    if isinstance(value, int) and abs(value) >= 10**18:
        return f"{'-' if value < 0 else ''}<an integer of about {int(abs(value).bit_length() * 0.30103) + 1} digits>"
    text = repr(value) if not isinstance(value, int) else str(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


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
