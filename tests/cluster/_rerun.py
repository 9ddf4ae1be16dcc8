"""Re-running a suite's tests on the cluster: its test functions and fixtures, loaded from their file.

A test module of this package calls :func:`suite` with a file of another suite (relative to ``tests/``) and
puts what it returns in its own namespace: pytest then collects those tests here, where this package's
fixtures (the cluster's ``redis_url``, ``redis_client``, environment) override the session's.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path
from typing import Any

from _pytest.assertion.rewrite import rewrite_asserts
from _pytest.fixtures import FixtureFunctionDefinition

TESTS = Path(__file__).resolve().parents[1]


def load(relative: str) -> Any:
    """The module at ``tests/<relative>``, loaded anew under a name of its own (``cluster__<dir>__<stem>``)."""
    path = TESTS / relative
    folder = str(path.parent)
    if folder not in sys.path:  # its own helpers (anomaly_synth, _reliability) import by bare name
        sys.path.append(folder)
    name = "cluster__" + "__".join(Path(relative).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # With pytest's assertion rewriting, as pytest imports test modules: a failure shows the values compared.
    source = path.read_bytes()
    tree = ast.parse(source, filename=str(path))
    rewrite_asserts(tree, source, str(path))
    exec(compile(tree, str(path), "exec"), module.__dict__)  # noqa: S102 - a test file of this repository
    return module


def suite(relative: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The tests (``test_*``) and fixtures of ``tests/<relative>``, but the tests named in ``skip``."""
    module = load(relative)
    out: dict[str, Any] = {}
    for name, value in vars(module).items():
        if name in skip:
            continue
        if name.startswith("test_") and callable(value) or isinstance(value, FixtureFunctionDefinition):
            out[name] = value
    if hasattr(module, "pytestmark"):
        out["pytestmark"] = module.pytestmark
    return out


def fixtures(relative: str) -> dict[str, Any]:
    """The fixtures of a suite's ``conftest.py`` (pytest does not look there from this package)."""
    return {k: v for k, v in suite(relative).items() if not k.startswith("test_") and k != "pytestmark"}
