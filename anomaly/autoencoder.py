"""The torch network behind :class:`~anomaly.encoder.WindowEncoder`: an LSTM or GRU sequence autoencoder.

The encoder RNN reads a window; its final state in the last layer is the *code*: ``h`` for a GRU,
``[h, c]`` for an LSTM (``h`` alone is squashed through the output gate and loses much of what
distinguishes windows; on NAB the kNN distances on ``h`` alone detected clearly less). The decoder RNN
receives ``h`` at every step and reconstructs the window.

Instance normalisation (``normalize``): the cell reads each window relative to its own level ``m`` (mean)
and scale ``s`` (root-mean-square deviation from ``m``), and the embedding is ``[m, s * u]`` with ``u``
the code scaled to unit length. A GRU's state is a convex blend of tanh outputs, bounded in (-1, 1): it
cannot stretch with a spike or a level shift many times the normal range, so large anomalies crowd the
edge of its code space. Carried apart, level and scale are exact and unbounded, and the bounded code only
has to place the window's *shape* on a sphere. The geometry then matches the windows' own: for windows
``x = m + s * z`` (``z`` zero-mean, unit RMS), ``|x - x'|^2 / w = (m - m')^2 + (s - s')^2 + s s' |z - z'|^2 / w``,
and ``|e - e'|^2`` has the same form with ``|u - u'|^2`` in place of ``|z - z'|^2 / w``, which the stress
term (:mod:`anomaly.objectives`) asks the code to follow. The reconstruction is ``m + s * decoded`` and its
loss is taken in the window's own units, so flat windows, whose shape is mostly noise, weigh little.
"""

from __future__ import annotations

import torch
from torch import nn

from .objectives import stress

__all__ = ["SeqAutoencoder"]

#: Added to a window's scale before dividing by it: flat windows are read as (near) zero shape, not noise
#: blown up. In scaled units (the training prefix's IQR).
SCALE_FLOOR = 1e-2


class SeqAutoencoder(nn.Module):
    """LSTM/GRU sequence autoencoder over windows (batch x length x 1).

    Args:
        cell: ``"lstm"`` or ``"gru"``.
        hidden: hidden size of both RNNs.
        layers: stacked layers of both RNNs.
        normalize: read windows relative to their own level and scale (see the module docstring).
    """

    def __init__(self, cell: str, hidden: int, layers: int, normalize: bool = False) -> None:
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.cell = cell
        self.hidden = hidden
        self.normalize = normalize
        self.encoder = rnn(1, hidden, layers, batch_first=True)
        self.decoder = rnn(hidden, hidden, layers, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of windows ``x`` through torch's RNN kernels."""
        x, m, s = self._level_scale(x)
        return self._embedding(self._code(x), m, s)

    def fast_encode(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`encode` for inference, stepping the cell by hand.

        On the Intel machine this was measured on, torch's CPU GRU kernel was slow for small hidden sizes
        (~20-50k windows/s on one core) and the input projection for all steps at once plus a few
        element-wise ops per step about twice as fast, so the encoder uses this for GRUs (the LSTM branch
        is kept for tests). CPUs differ: on one AMD EPYC the kernel was 15% faster than this (62k against
        52k windows/s), on another this was 55% faster (201k against 130k).
        """
        seq, m, s = self._level_scale(x)
        h = c = seq.new_zeros(seq.shape[0], 0)
        for layer in range(self.encoder.num_layers):
            w_ih = getattr(self.encoder, f"weight_ih_l{layer}")
            w_hh = getattr(self.encoder, f"weight_hh_l{layer}")
            b_ih = getattr(self.encoder, f"bias_ih_l{layer}")
            b_hh = getattr(self.encoder, f"bias_hh_l{layer}")
            gi = torch.addmm(b_ih, seq.reshape(-1, seq.shape[-1]), w_ih.t()).view(seq.shape[0], seq.shape[1], -1)
            hidden = w_hh.shape[1]
            h = seq.new_zeros(seq.shape[0], hidden)
            c = seq.new_zeros(seq.shape[0], hidden)  # an LSTM's cell state (unused by a GRU)
            outs: list[torch.Tensor] | None = [] if layer + 1 < self.encoder.num_layers else None
            w_hh_t = w_hh.t()
            for t in range(seq.shape[1]):
                gh = torch.addmm(b_hh, h, w_hh_t)
                if self.cell == "gru":
                    rz = torch.sigmoid(gi[:, t, : 2 * hidden] + gh[:, : 2 * hidden])
                    r, z = rz[:, :hidden], rz[:, hidden:]
                    n = torch.tanh(gi[:, t, 2 * hidden :] + r * gh[:, 2 * hidden :])
                    h = n + z * (h - n)
                else:
                    g = gi[:, t] + gh
                    i_f = torch.sigmoid(g[:, : 2 * hidden])
                    o = torch.sigmoid(g[:, 3 * hidden :])
                    c = i_f[:, hidden:] * c + i_f[:, :hidden] * torch.tanh(g[:, 2 * hidden : 3 * hidden])
                    h = o * torch.tanh(c)
                if outs is not None:
                    outs.append(h)
            if outs is not None:
                seq = torch.stack(outs, dim=1)
        code = torch.cat([h, c], dim=1) if self.cell == "lstm" else h
        return self._embedding(code, m, s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of windows ``x``, in their own units."""
        x, m, s = self._level_scale(x)
        return self._decode(self._code(x), x.shape[1], m, s)

    def loss(self, x: torch.Tensor, isometry: float = 0.0) -> torch.Tensor:
        """Reconstruction MSE of the batch ``x`` plus ``isometry`` times the stress of its embeddings."""
        xn, m, s = self._level_scale(x)
        code = self._code(xn)
        loss = nn.functional.mse_loss(self._decode(code, x.shape[1], m, s), x)
        if isometry > 0 and x.shape[0] > 2:
            loss = loss + isometry * stress(self._embedding(code, m, s), x[..., 0])
        return loss

    # -- parts ---------------------------------------------------------------------------------------------
    def _level_scale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``x`` as the cell reads it, with the level and scale taken out (``None`` without normalising)."""
        if not self.normalize:
            return x, None, None
        m = x.mean(dim=1, keepdim=True)
        s = (x - m).pow(2).mean(dim=1, keepdim=True).sqrt()
        return (x - m) / (s + SCALE_FLOOR), m, s

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.encoder(x)
        if self.cell == "lstm":
            return torch.cat([state[0][-1], state[1][-1]], dim=1)
        return state[-1]

    def _embedding(self, code: torch.Tensor, m: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
        if m is None or s is None:
            return code
        unit = code / code.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return torch.cat([m[:, 0], s[:, 0] * unit], dim=1)

    def _decode(self, code: torch.Tensor, length: int, m: torch.Tensor | None, s: torch.Tensor | None
                ) -> torch.Tensor:
        y, _ = self.decoder(code[:, : self.hidden].unsqueeze(1).expand(-1, length, -1))
        out = self.out(y)
        if m is None or s is None:
            return out
        return m + (s + SCALE_FLOOR) * out
