"""LightGCN's propagation: this project's CSR operator against torch_geometric's ``LGConv``, in one run.

One forward + backward pass of the 3-layer mean ``1/(L+1) sum_l A^l E`` (64-d, float32) over Gowalla's
training graph (29,858 users + 40,981 items, 1.44M directed edges), as one BPR step of LightGCN does:

* ``ours``: ``recsys.LightGCN.propagate`` (torch CSR matmuls, all layers in one autograd node
  whose backward reuses the same symmetric CSR);
* ``LGConv, edge_index``: PyG's layer as its docs use it (``normalize=True``: gcn_norm every call, then
  message passing by gather/scatter over ``edge_index``);
* ``LGConv, torch.sparse CSR``: PyG's layer over the same pre-normalised adjacency as a torch sparse
  CSR tensor (``normalize=False``: its ``spmm`` path; torch-sparse and pyg-lib are not installed).

All three are checked against each other first. Timing: median of ``--repeat`` passes after one warm-up,
wall and CPU seconds (the machine may be shared: the CPU time and the ratios of one run are the figures
to read).

Usage: nice -n 5 .venv/bin/python bench/propagation.py [--repeat 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as LightGCN.fit sets it before importing torch

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine, table, write
from bench._heldout import DATA as RECSYS_DATA
from bench._heldout import check_data
from recsys import Interactions, LightGCN

TRAIN = "gowalla/train.txt"  # under ../shared/data/recsys beside the repository
LAYERS, DIM = 3, 64


def _pyg(conv, x: torch.Tensor, graph, weight=None) -> torch.Tensor:
    out, h = x, x
    for _ in range(LAYERS):
        h = conv(h, graph) if weight is None else conv(h, graph, weight)
        out = out + h
    return out / (LAYERS + 1)


def _time(fn, x0: torch.Tensor, grad: torch.Tensor, repeat: int) -> tuple[float, float, torch.Tensor]:
    """Median wall and CPU seconds of forward + backward; returns the input gradient for checking."""
    walls, cpus = [], []
    for i in range(repeat + 1):
        x = x0.clone().requires_grad_(True)
        w, c = time.perf_counter(), time.process_time()
        (fn(x) * grad).sum().backward()
        if i:  # the first pass warms up allocators and kernels
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus)), x.grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)  # torch's "sparse CSR support is in beta"
    from torch_geometric.nn import LGConv

    train = Interactions.read(check_data(RECSYS_DATA) / TRAIN)
    adj = LightGCN.adjacency(train.user_matrix())
    n, edges = adj.shape[0], adj.col_indices().numel()
    r = sp.csr_matrix(train.user_matrix())
    g = sp.bmat([[None, r], [r.T, None]]).tocoo()
    edge_index = torch.from_numpy(np.vstack([g.row, g.col]).astype(np.int64))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, DIM, generator=gen)
    grad = torch.randn(n, DIM, generator=gen)
    cases = {
        "ours: CSR, one autograd node": lambda x: LightGCN.propagate(adj, x, LAYERS),
        "PyG LGConv, edge_index (normalize=True)": lambda x: _pyg(LGConv(), x, edge_index),
        "PyG LGConv, torch.sparse CSR (normalize=False)": lambda x: _pyg(LGConv(normalize=False), x, adj),
    }
    results = {name: _time(fn, x0, grad, args.repeat) for name, fn in cases.items()}
    ref = results["ours: CSR, one autograd node"]
    for name, (_, _, g_x) in results.items():
        err = float((g_x - ref[2]).abs().max())
        assert err < 1e-4, f"{name}: gradient differs from ours by {err}"
    rows = [[name, wall, cpu, wall / ref[0], cpu / ref[1]] for name, (wall, cpu, _) in results.items()]
    text = (f"# LightGCN propagation, forward + backward ({machine()}, {args.threads} threads)\n\n"
            f"Gowalla train graph: {n:,} nodes, {edges:,} directed edges, {LAYERS} layers, {DIM}-d; median "
            f"of {args.repeat}; gradients agree to 1e-4.\n\n"
            + table(["propagation", "wall s", "CPU s", "wall / ours", "CPU / ours"], rows)
            + f"\n\nload average {os.getloadavg()}")
    print(text)
    print(f"\nwritten to {write('propagation', text)}")


if __name__ == "__main__":
    main()
