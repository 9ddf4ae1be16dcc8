"""The checks a delta's input passes before anything is written (:mod:`recsys.live.writer`): each failure is
an :class:`~recsys.exceptions.InvalidDelta` naming the item or user and what is wrong, never the values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data.ids import check_ids
from ..exceptions import InvalidDelta

__all__ = ["delta_ids", "field_values", "positive", "vector"]


def delta_ids(values: Any, what: str) -> list[str]:
    """Ids (users or items) as str, each once, in order."""
    try:
        return list(dict.fromkeys(check_ids(values, what)))
    except ValueError as exc:
        raise InvalidDelta(str(exc)) from None


def positive(x: Any) -> bool:
    """Whether ``x`` is a finite number > 0 (a weight)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def vector(value: Any, dim: int, what: str) -> list[float]:
    """``value`` as a list of ``dim`` finite float32 values (``what`` names it in errors)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDelta(f"{what} is not a list of numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidDelta(f"{what} has dimension {arr.shape[0] if arr.ndim == 1 else arr.shape}; the model has {dim}")
    if not np.isfinite(arr).all():
        raise InvalidDelta(f"{what} holds NaN or inf (first at position {int(np.flatnonzero(~np.isfinite(arr))[0])})")
    return arr.astype(np.float32).tolist()


def field_values(item: str, values: Any) -> dict[str, Any]:
    """An item's ``{field: value}`` update: str names, str/finite number/bool/None values."""
    if not isinstance(values, Mapping):
        raise InvalidDelta(f"metadata of item {item!r} must be {{field: value}}, got {type(values).__name__}")
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise InvalidDelta(f"metadata of item {item!r}: field names are non-empty str, got {name!r}")
        ok = value is None or isinstance(value, str | bool | int) or (isinstance(value, float) and math.isfinite(value))
        if not ok:
            raise InvalidDelta(f"metadata of item {item!r}: field {name!r} must be a str, finite number, bool or "
                               f"None, got {type(value).__name__}")
    return dict(values)
