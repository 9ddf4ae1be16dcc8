"""Helpers of the modules that read this package's records back from Redis (each record has one owner:
:mod:`alerts.notification`, :mod:`alerts.incidents`, :mod:`alerts._outbox_records`, :mod:`alerts.shared`).

Anyone with write access to Redis can leave garbage in a record. Readers raise :class:`CorruptRecord` naming
the field, never its content, so that a caller can skip or dead-letter the record and go on.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from .exceptions import CorruptRecord, InvalidAlertSetting


def parse_json(raw: Any, what: str) -> Any:
    """``json.loads(raw)``, or CorruptRecord naming ``what`` (bytes that are not UTF-8 alike)."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptRecord(f"{what} is not JSON") from None


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (a bool is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def text(value: bytes) -> str:
    """Bytes read back as text to show (undecodable bytes replaced, at most 500 characters)."""
    return value.decode(errors="replace")[:500]


def number(value: bytes | None) -> float:
    """A finite number written by this package, else 0.0."""
    try:
        x = float(value) if value is not None else 0.0
    except ValueError:
        return 0.0
    return x if math.isfinite(x) else 0.0


def to_epoch(value: Any) -> float | None:
    """Epoch seconds of a datetime, ISO 8601 text (``Z`` or an offset; naive means UTC) or number; ``None``
    stays ``None``.

    Raises:
        InvalidAlertSetting: anything else (names it).
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            return to_epoch(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        except ValueError:
            pass
    raise InvalidAlertSetting(f"time {value!r} is not ISO 8601 (e.g. 2026-12-08T09:00Z) nor epoch seconds")
