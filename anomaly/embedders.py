"""Window embedders: one small contract for every way a detector turns a stretch of a series into a vector.

A detector channel cuts the scaled series into windows of ``span`` rows (one ending at every row) and
embeds each window with an :class:`Embedder`; the kNN distance is taken between embeddings. The contract
is ``fit`` (on the training prefix's windows), ``embed`` (windows -> float32 vectors, one row per window,
each row depending on its own window only, so that batch and streaming embed alike), and
``to_state`` / :func:`embedder_from_state` for publishing.

* :class:`RawWindow`: the window itself (the Euclidean distance between windows).
* :class:`PaaContext`: a long context summarised by piecewise aggregate approximation: the means of
  ``segments`` equal pieces, times ``sqrt(piece)`` so that distances stay on the raw windows' scale.
* :class:`RecurrentEmbedder`: an LSTM or GRU sequence autoencoder's state
  (:class:`~anomaly.encoder.WindowEncoder`), over the window itself or over its piecewise means. torch is
  imported only when one is fitted or loaded.
"""

from __future__ import annotations

import abc
import logging
import math
from typing import Any, ClassVar

import numpy as np

from .exceptions import InvalidParameter, SeriesTooShort

__all__ = ["Embedder", "RawWindow", "PaaContext", "RecurrentEmbedder", "EMBEDDERS", "make_embedder",
           "embedder_from_state"]

CELLS = ("lstm", "gru")
#: Fewest windows a recurrent embedder fine-tunes on; below, its pretrained start is used as it is.
MIN_FIT_WINDOWS = 32

log = logging.getLogger(__name__)


