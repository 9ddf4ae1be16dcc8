"""Input files as bytes: compression told by the first bytes, not the name.

Exports are renamed: ``interactions.csv.gz`` and a gzip file named ``interactions.csv`` read alike, and so
do bz2, xz and one-file zip archives. :func:`sniff_compression` tells the compression and reads the start of
the content (for the caller's own checks: empty, binary, encoding); :func:`open_decompressed` opens the
content. Both raise the caller's typed error (built by ``error`` from a message naming the file), never
quoting file content.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["COMPRESSIONS", "HEAD_BYTES", "open_decompressed", "sniff_compression"]

#: (leading bytes, pandas' compression name)
COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
#: Bytes of the (decompressed) content :func:`sniff_compression` reads by default.
HEAD_BYTES = 1 << 16


def sniff_compression(path: Path, error: Callable[[str], Exception],
                      head_bytes: int = HEAD_BYTES) -> tuple[str | None, bytes]:
    """The compression of the file at ``path`` (pandas' name, or ``None``) and the start of its content.

    Args:
        path: the file (a missing or unreadable file raises ``OSError`` as ``open`` does).
        error: builds the caller's typed error from a message.
        head_bytes: how much of the decompressed content to return.

    Raises:
        ``error(...)``: a damaged compressed file, or a zip archive not holding exactly one file.
    """
    with open(path, "rb") as f:
        magic = f.read(8)
    compression = next((name for signature, name in COMPRESSIONS if magic.startswith(signature)), None)
    try:
        with open_decompressed(path, compression, error) as f:
            head = f.read(head_bytes)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as exc:
        raise error(f"{path}: not a readable {compression or 'text'} file ({type(exc).__name__})") from None
    return compression, head


def open_decompressed(path: Path, compression: str | None, error: Callable[[str], Exception]) -> IO[bytes]:
    """The content of the file at ``path``, decompressed as ``compression`` says (``None``: as it is).

    Raises:
        ``error(...)``: a zip archive not holding exactly one file (pandas reads one, as exporters write them).
    """
    if compression == "zip":
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if len(members) != 1:
            archive.close()
            raise error(f"{path}: a zip archive holding {len(members)} files; one table is expected")
        return archive.open(members[0])
    opener: Any = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "", open)
    return opener(path, "rb")
