"""Per-node figures for docs/scaling.md: training throughput per worker, scoring points per core, state per series.

- training: `make_model(...).fit(...)` alone on a dataset's train split (default ml-1m and Gowalla from
  `../shared/data/recsys`), torch on one thread: spectral (its defaults), LightGCN (64-d, 3 layers, 2 epochs,
  no early stop) and Node2Vec (64-d, 1 worker), in interactions per CPU-second per pass;
- scoring: `bench/anomaly_speed.py`'s cases for the default detector (one thread, learning on, points per
  CPU-second, median of 3 runs: one batch, streamed in 1,000- and 100-point batches in process and through
  `anomaly.service.score_points` with the state in Redis);
- state: `MEMORY USAGE` of one series' stream state after 10,000 points through `score_points`.

The machine is shared: figures are per CPU-second of the process (`time.process_time`, all its threads),
which is what a dedicated core delivers, not wall time.

    python bench/scaling.py [--datasets ml-1m gowalla] [--redis-url redis://127.0.0.1:6379/14] [--skip-training]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, table, write

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys"
MODELS = [("spectral", {}, 1),
          ("lightgcn", {"dim": 64, "epochs": 2, "holdout": 0, "eval_every": 1000, "threads": 1}, 2),
          ("node2vec", {"dim": 64, "workers": 1}, 1)]


def training(datasets: list[str]) -> list[list]:
    import torch

    from recsys import Interactions, make_model

    torch.set_num_threads(1)
    rows = []
    for data in datasets:
        inter = Interactions.read(str(DATA / data / "train.txt"))
        for algo, params, passes in MODELS:
            cpu = time.process_time()
            emb = make_model(algo, **params).fit(inter)
            cpu = time.process_time() - cpu
            rows.append([data, algo, len(inter), inter.n_users, inter.n_items, emb.item_vectors.shape[1], passes,
                         cpu, len(inter) * passes / cpu])
            print(rows[-1], file=sys.stderr, flush=True)
    return rows


def scoring(redis_url: str) -> tuple[list[list], int]:
    """The default detector's cases of bench/anomaly_speed.py (``[case, points per CPU-s, load]`` rows), and
    the bytes of one series' state after 10,000 points."""
    from anomaly import score_points, train_detector
    from bench.anomaly_speed import measure
    from vectorstore import ModelRegistry, Settings

    speed = [[r["case"], r.get("pps_median", r.get("skipped")), r.get("load_before", "")]
             for r in measure("raw+paa", [1000, 100], 3)]
    settings = Settings(redis_url=redis_url, key_prefix="eabench-scaling-state:")
    registry = ModelRegistry(settings)
    rng = np.random.default_rng(0)
    series = np.sin(2 * np.pi * np.arange(12_000) / 50) + 0.1 * rng.standard_normal(12_000)
    stamps = pd.date_range("2026-01-01", periods=12_000, freq="min").astype(str).tolist()
    train_detector(pd.DataFrame({"timestamp": stamps[:2000], "value": series[:2000]}), name="state",
                   registry=registry, series_id="s0")
    for a in range(2000, 12_000, 1000):
        score_points("state", "s1", stamps[a : a + 1000], series[a : a + 1000].tolist(), registry=registry)
    keys = [k for k in registry.client.scan_iter("eabench-scaling-state:*") if k.endswith(b":state")]
    size = max(int(registry.client.memory_usage(k, samples=0) or 0) for k in keys)
    for key in registry.client.scan_iter("eabench-scaling-state:*"):
        registry.client.delete(key)
    return speed, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["ml-1m", "gowalla"])
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--skip-training", action="store_true")
    a = ap.parse_args()
    text = f"Per-node figures ({machine()}; per CPU-second of the process)\n"
    if not a.skip_training:
        rows = training(a.datasets)
        text += "\n" + table(["data", "model", "interactions", "users", "items", "dim", "passes", "fit CPU-s",
                              "interactions per CPU-s per pass"], rows) + "\n"
    speed, state = scoring(a.redis_url)
    text += "\n" + table(["scoring path (raw+paa, one thread)", "points per CPU-s, median of 3", "load average"],
                          speed) + f"\n\nstream state of one series after 10,000 points: {state:,} bytes\n"
    print(text)
    print(f"written to {write('scaling', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
