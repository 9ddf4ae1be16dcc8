"""What several command groups share: the ``train`` group, ``--param KEY=VALUE``, ``--worker-paths``, and
choices read from the library's own constants when an option is used (not when ``ea --help`` lists the
commands: the libraries behind them import pandas, torch's absence checks and hnswlib)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

import click

__all__ = ["LibraryChoice", "WORKER_PATHS", "parse_params", "train"]


@click.group()
def train() -> None:
    """Submit training jobs to the `train` queue (a worker must run: `ea worker -Q train`)."""


WORKER_PATHS = click.option("--worker-paths", is_flag=True, help="The paths are absolute paths on the workers' "
                            "file system: not checked here (by default they are made absolute and checked).")


def parse_params(pairs: tuple[str, ...], hint: str = "--param") -> dict[str, Any]:
    """``--param KEY=VALUE`` pairs as a dict (values read as JSON when they are, else as text).

    Raises:
        click.BadParameter: a pair without ``=``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=hint)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


class LibraryChoice(click.Choice):
    """A choice among a library constant (``"module:NAME"``, a sequence of strings), read on first use."""

    def __init__(self, constant: str, case_sensitive: bool = True) -> None:
        self._constant = constant
        self._loaded: Sequence[str] | None = None
        super().__init__((), case_sensitive=case_sensitive)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            module, _, name = self._constant.partition(":")
            self._loaded = tuple(getattr(importlib.import_module(module), name))
        return self._loaded

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:  # click.Choice.__init__ assigns it
        if value:
            self._loaded = tuple(value)
