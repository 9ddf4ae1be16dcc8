"""Held-out splits of the recsys benchmark: choices are made on a tune split, figures reported on a file no
choice looked at.

Per dataset, two (train, test) pairs of :class:`recsys.Interactions` in one id space:

* ``report``: what the tables show. ml-100k ``u1.base -> u1.test``; ml-1m ``train + valid -> test``;
  gowalla ``train -> valid`` (the paper's test file is held back and never read).
* ``tune``: where every setting is chosen (baselines' grids here; the project's defaults in the research
  this bench records). ml-1m ``train -> valid``; ml-100k and gowalla a split carved from the report
  training file: of each user with at least 2 interactions, a seeded share (20% / 11.2%, about what the
  report split holds out) is the tune test.

The data are found as ``../shared/data/recsys`` relative to the repository (``--data`` overrides it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys import Interactions

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "recsys"
MODES = ("tune", "report")
#: dataset -> (report train files, report test file, tune: a test file or the share carved from train)
SPLITS: dict[str, tuple[tuple[str, ...], str, str | float]] = {
    "ml-100k": (("ml-100k/u1.base",), "ml-100k/u1.test", 0.2),
    "ml-1m": (("ml-1m/train.txt", "ml-1m/valid.txt"), "ml-1m/test.txt", "ml-1m/valid.txt"),
    "gowalla": (("gowalla/train.txt",), "gowalla/valid.txt", 0.112),
}
CARVE_SEED = 27


def check_data(data: Path) -> Path:
    """``data`` if it holds the datasets; else a SystemExit saying where it looked."""
    if not (data / "ml-1m").is_dir():
        raise SystemExit(f"recsys data not found at {data} (expected ../shared/data/recsys beside the repository; "
                         "--data names another folder)")
    return data


def split(data: Path, dataset: str, mode: str) -> tuple[Interactions, Interactions]:
    """``(train, test)`` of ``dataset`` for ``mode`` (``"tune"`` or ``"report"``); test in train's id maps."""
    train_files, test_file, tune = SPLITS[dataset]
    if mode == "report":
        train = _joined(data, train_files)
        return train, train.align(Interactions.read(data / test_file))
    if isinstance(tune, str):  # a file of its own: train on the first report train file (ml-1m: train)
        train = _joined(data, train_files[:1])
        return train, train.align(Interactions.read(data / tune))
    frame = _joined(data, train_files).to_frame()
    held = carve(frame, tune, CARVE_SEED)
    train = Interactions.from_frame(frame[~held])
    return train, train.align(Interactions.from_frame(frame[held][["user", "item"]]))


def carve(frame: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Mask of the rows held out: ``max(1, round(fraction * n))`` seeded rows of each user with n >= 2."""
    rng = np.random.default_rng(seed)
    keys = rng.random(len(frame))
    users = frame["user"].to_numpy()
    order = np.lexsort((keys, users))
    codes, counts = np.unique(users[order], return_counts=True)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.empty(len(frame), np.int64)
    rank[order] = np.arange(len(frame)) - starts
    n_held = np.where(counts >= 2, np.maximum(1, np.rint(fraction * counts)), 0).astype(np.int64)
    per_row = np.empty(len(frame), np.int64)
    per_row[order] = np.repeat(n_held, counts)
    return rank < per_row


def _joined(data: Path, files: tuple[str, ...]) -> Interactions:
    if len(files) == 1:
        return Interactions.read(data / files[0])
    frames = [Interactions.read(data / f).to_frame() for f in files]
    return Interactions.from_frame(pd.concat(frames, ignore_index=True)[["user", "item"]])
