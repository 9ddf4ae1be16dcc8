"""Benchmark: the kNN detector that keeps learning, every embedding of it, against NAB baselines.

Every NAB file in ``../shared/data/anomaly/nab`` goes through the path a user takes: our detectors through
``workers.detection.detect_file`` (what ``ea detect`` runs: the same reader, the same output file, the
alerting layer's incident machine deciding ``is_anomaly``), the
baselines through the same reader (``anomaly.series.read_one_series``). Each detector is trained on the
file's probationary prefix (min(15%, 750) rows, NAB's rule) and scores every row causally; its
``is_anomaly`` column (its own decisions) is scored by ``../shared/bench/anomaly_score.py`` (NAB-like;
``--optimize`` adds the best single threshold on the ``score`` column, as NAB's board does).

Rows (one run, same files):

* ours: ``raw+paa`` (the default), ``raw``, ``raw+lstm``, ``raw+gru``, ``lstm``, ``gru``: the same
  calibration and incident machine over different embeddings (learned ones over ``--seeds`` seeds);
* ``knn-frozen``: raw-window kNN frozen on the prefix, this project's previous rule (distance to the
  training windows, threshold = the largest training distance, one alert per 200 rows);
* ``zscore``: causal rolling z-score (200 rows, 5 sigma, one alert per 100 rows);
* ``stumpy``: stumpy's left matrix profile, thresholded like ``knn-frozen``;
* ``knncad``: KNN-CAD (Burnaev and Ishimtsev 2016; NAB's 58.0 entry): 19-value windows, Mahalanobis
  distance summed over 27 neighbours, conformal p-value against the recent scores, alert above 0.9965
  then quiet for a fifth of the probation.

Then speed, one thread: training on a 20,000-point series and scoring with learning on, in points per
CPU-second: in one batch, and streamed in 1,000- and 100-point batches in process and through the service
(``score_points``, the state in Redis), see :func:`speed`.

Usage: nice -n 5 .venv/bin/python bench/anomaly.py [--seeds 3] [--detectors raw+paa,raw,...] [--reuse]
       .venv/bin/python bench/anomaly.py --speed-only [--detectors raw+paa,raw,raw+gru]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from anomaly import (
    KnnDetector,
    choose_window,
    read_one_series,
)
from bench._common import best_of
from workers.detection import detect_file

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "anomaly" / "nab"
SCORER = SHARED / "bench" / "anomaly_score.py"
RESULTS = ROOT / "bench" / "results"
OURS = ("raw+paa", "raw", "raw+lstm", "raw+gru", "lstm", "gru")
LEARNED = ("raw+lstm", "raw+gru", "lstm", "gru")
BASELINES = ("knn-frozen", "zscore", "stumpy", "knncad")
LABELS = {"raw+paa": "kNN, raw window + context outline (the default)", "raw": "kNN, raw window",
          "raw+lstm": "kNN, raw window + LSTM context", "raw+gru": "kNN, raw window + GRU context",
          "lstm": "kNN, LSTM window", "gru": "kNN, GRU window",
          "knn-frozen": "raw-window kNN frozen on the prefix (previous rule)", "zscore": "rolling z-score (200, 5σ)",
          "stumpy": "stumpy left matrix profile", "knncad": "KNN-CAD (conformal kNN, NAB 58.0)"}


def probation(n: int) -> int:
    return min(int(math.floor(0.15 * n)), 750)


# -- baselines ------------------------------------------------------------------------------------------
def one_per(flags_at: np.ndarray, n: int, refractory: int) -> np.ndarray:
    """Alerts at the given rows, at most one per ``refractory`` rows."""
    out = np.zeros(n, bool)
    last = -(10**9)
    for i in flags_at:
        if i - last > refractory:
            out[i], last = True, i
    return out


def zscore(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    s = pd.Series(values).ffill()
    prev = s.shift(1).rolling(200, min_periods=20)
    z = ((s - prev.mean()) / prev.std()).abs().to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    return z, one_per(np.flatnonzero((z > 5.0) & (np.arange(z.size) >= n_train)), z.size, 100)


def _frozen_threshold(train_scores: np.ndarray) -> float:
    med = float(np.median(train_scores))
    return max(med + 3 * 1.4826 * float(np.median(np.abs(train_scores - med))), float(train_scores.max()), 1e-9)


def knn_frozen(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous product rule: mean distance of each raw window to its 3 nearest training windows
    (overlapping ones excluded), over the largest such distance among the training windows."""
    v = pd.Series(values).ffill().bfill().to_numpy()
    train = v[:n_train]
    q1, med, q3 = np.percentile(train, [25, 50, 75])
    scale = (q3 - q1) or train.std() or 1.0
    x = (v - med) / scale
    w = choose_window(x[:n_train], max_window=max(8, min(64, (n_train - 11) // 3)))
    win = np.lib.stride_tricks.sliding_window_view(x, w)
    ref = win[: n_train - w + 1]
    starts = np.arange(win.shape[0])
    d = np.empty(win.shape[0])
    for a in range(0, win.shape[0], 512):
        block = win[a : a + 512]
        dist = np.sqrt(np.maximum((block**2).sum(1)[:, None] - 2 * block @ ref.T + (ref**2).sum(1)[None, :], 0))
        dist[np.abs(starts[a : a + 512, None] - np.arange(ref.shape[0])[None, :]) < w] = np.inf
        d[a : a + 512] = np.sort(dist, axis=1)[:, :3].mean(axis=1)
    scores = np.zeros(v.size)
    scores[w - 1 :] = d / _frozen_threshold(d[: n_train - w + 1])
    return scores, one_per(np.flatnonzero((scores > 1.0) & (np.arange(v.size) >= n_train)), v.size, 200)


def stumpy_left_mp(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    import stumpy

    v = pd.Series(values).ffill().bfill().to_numpy(dtype=np.float64)
    m = choose_window(v[:n_train], max_window=max(8, min(64, n_train // 4)))
    mp = stumpy.stump(v, m)
    left = mp[:, 2].astype(np.int64)
    subs = np.lib.stride_tricks.sliding_window_view(v, m)
    mu, sd = subs.mean(axis=1), subs.std(axis=1)
    zn = (subs - mu[:, None]) / np.where(sd < 1e-8, 1.0, sd)[:, None]
    d = np.zeros(subs.shape[0])
    ok = left >= 0
    d[ok] = np.linalg.norm(zn[ok] - zn[left[ok]], axis=1)
    scores = np.zeros(v.size)
    scores[m - 1 :] = d
    # The prefix's first rows have little history to match: calibrate on its second half.
    scores /= _frozen_threshold(scores[max(m - 1, n_train // 2) : n_train])
    return scores, one_per(np.flatnonzero((scores > 1.0) & (np.arange(v.size) >= n_train)), v.size, 200)


def knncad(values: np.ndarray, n_train: int, k: int = 27, dim: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """KNN-CAD as NAB runs it (nab/detectors/knncad), record by record."""
    v = pd.Series(values).ffill().bfill().to_numpy(dtype=np.float64)
    p = n_train
    scores_out, flags = np.zeros(v.size), np.zeros(v.size, bool)
    training: list[np.ndarray] = []
    calibration: list[np.ndarray] = []
    cal_scores: list[float] = []
    sigma = np.eye(dim)
    pred = -1

    def ncm(item: np.ndarray, items: np.ndarray, extra: int = 0) -> float:
        diff = items - item
        dist = np.einsum("ij,jk,ik->i", diff, sigma, diff)
        return float(np.sum(np.partition(dist, k + extra)[: k + extra]))

    for i in range(v.size):
        count = i + 1
        if count < dim:
            continue
        item = v[count - dim : count]
        if count < p:
            training.append(item)
            continue
        ost = count % p
        if ost == 0 or ost == p // 2:
            try:
                arr = np.array(training)
                sigma = np.linalg.inv(arr.T @ arr)
            except np.linalg.LinAlgError:
                pass
        arr = np.array(training)
        if not cal_scores:
            cal_scores = [ncm(t, arr, 1) for t in training]
        new = ncm(item, arr)
        result = float(np.mean(np.array(cal_scores) < new))
        if count >= 2 * p:
            training.pop(0)
            training.append(calibration.pop(0))
        cal_scores.pop(0)
        calibration.append(item)
        cal_scores.append(new)
        if pred > 0:
            pred -= 1
            scores_out[i] = 0.5
            continue
        if result >= 0.9965:
            pred = int(p / 5)
            flags[i] = True
        scores_out[i] = result
    return scores_out, flags


BASELINE_FUNCS = {"knn-frozen": knn_frozen, "zscore": zscore, "stumpy": stumpy_left_mp, "knncad": knncad}


# -- running --------------------------------------------------------------------------------------------
def run_ours(embedding: str, seed: int | None, files: list[str], out: Path) -> float:
    """Score every file with ``detect_file`` (``ea detect``'s path); returns the total wall seconds."""
    total = 0.0
    params: dict[str, Any] = {} if seed is None else {"seed": seed}
    for key in files:
        path = DATA / key
        n = len(read_one_series(path))
        start = time.perf_counter()
        detect_file(path, probation(n), out / key, embedding=embedding, **params)
        total += time.perf_counter() - start
    return total


def run_baseline(name: str, files: list[str], out: Path) -> float:
    total = 0.0
    for key in files:
        series = read_one_series(DATA / key)  # the same reading path as `ea detect`
        start = time.perf_counter()
        scores, flags = BASELINE_FUNCS[name](series.values, probation(len(series)))
        total += time.perf_counter() - start
        dest = out / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": series.raw_timestamps, "value": series.values, "score": np.round(scores, 6),
                      "is_anomaly": flags.astype(int)}).to_csv(dest, index=False)
    return total


def evaluate(out: Path, optimize: bool) -> dict:
    cmd = [sys.executable, str(SCORER), "--data", str(DATA), "--windows", str(DATA / "windows.json"),
           "--results", str(out)]
    if optimize:
        cmd.append("--optimize")
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def speed(embedding: str, n: int = 20_000) -> dict[str, float]:
    """Training on an ``n``-point series, then scoring with learning on, one thread, in points per CPU-second
    (``time.process_time``: the machine is shared, CPU time is what one scoring costs): ``4 n`` points in one
    batch (what ``ea detect`` runs after training), and ``n`` points streamed in batches of 1,000 and of 100,
    in process (``StreamScorer.update``) and through the service (``anomaly.service.score_points``, what the
    ``ea.score_series`` task runs: ISO timestamps in, the series' state read and written in Redis under its
    lock, the published detector in the worker's cache). Each scoring figure is the best of :data:`REPEATS`
    runs (``timeit``'s rule: on a shared machine the least disturbed run is the closest to what the code
    costs; the others measure the neighbours too)."""
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    t = np.arange(5 * n)
    series = np.sin(2 * np.pi * t / 50) + 0.1 * rng.standard_normal(t.size)
    series[n + 30_000] += 3  # something to find
    wall, cpu = time.perf_counter(), time.process_time()
    det = KnnDetector(embedding).fit(series[:n])
    out = {"fit_wall_s": time.perf_counter() - wall, "fit_cpu_s": time.process_time() - cpu}
    out["pps_batch"] = (series.size - n) / best_cpu(lambda: det.continuation().update(series[n:]))
    for step in STREAM_STEPS:

        def stream(step: int = step) -> None:
            scorer = det.continuation()
            for a in range(n, 2 * n, step):
                scorer.update(series[a : a + step])

        out[f"pps_stream_{step}"] = n / best_cpu(stream)
    out.update(service_speed(det, series, n))
    return out


STREAM_STEPS = (1000, 100)
REPEATS = 3


def best_cpu(run: Callable[[], Any]) -> float:
    """The least CPU time (seconds) of :data:`REPEATS` calls of ``run``."""
    return best_of(run, REPEATS, clock=time.process_time)


def service_speed(det: KnnDetector, series: np.ndarray, n: int) -> dict[str, float]:
    """Points per CPU-second of ``score_points`` over rows ``n .. 2n`` of ``series`` in batches of each of
    :data:`STREAM_STEPS`, the state in Redis (the configured one; keys under a prefix of their own, deleted
    after). NaN when Redis cannot be reached."""
    import uuid

    import redis

    from anomaly import load_detector, publish_detector, reset_stream, score_points
    from vectorstore import ModelRegistry, get_settings

    settings = get_settings().with_(key_prefix=f"eabench:{uuid.uuid4().hex[:8]}:")
    out = {f"pps_redis_{step}": math.nan for step in STREAM_STEPS}
    times = pd.date_range("2026-01-01", periods=series.size, freq="min", tz="UTC").astype(str).tolist()
    try:
        registry = ModelRegistry(settings)
        publish_detector(registry, "speed", det, extra_meta={"series_id": "s"})
        load_detector(registry, "speed")  # a worker keeps the published detector in memory
        for step in STREAM_STEPS:
            batches = [(times[a : a + step], series[a : a + step].tolist()) for a in range(n, 2 * n, step)]

            def stream(batches: list[tuple[list[Any], list[float | None]]] = batches) -> None:
                reset_stream("speed", "s", settings)  # costs one DEL: the series starts again after its prefix
                for stamps, values in batches:
                    score_points("speed", "s", stamps, values, registry=registry)

            out[f"pps_redis_{step}"] = n / best_cpu(stream)
    except redis.RedisError as exc:
        print(f"speed through Redis skipped: {exc}", file=sys.stderr)
        return out
    client = registry.client
    for key in list(client.scan_iter(f"{settings.key_prefix}*", count=1000)):
        client.delete(key)
    return out


def speed_table(embeddings: list[str]) -> list[str]:
    """The speed table, one row per embedding, measured now."""
    lines = ["| embedding | training on 20,000 points, s wall / CPU | batch | stream, 1,000-point batches, "
             "in process / state in Redis | stream, 100-point batches, in process / state in Redis |",
             "|---|---|---|---|---|"]
    for emb in embeddings:
        m = speed(emb)
        lines.append(f"| {emb}{' (default)' if emb == 'raw+paa' else ''} | {m['fit_wall_s']:.1f} / "
                     f"{m['fit_cpu_s']:.1f} | {m['pps_batch']:,.0f} | {m['pps_stream_1000']:,.0f} / "
                     f"{m['pps_redis_1000']:,.0f} | {m['pps_stream_100']:,.0f} / {m['pps_redis_100']:,.0f} |")
    return [f"Speed, one thread, learning on, points per CPU-second, best of {REPEATS} runs (the bar: 50,000):", "",
            *lines, ""]


def fmt(vals: list[float], digits: int = 2) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3, help="seeds of each learned embedding (encoder training)")
    ap.add_argument("--detectors", default=None, help="comma-separated (default: every one)")
    ap.add_argument("--no-optimize", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table, for the --detectors of ours "
                    "(default raw+paa and raw)")
    ap.add_argument("--reuse", action="store_true", help="evaluate existing complete results, do not rerun")
    args = ap.parse_args()
    if args.speed_only:
        chosen = [d for d in args.detectors.split(",") if d in OURS] if args.detectors else ["raw+paa", "raw"]
        text = "\n".join(speed_table(chosen))
        print(text)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "anomaly_speed.md").write_text(text)
        return
    files = sorted(json.loads((DATA / "windows.json").read_text()))
    root = RESULTS / "anomaly"
    runs: dict[str, list[tuple[Path, float]]] = {}
    for det in [d for d in (args.detectors or ",".join([*OURS, *BASELINES])).split(",") if d]:
        seeds = list(range(args.seeds)) if det in LEARNED else [None]
        for seed in seeds:
            out = root / (det if seed is None else f"{det}-s{seed}")
            done = out / "wall_seconds.txt"
            if args.reuse and done.exists():
                wall = float(done.read_text())
            else:
                wall = run_ours(det, seed, files, out) if det in OURS else run_baseline(det, files, out)
                done.parent.mkdir(parents=True, exist_ok=True)
                done.write_text(f"{wall:.3f}\n")
            runs.setdefault(det, []).append((out, wall))
            print(f"{out.name}: {wall:.1f} s", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:  # the scorer is single-threaded Python
        futures = {out: pool.submit(evaluate, out, not args.no_optimize) for items in runs.values() for out, _ in items}
    cols = ["detector", "NAB-like", "NAB-like best thr", "event P", "event R", "event F1", "FA/1k clean",
            "detected/windows", "wall s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    summary = {}
    for det, items in runs.items():
        results = [futures[out].result() for out, _ in items]

        def get(key: str, results: list[dict] = results) -> list[float]:
            return [float(r.get(key, float("nan"))) for r in results]

        summary[det] = statistics.mean(get("nab_like"))
        label = LABELS[det] + (f" ({len(items)} seeds)" if len(items) > 1 else "")
        lines.append("| " + " | ".join([
            label, fmt(get("nab_like")), fmt(get("nab_like_best_threshold")) if not args.no_optimize else "-",
            fmt(get("event_precision"), 3), fmt(get("event_recall"), 3), fmt(get("event_f1"), 3),
            fmt(get("false_alarm_rows_per_1k_clean"), 3),
            f"{statistics.mean(get('detected')):.1f}/{int(results[0]['windows'])}", fmt([w for _, w in items], 1),
        ]) + " |")
    ratios = [f"- {LABELS[d]}: x{summary['raw+paa'] / summary[d]:.2f}" for d in summary
              if d != "raw+paa" and "raw+paa" in summary and summary[d] > 0]
    speed_lines = [] if args.no_speed else speed_table([d for d in OURS if d in runs or d == "raw+paa"])
    text = "\n".join(["## NAB (35 files), causal, trained on the probationary prefix, `is_anomaly` scored", "",
                      *lines, "", "The default's NAB-like against each row (ratio):", *ratios, "", *speed_lines])
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "anomaly.md").write_text(text)


if __name__ == "__main__":
    main()
