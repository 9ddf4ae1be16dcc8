"""The test suite's own scheduling over xdist workers (``tests/_scheduling.py``) names modules that exist."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_slow_modules_started_first_exist() -> None:
    pytest.importorskip("xdist")
    from _scheduling import SLOW_FIRST

    missing = [path for path in SLOW_FIRST if not (ROOT / path).is_file()]
    assert not missing, f"moved or renamed: update SLOW_FIRST in tests/_scheduling.py: {missing}"
