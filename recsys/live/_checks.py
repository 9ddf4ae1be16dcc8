"""The checks a delta's input passes before anything is written (:mod:`recsys.live.writer`): each failure is
an :class:`~recsys.exceptions.InvalidDelta` naming the item or user and what is wrong, never the values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data.ids import check_id, check_ids
from ..data.interactions import MAX_WEIGHT, MIN_WEIGHT
from ..data.item_table import metadata_value_problem
from ..exceptions import InvalidDelta

__all__ = ["delta_id", "delta_ids", "field_values", "positive", "vector"]


def delta_id(value: Any, what: str) -> str:
    """One id (a user or item) as str."""
    try:
        return check_id(value, what)
    except ValueError as exc:
        raise InvalidDelta(str(exc)) from None


def delta_ids(values: Any, what: str) -> list[str]:
    """Ids (users or items) as str, each once, in order."""
    try:
        return list(dict.fromkeys(check_ids(values, what)))
    except ValueError as exc:
        raise InvalidDelta(str(exc)) from None


def positive(x: Any) -> bool:
    """Whether ``x`` is a weight training accepts: a number in ``MIN_WEIGHT..MAX_WEIGHT`` (1e308 passed a
    finite-and-positive check here, then blocked every training of the model)."""
    return isinstance(x, int | float) and not isinstance(x, bool) and MIN_WEIGHT <= x <= MAX_WEIGHT


def vector(value: Any, dim: int, what: str) -> list[float]:
    """``value`` as a list of ``dim`` finite float32 values (``what`` names it in errors)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidDelta(f"{what} is not a list of numbers") from None
    if arr.ndim != 1 or arr.shape[0] != dim:
        raise InvalidDelta(f"{what} has dimension {arr.shape[0] if arr.ndim == 1 else arr.shape}; the model has {dim}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)  # checked as stored: 1e39 is finite in float64 and inf in float32
    if not np.isfinite(arr).all():
        raise InvalidDelta(f"{what} holds NaN or inf (first at position {int(np.flatnonzero(~np.isfinite(arr))[0])})")
    return arr.tolist()


def field_values(item: str, values: Any) -> dict[str, Any]:
    """An item's ``{field: value}`` update: str names, str/finite number/bool/None values."""
    if not isinstance(values, Mapping):
        raise InvalidDelta(f"metadata of item {item!r} must be {{field: value}}, got {type(values).__name__}")
    for name, value in values.items():
        if not isinstance(name, str) or not name:
            raise InvalidDelta(f"metadata of item {item!r}: field names are non-empty str, got {name!r}")
        problem = metadata_value_problem(value)
        if problem is not None:
            raise InvalidDelta(f"metadata of item {item!r}: field {name!r} is {problem}")
    return dict(values)
