"""The bytes of a published graph model's per-user rows and precomputed top-N lists: one owner.

Written at publication (:mod:`recsys.publish`) and by the precompute (:mod:`recsys.precompute`); read by
the client (:mod:`recsys.client`) and by the entity reader (:mod:`recsys.entities`). Every part is
little-endian whatever the machine (a writer's native ``tobytes()`` would not be on a big-endian one):

* a user's vector: ``d`` float32 (``<f4``);
* a user's seen items: their dense item ids, int32 (``<i4``);
* a user's top-N list: ``n`` int32 dense ids followed by ``n`` float32 scores.
"""

from __future__ import annotations

import numpy as np

__all__ = ["decode_ids", "decode_top", "decode_vector", "encode_ids", "encode_top", "encode_vector"]

VECTOR = np.dtype("<f4")
IDS = np.dtype("<i4")


def encode_vector(vector: np.ndarray) -> bytes:
    """A user's vector as stored."""
    return np.ascontiguousarray(vector, dtype=VECTOR).tobytes()


def decode_vector(raw: bytes) -> np.ndarray:
    """A stored user vector (float32, read-only view of ``raw``)."""
    return np.frombuffer(raw, dtype=VECTOR)


def encode_ids(ids: np.ndarray) -> bytes:
    """A user's seen items (dense ids) as stored."""
    return np.ascontiguousarray(ids, dtype=IDS).tobytes()


def decode_ids(raw: bytes | None) -> np.ndarray:
    """Stored seen items (int32; none for ``None``)."""
    return np.frombuffer(raw, dtype=IDS) if raw else np.empty(0, np.int32)


def encode_top(ids: np.ndarray, scores: np.ndarray) -> bytes:
    """A top-N list as stored (inverse of :func:`decode_top`)."""
    return np.asarray(ids, IDS).tobytes() + np.asarray(scores, VECTOR).tobytes()


def decode_top(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """A stored top-N list: ``(dense ids as int64, scores as float32)``."""
    n = len(raw) // 8
    return np.frombuffer(raw, dtype=IDS, count=n).astype(np.int64), np.frombuffer(raw, dtype=VECTOR, offset=4 * n)
