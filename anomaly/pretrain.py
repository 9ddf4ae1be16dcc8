"""Pretrained starting weights for :class:`~anomaly.encoder.WindowEncoder`, learnt from synthetic series.

A detector is fitted on a short normal prefix (NAB's probationary period is at most 750 rows), little for
a recurrent autoencoder to learn from random weights what a window's shape is. These weights are learnt
instead from a broad family of synthetic series (seasonal sums of sinusoids, square and sawtooth waves,
AR(1) processes, spiky utilisation, trends, daily-like bumps; noise and quantisation on top), each
robust-scaled as the detector scales a series, and trained with the fine-tuning's own step (disturbed
copies, reconstruction plus the cell's stress weight, the cell's default normalising).
``WindowEncoder`` starts from them by default when they exist for its shape and fine-tunes 10 epochs, a
third of the training time (:mod:`anomaly.encoder` gives what that measured on NAB).

The weights ship with the package (``anomaly/weights/<cell><hidden>[-norm].pt``, a few KB each; ``-norm``:
learnt reading windows relative to their level and scale). They are made
by this module from a fixed seed, with no data read or downloaded: ``python -m anomaly.pretrain`` writes
them again (bit-identical with the same torch build).
"""

from __future__ import annotations

import argparse
import io
import logging
import time

import numpy as np
import torch

from .autoencoder import SeqAutoencoder
from .encoder import CELLS, DEFAULT_NORMALIZE, EncoderConfig, torch_threads, train_step
from .exceptions import InvalidParameter
from .pretrained import WEIGHTS_DIR, pretrained_state, weights_path
from .windows import MAX_WINDOW, MIN_WINDOW, RobustScaler

__all__ = ["WEIGHTS_DIR", "pretrained_state", "pretrain", "synthetic_windows", "weights_path"]

log = logging.getLogger(__name__)

#: Window lengths drawn during pretraining: the range of windows the encoders read (short windows, and the
#: piecewise means of a long context).
LENGTHS = (MIN_WINDOW, MAX_WINDOW)


def synthetic_series(rng: np.random.Generator, n: int) -> np.ndarray:
    """One robust-scaled synthetic series of ``n`` points from a random family (see the module doc)."""
    t = np.arange(n)
    kind = rng.integers(0, 6)
    if kind == 0:  # seasonal: a sum of one to three sinusoids
        x = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * t / rng.uniform(4, 300) + rng.uniform(0, 2 * np.pi))
                for _ in range(rng.integers(1, 4)))
    elif kind == 1:  # square or sawtooth wave
        period = rng.uniform(6, 200)
        x = np.sign(np.sin(2 * np.pi * t / period)) if rng.random() < 0.5 else (t % period) / period
    elif kind == 2:  # AR(1), from nearly white to nearly a random walk
        phi, e = rng.uniform(0.3, 0.995), rng.standard_normal(n)
        x = np.empty(n)
        x[0] = e[0]
        for i in range(1, n):
            x[i] = phi * x[i - 1] + e[i]
    elif kind == 3:  # spiky utilisation: gamma noise with rare bursts
        x = rng.gamma(rng.uniform(0.5, 3), 1, n) + (rng.random(n) < rng.uniform(0, 0.05)) * rng.uniform(2, 10, n)
    elif kind == 4:  # trend plus season
        x = t / n * rng.uniform(-2, 2) + np.sin(2 * np.pi * t / rng.uniform(10, 300))
    else:  # daily-like bumps
        x = np.maximum(0, np.sin(2 * np.pi * t / rng.uniform(20, 300))) ** rng.uniform(1, 4)
    x = x + rng.uniform(0, 0.3) * rng.standard_normal(n) * (np.std(x) + 1e-3)
    if rng.random() < 0.3:  # integer-like metrics (counts, percentages)
        x = np.round(x * rng.uniform(2, 20)) / 10
    # Scaled as a detector scales its training prefix.
    return RobustScaler.fit(x).transform(x)


def synthetic_windows(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """``count`` windows of ``length`` points, each cut from its own synthetic series (float32)."""
    out = np.empty((count, length), dtype=np.float32)
    for i in range(count):
        series = synthetic_series(rng, length + 200)
        start = rng.integers(0, 200)
        out[i] = series[start : start + length]
    return out


def pretrain(cell: str, hidden: int = 16, layers: int = 1, *, normalize: bool | None = None, steps: int = 20_000,
             batch_size: int = 64, lr: float = 5e-3, seed: int = 0, progress: bool = False) -> bytes:
    """Train a sequence autoencoder on synthetic windows; returns its ``torch.save(state_dict)`` bytes.

    Each step draws a window length in :data:`LENGTHS`, a batch of synthetic windows of that length, and
    takes one :func:`~anomaly.encoder.train_step` with the cell's default settings: half the windows
    disturbed, reconstruction plus the cell's stress weight, as fine-tuning does. ``normalize``: as
    :class:`~anomaly.encoder.WindowEncoder`'s (``None``: the cell's default).

    Raises:
        InvalidParameter: unknown cell or non-positive sizes.
    """
    if cell not in CELLS or hidden < 1 or layers < 1 or steps < 1:
        raise InvalidParameter(f"cell={cell!r}, hidden={hidden}, layers={layers}, steps={steps}: "
                               f"cell must be one of {CELLS} and the sizes >= 1")
    cfg = EncoderConfig(cell=cell, hidden=hidden, layers=layers, init="random", normalize=normalize)
    rng = np.random.default_rng(seed)
    with torch_threads(1), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = SeqAutoencoder(cell, hidden, layers, cfg.normalizing)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        started, recent = time.perf_counter(), []
        for step in range(1, steps + 1):
            length = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
            batch = torch.from_numpy(synthetic_windows(rng, batch_size, length)).unsqueeze(-1)
            recent.append(train_step(model, opt, batch, gen, cfg))
            if step % 1000 == 0:
                log.log(logging.INFO if progress else logging.DEBUG, "%s%d step %d: loss %.4f (%.0f s)",
                        cell, hidden, step, float(np.mean(recent)), time.perf_counter() - started)
                recent = []
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description="Write the shipped pretrained encoder weights again.")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20_000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    WEIGHTS_DIR.mkdir(exist_ok=True)
    for cell in args.cells.split(","):
        # One value for both the file name and the training, so the two cannot disagree.
        normalize = DEFAULT_NORMALIZE[cell]
        path = weights_path(cell, args.hidden, normalize=normalize)
        path.write_bytes(pretrain(cell, args.hidden, normalize=normalize, steps=args.steps, progress=True))
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
