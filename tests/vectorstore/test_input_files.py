"""The platform's input-file helpers that recsys and anomaly share: compression told by the first bytes, and
excerpts of cells that are safe in a message."""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from pathlib import Path

import pytest

from vectorstore import excerpt, excerpt_values, open_decompressed, sniff_compression

TABLE = b"timestamp,value\n2024-01-01,1\n"


class Refused(ValueError):
    """A caller's own typed error."""


@pytest.mark.parametrize("kind, write", [
    (None, lambda path: path.write_bytes(TABLE)),
    ("gzip", lambda path: path.write_bytes(gzip.compress(TABLE))),
    ("bz2", lambda path: path.write_bytes(bz2.compress(TABLE))),
    ("xz", lambda path: path.write_bytes(lzma.compress(TABLE))),
    ("zip", lambda path: zipfile.ZipFile(path, "w").writestr("inner.csv", TABLE)),
])
def test_compression_is_told_by_the_content_not_the_name(tmp_path: Path, kind, write) -> None:
    path = tmp_path / "export.csv"  # the same name whatever the content
    write(path)
    compression, head = sniff_compression(path, Refused, head_bytes=9)
    assert compression == kind and head == TABLE[:9]
    with open_decompressed(path, compression, Refused) as f:
        assert f.read() == TABLE


def test_damaged_or_ambiguous_archives_raise_the_callers_error_naming_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(TABLE)[:12])
    with pytest.raises(Refused, match=r"broken.csv.gz: not a readable gzip file \(\w+\)$"):
        sniff_compression(broken, Refused)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", TABLE)
        archive.writestr("b.csv", TABLE)
    with pytest.raises(Refused, match="two.zip: a zip archive holding 2 files; one table is expected"):
        sniff_compression(two, Refused)


def test_excerpts_quote_a_few_short_escaped_cells() -> None:
    assert excerpt("a\x00b" + "c" * 30) == repr("a?b" + "c" * 17 + "…")
    assert excerpt_values(["x", 1, None]) == "['x', '1', 'None']"
    assert excerpt_values(range(7)) == "['0', '1', '2', '3', '4', ...]"
    assert excerpt_values(["y" * 30], count=1, limit=3) == "['yyy…']"
    assert excerpt_values([]) == "[]"
