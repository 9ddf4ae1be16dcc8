"""Interaction files as bytes: compression told by the first bytes, the text encoding, short excerpts.

A file is read as its content says, not as its name says: ``interactions.csv.gz`` and a gzip file named
``interactions.csv`` read alike. Text is UTF-8 (a byte-order mark is skipped, UTF-16 recognised by its
mark); a file that is not UTF-8 is read as latin-1 (MovieLens' raw ``u.item`` is) with a warning, unless
the caller names an encoding. Binary content is refused. Messages never quote file content except through
:func:`excerpt` (a few characters, escaped), and only from a file that is plainly of the expected format.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from vectorstore import NulGuard, excerpt, open_decompressed, sniff_compression

from ..exceptions import InvalidInteractions

__all__ = ["COMPRESSED_SUFFIXES", "TextFormat", "excerpt", "is_parquet", "text_format"]

#: Suffixes that name a compression, stripped before the format is told by the remaining suffix.
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")
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
        return io.TextIOWrapper(open_decompressed(path, self.compression, InvalidInteractions), encoding=self.encoding)

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
    compression, sample = sniff_compression(path, InvalidInteractions)
    if not sample.strip():
        raise InvalidInteractions(f"{path}: no interactions (empty file)")
    if encoding is not None:
        return TextFormat(compression, encoding, explicit=True)
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return TextFormat(compression, "utf-16")
    if b"\x00" in sample:
        raise InvalidInteractions(f"{path}: not a text table (binary content)")
    return TextFormat(compression, "utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8")
