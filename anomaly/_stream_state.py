"""The stream state of a series: its Redis keys, its fields and their bytes, how it is written and read back.

This module is the one owner of that record (``docs/architecture.md``'s formats table). A
:class:`~anomaly.stream.StreamScorer`'s state is ``(meta, arrays)``: ``meta`` a JSON-able dict (row counts,
the value range, each channel's tail fit), ``arrays`` little-endian bytes (a streamed series saves its state
after every batch: a thousand readings as JSON text cost more than scoring a small batch). A detector
publishes the state at the end of its training prefix in the same two parts (``state`` in its metadata, one
``state_<name>`` blob per array); the service keeps each series' state in one Redis hash:

=====================================  ======  ==============================================================
``series:{<model>:<series id>}:state``  HASH    ``meta`` (JSON, with the detector ``version``), ``values``
                                                (``<f8``), ``missing`` (``u1``), ``times`` (``<i8``), each
                                                channel's calibration ``cal<c>_recent``, ``cal<c>_readings``
                                                (``<f8``) and ``cal<c>_screened`` (``<i8``), ``token`` (new at
                                                every write)
``...:state:lock``                      STRING  the lock serialising one series' batches
``series:{<model>}:<series id>:state``  HASH    the former key (one slot per detector), moved by the next batch
=====================================  ======  ==============================================================

The braces are a Redis Cluster hash tag: each series of a detector has a slot of its own (state and lock
together), so a detector's series spread over a cluster's masters.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import numpy as np

from .exceptions import CorruptState, InvalidParameter

#: The scorer's arrays and their dtypes (the item size is what a read checks).
_ARRAYS = {"values": "<f8", "missing": "u1", "times": "<i8"}
#: Each channel's calibration arrays (field ``cal<c>_<name>``) and their dtypes.
_CAL_ARRAYS = {"recent": "<f8", "readings": "<f8", "screened": "<i8"}


def state_key(prefix: str, model: str, series_id: str) -> str:
    """The hash of one series' stream state."""
    return f"{prefix}series:{{{model}:{series_id}}}:state"


def former_state_key(prefix: str, model: str, series_id: str) -> str:
    """Where a series' state was kept before each series had a slot of its own (all of a detector's in one)."""
    return f"{prefix}series:{{{model}}}:{series_id}:state"


def lock_key(state: str) -> str:
    """The lock of the series whose state is at ``state``."""
    return f"{state}:lock"


def read_token(client: Any, key: str) -> bytes | None:
    """The token of the state at ``key`` (``None``: no state there)."""
    return client.hget(key, "token")


def token_of(raw: dict[bytes, bytes]) -> bytes | None:
    """The token of a state hash read whole."""
    return raw.get(b"token")


def touch(client: Any, key: str) -> None:
    """Give the state at ``key`` (if any) a new token, so that every process's live scorer of the series is
    read again at its next batch (what a change of the series' labels needs). Under the series' lock."""
    if client.exists(key):
        client.hset(key, "token", uuid.uuid4().hex)


def read_buffer(raw: dict[bytes, bytes]) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """``(position, values, missing, times)`` of a state hash read whole: the last values a stream holds
    (float64, bool, int64 ns) and the row number after the last of them.

    Raises:
        CorruptState: as :func:`from_hash`, or the values' fields do not agree.
    """
    meta, arrays = from_hash(raw)
    try:
        values, missing, times = (_array(arrays[n], d) for n, d in _ARRAYS.items())
        position = _count(meta["position"])
        if not values.size == missing.size == times.size or values.size > position:
            raise ValueError("lengths")
    except (KeyError, ValueError):
        raise CorruptState("stream state part 'values' is missing, truncated or not of its type") from None
    return position, values, missing, times


# --- a scorer's state: (meta, arrays) -----------------------------------------------------------------------


