"""Per-row signatures: a version's per-key rows (a user's vector, seen items, top-N list) signed row by row.

The manifest's HMAC covers what a version is made of, but its per-key tables are read a few rows per
request, never as a whole, so a table digest cannot protect them. With ``EA_SIGNING_KEY`` set every row is
stored as ``payload || tag``, where ``tag`` is the first 16 bytes of

    HMAC-SHA256(row_key, len(key) || key || payload),
    row_key = HMAC-SHA256(EA_SIGNING_KEY, "ea-row-v1" || model || version || table)

so a row is bound to its model, version, table and key: a planted row, a row changed, copied from another
user, another table, version or model fails. The row key is derived once per table and version, so a
request pays one short HMAC per row it reads. The manifest (signed) records that its rows carry tags
(``row_tag``), so a reader without the key still strips them, and one with the key refuses a version whose
rows carry none.
"""

from __future__ import annotations

import hmac

from ...exceptions import CorruptRow, SignatureError

__all__ = ["TAG_BYTES", "RowSeal"]

#: bytes of the tag appended to each row of a signed version
TAG_BYTES = 16


class RowSeal:
    """Signs (:meth:`seal`) and checks (:meth:`open`) the rows of one table of one version.

    Args:
        signing_key: ``EA_SIGNING_KEY`` (``None``: rows are not checked; tags, when present, are stripped).
        model, version, table: what the rows belong to (bound into every tag). ``table`` names a table
            (``t:<name>``) or data derived from the version (``x:<name>``, e.g. top-N lists).
        tagged: whether the version's rows carry tags (its manifest's ``row_tag``).
    """

    __slots__ = ("_key", "tagged", "where")

    def __init__(self, signing_key: bytes | None, model: str, version: int, table: str, *, tagged: bool) -> None:
        self.tagged = tagged
        self.where = f"{model!r} v{int(version)} {table}"
        label = b"ea-row-v1\0" + model.encode() + b"\0" + str(int(version)).encode() + b"\0" + table.encode()
        self._key = hmac.digest(signing_key, label, "sha256") if signing_key else None

    def _tag(self, row: str, payload: bytes) -> bytes:
        assert self._key is not None
        name = row.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, len(name).to_bytes(4, "little") + name + payload, "sha256")[:TAG_BYTES]

    def seal(self, row: str, payload: bytes) -> bytes:
        """``payload`` as stored under key ``row``: with its tag when the version's rows are tagged.

        Raises:
            SignatureError: the version's rows are tagged but no signing key is set (nothing could sign).
        """
        if not self.tagged:
            return payload
        if self._key is None:
            raise SignatureError(f"{self.where}: the version is signed; writing its rows needs EA_SIGNING_KEY")
        return payload + self._tag(row, payload)

    def open(self, row: str, raw: bytes) -> bytes:
        """The payload of the stored row ``raw`` under key ``row``, its tag checked when a key is set.

        Raises:
            SignatureError: the tag does not verify (a row planted, changed or copied from elsewhere).
            CorruptRow: without a key, the row is too short to hold a tag (with one: SignatureError).
        """
        if not self.tagged:
            return raw
        if len(raw) < TAG_BYTES:
            error = SignatureError if self._key is not None else CorruptRow
            raise error(f"{self.where}: row {row[:64]!r} is {len(raw)} bytes, too short to carry a signature")
        payload = raw[:-TAG_BYTES]
        if self._key is not None and not hmac.compare_digest(raw[-TAG_BYTES:], self._tag(row, payload)):
            raise SignatureError(f"{self.where}: row {row[:64]!r} fails its signature (planted or altered)")
        return payload
