"""Where the shipped pretrained encoder weights live, and reading them (no torch training here).

The weights (``anomaly/weights/<cell><hidden>[x<layers>][-norm].pt``, a few KB each) are written by
:mod:`anomaly.pretrain`; :class:`~anomaly.encoder.WindowEncoder` starts from them. This module is the one
owner of their file names, so the trainer and the encoder cannot disagree on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["WEIGHTS_DIR", "pretrained_state", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def weights_path(cell: str, hidden: int, layers: int = 1, normalize: bool = False) -> Path:
    """Where the shipped weights for this encoder shape live (they may not exist)."""
    return WEIGHTS_DIR / f"{cell}{hidden}{'' if layers == 1 else f'x{layers}'}{'-norm' if normalize else ''}.pt"


def pretrained_state(cell: str, hidden: int, layers: int = 1, normalize: bool = False) -> dict[str, Any] | None:
    """The shipped pretrained ``state_dict`` for this encoder shape (loaded ``weights_only``), or ``None``."""
    path = weights_path(cell, hidden, layers, normalize)
    if not path.exists():
        return None
    import torch

    return torch.load(path, weights_only=True)
