"""Load test (not a test): recommendation clients under load while models are republished and a stream is scored.

    python bench/load.py [--seconds 60] [--clients 4] [--threads 8] [--publish-every 10] [--redis-url URL]

What runs at once, for ``--seconds``:

* ``--clients`` client *processes*, each a ``RecommendationClient`` (pub/sub listener + 1 s active-pointer
  poll) shared by ``--threads`` threads calling ``recommend(random user, k=10)`` in a loop;
* a publisher publishing a new version of the model (new random embeddings, real ``publish_embeddings``)
  every ``--publish-every`` seconds, which every client must hot-swap to;
* an anomaly scorer feeding a stream to ``anomaly.service.score_points`` (a ``raw`` kNN detector) in
  batches of 10 points.

Printed (and written to ``bench/results/load.md``): errors (must be 0), p50/p99 request latency, throughput,
the RSS growth of each client process between warm-up and the end, the versions each client served, and
the scorer's figures. By default a dedicated redis-server is started in a temporary folder, so the run
neither disturbs nor is disturbed by other users of a shared Redis.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

# The repository root first: this folder holds anomaly.py and recsys.py, which would shadow the packages.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, table, write

MODEL = "load"
DETECTOR = "load-det"


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def interactions_frame(users: int, items: int, per_user: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(users), per_user)
    i = rng.integers(0, items, users * per_user)
    return pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i]})


def publish_version(settings, data, seed: int, dim: int = 32) -> int:
    """Publish random embeddings for ``data`` in the serving format (the same code a training job uses)."""
    from recsys import GraphEmbeddings, publish_embeddings
    from vectorstore import ModelRegistry

    rng = np.random.default_rng(seed)
    emb = GraphEmbeddings(rng.standard_normal((data.n_users, dim)).astype(np.float32),
                          rng.standard_normal((data.n_items, dim)).astype(np.float32), space="ip",
                          params={"seed": seed})
    return publish_embeddings(ModelRegistry(settings), MODEL, data, emb, algorithm="random")


def client_process(settings, users: int, threads: int, seconds: float, start_at: float, out: mp.Queue) -> None:
    """One client process: ``threads`` threads querying one shared RecommendationClient until the deadline."""
    try:
        from recsys import RecommendationClient

        client = RecommendationClient(settings=settings, model=MODEL, refresh_interval=1.0)
        rng = np.random.default_rng(os.getpid())
        for u in rng.integers(0, users, 200):  # warm-up
            client.recommend(f"u{u}", k=10)
        rss_start = rss_bytes()
        versions: Counter = Counter()
        errors: Counter = Counter()
        latencies: list[list[float]] = [[] for _ in range(threads)]
        while time.time() < start_at:
            time.sleep(0.01)
        deadline = time.perf_counter() + seconds

        def run(slot: int) -> None:
            local = np.random.default_rng(slot + 1000 * os.getpid())
            lat = latencies[slot]
            while time.perf_counter() < deadline:
                user = f"u{int(local.integers(0, users))}"
                t = time.perf_counter()
                try:
                    recs = client.recommend(user, k=10)
                    lat.append(time.perf_counter() - t)
                    versions[recs.model_version] += 1
                    if len(recs) != 10:
                        errors["short result"] += 1
                except Exception as exc:  # counted, reported by type
                    errors[type(exc).__name__] += 1

        pool = [threading.Thread(target=run, args=(s,)) for s in range(threads)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        rss_end = rss_bytes()
        client.close()
        out.put({"pid": os.getpid(), "latencies": np.concatenate([np.asarray(x) for x in latencies]).tolist(),
                 "errors": dict(errors), "versions": dict(versions), "rss_start": rss_start, "rss_end": rss_end,
                 "seconds": seconds})
    except Exception:
        out.put({"pid": os.getpid(), "fatal": traceback.format_exc()})


def scorer(settings, stop: threading.Event, stats: dict) -> None:
    """Feed a sine-with-noise stream to ``score_points`` in batches of 10 points."""
    from anomaly import score_points
    from vectorstore import ModelRegistry

    registry = ModelRegistry(settings)
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    pos = 0
    while not stop.is_set():
        idx = np.arange(pos, pos + 10)
        values = (np.sin(idx / 20) + rng.normal(0, 0.05, 10)).tolist()
        stamps = [str(start + pd.Timedelta(minutes=int(i))) for i in idx]
        t = time.perf_counter()
        try:
            score_points(DETECTOR, "stream-1", stamps, values, registry=registry)
            stats["latencies"].append(time.perf_counter() - t)
            stats["points"] += 10
        except Exception as exc:
            stats["errors"][type(exc).__name__] += 1
        pos += 10


def publisher(settings, data, every: float, stop: threading.Event, stats: dict) -> None:
    # A fixed cadence (start to start); a publication slower than the period is followed at once by the next.
    seed = 100
    due = time.monotonic() + every
    while not stop.wait(max(0.0, due - time.monotonic())):
        due += every
        seed += 1
        t = time.perf_counter()
        try:
            stats["versions"].append(publish_version(settings, data, seed))
            stats["seconds"].append(time.perf_counter() - t)
        except Exception as exc:
            stats["errors"][type(exc).__name__] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--publish-every", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--redis-url", default=None, help="Use this Redis (default: a dedicated redis-server).")
    args = parser.parse_args(argv)

    from anomaly import train_detector
    from recsys import Interactions
    from vectorstore import Settings, start_redis_server

    server = None
    tmp = Path(tempfile.mkdtemp(prefix="ea-load-"))
    if args.redis_url is None:
        server = start_redis_server(tmp / "redis")
        url = server.url
    else:
        url = args.redis_url
    settings = Settings(redis_url=url, key_prefix=f"eaload{os.getpid()}:", data_dir=tmp)
    try:
        data = Interactions.from_frame(interactions_frame(args.users, args.items, 20, seed=0))
        first = publish_version(settings, data, seed=100)
        n = 2000
        series = pd.DataFrame({"timestamp": pd.date_range("2024-12-01", periods=n, freq="min", tz="UTC"),
                               "value": np.sin(np.arange(n) / 20) + np.random.default_rng(1).normal(0, 0.05, n)})
        from vectorstore import ModelRegistry

        train_detector(series, name=DETECTOR, embedding="raw", registry=ModelRegistry(settings))
        print(f"model {MODEL} v{first}: {data.n_users} users, {data.n_items} items; detector {DETECTOR} (raw); "
              f"{args.clients} client processes x {args.threads} threads for {args.seconds:.0f} s", flush=True)

        ctx = mp.get_context("spawn")
        out: mp.Queue = ctx.Queue()
        start_at = time.time() + 15  # time for every client to start, load the model and warm up
        procs = [ctx.Process(target=client_process, args=(settings, data.n_users, args.threads, args.seconds,
                                                          start_at, out)) for _ in range(args.clients)]
        for p in procs:
            p.start()
        while time.time() < start_at:
            time.sleep(0.05)
        stop = threading.Event()
        pub_stats = {"versions": [], "seconds": [], "errors": Counter()}
        score_stats = {"latencies": [], "points": 0, "errors": Counter()}
        side = [threading.Thread(target=publisher, args=(settings, data, args.publish_every, stop, pub_stats)),
                threading.Thread(target=scorer, args=(settings, stop, score_stats))]
        for th in side:
            th.start()
        results = [out.get(timeout=args.seconds + 300) for _ in procs]
        stop.set()
        for th in side:
            th.join()
        for p in procs:
            p.join(timeout=30)
    finally:
        if server is not None:
            server.stop()

    fatal = [r for r in results if "fatal" in r]
    for r in fatal:
        print(f"client {r['pid']} failed:\n{r['fatal']}", file=sys.stderr)
    rows = []
    all_lat: list[float] = []
    total_errors: Counter = Counter()
    for i, r in enumerate(sorted((r for r in results if "fatal" not in r), key=lambda r: r["pid"]), start=1):
        lat = np.asarray(r["latencies"]) * 1e3
        all_lat += r["latencies"]
        total_errors.update(r["errors"])
        rows.append([f"client {i}", len(lat), sum(r["errors"].values()), float(np.percentile(lat, 50)),
                     float(np.percentile(lat, 99)), len(lat) / r["seconds"], r["rss_start"] / 2**20,
                     r["rss_end"] / 2**20, (r["rss_end"] - r["rss_start"]) / 2**20,
                     ",".join(f"v{v}" for v in sorted(r["versions"], key=int))])
    lat = np.asarray(all_lat) * 1e3
    errors = sum(total_errors.values()) + len(fatal)
    rows.append(["**all**", len(lat), errors, float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                 float(np.percentile(lat, 99)) if len(lat) else float("nan"), len(lat) / args.seconds, "", "", "",
                 f"{len(pub_stats['versions'])} published"])
    headers = ["process", "requests", "errors", "p50 ms", "p99 ms", "req/s", "RSS start MiB", "RSS end MiB",
               "RSS growth MiB", "versions served"]
    slat = np.asarray(score_stats["latencies"]) * 1e3
    side_rows = [
        ["publisher", len(pub_stats["versions"]), sum(pub_stats["errors"].values()),
         float(np.median(pub_stats["seconds"])) * 1e3 if pub_stats["seconds"] else float("nan"),
         "versions " + ",".join(f"v{v}" for v in pub_stats["versions"])],
        ["scorer (score_points, 10 pts/batch)", score_stats["points"], sum(score_stats["errors"].values()),
         float(np.median(slat)) if len(slat) else float("nan"),
         f"{score_stats['points'] / args.seconds:.0f} points/s, p99 {np.percentile(slat, 99):.1f} ms"
         if len(slat) else ""],
    ]
    text = "\n\n".join([
        f"# Load: {args.clients} client processes x {args.threads} threads, {args.seconds:.0f} s",
        f"{machine()}; model {args.users} users x {args.items} items (dim 32, hnswlib ip); a new version every "
        f"{args.publish_every:.0f} s; Redis: {'dedicated redis-server' if server else 'given URL'}",
        table(headers, rows),
        table(["side load", "count", "errors", "median ms", "notes"], side_rows),
        f"errors by type: {dict(total_errors) or 'none'}; publisher errors: {dict(pub_stats['errors']) or 'none'}; "
        f"scorer errors: {dict(score_stats['errors']) or 'none'}",
    ])
    print(text)
    print(f"\nwritten to {write('load', text)}")
    return 1 if errors or pub_stats["errors"] or score_stats["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
