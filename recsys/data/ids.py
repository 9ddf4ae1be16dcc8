"""The ids a request or a delta names (users, items): checked once, as the str the id maps hold.

An id is a str or an int (an int is written as its digits); anything else, an overlong, empty or blank id, one
holding a NUL byte or text that is not valid UTF-8 is an :class:`~recsys.exceptions.InvalidRequest` naming
which id and what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import InvalidRequest

__all__ = ["MAX_ID_CHARS", "check_id", "check_ids"]

#: the longest id a request may name (ids are text; longer ones cannot be in a model)
MAX_ID_CHARS = 1024


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
    if not value.strip():  # training refuses blank ids and NUL bytes: a delta naming one blocked every training
        raise InvalidRequest(f"{what} id is empty" if not value else f"{what} id is blank ({len(value)} spaces)")
    if "\x00" in value:
        raise InvalidRequest(f"{what} id holds a NUL byte at position {value.index(chr(0))}")
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
