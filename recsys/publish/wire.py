"""The bytes of a published graph model's per-user rows and precomputed top-N lists, and their names: one owner.

Written at publication (:mod:`recsys.publish.embeddings`) and by the precompute
(:mod:`recsys.serving.precompute`); read by the client's per-user reads (:mod:`recsys.serving._user_rows`),
the entity reader (:mod:`recsys.publish.entities`) and the catalogue writer (:mod:`recsys.live`, whose
rewritten user rows hold the same vector and ids). Every part is little-endian whatever the machine (a
writer's native ``tobytes()`` would not be on a big-endian one):

* a user's vector: ``d`` float32 (``<f4``);
* a user's seen items: their dense item ids, int32 (``<i4``);
* a user's top-N list: ``n`` int32 dense ids followed by ``n`` float32 scores.

The rows are the version's tables :data:`USER_VECTORS` and :data:`SEEN` (user id -> row); the lists its
derived hash :data:`TOPN` (user id -> list), built under :func:`topn_building` names first.

Readers check what they decode: a row of the wrong size, a non-finite value or an item id outside the
catalogue is a :class:`~vectorstore.CorruptRow`, never a raw ``ValueError`` or ``IndexError`` later (rows are
written by whoever can write to Redis; with ``EA_SIGNING_KEY`` their signatures are checked before this, by
:class:`~vectorstore.RowSeal`).
"""

from __future__ import annotations

import numpy as np

from vectorstore import CorruptRow

__all__ = ["SEEN", "TOPN", "USER_VECTORS", "decode_ids", "decode_top", "decode_vector", "encode_ids", "encode_top",
           "encode_vector", "topn_building"]

VECTOR = np.dtype("<f4")
IDS = np.dtype("<i4")

#: the version's table of users' vectors, and of their seen items
USER_VECTORS, SEEN = "user_vectors", "seen"
#: the derived hash of the version's precomputed top-N lists (written by ea.precompute_recommendations)
TOPN = "topn"


def topn_building(attempt: str, nonce: str = "") -> str:
    """The derived name of a top-N hash being built by ``attempt`` (``nonce``: one try of it; without it, the
    prefix of every try's name)."""
    return f"{TOPN}-building-{attempt}-{nonce}"


def encode_vector(vector: np.ndarray) -> bytes:
    """A user's vector as stored."""
    return np.ascontiguousarray(vector, dtype=VECTOR).tobytes()


def decode_vector(raw: bytes, dim: int | None = None) -> np.ndarray:
    """A stored user vector (float32, read-only view of ``raw``) of ``dim`` values when given.

    Raises:
        CorruptRow: not ``dim`` float32 values (or not whole ones), or a NaN or infinity among them.
    """
    if len(raw) % 4 or (dim is not None and len(raw) != 4 * dim) or not raw:
        raise CorruptRow(f"a user vector row is {len(raw)} bytes, not {dim or 'whole'} float32 values")
    vector = np.frombuffer(raw, dtype=VECTOR)
    if not np.isfinite(vector).all():
        raise CorruptRow("a user vector row holds NaN or infinity")
    return vector


def encode_ids(ids: np.ndarray) -> bytes:
    """A user's seen items (dense ids) as stored."""
    return np.ascontiguousarray(ids, dtype=IDS).tobytes()


def decode_ids(raw: bytes | None, n_items: int | None = None) -> np.ndarray:
    """Stored seen items (int32; none for ``None``), each below ``n_items`` when given.

    Raises:
        CorruptRow: not whole int32 values, or an id outside ``0..n_items-1``.
    """
    if not raw:
        return np.empty(0, np.int32)
    if len(raw) % 4:
        raise CorruptRow(f"a seen-items row is {len(raw)} bytes, not whole int32 ids")
    ids = np.frombuffer(raw, dtype=IDS)
    _check_ids(ids, n_items, "a seen-items row")
    return ids


def encode_top(ids: np.ndarray, scores: np.ndarray) -> bytes:
    """A top-N list as stored (inverse of :func:`decode_top`)."""
    return np.asarray(ids, IDS).tobytes() + np.asarray(scores, VECTOR).tobytes()


def decode_top(raw: bytes, n_items: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A stored top-N list: ``(dense ids as int64, scores as float32)``.

    Raises:
        CorruptRow: not whole (id, score) pairs, an id outside ``0..n_items-1`` or a non-finite score.
    """
    if len(raw) % 8:
        raise CorruptRow(f"a top-N row is {len(raw)} bytes, not whole (int32 id, float32 score) pairs")
    n = len(raw) // 8
    ids = np.frombuffer(raw, dtype=IDS, count=n)
    scores = np.frombuffer(raw, dtype=VECTOR, offset=4 * n)
    _check_ids(ids, n_items, "a top-N row")
    if not np.isfinite(scores).all():
        raise CorruptRow("a top-N row holds a NaN or infinite score")
    return ids.astype(np.int64), scores


def _check_ids(ids: np.ndarray, n_items: int | None, what: str) -> None:
    if ids.size and (int(ids.min()) < 0 or (n_items is not None and int(ids.max()) >= n_items)):
        raise CorruptRow(f"{what} names an item id outside the catalogue of {n_items} items")
