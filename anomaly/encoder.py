"""Sequence autoencoder (LSTM or GRU) that turns fixed-length windows into embedding vectors.

The encoder RNN reads a window; the embedding is its final state (:mod:`anomaly.autoencoder` has the
network): ``[h, c]`` for an LSTM (``2 * hidden`` values), and for a GRU, which reads each window relative
to its own level and scale (``normalize``), ``[level, scale * h / |h|]`` (``hidden + 1`` values). The
decoder RNN receives ``h`` at every step and reconstructs the window; training minimises the
reconstruction MSE plus a stress term.

Two self-supervised training signals shape that state for the kNN distance (:mod:`anomaly.objectives`
says why and what each measured on NAB): disturbed copies of windows (``augment``) teach it to encode
spikes, shifts, flat lines and noise bursts, and a stress term (``isometry``) keeps distances between
embeddings proportional to distances between windows.

Why a GRU normalises and an LSTM does not: a GRU's state is tanh-bounded and cannot follow the distances
of large anomalies; carried apart, level and scale are exact and unbounded, and the bounded state only has
to encode shape. On NAB (``bench/anomaly.py``, random starts, 5 seeds each) that took the GRU from 46.5
to 50.8 NAB-like (52.0 in another run of the same protocol) and event F1 from 0.289 to 0.320. The LSTM
keeps its unbounded cell state ``c`` and detected less normalised (47.8 against 51.7, 3 and 5 seeds).

Pretrained start (``init``): the prefix a detector is fitted on is short (NAB's: at most 750 rows), so
the encoder starts from weights pretrained on synthetic series (:mod:`anomaly.pretrain`; they ship with
the package for the default shapes, learnt with the same disturbances and loss) when there are some for
its shape (``init="auto"``, the default), and fine-tunes them for 10 epochs, a third of the training time
from random weights. On NAB (the README's table, 10 seeds each) the pretrained LSTM scored 54.7 NAB-like,
event F1 0.338, every seed above the raw windows' 52.8, against 52.1 and 0.326 from random starts; the
pretrained GRU 53.0 and 0.340 against 50.8 and 0.317.

Training is deterministic for a given seed: weights are initialised and batches shuffled from generators
seeded with ``seed`` inside a forked RNG state (the caller's global torch RNG is left untouched), and CPU
RNN kernels are deterministic. Windows are subsampled with a stride so that at most ``max_windows`` are
used, which keeps training to seconds on long series.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .autoencoder import SeqAutoencoder
from .exceptions import InvalidParameter, NotFitted
from .objectives import disturb
from .pretrained import pretrained_state, weights_path

__all__ = ["EncoderConfig", "WindowEncoder", "torch_threads", "train_step"]

log = logging.getLogger(__name__)

CELLS = ("lstm", "gru")
#: ``auto``: the shipped pretrained weights when there are some for the encoder's shape, else random.
INITS = ("auto", "pretrained", "random")
# Fine-tuning pretrained weights needs fewer passes than learning from random ones. On NAB (LSTM, NAB-like
# mean over seeds): 1 epoch 53.8 (3 seeds), 5 epochs 54.0, 10 epochs 54.7 (10 seeds each), 20 epochs 52.1
# (5 seeds); fine-tuning longer drifts away from what pretraining on varied series learnt.
DEFAULT_EPOCHS = {"pretrained": 10, "random": 30}
# Instance normalisation (see the module docstring and anomaly.autoencoder).
DEFAULT_NORMALIZE = {"lstm": False, "gru": True}
# Largest training disturbance, in scaled units. A GRU's state is all tanh-bounded (an LSTM also has its
# unbounded cell state c): with disturbances up to 8 units one GRU seed on NAB spent its state on them and
# raised 1.02 false alarms per 1k clean rows; up to 4 it stayed under 0.25. The LSTM detected more with 8.
DEFAULT_AUGMENT_SCALE = {"lstm": 8.0, "gru": 4.0}
# Weight of the distance-preserving stress term (see anomaly.objectives). Without normalising, a GRU's
# tanh-bounded state could not follow the windows' distances (NAB-like 45.0 -> 45.5), and its weight was 0.
DEFAULT_ISOMETRY = {"lstm": 10.0, "gru": 10.0}


@dataclass(frozen=True)
class EncoderConfig:
    """Hyper-parameters of a :class:`WindowEncoder` (JSON-serialisable through :func:`dataclasses.asdict`)."""

    cell: str = "gru"
    hidden: int = 16
    layers: int = 1
    epochs: int | None = None
    lr: float = 1e-2
    batch_size: int = 64
    seed: int = 0
    max_windows: int = 1024
    augment: float = 0.5
    augment_scale: float | None = None
    window: int | None = None
    init: str | None = "auto"
    isometry: float | None = None
    normalize: bool | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise InvalidParameter(f"cell={self.cell!r} is not one of {CELLS}")
        if self.normalize is None:
            object.__setattr__(self, "normalize", DEFAULT_NORMALIZE[self.cell])
        if not isinstance(self.normalize, bool):
            raise InvalidParameter(f"normalize={self.normalize!r} must be true or false")
        if self.init is None:  # what callers before "auto" became the default passed
            object.__setattr__(self, "init", "auto")
        if self.init not in INITS:
            raise InvalidParameter(f"init={self.init!r} is not one of {INITS}")
        for name in ("hidden", "layers", "batch_size", "max_windows"):
            if int(getattr(self, name)) < 1:
                raise InvalidParameter(f"{name}={getattr(self, name)} must be >= 1")
        if self.init == "auto":
            shipped = weights_path(self.cell, int(self.hidden), int(self.layers), bool(self.normalize)).exists()
            object.__setattr__(self, "init", "pretrained" if shipped else "random")
        epochs = DEFAULT_EPOCHS[str(self.init)] if self.epochs is None else int(self.epochs)
        object.__setattr__(self, "epochs", epochs)
        if epochs < 1:
            raise InvalidParameter(f"epochs={epochs} must be >= 1")
        if not self.lr > 0:
            raise InvalidParameter(f"lr={self.lr} must be > 0")
        if not 0 <= self.augment <= 1:
            raise InvalidParameter(f"augment={self.augment} must be in [0, 1]")
        scale = DEFAULT_AUGMENT_SCALE[self.cell] if self.augment_scale is None else float(self.augment_scale)
        object.__setattr__(self, "augment_scale", scale)
        if not scale > 0:
            raise InvalidParameter(f"augment_scale={scale} must be > 0")
        isometry = DEFAULT_ISOMETRY[self.cell] if self.isometry is None else float(self.isometry)
        object.__setattr__(self, "isometry", isometry)
        if not isometry >= 0:
            raise InvalidParameter(f"isometry={isometry} must be >= 0")

    # Typed reads of the settings __post_init__ resolved (they are never None after it).
    @property
    def n_epochs(self) -> int:
        return int(self.epochs or 0)

    @property
    def normalizing(self) -> bool:
        return bool(self.normalize)

    @property
    def disturbance(self) -> float:
        return float(self.augment_scale or 0.0)

    @property
    def stress(self) -> float:
        return float(self.isometry or 0.0)


class WindowEncoder:
    """LSTM/GRU sequence autoencoder over windows of a scaled series; the embedding is the encoder state.

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        hidden: RNN hidden size (the embedding has ``2 * hidden`` values for an LSTM, ``hidden + 1`` for a
            normalising GRU: see :attr:`dim`).
        layers: stacked RNN layers.
        epochs, lr, batch_size: Adam training schedule (``epochs`` default: 10 from pretrained weights,
            30 from random ones).
        seed: makes initialisation and shuffling, hence embeddings, reproducible.
        max_windows: training windows are subsampled with a stride down to at most this many.
        augment: fraction of each training batch replaced by randomly disturbed copies (0 disables).
        augment_scale: largest disturbance, in scaled units (the training prefix's IQR); ``None``: 8 for
            an LSTM, 4 for a GRU (see :data:`DEFAULT_AUGMENT_SCALE`).
        isometry: weight of the term keeping embedding distances proportional to window distances
            (0 disables); ``None``: 10 (see :data:`DEFAULT_ISOMETRY`).
        init: starting weights: ``"random"``, ``"pretrained"`` (the shipped weights learnt from
            synthetic series, see :mod:`anomaly.pretrain`), or ``"auto"`` (pretrained when weights ship
            for this cell, hidden size, layer count and ``normalize``, else random; ``None`` too).
        normalize: read each window relative to its own level and scale, embedding
            ``[level, scale * unit code]`` (see :mod:`anomaly.autoencoder`); ``None``: for a GRU, not for
            an LSTM (see :data:`DEFAULT_NORMALIZE`).

    Raises:
        InvalidParameter: a value outside its range.
    """

    def __init__(
        self,
        cell: str = "gru",
        hidden: int = 16,
        layers: int = 1,
        epochs: int | None = None,
        lr: float = 1e-2,
        batch_size: int = 64,
        seed: int = 0,
        max_windows: int = 1024,
        augment: float = 0.5,
        augment_scale: float | None = None,
        init: str | None = "auto",
        isometry: float | None = None,
        normalize: bool | None = None,
    ) -> None:
        self.config = EncoderConfig(
            cell, hidden, layers, epochs, lr, batch_size, seed, max_windows, augment, augment_scale, init=init,
            isometry=isometry, normalize=normalize,
        )
        self._model: SeqAutoencoder | None = None
        self.loss_history: list[float] = []

    @property
    def dim(self) -> int:
        """Embedding dimension: the code's (``hidden`` for a GRU, ``2 * hidden`` for an LSTM's ``[h, c]``),
        plus one for the level when normalising."""
        cfg = self.config
        return cfg.hidden * (2 if cfg.cell == "lstm" else 1) + (1 if cfg.normalizing else 0)

    @property
    def window(self) -> int | None:
        """Window length the encoder was trained on (``None`` before :meth:`fit`)."""
        return self.config.window

    def fit(self, windows: np.ndarray) -> WindowEncoder:
        """Train on ``windows`` (n x w, already scaled).

        Raises:
            InvalidParameter: not a non-empty 2-D finite array.
        """
        w = _check_windows(windows)
        cfg = self.config
        stride = max(1, -(-w.shape[0] // cfg.max_windows))
        data = torch.from_numpy(np.ascontiguousarray(w[::stride], dtype=np.float32)).unsqueeze(-1)
        start = time.perf_counter()
        with torch_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = SeqAutoencoder(cfg.cell, cfg.hidden, cfg.layers, cfg.normalizing)
            if cfg.init == "pretrained":
                model.load_state_dict(_pretrained(cfg))
            gen = torch.Generator().manual_seed(cfg.seed)
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            self.loss_history = []
            model.train()
            for _ in range(cfg.n_epochs):
                perm = torch.randperm(data.shape[0], generator=gen)
                total = 0.0
                for i in range(0, data.shape[0], cfg.batch_size):
                    batch = data[perm[i : i + cfg.batch_size]]
                    total += train_step(model, opt, batch, gen, cfg) * batch.shape[0]
                self.loss_history.append(total / data.shape[0])
        model.eval()
        self._model = model
        self.config = EncoderConfig(**{**asdict(cfg), "window": int(w.shape[1])})
        log.info(
            "%s encoder: %d windows (stride %d), %d epochs, loss %.4f -> %.4f in %.1f s",
            cfg.cell, data.shape[0], stride, cfg.n_epochs, self.loss_history[0], self.loss_history[-1],
            time.perf_counter() - start,
        )
        return self

    def start(self, window: int) -> WindowEncoder:
        """Use the starting weights as they are, without training, for windows of ``window`` values: what a
        detector does when its training prefix is too short to fine-tune on.

        Raises:
            InvalidParameter: no pretrained weights ship for this shape (``init`` must resolve to pretrained).
        """
        cfg = self.config
        if cfg.init != "pretrained":
            raise InvalidParameter(f"no pretrained weights ship for a {cfg.cell} with hidden={cfg.hidden}, "
                                   f"layers={cfg.layers}, normalize={cfg.normalize}: it must be trained")
        with torch_threads(1), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = SeqAutoencoder(cfg.cell, cfg.hidden, cfg.layers, cfg.normalizing)
            model.load_state_dict(_pretrained(cfg))
        model.eval()
        self._model = model
        self.loss_history = []
        self.config = EncoderConfig(**{**asdict(cfg), "window": int(window)})
        return self

    def embed(self, windows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Embeddings (n x hidden, float32) of ``windows`` (n x w, scaled like the training windows).

        Raises:
            NotFitted: before :meth:`fit`.
            InvalidParameter: wrong shape or non-finite values.
        """
        if self._model is None:
            raise NotFitted("WindowEncoder.embed called before fit (or from_state)")
        w = _check_windows(windows, allow_empty=True)
        if self.window is not None and w.shape[1] != self.window:
            raise InvalidParameter(f"windows have length {w.shape[1]}, the encoder was trained on {self.window}")
        out = np.empty((w.shape[0], self.dim), dtype=np.float32)
        encode = self._model.fast_encode if self.config.cell == "gru" else self._model.encode
        with torch_threads(1), torch.inference_mode():
            for i in range(0, w.shape[0], batch_size):
                chunk = torch.from_numpy(np.ascontiguousarray(w[i : i + batch_size], dtype=np.float32))
                out[i : i + chunk.shape[0]] = encode(chunk.unsqueeze(-1)).numpy()
        return out

    # -- persistence ---------------------------------------------------------------------------------------
    def state_bytes(self) -> bytes:
        """The trained weights as ``torch.save(state_dict)`` bytes (no pickled objects)."""
        if self._model is None:
            raise NotFitted("WindowEncoder.state_bytes called before fit")
        buf = io.BytesIO()
        torch.save(self._model.state_dict(), buf)
        return buf.getvalue()

    def config_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-able dict (pass it back to :meth:`from_state`)."""
        return asdict(self.config)

    @classmethod
    def from_state(cls, state: bytes, config: dict[str, Any]) -> WindowEncoder:
        """Rebuild an encoder from :meth:`state_bytes` and :meth:`config_dict` (``weights_only`` load).

        Raises:
            InvalidParameter: the config is invalid or does not match the weights.
        """
        try:
            # Encoders saved before pretrained weights existed started from random ones, and those saved
            # before normalising existed did not normalise.
            cfg = EncoderConfig(**{"init": "random", "normalize": False, **config})
        except TypeError as exc:
            raise InvalidParameter(f"bad encoder config {config!r}: {exc}") from None
        enc = cls.__new__(cls)
        enc.config = cfg
        enc.loss_history = []
        model = SeqAutoencoder(cfg.cell, cfg.hidden, cfg.layers, cfg.normalizing)
        try:
            model.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
        except (RuntimeError, KeyError, EOFError) as exc:
            raise InvalidParameter(f"encoder state does not match config {config!r}: {exc}") from None
        model.eval()
        enc._model = model
        return enc


def train_step(model: SeqAutoencoder, opt: torch.optim.Optimizer, batch: torch.Tensor, gen: torch.Generator,
               cfg: EncoderConfig) -> float:
    """One Adam step on ``batch`` (disturbed as ``cfg`` says); returns the batch loss.

    Fine-tuning (:meth:`WindowEncoder.fit`) and pretraining (:mod:`anomaly.pretrain`) both step through
    here, so the shipped weights are learnt with exactly the objective they are fine-tuned with.
    """
    if cfg.augment > 0:
        batch = disturb(batch, gen, cfg.augment, cfg.disturbance)
    opt.zero_grad()
    loss = model.loss(batch, cfg.stress)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.detach().item()


def _pretrained(cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    state = pretrained_state(cfg.cell, cfg.hidden, cfg.layers, cfg.normalizing)
    if state is None:
        raise InvalidParameter(
            f"init='pretrained': no pretrained weights ship for a {cfg.cell} with hidden={cfg.hidden}, "
            f"layers={cfg.layers}, normalize={cfg.normalize} "
            f"({weights_path(cfg.cell, cfg.hidden, cfg.layers, cfg.normalizing)} is missing); use "
            "init='random' or 'auto'"
        )
    return state


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads: RNNs this small gain nothing from more, and on a busy machine
    spinning OpenMP threads make them many times slower."""
    prev = torch.get_num_threads()
    if n != prev:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != prev:
            torch.set_num_threads(prev)


def _check_windows(windows: np.ndarray, allow_empty: bool = False) -> np.ndarray:
    w = np.asarray(windows)
    if w.ndim != 2 or (w.shape[0] == 0 and not allow_empty) or w.shape[1] == 0:
        raise InvalidParameter(f"windows must be a non-empty 2-D array (n x window), got shape {w.shape}")
    if w.dtype.kind not in "fiu" or not np.isfinite(w).all():
        raise InvalidParameter("windows must be finite numbers")
    return w
