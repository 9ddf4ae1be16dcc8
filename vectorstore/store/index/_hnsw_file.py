"""Checks of an index blob before hnswlib reads it: hnswlib trusts its file, and a corrupt one crashes the process.

hnswlib's ``loadIndex`` reads sizes and graph links from the file and follows them without bounds checks:
a neighbour id past the element count, a link count above the layer's maximum, or an entry point on a layer
its element does not reach makes a query read outside its buffers (a segfault, or garbage results). A
deployment without ``EA_SIGNING_KEY`` only has a sha256 that anyone who can write the blob can recompute,
so the blob's own structure is checked here first: the ``ItemIndex`` header (params), hnswlib's header
against it, the exact body length, every link count and every neighbour id, on every layer.

hnswlib 0.8's file: a 96-byte header (offsetLevel0, max_elements, cur_element_count,
size_data_per_element, label_offset, offsetData: 6 x u64; maxlevel: i32; enterpoint: u32; maxM, maxM0, M:
3 x u64; mult: f64; ef_construction: u64), then ``count x size_data_per_element`` bytes of layer 0 (per
element: u32 link header, low 16 bits the count, then maxM0 u32 neighbours, the vector, a u64 label), then
per element a u32 byte size of its upper layers' links and those links (per layer: u32 count header, maxM
u32 neighbours).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from ...exceptions import IntegrityError

__all__ = ["check_hnsw_body", "check_params"]

_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_SPACES = ("ip", "l2", "cosine")


def check_params(params: Any) -> dict[str, Any]:
    """The ``ItemIndex`` header, checked: a dict with a known space, a dimension, a count and parameters.

    Raises:
        IntegrityError: anything missing, of the wrong type or out of range.
    """
    if not isinstance(params, dict):
        raise IntegrityError("ItemIndex header is not a JSON object")
    ints = {"dim": (1, 1 << 16), "count": (0, 1 << 31), "M": (2, 1 << 12), "ef": (1, 1 << 24)}
    for key, (low, high) in ints.items():
        value = params.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise IntegrityError(f"ItemIndex header: {key} is {str(value)[:20]!r}, not an integer in {low}..{high}")
    if params.get("space") not in _SPACES or params.get("mips", "augmented") not in ("augmented", "native"):
        raise IntegrityError("ItemIndex header: unknown space or mips")
    radius = params.get("mips_radius", 1.0)
    if not isinstance(radius, int | float) or not math.isfinite(radius):
        raise IntegrityError("ItemIndex header: mips_radius is not a finite number")
    return params


def check_hnsw_body(body: memoryview | bytes, dim: int, count: int) -> None:
    """Check hnswlib's file ``body`` of ``count`` vectors of ``dim`` floats (``dim`` as stored: an augmented
    index has one more) before hnswlib loads it.

    Raises:
        IntegrityError: truncated, extended, or any size, count, link or neighbour out of range.
    """
    if len(body) < _HEADER.size:
        raise IntegrityError(f"ItemIndex body is {len(body)} bytes, shorter than hnswlib's header")
    (offset0, max_elements, n, size_per, label_offset, offset_data, max_level, entry, max_m, max_m0, m, mult,
     ef_construction) = _HEADER.unpack_from(body, 0)
    links0 = max_m0 * 4 + 4
    expected = {"element count": (n, count), "level-0 offset": (offset0, 0), "M": (max_m, m),
                "level-0 M": (max_m0, 2 * m), "data offset": (offset_data, links0),
                "label offset": (label_offset, links0 + 4 * dim), "element size": (size_per, links0 + 4 * dim + 8)}
    for what, (found, want) in expected.items():
        if found != want:
            raise IntegrityError(f"ItemIndex body: hnswlib {what} is {found}, expected {want}")
    if not 2 <= m <= 4096 or max_elements < n or ef_construction < 1 or not (math.isfinite(mult) and mult > 0):
        raise IntegrityError("ItemIndex body: hnswlib parameters out of range")
    level0_end = _HEADER.size + n * size_per
    if len(body) < level0_end:
        raise IntegrityError(f"ItemIndex body is truncated ({len(body)} bytes, layer 0 alone needs {level0_end})")
    if n == 0:
        if len(body) != level0_end:
            raise IntegrityError("ItemIndex body: bytes after an empty graph")
        return
    if not 0 <= max_level <= 64 or entry >= n:
        raise IntegrityError(f"ItemIndex body: entry point {entry} or top layer {max_level} out of range")
    layer0 = np.frombuffer(body, dtype=np.uint8, count=n * size_per, offset=_HEADER.size).reshape(n, size_per)
    _check_links(layer0[:, :links0].copy().view("<u4"), max_m0, n, np.zeros(n, np.int64), 0)
    labels = layer0[:, label_offset:].copy().view("<u8").ravel()
    if int(labels.max()) >= 1 << 63 or np.unique(labels).size != n:
        raise IntegrityError("ItemIndex body: labels repeat or do not fit int64")
    levels = _upper_links(body, level0_end, n, max_m * 4 + 4, max_m)
    if int(levels[entry]) != max_level or int(levels.max()) != max_level:
        raise IntegrityError(f"ItemIndex body: the entry point's layer {int(levels[entry])} is not the top layer "
                             f"{max_level}")


def _check_links(links: np.ndarray, max_links: int, n: int, levels: np.ndarray, layer: int) -> None:
    """``links``: rows of ``[header, neighbours...]`` (u32); counts within ``max_links``, neighbours ids of
    elements that reach ``layer``."""
    counts = links[:, 0] & 0xFFFF
    if (counts > max_links).any():
        raise IntegrityError(f"ItemIndex body: a layer-{layer} link count exceeds {max_links}")
    # The high half holds hnswlib's deleted mark (layer 0): a published index never has one (deletions are
    # applied in memory by a serving client), and a marked element breaks reading vectors back.
    if (links[:, 0] >> 16).any():
        raise IntegrityError(f"ItemIndex body: layer-{layer} link headers carry flags (elements marked deleted)")
    used = np.arange(max_links) < counts[:, None]
    neighbours = links[:, 1:][used].astype(np.int64)
    if neighbours.size and (int(neighbours.max()) >= n or (layer and (levels[neighbours] < layer).any())):
        raise IntegrityError(f"ItemIndex body: a layer-{layer} neighbour id is out of range")


def _upper_links(body: memoryview | bytes, pos: int, n: int, size_links: int, max_m: int) -> np.ndarray:
    """Each element's top layer, checking its upper layers' links (they may only name elements that reach
    the layer); the body must end exactly after the last element's links."""
    levels = np.zeros(n, np.int64)
    blocks: list[tuple[int, int, int]] = []  # (element, offset, layers)
    end = len(body)
    unpack = struct.Struct("<I").unpack_from
    for i in range(n):
        if pos + 4 > end:
            raise IntegrityError("ItemIndex body is truncated in the upper layers")
        (size,) = unpack(body, pos)
        pos += 4
        if size:
            if size % size_links or pos + size > end:
                raise IntegrityError(f"ItemIndex body: element {i}'s upper links are {size} bytes: not whole layers "
                                     "or past the end")
            levels[i] = size // size_links
            blocks.append((i, pos, size // size_links))
            pos += size
    if pos != end:
        raise IntegrityError(f"ItemIndex body has {end - pos} bytes after its last element")
    if int(levels.max()) > 64:
        raise IntegrityError("ItemIndex body: an element reaches past layer 64")
    for layer in range(1, int(levels.max()) + 1):
        rows = [np.frombuffer(body, dtype="<u4", count=size_links // 4, offset=offset + (layer - 1) * size_links)
                for _, offset, layers in blocks if layers >= layer]
        _check_links(np.stack(rows), max_m, n, levels, layer)
    return levels
