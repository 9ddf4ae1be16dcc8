"""Interaction files as bytes: compression told by the first bytes, the text encoding, short excerpts.

A file is read as its content says, not as its name says: ``interactions.csv.gz`` and a gzip file named
``interactions.csv`` read alike. Text is UTF-8 (a byte-order mark is skipped, UTF-16 recognised by its
mark); a file that is not UTF-8 is read as latin-1 (MovieLens' raw ``u.item`` is) with a warning, unless
the caller names an encoding. Binary content is refused. Messages never quote file content except through
:func:`excerpt` (a few characters, escaped), and only from a file that is plainly of the expected format.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from vectorstore import EXCERPT_CHARS, NulGuard
from vectorstore import excerpt as _excerpt

from ..exceptions import InvalidInteractions

__all__ = ["COMPRESSED_SUFFIXES", "TextFormat", "excerpt", "is_parquet", "text_format"]

#: (leading bytes, pandas' compression name)
_SIGNATURES = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
#: Suffixes that name a compression, stripped before the format is told by the remaining suffix.
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")
_SAMPLE_BYTES = 1 << 16
FALLBACK_ENCODING = "latin-1"


@dataclass(frozen=True)
class TextFormat:
    """How to read a text file: ``compression`` (pandas' name, or None), ``encoding``, and whether the caller
    chose the encoding (``explicit``: no fallback to latin-1 then)."""

    compression: str | None
    encoding: str
    explicit: bool = False

    def pandas(self) -> dict[str, Any]:
        """Keyword arguments of ``pandas.read_csv`` for this format."""
        return {"compression": self.compression, "encoding": self.encoding}

    def open(self, path: Path) -> IO[str]:
        """The file's decompressed content as text."""
        return io.TextIOWrapper(_open_bytes(path, self.compression), encoding=self.encoding)

    def guarded(self, path: Path) -> NulGuard:
        """The file's text for pandas, refusing a NUL character (which pandas would silently cut a cell at)
        with :class:`InvalidInteractions` naming its line."""
        def error(line: int) -> InvalidInteractions:
            return InvalidInteractions(f"{path}: line {line} holds a NUL byte (it would cut an id short and "
                                       "merge two ids)")
        return NulGuard(self.open(path), error)

    def fallback(self) -> TextFormat:
        """The same file read as latin-1 (every byte is a character)."""
        return replace(self, encoding=FALLBACK_ENCODING)


def is_parquet(path: Path) -> bool:
    """Whether ``path`` starts with Parquet's magic bytes."""
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def text_format(path: Path, encoding: str | None = None) -> TextFormat:
    """The compression and encoding of the text file at ``path``.

    Args:
        encoding: a codec name to use instead of detecting one (e.g. ``"latin-1"``, ``"cp1252"``).

    Raises:
        InvalidInteractions: empty file, binary content, a damaged compressed file, an unknown codec.
    """
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise InvalidInteractions(f"{path}: unknown text encoding {excerpt(encoding)}") from None
    with open(path, "rb") as f:
        magic = f.read(8)
    compression = next((name for signature, name in _SIGNATURES if magic.startswith(signature)), None)
    try:
        with _open_bytes(path, compression) as f:
            sample = f.read(_SAMPLE_BYTES)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise InvalidInteractions(f"{path}: not a readable {compression or 'text'} file "
                                  f"({type(exc).__name__})") from None
    if not sample.strip():
        raise InvalidInteractions(f"{path}: no interactions (empty file)")
    if encoding is not None:
        return TextFormat(compression, encoding, explicit=True)
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return TextFormat(compression, "utf-16")
    if b"\x00" in sample:
        raise InvalidInteractions(f"{path}: not a text table (binary content)")
    return TextFormat(compression, "utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8")


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted, cut to ``limit`` characters, control characters escaped: safe in a message or a
    log (:func:`vectorstore.inputs.excerpt`)."""
    return _excerpt(value, limit)


def _open_bytes(path: Path, compression: str | None) -> IO[bytes]:
    if compression == "zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise InvalidInteractions(f"{path}: a zip archive of {len(members)} files; one table is expected")
        return archive.open(members[0])
    opener: Any = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "")
    return opener(path, "rb") if opener else open(path, "rb")
