"""LightGCN vs implicit ALS and BPR on MovieLens-1M (LightGCN++ split), measured in the same run.

Protocol (as ``shared/bench/recsys_score.py``): train on ``train.txt``, early-stop LightGCN on
``valid.txt``, score top-k of every test user on ``test.txt`` by full ranking with the user's train items
excluded; test items never seen in training stay in the denominator (they cannot be hit).

Usage::

    nice -n 10 .venv/bin/python bench/lightgcn_tune.py [--data DIR] [--k 20] [--threads 2]
        [--lightgcn '{"reg": 1e-4}'] [--skip-baselines]

Prints one row per model (Recall@k, NDCG@k, fit wall and CPU seconds, epochs, peak RSS growth during the
fit) and the ratios to implicit ALS, then the machine's load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys import (
    Interactions,
    make_model,
    ranking_metrics,
    top_k,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys" / "ml-1m"


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak_mb`` is the growth over the starting RSS."""

    def __init__(self, interval: float = 0.05) -> None:
        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_rss = self.peak_rss = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._proc.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak_rss - self.start_rss) / 2**20


def evaluate(train: Interactions, test: Interactions, users: np.ndarray, items: np.ndarray, k: int) -> dict:
    """Recall/NDCG@k over external ids, so test items unknown to ``train`` count as misses."""
    top, _ = top_k(users, items, k, exclude=train.user_matrix())
    recs = {train.user_ids[u]: train.item_ids[row[row >= 0]].tolist() for u, row in enumerate(top)}
    frame = test.to_frame()
    truth = frame.groupby("user")["item"].agg(set).to_dict()
    return ranking_metrics(recs, truth, k)


def timed_fit(fit) -> tuple[object, float, float, float]:
    proc = psutil.Process()
    cpu0 = sum(proc.cpu_times()[:2])
    t0 = time.perf_counter()
    with PeakRSS() as mem:
        result = fit()
    return result, time.perf_counter() - t0, sum(proc.cpu_times()[:2]) - cpu0, mem.peak_mb


def run_implicit(name: str, train: Interactions, threads: int, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    if name == "implicit ALS":
        model = AlternatingLeastSquares(factors=64, num_threads=threads, random_state=seed)
    else:
        model = BayesianPersonalizedRanking(factors=64, num_threads=threads, random_state=seed)
    matrix = train.user_matrix()
    model.fit(matrix, show_progress=False)
    return model.user_factors, model.item_factors, "defaults, 64 factors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lightgcn", default="{}", help="JSON of LightGCN parameters")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print LightGCN's progress per epoch")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    train = Interactions.read(args.data / "train.txt")
    valid = train.align(Interactions.read(args.data / "valid.txt"))
    test = Interactions.read(args.data / "test.txt")
    print(f"data: {train!r}, valid {len(valid)} pairs, test {len(test)} pairs; threads={args.threads}")

    rows = []
    if not args.skip_baselines:
        for name in ("implicit ALS", "implicit BPR"):
            (u, i, note), wall, cpu, mem = timed_fit(lambda n=name: run_implicit(n, train, args.threads,
                                                                                  args.seed))
            rows.append({"model": name, **evaluate(train, test, u, i, args.k), "fit_s": wall, "cpu_s": cpu,
                         "epochs": "", "peak_mb": mem, "note": note})

    params = {"threads": args.threads, "seed": args.seed, **json.loads(args.lightgcn)}

    def progress(event: dict) -> None:
        if args.verbose:
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in event.items()}),
                  flush=True)

    model = make_model("lightgcn", **params)
    emb, wall, cpu, mem = timed_fit(lambda: model.fit(train, valid=valid, progress=progress))
    summary = emb.history[-1]
    epochs = sum(1 for h in emb.history if "epoch" in h)
    rows.append({"model": "LightGCN", **evaluate(train, test, emb.user_vectors, emb.item_vectors, args.k),
                 "fit_s": wall, "cpu_s": cpu, "epochs": f"{summary['best_epoch']}/{epochs}", "peak_mb": mem,
                 "note": f"stopped: {summary['stopped']}; " + json.dumps(params)})

    base = next((r for r in rows if r["model"] == "implicit ALS"), None)
    k = args.k
    print(f"\n| model | Recall@{k} | NDCG@{k} | vs ALS (R / N) | fit s | cpu s | best/run epochs "
          f"| peak MB | note |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = "" if base is None else (
            f"{r[f'recall@{k}'] / base[f'recall@{k}']:.3f} / {r[f'ndcg@{k}'] / base[f'ndcg@{k}']:.3f}"
        )
        print(f"| {r['model']} | {r[f'recall@{k}']:.4f} | {r[f'ndcg@{k}']:.4f} | {ratio} | {r['fit_s']:.1f} "
              f"| {r['cpu_s']:.1f} | {r['epochs']} | {r['peak_mb']:.0f} | {r['note']} |")
    print(f"\nload average (1, 5, 15 min): {os.getloadavg()}; cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
