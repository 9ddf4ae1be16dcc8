"""A batch's timestamps for streaming scoring: read to int64 UTC nanoseconds, written back as ISO 8601 text.

:func:`anomaly.service.score_points` reads a batch's timestamps on every call: as many as its values, so
the reading must cost far less than scoring them. Text in ISO 8601 is read value by value (a batch may mix
whole and fractional seconds or offsets); the fixed-width forms a metric export writes
(``2026-01-01 00:05:00``, with ``T``, ``Z`` or a ``+hh:mm`` offset) are read with array arithmetic, with
pandas' own ISO reading as the reference for every other form and for anything the fast path is not sure
of (an impossible date, a leap second, a year outside pandas' nanosecond range).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NAT", "read_utc_ns", "iso_utc"]

#: int64 nanoseconds of a timestamp that could not be read.
NAT = np.iinfo(np.int64).min
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGITS = (0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18)  # YYYY MM DD hh mm ss in "YYYY-MM-DD hh:mm:ss"
_NS = 1_000_000_000


def read_utc_ns(timestamps: list[Any]) -> np.ndarray:
    """Timestamps as int64 UTC nanoseconds (:data:`NAT` where one cannot be read).

    ISO 8601 text is read as ISO, each value on its own (naive values are UTC); anything else as pandas
    infers it from the first value.
    """
    first = timestamps[0] if len(timestamps) else None
    if isinstance(first, str) and _ISO_DATE.match(first):
        fast = _fixed_width(timestamps)
        if fast is not None:
            return fast
    if isinstance(first, str) and _ISO_DATE.match(first) and all(isinstance(t, str) for t in timestamps):
        try:
            return pd.to_datetime(np.array(timestamps, dtype=object), utc=True, format="ISO8601").as_unit("ns").asi8
        except (ValueError, OverflowError):
            pass
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(timestamps), utc=True, errors="coerce")).as_unit("ns").asi8


def iso_utc(ns: np.ndarray) -> list[str]:
    """UTC nanoseconds as ISO 8601 text, as ``pd.Timestamp.isoformat`` writes them; whole seconds (what
    metric exports hold) in one vectorised step."""
    if ns.size and not (ns % _NS).any():
        seconds = ns.view("datetime64[ns]").astype("datetime64[s]")
        return [text + "+00:00" for text in np.datetime_as_string(seconds).tolist()]
    return [t.isoformat() for t in pd.to_datetime(ns, utc=True)]


def _fixed_width(timestamps: list[str]) -> np.ndarray | None:
    """``YYYY-MM-DD[T ]hh:mm:ss`` with nothing, ``Z`` or ``[+-]hh:mm`` after it, the same form throughout the
    batch, read with array arithmetic; ``None`` when the batch is in another form or holds a value this
    path is not sure of (pandas then reads it)."""
    width = len(timestamps[0])
    if width not in (19, 20, 25):
        return None
    try:
        text = "".join(timestamps).encode("ascii")
    except (TypeError, UnicodeEncodeError):  # a value that is not text, or not ASCII
        return None
    if len(text) != width * len(timestamps):
        return None  # not all the same width
    b = np.frombuffer(text, np.uint8).reshape(-1, width)
    seps = b[:, [4, 7, 13, 16]]
    if not ((seps == np.array([45, 45, 58, 58], np.uint8)).all() and ((b[:, 10] == 84) | (b[:, 10] == 32)).all()):
        return None  # "-", "-", ":", ":" and "T" or " "
    digits = b[:, _DIGITS].astype(np.int64) - 48
    if width == 20 and not (b[:, 19] == 90).all():  # "Z"
        return None
    if width == 25:
        if not (((b[:, 19] == 43) | (b[:, 19] == 45)).all() and (b[:, 22] == 58).all()):  # "+" or "-", ":"
            return None
        off = b[:, [20, 21, 23, 24]].astype(np.int64) - 48
        if ((off < 0) | (off > 9)).any():
            return None
        off_h, off_m = off[:, 0] * 10 + off[:, 1], off[:, 2] * 10 + off[:, 3]
        if (off_h > 23).any() or (off_m > 59).any():
            return None
        offset = np.where(b[:, 19] == 43, 1, -1) * (off_h * 3600 + off_m * 60)
    else:
        offset = np.zeros(b.shape[0], np.int64)
    if ((digits < 0) | (digits > 9)).any():
        return None
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month, day = digits[:, 4] * 10 + digits[:, 5], digits[:, 6] * 10 + digits[:, 7]
    hour, minute, second = digits[:, 8] * 10 + digits[:, 9], digits[:, 10] * 10 + digits[:, 11], \
        digits[:, 12] * 10 + digits[:, 13]
    if ((year < 1678) | (year > 2261) | (month < 1) | (month > 12) | (day < 1) | (hour > 23) | (minute > 59)
            | (second > 59)).any():
        return None  # pandas decides: out of its range, an impossible field, a leap second
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first_day = months.astype("datetime64[D]").astype(np.int64)
    if (day > (months + 1).astype("datetime64[D]").astype(np.int64) - first_day).any():
        return None  # a day the month does not have
    seconds = (first_day + day - 1) * 86_400 + hour * 3600 + minute * 60 + second - offset
    return seconds * _NS
