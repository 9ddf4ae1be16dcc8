"""The stored form of a version's parts: arrays and blobs as checksummed chunks, tables as a digest of their rows.

An array is stored as its raw little-endian bytes with its dtype and shape, a blob as its bytes; both are cut
into chunks of ``EA_CHUNK_BYTES`` (Redis values top out at 512 MB) and recorded in the manifest with their
size, chunk count and sha256. A table's rows are read a few at a time, so its digest (over every row, in key
order) serves audits (:meth:`~vectorstore.ModelRegistry.verify_table`), not readers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...exceptions import ChecksumError, InvalidModelData
from ._manifest import DTYPES
from .keys import check_name

__all__ = ["array_part", "blob_part", "chunk_fields", "decode_part", "table_digest"]


def array_part(name: str, arr: Any, payload: dict[str, bytes], chunk_bytes: int) -> dict[str, Any]:
    """Add the chunks of array ``arr`` to ``payload`` (field ``<name>:<chunk>`` -> bytes); returns its manifest
    entry.

    Raises:
        InvalidModelData: a bad name, not a numpy array, an unsupported dtype, or NaN/inf in a float array.
    """
    check_name("part", name)
    if not isinstance(arr, np.ndarray):
        raise InvalidModelData(f"array {name!r} must be a numpy array, got {type(arr).__name__}")
    if arr.dtype.name not in DTYPES:
        raise InvalidModelData(f"array {name!r} has dtype {arr.dtype}; supported: {sorted(DTYPES)}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[:3].tolist()
        raise InvalidModelData(f"array {name!r} holds NaN or inf (first at {bad})")
    data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    part = blob_part(name, data, payload, chunk_bytes)
    part.update(kind="array", dtype=arr.dtype.name, shape=list(arr.shape))
    return part


def blob_part(name: str, blob: Any, payload: dict[str, bytes], chunk_bytes: int) -> dict[str, Any]:
    """Add the chunks of ``blob`` to ``payload``; returns its manifest entry.

    Raises:
        InvalidModelData: ``blob`` is not bytes.
    """
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise InvalidModelData(f"blob {name!r} must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    chunks = max(1, -(-len(blob) // chunk_bytes))
    for i, field in enumerate(chunk_fields(name, {"chunks": chunks})):
        payload[field] = blob[i * chunk_bytes : (i + 1) * chunk_bytes]
    return {"kind": "blob", "nbytes": len(blob), "chunks": chunks, "sha256": hashlib.sha256(blob).hexdigest()}


def chunk_fields(name: str, spec: Mapping[str, Any]) -> list[str]:
    """The ``data`` hash fields holding the chunks of part ``name``, in order."""
    return [f"{name}:{i}" for i in range(spec["chunks"])]


def decode_part(where: str, name: str, spec: Mapping[str, Any], blob: bytes) -> np.ndarray | bytes:
    """The part ``name`` of version ``where`` from its joined chunks: a read-only array, or the blob's bytes.

    Raises:
        ChecksumError: the bytes are not the size or sha256 the manifest records.
    """
    if len(blob) != spec["nbytes"] or hashlib.sha256(blob).hexdigest() != spec["sha256"]:
        raise ChecksumError(f"{where}: part {name!r} fails its sha256 check")
    if spec.get("kind") == "array":
        return np.frombuffer(blob, dtype=np.dtype(spec["dtype"]).newbyteorder("<")).reshape(spec["shape"])
    return blob


def table_digest(name: str, rows: Mapping[str, bytes]) -> dict[str, Any]:
    """The manifest entry of table ``name``: its row count and the sha256 of its rows in key order.

    Raises:
        InvalidModelData: a key that is not ``str`` or a row that is not ``bytes``.
    """
    digest = hashlib.sha256()
    for key in sorted(rows):
        value = rows[key]
        if not isinstance(key, str) or not isinstance(value, bytes):
            raise InvalidModelData(f"table {name!r} must map str to bytes, got {type(key).__name__} -> "
                                   f"{type(value).__name__}")
        digest.update(len(key).to_bytes(4, "little") + key.encode() + len(value).to_bytes(8, "little") + value)
    return {"kind": "table", "rows": len(rows), "sha256": digest.hexdigest()}
