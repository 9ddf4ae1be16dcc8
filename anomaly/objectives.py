"""Self-supervised training signals of the window encoder: disturbed copies and distance-preserving stress.

Disturbed training copies (``augment``, self-supervised, no labels): an autoencoder that has only seen
normal windows was never asked to encode a spike, a level shift, a flat line or a burst of noise, so
nothing makes its state respond to one, and an anomalous window can land among the normal ones in the
embedding space, where the kNN distance cannot see it. Each batch therefore replaces a fraction
``augment`` of its windows by copies carrying one random disturbance of random size (up to
``augment_scale`` scaled units), which the decoder must reconstruct too: the state learns to encode
disturbances, and the distance to normal training windows grows with them. On NAB (``bench/anomaly.py``,
3 seeds) this raised the NAB-like score from 43.1 to 49.2 (LSTM) and from 42.2 to 47.0 (GRU), with event
F1 about unchanged (0.31, 0.29) and fewer false alarms (LSTM: 0.47 -> 0.18 per 1k clean rows).

Distance-preserving code (``isometry``): the detector ranks windows by L2 distance between embeddings,
but a reconstruction loss alone says nothing about that geometry: any warping of the code space the decoder
can undo reconstructs as well, so windows close in the code need not be close as windows, and the kNN
distance of a new window is then partly arbitrary. A linear autoencoder (PCA) has no such freedom, and on
NAB the raw windows projected on their 16 leading principal components detected better than the raw windows
themselves (NAB-like 55.6 against 52.8). Training therefore adds a normalised stress term: within each
batch (normal and disturbed windows alike), the pairwise embedding distances, times the best single scale
factor, should equal the windows' root-mean-square pairwise distances; ``isometry`` weighs it against the
reconstruction MSE. On NAB (``bench/anomaly.py``'s protocol) it lifted the LSTM from 45.6 to 51.5
NAB-like (10 runs against 5; event F1 0.285 -> 0.323), about the raw windows' 52.8 and 0.331: an
isometric code can at best keep the windows' own geometry. Pretraining with it as well is what puts the
LSTM above the raw windows (:mod:`anomaly.encoder`). Weights 10 and 100 measured alike; 1000 less (50.1).
A GRU's own state is bounded by tanh and cannot stretch with large disturbances: on it the term gained
nothing (45.5 against 45.0, 3 seeds; 44.9 pretrained, 5 seeds). A GRU therefore normalises each window
(:mod:`anomaly.autoencoder`): level and scale are carried apart, the bounded state only places the shape,
and with the term it scored 50.8 from random starts and 53.0 pretrained (10 seeds each, the README).
Measured and not kept: the stress against the distances between reconstructions (42.3) or between the
windows' projections on their 16 leading principal components (50.4), and a linear decoder from ``[h, c]``
(50.3; 51.3 with the stress).
"""

from __future__ import annotations

import torch

__all__ = ["disturb", "stress"]


def disturb(batch: torch.Tensor, gen: torch.Generator, fraction: float, scale: float) -> torch.Tensor:
    """A copy of ``batch`` (n x w x 1) in which about ``fraction`` of the windows carry one disturbance.

    Each chosen window gets, from a random position to its end, one of: a spike (that point only), a
    level shift, a flat line (the value at that position held), or a burst of noise; the size is
    uniform in [1, ``scale``] scaled units with a random sign. Drawn from ``gen`` only (reproducible).
    """
    n, w, _ = batch.shape
    x = batch[..., 0].clone()
    chosen = torch.rand(n, generator=gen) < fraction
    kind = torch.randint(0, 4, (n,), generator=gen)
    pos = torch.randint(0, w, (n,), generator=gen)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    size = (1.0 + (scale - 1.0) * torch.rand(n, generator=gen)) * sign
    noise = torch.randn(n, w, generator=gen)
    steps = torch.arange(w)
    after = (steps[None, :] >= pos[:, None]) & chosen[:, None]
    at = (steps[None, :] == pos[:, None]) & chosen[:, None]
    kind = kind[:, None]
    x = x + torch.where(at & (kind == 0), size[:, None], 0.0)
    x = x + torch.where(after & (kind == 1), size[:, None], 0.0)
    held = x.gather(1, pos[:, None]).expand(-1, w)
    x = torch.where(after & (kind == 2), held, x)
    x = x + torch.where(after & (kind == 3), 0.3 * size[:, None] * noise, 0.0)
    return x.unsqueeze(-1)


def stress(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Normalised stress of embeddings ``z`` (n x d) against windows ``x`` (n x w), scale-free.

    The windows' pairwise root-mean-square distances are compared with the embeddings' pairwise
    distances times the least-squares scale factor, so only the shape of the geometry is asked for, not
    its units; 0 when the embedding is a scaled isometry of the batch.
    """
    dx = torch.pdist(x) / x.shape[1] ** 0.5
    dz = torch.pdist(z)
    scale = (dz * dx).sum() / (dz * dz).sum().clamp_min(1e-12)
    return ((scale * dz - dx) ** 2).mean() / (dx * dx).mean().clamp_min(1e-12)