def to_parts(scorer: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(meta, arrays)`` of a :class:`~anomaly.stream.StreamScorer`'s running state."""
    vr = scorer.value_range
    meta: dict[str, Any] = {
        "position": scorer.position, "start_row": scorer.start_row, "recent_from": scorer.recent_from,
        "last_score": scorer.last_score, "calibrators": [],
        "value_range": {"low": _json_float(vr.low), "high": _json_float(vr.high), "seen": vr.seen},
    }
    arrays = {name: np.asarray(getattr(scorer, name)).astype(dtype).tobytes() for name, dtype in _ARRAYS.items()}
    for c, cal in enumerate(scorer.calibrators):
        meta["calibrators"].append({"fit": list(cal.fit) if cal.fit else None, "arrays": True})
        arrays.update({f"cal{c}_{name}": getattr(cal, name).astype(dtype).tobytes()
                       for name, dtype in _CAL_ARRAYS.items()})
    return meta, arrays


def load_parts(scorer: Any, meta: dict[str, Any], arrays: dict[str, bytes]) -> None:
    """Restore :func:`to_parts` output into a fresh scorer of the same detector (its recent windows are then
    rebuilt by the scorer).

    Raises:
        InvalidParameter: the parts were written for another layout (another number of channels).
        CorruptState: a part is missing, truncated or not of its type (the message names it, never its
            content).
    """
    cals = meta.get("calibrators") if isinstance(meta, dict) else None
    if not isinstance(cals, list) or not all(isinstance(st, dict) for st in cals):
        raise CorruptState("stream state part 'meta.calibrators' is missing or not a list of objects")
    if len(cals) != len(scorer.calibrators):
        raise InvalidParameter(f"stream state has {len(cals)} calibrations for {len(scorer.calibrators)} channels")
    part = "values"
    try:
        for part, dtype in _ARRAYS.items():
            setattr(scorer, part, _array(arrays[part], dtype))
        part = "meta.position"
        scorer.position, scorer.start_row = _count(meta["position"]), _count(meta["start_row"])
        part = "meta.recent_from"
        scorer.recent_from = _count(meta["recent_from"])
        part = "meta.last_score"
        scorer.last_score = float(meta.get("last_score", 0.0))
        for c, (cal, st) in enumerate(zip(scorer.calibrators, cals, strict=True)):
            part = f"cal{c}"
            _load_calibration(cal, st, {name: arrays.get(f"cal{c}_{name}") for name in _CAL_ARRAYS})
        part = "meta.value_range"
        vr = meta["value_range"]
        scorer.value_range.low = np.nan if vr["low"] is None else float(vr["low"])
        scorer.value_range.high = np.nan if vr["high"] is None else float(vr["high"])
        scorer.value_range.seen = _count(vr["seen"])
        part = "values"
        if not (scorer.values.size == scorer.missing.size == scorer.times.size) or scorer.values.size > scorer.position:
            raise ValueError("lengths")
        if np.isinf(scorer.values).any() or (np.diff(scorer.times) < 0).any():
            raise ValueError("content")
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError):
        raise CorruptState(f"stream state part {part!r} is missing, truncated or not of its type") from None


def _load_calibration(cal: Any, st: dict[str, Any], arrays: dict[str, bytes | None]) -> None:
    """One channel's calibration, from its arrays, or from the JSON lists of a state saved before the
    arrays left the JSON part."""
    if st.get("arrays"):
        for name, dtype in _CAL_ARRAYS.items():
            setattr(cal, name, _array(arrays[name], dtype))  # type: ignore[arg-type]  # None: TypeError, corrupt
    else:
        cal.recent = np.asarray(st["recent"], np.float64)
        cal.readings = np.asarray(st["readings"], np.float64)
        cal.screened = np.asarray(st.get("screened", []), np.int64)
    cal.fit = tuple(st["fit"]) if st.get("fit") else None
    if cal.fit is not None and not (len(cal.fit) == 3 and all(math.isfinite(x) for x in cal.fit)):
        raise ValueError("fit")


# --- the Redis hash ----------------------------------------------------------------------------------------


def to_hash(meta: dict[str, Any], arrays: dict[str, bytes], version: int) -> tuple[dict[str, Any], str]:
    """``(mapping, token)``: the hash fields of a state scored with detector ``version``, and its new token."""
    token = uuid.uuid4().hex
    return {"meta": json.dumps({**meta, "version": version}), **arrays, "token": token}, token


def from_hash(raw: dict[bytes, bytes]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """``(meta, arrays)`` of a state hash as :func:`to_hash` writes it (``meta["version"]``: the detector
    version it was scored with).

    Raises:
        CorruptState: the hash lacks a field, ``meta`` is not a JSON object with an int ``version``, or an
            array's byte length is not a whole number of its items (names the field, never its content).
    """
    if b"meta" not in raw:
        raise CorruptState("field 'meta' is missing")
    try:
        meta = json.loads(raw[b"meta"])
    except ValueError:  # UnicodeDecodeError and JSONDecodeError alike
        raise CorruptState("field 'meta' is not JSON") from None
    if not isinstance(meta, dict) or type(meta.get("version", 0)) is not int:
        raise CorruptState("field 'meta' is not a JSON object with an integer version")
    sizes = {n: np.dtype(d).itemsize for n, d in _ARRAYS.items()}
    arrays: dict[str, bytes] = {}
    for field, data in raw.items():
        if field in (b"meta", b"token"):
            continue
        name = field.decode("ascii", errors="replace")[:40]
        size = sizes.get(name) or np.dtype(_CAL_ARRAYS.get(name.partition("_")[2], "<f8")).itemsize
        if len(data) % size:
            raise CorruptState(f"field {name!r} holds {len(data)} bytes, not whole {size}-byte items")
        arrays[name] = data
    for name in _ARRAYS:
        if name not in arrays:
            raise CorruptState(f"field {name!r} is missing")
    return meta, arrays


def _array(data: bytes, dtype: str) -> np.ndarray:
    """The native array of little-endian bytes (raises ValueError when they are not whole items)."""
    native = {"<f8": np.float64, "<i8": np.int64, "u1": bool}[dtype]
    return np.frombuffer(data, dtype).astype(native)


def _count(value: Any) -> int:
    """A row number or count read back from a state: a non-negative int (a bool or float is garbage)."""
    if type(value) is not int or value < 0:
        raise ValueError("not a count")
    return value


def _json_float(x: float) -> float | None:
    return None if not np.isfinite(x) else float(x)
