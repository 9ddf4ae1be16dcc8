"""Every module a docstring, comment or document names exists: ``recsys/live/writer.py``-like paths and
``recsys.live.writer``-like dotted names (of the project's packages) point at what is in the tree today.

A dotted name resolves module by module; what follows the last module must be a name that module defines
or imports (a function, class, constant, submodule). Names ending in a file extension (``recsys.json``) are
file names, not modules.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vectorstore", "recsys", "anomaly", "alerts", "workers", "bench")
_ANY = "|".join(PACKAGES)
PATH = re.compile(rf"(?<![\w/.-])((?:{_ANY}|tests)/[\w/]*\w\.py)\b")
DOTTED = re.compile(rf"(?<![\w/.-])((?:{_ANY})(?:\.\w+)+)")
FILE_SUFFIXES = {"py", "json", "jsonl", "md", "csv", "txt", "gz", "toml", "png", "log"}


def _texts() -> list[Path]:
    files = [p for package in (*PACKAGES, "tests") for p in (ROOT / package).rglob("*.py")
             if p != Path(__file__).resolve()]  # its own examples are stale on purpose
    return sorted([*files, ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def _prose(path: Path) -> str:
    """A document's text; a module's docstrings, other strings and comments (its code's names are its own:
    a variable ``alerts`` has an ``alerts.append``), each at its own line."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return text
    lines = [""] * (text.count("\n") + 1)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.COMMENT, tokenize.STRING) or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            for offset, line in enumerate(token.string.split("\n")):
                lines[token.start[0] - 1 + offset] += " " + line
    return "\n".join(lines)


@functools.cache
def _names(module: Path) -> frozenset[str]:
    """What a module defines or imports at any level (a lazily imported name included: it is a string
    somewhere in the module)."""
    tree = ast.parse(module.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name | ast.arg):
            names.add(node.id if isinstance(node, ast.Name) else node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)
    return frozenset(names)


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[-1] in FILE_SUFFIXES or parts[-1].startswith("__"):  # a file name; a module's __file__
        return True
    module = None
    for i, name in enumerate(parts, start=1):
        base = ROOT.joinpath(*parts[:i])
        if (base / "__init__.py").exists():
            module = base / "__init__.py"
        elif base.with_suffix(".py").exists():
            module = base.with_suffix(".py")
        elif base.is_dir():  # a namespace package (bench)
            module = None
        else:
            return module is not None and name in _names(module)
    return True


def test_every_module_path_and_dotted_module_name_in_the_docs_exists() -> None:
    stale = []
    for path in _texts():
        text = _prose(path)
        where = str(path.relative_to(ROOT))
        for match in PATH.finditer(text):
            # tests/cluster names the tests it re-runs relative to tests/
            if not any((base / match.group(1)).exists() for base in (ROOT, ROOT / "tests")):
                stale.append(f"{where}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(1)}")
        for match in DOTTED.finditer(text):
            if not _resolves(match.group(1)):
                stale.append(f"{where}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(1)}")
    assert not stale, "names of modules that do not exist:\n" + "\n".join(stale)


def test_the_check_finds_a_stale_path_and_a_stale_module_name() -> None:
    assert not _resolves("recsys.deltas") and not _resolves("recsys.live.writer.NoSuchWriter")
    assert not _resolves("vectorstore.registry")
    assert _resolves("recsys.live.writer.CatalogueWriter") and _resolves("vectorstore.ModelRegistry.publish")
    assert _resolves("recsys.LightGCN") and _resolves("bench.recsys.json")
    assert PATH.findall("see recsys/_delta_apply.py, not a/recsys/x.py") == ["recsys/_delta_apply.py"]
