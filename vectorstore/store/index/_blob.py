"""The bytes of an :class:`~vectorstore.ItemIndex`: never pickle.

``EAIDX1\\n``, the length of a JSON header (4 bytes, little-endian), the header (the index's parameters,
``ef`` included: hnswlib does not save it), then hnswlib's own file format, written and read through a
temporary file (``save_index`` / ``load_index``). A blob is checked before hnswlib reads any of it
(:mod:`._hnsw_file`): hnswlib trusts its input, and a blob comes from Redis.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any

import hnswlib

from ...exceptions import IntegrityError
from ._hnsw_file import check_hnsw_body, check_params

# ``index`` below is a vectorstore.store.index.item_index.ItemIndex (not imported: item_index.py imports this).

__all__ = ["hnsw_space", "index_bytes", "read_index"]

_MAGIC = b"EAIDX1\n"


def hnsw_space(params: dict[str, Any]) -> str:
    """hnswlib's space for an index's params: augmented inner product is searched as L2."""
    space = params["space"]
    return "l2" if space == "ip" and params.get("mips", "augmented") == "augmented" else space


def index_bytes(index: Any) -> bytes:
    """The blob of ``index`` (its graph read under the index's read lock)."""
    fd, path = tempfile.mkstemp(suffix=".hnsw")
    os.close(fd)
    try:
        with index._gate.read():
            header = json.dumps(index.params, sort_keys=True).encode()
            index._index.save_index(path)
        with open(path, "rb") as f:
            body = f.read()
    finally:
        os.unlink(path)
    return _MAGIC + struct.pack("<I", len(header)) + header + body


def read_index(data: bytes) -> tuple[hnswlib.Index, dict[str, Any]]:
    """The hnswlib graph and the parameters of a blob written by :func:`index_bytes`.

    Raises:
        IntegrityError: not an index blob, truncated, or its header or graph out of range.
    """
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise IntegrityError("not an ItemIndex blob (bad magic)")
    (hlen,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    if start + hlen > len(data):
        raise IntegrityError(f"ItemIndex header of {hlen} bytes runs past the blob's {len(data)}")
    try:
        params = check_params(json.loads(data[start : start + hlen]))
    except (ValueError, RecursionError):
        raise IntegrityError("ItemIndex header is not valid JSON") from None
    body = memoryview(data)[start + hlen :]
    augmented = hnsw_space(params) == "l2" and params["space"] == "ip"
    check_hnsw_body(body, int(params["dim"]) + int(augmented), int(params["count"]))
    fd, path = tempfile.mkstemp(suffix=".hnsw")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        index = hnswlib.Index(space=hnsw_space(params), dim=int(params["dim"]) + int(augmented))
        try:
            index.load_index(path, max_elements=int(params["count"]))
        except RuntimeError as exc:
            raise IntegrityError(f"ItemIndex body does not load: {exc}") from None
    finally:
        os.unlink(path)
    if index.get_current_count() != int(params["count"]):
        raise IntegrityError(f"ItemIndex holds {index.get_current_count()} items, header says {params['count']}")
    return index, params
