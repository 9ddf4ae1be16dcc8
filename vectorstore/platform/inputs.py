"""Input files read on someone else's behalf: the data root, and what a message may quote of a file.

A worker reads the files a job message names, so whoever can queue a job can name any file the worker can
read (``/proc/self/environ``, a mounted secret). Two rules limit what that gives them:

* **The data root** (``EA_DATA_ROOT``): when it is set, :func:`input_path` resolves a path (``..``,
  symlinks) and refuses one outside the root with :class:`~vectorstore.exceptions.InputNotAllowed` before
  anything is opened. Unset, every path is read as given.
* **No content in messages.** Readers name the file, the line and the column of a problem. They quote a
  cell only from a file that is plainly of the expected format, and then through :func:`excerpt` (a few
  characters, control characters escaped) or :func:`excerpt_values` (a few such cells); a header is listed
  only when :func:`plain_header` holds.

The readers of :mod:`recsys` and :mod:`anomaly` apply the second rule; the tasks of :mod:`workers` apply
the first to every path they are given.
"""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from ..exceptions import InputNotAllowed
from .settings import Settings, get_settings

__all__ = ["EXCERPT_CHARS", "EXCERPT_VALUES", "NulGuard", "excerpt", "excerpt_values", "input_path", "plain_header",
           "plain_name"]

#: Characters of a cell a message may quote.
EXCERPT_CHARS = 20
#: Cells of a list a message may quote.
EXCERPT_VALUES = 5
#: A header name as spreadsheets and exporters write them: letters, digits, ``_ - . ( ) / #`` and spaces.
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()/#-]{0,31}")


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of ``value``'s text cut to ``limit`` characters, non-printable characters shown as ``?``.

    Safe to put in a message or a log: it never holds more than ``limit`` characters of the value.
    """
    text = str(value)
    cut = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return repr(cut + ("…" if len(text) > limit else ""))


_END = object()


def excerpt_values(values: Iterable[object], count: int = EXCERPT_VALUES, limit: int = EXCERPT_CHARS) -> str:
    """``[a, b, ...]``: the first ``count`` of ``values``, each through :func:`excerpt`; a longer input ends in
    ``...``. Safe in a message or a log."""
    it = iter(values)
    shown = [excerpt(value, limit) for value in itertools.islice(it, count)]
    more = next(it, _END) is not _END
    return "[" + ", ".join(shown) + (", ..." if more else "") + "]"


def plain_name(name: object) -> bool:
    """Whether ``name`` reads as a column name (1-32 characters of :data:`_PLAIN_NAME`), not as data."""
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name.strip()) is not None


def plain_header(names: Iterable[object]) -> bool:
    """Whether a file's first line, split into ``names``, is plainly a table header: at least two columns,
    every one a :func:`plain_name`. A one-column "header" is more likely a token (a secret file) than a table.
    """
    names = list(names)
    return len(names) >= 2 and all(plain_name(n) for n in names)


def input_path(path: str | os.PathLike, settings: Settings | None = None, *, what: str = "input") -> Path:
    """The path to open for a file named by a job: ``path`` as given, or, under a data root, its real path.

    Args:
        path: the path the job names.
        settings: the data root is ``settings.data_root`` (``EA_DATA_ROOT``); default: from the environment.
        what: what the file is (``"interactions"``, ``"series"``...), for the message.

    Returns:
        ``Path(path)`` when no data root is set; else the resolved absolute path (symlinks and ``..``
        followed), which is inside the root.

    Raises:
        InputNotAllowed: a data root is set and the path (once resolved) is outside it, or is relative.
            Nothing of the file is read or looked at (not even whether it exists).
    """
    settings = settings or get_settings()
    root = settings.data_root
    given = Path(path)
    if root is None:
        return given
    if not given.is_absolute():
        raise InputNotAllowed(f"{what} path {str(given)!r} is relative: under EA_DATA_ROOT={root} a job names "
                              "absolute paths")
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(given))
    if real != real_root and real_root not in real.parents:
        raise InputNotAllowed(f"{what} path {str(given)!r} is outside EA_DATA_ROOT={root}: workers read only "
                              "files under it (symlinks and '..' are followed before the check)")
    return real


class NulGuard(io.TextIOBase):
    """A text stream that raises ``error(line)`` at the first NUL character, naming its 1-based line.

    pandas' CSV parser ends a cell at a NUL byte, silently cutting ``"ab\\x00cd"`` to ``"ab"`` (two ids
    become one, ``"12\\x0034"`` becomes 12): readers hand it this wrapper instead of the path. Costs one
    ``find`` and one ``count`` per chunk read.

    Args:
        stream: the decoded text (closed with this wrapper).
        error: builds the exception to raise from the line number (the caller's typed error).
    """

    def __init__(self, stream: IO[str], error: Callable[[int], Exception]) -> None:
        super().__init__()
        self._stream, self._error, self._lines = stream, error, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        data = self._stream.read(-1 if size is None else size)
        at = data.find("\x00")
        if at >= 0:
            raise self._error(self._lines + data.count("\n", 0, at) + 1)
        self._lines += data.count("\n")
        return data

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]  # a text stream's readline
        line = self._stream.readline(-1 if size is None else size)
        if "\x00" in line:
            raise self._error(self._lines + 1)
        self._lines += line.count("\n")
        return line

    def close(self) -> None:
        self._stream.close()
        super().close()
