"""Benchmark: the anomaly detector's scoring speed, points per CPU-second, median of runs, load beside it.

One thread, learning on. A detector is trained on the first 20,000 points (``--train``) of a noisy sine
with one spike, then scores, each measured ``--runs`` times (median, with the range):

* **batch**: the 80,000 rows after the prefix in one ``StreamScorer.update`` (what ``ea detect`` runs
  after training);
* **stream, in process**: 20,000 rows in 1,000-point (and ``--steps``) batches through one
  ``StreamScorer``;
* **stream, through Redis**: the same batches through ``anomaly.score_points`` (what the ``ea.score_series``
  task runs: ISO timestamps in, the series' state read and written in Redis under its lock, the published
  detector in the worker's cache), against the configured Redis (keys under a prefix of their own,
  deleted after). When Redis cannot be reached the column says so.

CPU seconds (``time.process_time``) rather than wall: the machine is shared, and CPU time is what one
scoring costs; it still grows with the load (caches and memory bandwidth are shared too), hence the load
average printed before and after each measurement.

Usage: nice -n 5 .venv/bin/python bench/anomaly_speed.py [--runs 5] [--embeddings raw+paa] [--steps 1000,100]
       [--train 20000]
       .venv/bin/python bench/anomaly_speed.py --profile batch|stream|redis   (cProfile of one run, top 25)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomaly import KnnDetector, load_detector, publish_detector, reset_stream, score_points  # noqa: E402
from bench._common import machine, write  # noqa: E402

N_TRAIN = 20_000  # training rows (--train): 20,000 is the stress case, a large hnswlib graph of training windows
BATCH, STREAM = 80_000, 20_000  # rows scored in one batch, and streamed


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def series(n: int = N_TRAIN) -> np.ndarray:
    """``n + 80,000`` points: a noisy sine of period 50 with one spike, seeded."""
    rng = np.random.default_rng(0)
    t = np.arange(n + BATCH)
    out = np.sin(2 * np.pi * t / 50) + 0.1 * rng.standard_normal(t.size)
    out[n + 30_000] += 3
    return out


def cpu_runs(run: Callable[[], Any], runs: int) -> list[float]:
    """CPU seconds of each of ``runs`` calls of ``run``."""
    out = []
    for _ in range(runs):
        start = time.process_time()
        run()
        out.append(time.process_time() - start)
    return out


class Cases:
    """The scoring cases of one trained detector, each a no-argument callable scoring ``points`` rows."""

    def __init__(self, embedding: str, steps: list[int], train: int = N_TRAIN) -> None:
        self.train = train
        self.values = series(train)
        start = time.process_time()
        self.detector = KnnDetector(embedding).fit(self.values[:train])
        self.fit_cpu = time.process_time() - start
        self.steps = steps
        self.registry: Any = None

    def batch(self) -> None:
        self.detector.continuation().update(self.values[self.train :])

    def stream(self, step: int) -> None:
        scorer = self.detector.continuation()
        for a in range(self.train, self.train + STREAM, step):
            scorer.update(self.values[a : a + step])

    def connect(self) -> str | None:
        """Publish the detector to Redis for the service cases; the reason when Redis is out of reach."""
        import redis

        from vectorstore import ModelRegistry, get_settings

        self.settings = get_settings().with_(key_prefix=f"eabench:{uuid.uuid4().hex[:8]}:")
        stamps = pd.date_range("2026-01-01", periods=self.values.size, freq="min", tz="UTC").astype(str).tolist()
        self.stamps = stamps
        try:
            self.registry = ModelRegistry(self.settings)
            publish_detector(self.registry, "speed", self.detector, extra_meta={"series_id": "s"})
            load_detector(self.registry, "speed")  # a worker keeps the published detector in memory
        except redis.RedisError as exc:
            self.registry = None
            return str(exc)
        return None

    def redis(self, step: int) -> None:
        reset_stream("speed", "s", self.settings)  # one DEL: the series starts again after its prefix
        for a in range(self.train, self.train + STREAM, step):
            score_points("speed", "s", self.stamps[a : a + step], self.values[a : a + step].tolist(),
                         registry=self.registry)

    def close(self) -> None:
        if self.registry is not None:
            client = self.registry.client
            for key in list(client.scan_iter(f"{self.settings.key_prefix}*", count=1000)):
                client.delete(key)


def measure(embedding: str, steps: list[int], runs: int, train: int = N_TRAIN) -> list[dict[str, Any]]:
    """One row per case: points, CPU seconds per run, points per CPU-second (median, min, max), load."""
    cases = Cases(embedding, steps, train)
    why = cases.connect()
    plan: list[tuple[str, int, Callable[[], None] | None]] = [("batch", BATCH, cases.batch)]
    for step in steps:
        plan.append((f"stream, {step:,}-point batches, in process", STREAM, lambda s=step: cases.stream(s)))
        plan.append((f"stream, {step:,}-point batches, through Redis", STREAM,
                     None if why else (lambda s=step: cases.redis(s))))
    rows = []
    try:
        for name, points, run in plan:
            before = load()
            if run is None:
                rows.append({"embedding": embedding, "case": name, "skipped": f"Redis not reachable: {why}"})
                continue
            run()  # warm: the first call loads caches (and, through Redis, the worker's detector)
            cpu = cpu_runs(run, runs)
            pps = sorted(points / c for c in cpu)
            rows.append({"embedding": embedding, "train": train, "case": name, "points": points, "cpu_s": cpu,
                         "pps_median": statistics.median(pps), "pps_min": pps[0], "pps_max": pps[-1],
                         "load_before": before, "load_after": load(), "fit_cpu_s": cases.fit_cpu})
    finally:
        cases.close()
    return rows


def render(rows: list[dict[str, Any]], runs: int) -> str:
    lines = [f"{machine()}; one thread, learning on; points per CPU-second, median of {runs} runs (range); "
             "1-minute load average before / after each case. Bar: 50,000.", "",
             "| embedding | case | points | points per CPU-second, median | range | load before / after |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['embedding']} | {r['case']} | – | {r['skipped']} | – | – |")
            continue
        lines.append(f"| {r['embedding']} | {r['case']} | {r['points']:,} | **{r['pps_median']:,.0f}** | "
                     f"{r['pps_min']:,.0f}-{r['pps_max']:,.0f} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    fits = {r["embedding"]: r["fit_cpu_s"] for r in rows if "fit_cpu_s" in r}
    train = {r["train"] for r in rows if "train" in r}
    lines += ["", f"Training on {', '.join(f'{t:,}' for t in sorted(train))} points, CPU s: "
              + ", ".join(f"{e} {s:.2f}" for e, s in fits.items())]
    return "\n".join(lines)


def profile(embedding: str, case: str, step: int, train: int = N_TRAIN) -> None:
    """cProfile of one run of ``case`` (after a warm-up run), the top 25 by own time and by cumulative time."""
    cases = Cases(embedding, [step], train)
    if case == "redis" and cases.connect():
        raise SystemExit("Redis not reachable")
    run = {"batch": cases.batch, "stream": lambda: cases.stream(step), "redis": lambda: cases.redis(step)}[case]
    run()
    prof = cProfile.Profile(time.process_time)
    prof.runcall(run)
    cases.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs per case (median reported; at least 3)")
    ap.add_argument("--embeddings", default="raw+paa", help="comma-separated (default: the default, raw+paa)")
    ap.add_argument("--steps", default="1000", help="stream batch sizes, comma-separated")
    ap.add_argument("--profile", choices=("batch", "stream", "redis"), default=None)
    ap.add_argument("--train", type=int, default=N_TRAIN, help="training rows (default 20,000; ea detect on NAB "
                    "trains on at most 750, whose windows are searched exactly rather than through hnswlib)")
    args = ap.parse_args()
    if any(m in args.embeddings for m in ("lstm", "gru")):
        import torch  # a learned embedding's encoder: one thread, as a worker would run it

        torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",") if s]
    if args.profile:
        profile(args.embeddings.split(",")[0], args.profile, steps[0], args.train)
        return
    runs = max(3, args.runs)
    rows = [r for emb in args.embeddings.split(",") for r in measure(emb, steps, runs, args.train)]
    text = render(rows, runs)
    print(text)
    write("anomaly_speed", text)


if __name__ == "__main__":
    main()