class Embedder(abc.ABC):
    """Turns windows of ``span`` scaled values into ``dim``-dimensional float32 vectors.

    Subclasses set :attr:`kind` and implement :meth:`embed`; learned ones also :meth:`fit` and
    :meth:`to_state`.
    """

    kind: ClassVar[str]

    def __init__(self, span: int) -> None:
        if int(span) < 2:
            raise InvalidParameter(f"span={span} must be >= 2")
        self.span = int(span)

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of one embedding."""

    def fit(self, windows: np.ndarray) -> Embedder:
        """Learn from the training prefix's windows (``n x span``, scaled); the default learns nothing."""
        _check(windows, self.span)
        return self

    @abc.abstractmethod
    def embed(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings (``n x dim`` float32, C-contiguous) of ``windows`` (``n x span``, scaled)."""

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """``(meta, blobs)``: JSON-able settings and binary parts that :func:`embedder_from_state` reads."""
        return {"kind": self.kind, "span": self.span}, {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(span={self.span}, dim={self.dim})"


class RawWindow(Embedder):
    """The scaled window itself: distances are Euclidean distances between windows."""

    kind = "raw"

    @property
    def dim(self) -> int:
        return self.span

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_check(windows, self.span), dtype=np.float32)


class PaaContext(Embedder):
    """Piecewise aggregate approximation of a long window: the means of ``segments`` equal pieces.

    Each mean is multiplied by ``sqrt(span / segments)``, so the distance between two summaries is the
    distance between the step functions they describe, on the same scale as raw windows.

    Raises:
        InvalidParameter: ``segments`` < 1 or not a divisor of ``span``.
    """

    kind = "paa"

    def __init__(self, span: int = 256, segments: int = 16) -> None:
        super().__init__(span)
        if int(segments) < 1 or self.span % int(segments):
            raise InvalidParameter(f"segments={segments} must divide span={span}")
        self.segments = int(segments)

    @property
    def dim(self) -> int:
        return self.segments

    def embed(self, windows: np.ndarray) -> np.ndarray:
        return piece_means(windows, self.span, self.segments, weighted=True)

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        meta, blobs = super().to_state()
        return {**meta, "segments": self.segments}, blobs


class RecurrentEmbedder(Embedder):
    """The state of an LSTM/GRU sequence autoencoder (:class:`~anomaly.encoder.WindowEncoder`).

    With ``segments``, the encoder reads the window's piecewise means (a long context in a few steps)
    instead of every value. ``encoder_params`` go to :class:`~anomaly.encoder.WindowEncoder` (hidden,
    epochs, seed, init, ...).

    Raises:
        InvalidParameter: unknown cell, or ``segments`` not a divisor of ``span``.
    """

    kind = "recurrent"

    def __init__(self, cell: str, span: int, segments: int | None = None, **encoder_params: Any) -> None:
        super().__init__(span)
        if cell not in CELLS:
            raise InvalidParameter(f"cell={cell!r} is not one of {CELLS}")
        if segments is not None and (int(segments) < 2 or self.span % int(segments)):
            raise InvalidParameter(f"segments={segments} must be >= 2 and divide span={span}")
        self.cell = cell
        self.segments = None if segments is None else int(segments)
        self.encoder_params = dict(encoder_params)
        self.encoder: Any = None

    @property
    def dim(self) -> int:
        if self.encoder is None:
            raise InvalidParameter("a recurrent embedder has no dimension before fit")
        return int(self.encoder.dim)

    def _inputs(self, windows: np.ndarray) -> np.ndarray:
        w = _check(windows, self.span)
        return w if self.segments is None else piece_means(w, self.span, self.segments, weighted=False)

    def fit(self, windows: np.ndarray) -> RecurrentEmbedder:
        """Fine-tune the encoder on the prefix's windows; with fewer than :data:`MIN_FIT_WINDOWS` (a short
        prefix and a long context), use its pretrained start as it is.

        Raises:
            SeriesTooShort: too few windows and no pretrained weights for this shape.
        """
        from .encoder import WindowEncoder  # lazy: torch only when a recurrent embedder is used

        inputs = self._inputs(windows)
        encoder = WindowEncoder(cell=self.cell, **self.encoder_params)
        if inputs.shape[0] >= MIN_FIT_WINDOWS:
            self.encoder = encoder.fit(inputs)
            return self
        try:
            self.encoder = encoder.start(inputs.shape[1])
        except InvalidParameter:
            raise SeriesTooShort(f"{inputs.shape[0]} windows of {self.span} rows to train a {self.cell} encoder "
                                 f"on; at least {MIN_FIT_WINDOWS} are needed (no pretrained weights for its shape)"
                                 ) from None
        log.info("%s encoder: %d windows are too few to fine-tune on; its pretrained start is used as is",
                 self.cell, inputs.shape[0])
        return self

    def embed(self, windows: np.ndarray) -> np.ndarray:
        if self.encoder is None:
            from .exceptions import NotFitted

            raise NotFitted("RecurrentEmbedder.embed called before fit")
        inputs = self._inputs(windows)
        if inputs.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(self.encoder.embed(inputs), dtype=np.float32)

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        meta, _ = super().to_state()
        return ({**meta, "cell": self.cell, "segments": self.segments, "encoder_params": self.encoder_params,
                 "encoder": self.encoder.config_dict()}, {"encoder": self.encoder.state_bytes()})

    @classmethod
    def _from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> RecurrentEmbedder:
        from .encoder import WindowEncoder

        emb = cls(meta["cell"], meta["span"], meta.get("segments"), **meta.get("encoder_params", {}))
        emb.encoder = WindowEncoder.from_state(blobs["encoder"], meta["encoder"])
        return emb


#: embedder kind -> class (what :func:`embedder_from_state` dispatches on).
EMBEDDERS: dict[str, type[Embedder]] = {"raw": RawWindow, "paa": PaaContext, "recurrent": RecurrentEmbedder}


def make_embedder(name: str, span: int, segments: int = 16, **encoder_params: Any) -> Embedder:
    """The embedder called ``name`` for windows of ``span`` rows.

    ``name``: ``"raw"``, ``"paa"`` (piecewise means in ``segments`` pieces), ``"lstm"`` / ``"gru"``
    (an encoder over the window), or ``"lstm-paa"`` / ``"gru-paa"`` (an encoder over the piecewise means).

    Raises:
        InvalidParameter: an unknown name or bad sizes.
    """
    if name == "raw":
        return RawWindow(span)
    if name == "paa":
        return PaaContext(span, segments)
    cell, _, over = name.partition("-")
    if cell in CELLS and over in ("", "paa"):
        return RecurrentEmbedder(cell, span, segments if over else None, **encoder_params)
    raise InvalidParameter(f"embedder {name!r} is not one of raw, paa, lstm, gru, lstm-paa, gru-paa")


def embedder_from_state(meta: dict[str, Any], blobs: dict[str, bytes]) -> Embedder:
    """Rebuild an embedder from :meth:`Embedder.to_state` output.

    Raises:
        InvalidParameter: the kind is unknown or the parts do not fit together.
    """
    kind = meta.get("kind")
    try:
        if kind == "raw":
            return RawWindow(meta["span"])
        if kind == "paa":
            return PaaContext(meta["span"], meta["segments"])
        if kind == "recurrent":
            return RecurrentEmbedder._from_state(meta, blobs)
    except KeyError as exc:
        raise InvalidParameter(f"embedder state lacks {exc}") from None
    raise InvalidParameter(f"unknown embedder kind {kind!r}; known: {sorted(EMBEDDERS)}")


def piece_means(windows: np.ndarray, span: int, segments: int, *, weighted: bool) -> np.ndarray:
    """Means of ``segments`` equal pieces of each window (times ``sqrt(piece)`` when ``weighted``), float32.

    Each row is reduced on its own contiguous copy, so a window gives bit-identical means whichever
    batch it arrives in.
    """
    piece = span // segments
    rows = np.asarray(windows).reshape(-1, span)
    out = np.empty((rows.shape[0], segments), np.float32)
    # In blocks of rows: the contiguous copy of a block stays in the CPU cache (the whole batch's would be
    # megabytes for long contexts, evicting what the graph search needs next).
    for a in range(0, rows.shape[0], _PIECE_ROWS):
        w = np.ascontiguousarray(rows[a : a + _PIECE_ROWS], dtype=np.float64).reshape(-1, segments, piece)
        means = w.sum(axis=2) / piece
        if weighted:
            means *= math.sqrt(piece)
        out[a : a + _PIECE_ROWS] = means
    return out


_PIECE_ROWS = 128  # windows per block of piece_means: 128 x 256 float64 values is 256 kB


def _check(windows: np.ndarray, span: int) -> np.ndarray:
    w = np.asarray(windows)
    if w.ndim != 2 or w.shape[1] != span:
        raise InvalidParameter(f"windows must be an n x {span} array, got shape {w.shape}")
    return w
