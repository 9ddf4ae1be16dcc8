"""Benchmark: this project's graph models (Node2Vec, LightGCN, spectral) against named baselines, held out.

Data (``../shared/data/recsys`` relative to the repository; ``--data`` names another folder) and splits
(:mod:`bench._heldout`): every figure is reported on a file no choice looked at: ml-100k ``u1.base ->
u1.test``, ml-1m ``train + valid -> test``, gowalla ``train -> valid`` (the paper's test file is held
back). Baselines choose their settings on a tune split carved from the training side (ml-1m: ``train ->
valid``) and are refitted on the report train; the project's models run with their defaults (chosen on
the tune splits; LightGCN stops on a split it carves itself). Every method ranks all items for every test
user, train items excluded; Recall@20 / NDCG@20 follow ``shared/bench/recsys_score.py``.

The project's models (``node2vec``, ``lightgcn``, ``spectral``, ``filter``) take the path a user takes, as
``ea eval recsys`` does: the data read by ``Interactions.read``, ``train_and_publish`` to Redis
(``EA_REDIS_URL``, else the embedded one; a key prefix of the run's own, deleted at the end), then
``RecommendationClient.recommend_many`` (the hnswlib index) for every test user. Their wall s is the
fit alone (``train_and_publish``'s ``train_s``). Baselines are ranked exactly from their factors.

Methods (each in its own subprocess: wall time of the fit, peak RSS of the process):

* ``node2vec``       this project, native engine, p=q=1 (numba cache warm)
* ``node2vec-cold``  the same with an empty numba cache (compilation included)
* ``node2vec-pq``    this project, p=0.5, q=2
* ``node2vec-gensim`` this project's walks + gensim's skip-gram (``trainer="gensim"``), p=q=1
* ``node2vec-pkg``   the ``node2vec`` package (engine="node2vec"; ml-100k only: hopeless on ml-1m)
* ``pecanpy``        PecanPy SparseOTF walks (p=q=1; ``pecanpy-pq``: p=0.5, q=2) + the same gensim
                     skip-gram as PecanPy's own ``embed`` (list of str walks)
* ``lightgcn``       this project's LightGCN, its defaults (random start, mini-batch BPR)
* ``lightgcn-svd``   the same model SVD-initialised: the previous recipe (spectral start, full batch, 512-d)
* ``spectral``       this project's spectral model, its defaults
* ``filter``         this project's graph filter (the default model), its defaults: settings tuned inside its
                     fit on a split it carves from the training file; served in two stages (hnswlib
                     candidates, then the exact filter per request)
* ``als``            implicit 0.7 ALS, grid chosen on the tune split (:mod:`bench._baselines`)
* ``ease``, ``gfcf``, ``bspm``, ``chebycf``  closed-form and graph-filter baselines (:mod:`bench._baselines`;
                     EASE's lambda chosen on the tune split, the filters with their papers' settings)
* ``bpr``            implicit 0.7 BPR, grid chosen on the tune split
* ``popularity``     most interacted items

Columns: CPU seconds of the method's whole process (read, fit, publish, score), the vector dimension, the
published model's bytes in Redis and the peak RSS of a serving client that loads it (a process of its own).

All Node2Vec variants: dim 64, 40 nodes per walk, 10 walks per node, window 10, negative 5, sample 1e-3,
1 skip-gram epoch, 2 workers (this project: walks on 2 threads, skip-gram in one reproducible lane;
PecanPy and gensim: 2 threads each); user score = user input vector . item output (context) vector.

Walks and skip-gram are stochastic: one seed's Recall@20 has a standard deviation of about 0.008 (4%) on
ml-100k and 0.002 on ml-1m, as much as the engines differ, so the Node2Vec and PecanPy rows are the mean
of ``--seeds`` (default 10) runs on ml-100k and ``--seeds-ml1m`` (5) on ml-1m, with seeds 0, 1, ... (walk
and skip-gram seed alike), their standard deviation, and the mean differences with their standard errors.

Usage: nice -n 10 .venv/bin/python bench/recsys.py [--datasets ml-100k,ml-1m,gowalla] [--only node2vec,pecanpy]
       [--seeds 10] [--seeds-ml1m 5] [--seeds-gowalla 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import RESULTS as RESULTS_DIR
from bench._common import machine, table, write
from bench._heldout import DATA, check_data, split

#: ratings of the train split (GroupLens ``user item rating timestamp``), for the similar-items proxy
RATINGS = {"ml-100k": "ml-100k/u1.base"}
METHODS = [
    "node2vec", "node2vec-cold", "node2vec-pq", "node2vec-gensim", "node2vec-pkg", "pecanpy", "pecanpy-pq",
    "lightgcn", "lightgcn-svd", "spectral", "filter", "als", "ease", "gfcf", "bspm", "chebycf", "bpr", "popularity",
]
BASELINES = ("als", "ease", "gfcf", "bspm", "chebycf")  # bench._baselines.tuned
SERVED = ("node2vec", "lightgcn", "lightgcn-svd", "spectral", "filter")  # trained, published and served
#: served variants: (algorithm, params); lightgcn-svd is the previous recipe (SVD-initialised, full-batch, 512-d)
SERVED_PARAMS = {"lightgcn-svd": {"init": "spectral", "dim": 512, "batch_size": None, "lr": 0.005, "epochs": 200}}
SEEDED = ("node2vec", "node2vec-pq", "node2vec-gensim", "pecanpy", "pecanpy-pq")  # rows averaged over seeds
K = 20
WALK = {"dim": 64, "walk_length": 40, "walks_per_node": 10, "window": 10, "negative": 5, "sample": 1e-3,
        "epochs": 1, "workers": 2, "seed": 0}


# -- worker side: one method on one dataset, prints one JSON line ---------------------------------------

def _evaluate(train, test, user_vectors, item_vectors) -> dict:
    """Exact full ranking from factors (train items excluded), scored on the report test."""
    from bench._baselines import evaluate

    return evaluate(lambda u: user_vectors[u] @ item_vectors.T, train, test, K)


def _node2vec(train, seed: int, **params):
    from recsys import Node2Vec

    emb = Node2Vec(**{**WALK, **params, "seed": seed}).fit(train)
    u, v = emb.scoring_vectors()
    return u, v, {}


def _pecanpy(train, p: float, q: float, seed: int):
    import numpy as np
    from gensim.models import Word2Vec
    from pecanpy.pecanpy import SparseOTF

    g = SparseOTF(p=p, q=q, workers=WALK["workers"], random_state=seed)
    adj = train.graph()
    g.indptr = adj.indptr.astype(np.uint32)
    g.indices = adj.indices.astype(np.uint32)
    g.data = adj.data.astype(np.float32)
    g.set_node_ids([str(i) for i in range(adj.shape[0])])
    walks = g.simulate_walks(num_walks=WALK["walks_per_node"], walk_length=WALK["walk_length"] - 1)
    w2v = Word2Vec(walks, vector_size=WALK["dim"], window=WALK["window"], sg=1, min_count=0,
                   workers=WALK["workers"], epochs=WALK["epochs"], seed=seed)
    rows = np.array([w2v.wv.key_to_index[str(i)] for i in range(adj.shape[0])])
    n = train.n_users
    return w2v.wv.vectors[rows][:n], w2v.syn1neg[rows][n:], {}


def _bpr(tune, report) -> dict:
    """implicit's BPR: the grid point best on the tune split, refitted on the report train."""
    import numpy as np
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    def fit(train, params):
        from threadpoolctl import threadpool_limits

        t = time.process_time()
        model = BayesianPersonalizedRanking(**params, random_state=0, num_threads=2)
        with threadpool_limits(1, "blas"):
            model.fit(train.user_matrix().astype(np.float32), show_progress=False)
        return np.asarray(model.user_factors), np.asarray(model.item_factors), time.process_time() - t

    grid = [{"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": 100}
            for f in (64, 128) for lr in (0.01, 0.05)]
    best = max(grid, key=lambda p: _evaluate(tune[0], tune[1], *fit(tune[0], p)[:2])[f"recall@{K}"])
    u, v, cpu = fit(report[0], best)
    return {**_evaluate(report[0], report[1], u, v), "seconds": cpu, "params": best, "dim": best["factors"]}


def _popularity(train):
    import numpy as np

    counts = np.bincount(train.items, minlength=train.n_items).astype(np.float32)
    return np.ones((train.n_users, 1), np.float32), counts[:, None], {}


def _client_paths(client, train, truth: dict[str, set], ratings_path: Path | None) -> dict:
    """The other client paths, measured as a user takes them (``RecommendationClient``), for the test users.

    * fold-in: ``recommend_for_history`` with the user's training items, as if the model had never seen them;
    * similar items (with ratings): the user's best-rated training item (latest on a tie) ->
      ``similar_items(item, K)`` scored against the user's held-out items, and the same for the K most
      popular items other than that one;
    * the ANN recall@10 of every path that publication measured (in the manifest).
    """
    import pandas as pd

    from recsys import ranking_metrics

    known = set(train.user_ids)
    users = [u for u in truth if u in known]
    t = time.perf_counter()
    folded = {}
    for user, dense in zip(users, train.user_index(users).tolist()):
        history = train.item_ids[train.seen(dense)].tolist()
        folded[user] = client.recommend_for_history(history, k=K).items
    out = {"fold_in": ranking_metrics(folded, truth, K, n_items=train.n_items)[f"recall@{K}"],
           "fold_in_s": time.perf_counter() - t, "ann_recall": client.model_meta.get("ann_recall", {}).get("recall"),
           "ann_search": client.model_meta.get("ann_recall", {}).get("search")}
    if ratings_path is not None:
        raw = pd.read_csv(ratings_path, sep="\t", names=["user", "item", "rating", "ts"], dtype=str)
        raw[["rating", "ts"]] = raw[["rating", "ts"]].astype(int)
        best = raw.sort_values(["user", "rating", "ts"], ascending=[True, False, False]).groupby("user").item.first()
        popular = client.recommend("bench: no such user", k=K + 1).items  # the model's popularity fallback
        similar = {u: client.similar_items(best[u], k=K).items for u in users}
        by_popularity = {u: [i for i in popular if i != best[u]][:K] for u in users}
        out["similar"] = ranking_metrics(similar, truth, K, n_items=train.n_items)[f"recall@{K}"]
        out["similar_popularity"] = ranking_metrics(by_popularity, truth, K, n_items=train.n_items)[f"recall@{K}"]
    return out


def _served(method: str, train, test, params: dict, ratings_path: Path | None = None) -> dict:
    """Train and publish ``method`` as ``ea eval recsys`` does, then recommend through the serving client
    (and measure its other paths: :func:`_client_paths`; its bytes in Redis; a serving client's RSS)."""
    import uuid

    from recsys import RecommendationClient, ranking_metrics, train_and_publish
    from vectorstore import ModelRegistry

    name = f"bench-{method}-{uuid.uuid4().hex[:8]}"
    result = train_and_publish(train, algorithm=method.split("-")[0], name=name, params=params, k=K)
    truth: dict[str, set] = {}
    for u, i in zip(test.user_ids[test.users], test.item_ids[test.items]):
        truth.setdefault(str(u), set()).add(str(i))
    users = list(truth)
    recs = {}
    t = time.perf_counter()
    with RecommendationClient(model=name, listen=False, refresh_interval=0) as client:
        for start in range(0, len(users), 1000):
            for rec in client.recommend_many(users[start : start + 1000], k=K):
                recs[rec.user] = rec.items
        recommend_s = time.perf_counter() - t
        paths = _client_paths(client, train, truth, ratings_path)
        paths["latency"] = _latency(client, users[:LATENCY_USERS])
        dim = int(client.model_meta.get("dim", 0))
    done = [h for h in result.history if h.get("stage") == "done"]
    registry = ModelRegistry()
    manifest = registry.manifest(name)
    model_bytes = sum(p["nbytes"] for p in manifest["parts"].values()) + _table_bytes(registry, name, manifest)
    return {**ranking_metrics(recs, truth, K, n_items=train.n_items), "seconds": result.timings["train_s"],
            "recommend_s": recommend_s, "history": done, "paths": paths, "dim": dim, "model_bytes": model_bytes,
            "client_mb": _client_rss(name, users[:200])}


LATENCY_USERS = 1000


def _latency(client, users: list[str]) -> dict:
    """``recommend(user, k=20)`` one request at a time: p50 / p99 wall ms and p50 CPU ms (thread time), beside
    the floor of bench/serving.py measured right after (one pipelined round trip for the same rows plus the
    cheaper of a raw hnswlib query and an exact numpy top-k) and the load average during the run."""
    import numpy as np

    from bench.serving import floor_percentiles

    def timed(clock):
        out = []
        for u in users:
            t = clock()
            client.recommend(u, k=K)
            out.append(clock() - t)
        return np.percentile(np.asarray(out) * 1e3, [50, 99])

    for u in users[:50]:
        client.recommend(u, k=K)  # warm-up
    load = os.getloadavg()[0]
    wall, cpu = timed(time.perf_counter), timed(time.thread_time)
    floor = floor_percentiles(client, users, 1)
    return {"p50_ms": float(wall[0]), "p99_ms": float(wall[1]), "cpu_p50_ms": float(cpu[0]), "floor_p50_ms": floor[0],
            "floor": floor[2], "load": (load + os.getloadavg()[0]) / 2}


def _table_bytes(registry, name: str, manifest: dict) -> int:
    """Bytes of a version's per-user tables in Redis (MEMORY USAGE of each hash)."""
    total = 0
    for part in manifest.get("tables", {}):
        total += int(registry.client.memory_usage(registry.table_key(name, int(manifest["version"]), part),
                                                  samples=0) or 0)
    return total


# VmHWM (peak RSS of this program's memory), not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so a
# child of the worker would report the worker's peak.
CLIENT_RSS = """
import json, sys
from recsys import RecommendationClient
c = RecommendationClient(model=sys.argv[1], listen=False, refresh_interval=0)
for u in json.loads(sys.argv[2]):
    c.recommend(u, k=20)
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024)
"""


def _client_rss(name: str, users: list[str]) -> float:
    """Peak RSS (MB) of a fresh process that serves ``name``: loads the client, answers ``users``."""
    out = subprocess.run([sys.executable, "-c", CLIENT_RSS, name, json.dumps(users)], capture_output=True,
                         text=True, check=True, env=dict(os.environ))
    return float(out.stdout.strip().splitlines()[-1])


def run_worker(method: str, dataset: str, data: Path, seed: int = 0, budget: float | None = None) -> dict:
    import gensim.models  # noqa: F401 - imported before timing, for every method alike
    import numba  # noqa: F401

    train, test = split(data, dataset, "report")
    t = time.perf_counter()
    if method in SERVED:
        params = {**WALK, "seed": seed} if method == "node2vec" else dict(SERVED_PARAMS.get(method, {}))
        if method.startswith("lightgcn") and budget:
            params["cpu_budget_s"] = budget
        result = _served(method, train, test, params, data / RATINGS[dataset] if dataset in RATINGS else None)
    elif method in BASELINES:
        from bench._baselines import EASE_MAX_ITEMS, tuned

        if method == "ease" and train.n_items > EASE_MAX_ITEMS:
            return {"skipped": f"{train.n_items:,} items: the dense inverse does not fit"}
        result = tuned(method, split(data, dataset, "tune"), (train, test), K)
        result["seconds"] = result["fit_cpu_s"]
        result["dim"] = (result["params"] or {}).get("factors", "-")
    elif method == "bpr":
        result = _bpr(split(data, dataset, "tune"), (train, test))
    else:
        if method == "node2vec-pq":
            u, v, extra = _node2vec(train, seed, p=0.5, q=2.0)
        elif method == "node2vec-gensim":
            u, v, extra = _node2vec(train, seed, trainer="gensim")
        elif method == "node2vec-pkg":
            u, v, extra = _node2vec(train, seed, engine="node2vec")
        elif method == "pecanpy":
            u, v, extra = _pecanpy(train, 1.0, 1.0, seed)
        elif method == "pecanpy-pq":
            u, v, extra = _pecanpy(train, 0.5, 2.0, seed)
        elif method == "popularity":
            u, v, extra = _popularity(train)
        else:
            raise SystemExit(f"unknown method {method}")
        seconds = time.perf_counter() - t
        result = {**_evaluate(train, test, u, v), "seconds": seconds, "dim": u.shape[1], **extra}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_mb"] = usage.ru_maxrss / 1024
    # CPU seconds of the whole worker process (read, fit, publish, evaluate): on a shared machine the wall
    # time says more about the neighbours than about the method.
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


# -- driver side ------------------------------------------------------------------------------------------

def _mean_of(runs: list[dict]) -> dict | None:
    """One seed's result as it is; several: the mean of every figure, plus the recall/NDCG spread."""
    if len(runs) <= 1:
        return runs[0] if runs else None
    import numpy as np

    out = dict(runs[0])
    for key in (f"recall@{K}", f"ndcg@{K}", "seconds", "peak_mb"):
        out[key] = float(np.mean([r[key] for r in runs]))
    out["std"] = {key: float(np.std([r[key] for r in runs])) for key in (f"recall@{K}", f"ndcg@{K}")}
    out["seeds"] = len(runs)
    out["recalls"] = [r[f"recall@{K}"] for r in runs]
    return out


def _difference(ours: dict, theirs: dict) -> str:
    """Mean Recall difference with its standard error (Welch) over the seeds of both rows."""
    import numpy as np

    a, b = (np.array(r.get("recalls", [r[f"recall@{K}"]])) for r in (ours, theirs))
    diff = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return f"{diff:+.4f} (one seed: no error estimate)"
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return f"{diff:+.4f} ± {se:.4f} (t = {diff / se if se else float('inf'):+.2f}; {len(a)} and {len(b)} seeds)"


def run(method: str, dataset: str, timeout: float, data: Path, seed: int = 0,
        budget: float | None = None) -> dict | None:
    env = dict(os.environ)
    worker = {"node2vec-cold": "node2vec"}.get(method, method)
    if method == "node2vec-cold":
        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="ea-numba-cold-")
    cmd = [sys.executable, __file__, "--worker", worker, "--dataset", dataset, "--seed", str(seed),
           "--data", str(data)]
    if budget:
        cmd += ["--budget", str(budget)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  {method} on {dataset}: timed out after {timeout:.0f}s", flush=True)
        return None
    if out.returncode != 0:
        print(f"  {method} on {dataset}: failed\n{out.stderr[-2000:]}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _drop_keys(prefix: str) -> None:
    """Delete this run's published models (every key under its prefix)."""
    from vectorstore import ModelRegistry

    client = ModelRegistry().client
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="ml-100k,ml-1m")
    ap.add_argument("--data", type=Path, default=DATA, help="folder of the recsys data sets (default: %(default)s)")
    ap.add_argument("--only", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    ap.add_argument("--timeout", type=float, default=1200.0, help="per method and dataset, seconds")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--dataset", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", type=int, default=10,
                    help=f"seeds (walks and skip-gram) for {', '.join(SEEDED)} on ml-100k; mean and std reported")
    ap.add_argument("--seeds-ml1m", type=int, default=5,
                    help="the same on ml-1m (its per-seed spread is a third of ml-100k's; PecanPy takes ~3 min a run)")
    ap.add_argument("--lightgcn-budget", type=float, default=600.0,
                    help="LightGCN's cpu_budget_s (process CPU s), a safety bound (the issue's 10 minutes); 0: none")
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seeds-gowalla", type=int, default=1, help="the same on gowalla (one Node2Vec fit is ~1 min)")
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.dataset, check_data(args.data), args.seed, args.budget)))
        return

    methods = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; valid: {METHODS}")
    # The served models publish under a key prefix of this run's own, deleted at the end.
    prefix = os.environ.setdefault("EA_KEY_PREFIX", f"eabench:{os.getpid()}:")
    if "node2vec" in methods:  # untimed warm-up: fills the numba cache for the warm row
        run("node2vec", "ml-100k", args.timeout, check_data(args.data))
    results: dict[tuple[str, str], dict] = {}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for dataset in [d.strip() for d in args.datasets.split(",")]:
        for method in methods:
            if method == "node2vec-pkg" and dataset != "ml-100k":
                continue
            print(f"running {method} on {dataset}...", flush=True)
            n_seeds = {"ml-1m": args.seeds_ml1m, "gowalla": args.seeds_gowalla}.get(dataset, args.seeds)
            seeds = range(n_seeds) if method in SEEDED else [0]
            runs = [run(method, dataset, args.timeout, check_data(args.data), seed, args.lightgcn_budget)
                    for seed in seeds]
            r = _mean_of([x for x in runs if x is not None])
            if r is not None and "skipped" in r:
                print(f"  skipped: {r['skipped']}", flush=True)
            elif r is not None:
                results[(dataset, method)] = r
                raw = {f"{d}/{m}": v for (d, m), v in results.items()}
                (RESULTS_DIR / "recsys.json").write_text(json.dumps(raw, indent=1, default=str))
                print(f"  recall@{K}={r[f'recall@{K}']:.4f} ndcg@{K}={r[f'ndcg@{K}']:.4f} "
                      f"time={r['seconds']:.2f}s process_cpu={r.get('cpu_s', float('nan')):.1f}s "
                      f"peak={r['peak_mb']:.0f}MB", flush=True)

    _drop_keys(prefix)
    headers = ["dataset", "method", f"Recall@{K}", f"NDCG@{K}", "Recall / ALS", "fit s", "process CPU s", "dims",
               "model MB (Redis)", "client RSS MB", "peak RSS MB (fit)", "note"]
    rows = []
    for (dataset, method), r in results.items():
        als = results.get((dataset, "als"))
        ratio_als = r[f"recall@{K}"] / als[f"recall@{K}"] if als else float("nan")
        note = ""
        if r.get("params"):
            note = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        elif r.get("history"):
            h = r["history"][-1]
            note = ", ".join(f"{k}: {h[k]}" for k in ("validation", "best_epoch", "reason", "dim") if k in h)
        recall, ndcg = r[f"recall@{K}"], r[f"ndcg@{K}"]
        if "std" in r:
            recall = f"{recall:.4f} ± {r['std'][f'recall@{K}']:.4f}"
            ndcg = f"{ndcg:.4f} ± {r['std'][f'ndcg@{K}']:.4f}"
            note = f"mean ± std of {r['seeds']} seeds"
        model_mb = r["model_bytes"] / 2**20 if "model_bytes" in r else "-"
        rows.append([dataset, method, recall, ndcg, ratio_als, r["seconds"], r.get("cpu_s", float("nan")),
                     r.get("dim", "-"), model_mb, r.get("client_mb", "-"), r["peak_mb"], note])
    comparisons = []
    for dataset in {d for d, _ in results}:
        for ours, theirs in (("node2vec", "pecanpy"), ("node2vec-pq", "pecanpy-pq"), ("node2vec-gensim", "pecanpy")):
            if (dataset, ours) in results and (dataset, theirs) in results:
                comparisons.append(f"- {dataset}: {ours} - {theirs} Recall@{K}: "
                                   f"{_difference(results[(dataset, ours)], results[(dataset, theirs)])}")
    text = (
        f"# recsys benchmark ({machine()})\n\n"
        "Held out: reported on ml-100k u1.test, ml-1m test.txt (trained on train + valid), gowalla valid.txt "
        "(trained on train.txt); baselines' settings chosen on tune splits carved from the training side. "
        "Full ranking, train items excluded, K=20; fit s = the fit alone (project's models: wall; baselines: "
        "CPU); process CPU s = the method's whole process (read, tune, fit, publish, score).\n\n"
        + table(headers, rows)
        + "\n\nRecall@20 differences, mean ± standard error over seeds (|t| < 2: equal within noise):\n"
        + "\n".join(sorted(comparisons))
    )
    text += _paths_table(results)
    print()
    print(text)
    print(f"\nwritten to {write('recsys', text)}")


def _search(search: dict | None) -> str:
    """How a path searches, from the manifest: the graph at the index's ef, a wider ef, or exact search."""
    if search is None:
        return "?"
    if search.get("exact"):
        return "exact search"
    return f"hnsw ef {search['ef']}" if "ef" in search else "hnsw"


def _paths_table(results: dict[tuple[str, str], dict]) -> str:
    """The served models' other client paths (fold-in, similar items, ANN recall) as a second table."""
    rows = []
    for (dataset, method), r in results.items():
        p = r.get("paths")
        if not p:
            continue
        known = r[f"recall@{K}"]
        sim, pop = p.get("similar"), p.get("similar_popularity")
        recall = p.get("ann_recall") or {}
        search = p.get("ann_search") or {}
        rows.append([dataset, method, known, p["fold_in"], p["fold_in"] / known if known else float("nan"),
                     "-" if sim is None else sim, "-" if pop is None else pop,
                     "-" if sim is None or not pop else sim / pop,
                     ", ".join(f"{path} {value:.4f} ({_search(search.get(path))})"
                               for path, value in recall.items()) or "-"])
    if not rows:
        return ""
    headers = ["dataset", "model", f"known users Recall@{K}", f"fold-in Recall@{K}", "fold-in / known",
               f"similar items Recall@{K} (proxy)", "popularity (proxy)", "similar / popularity",
               "ANN recall@10 per path (manifest; how it searches)"]
    text = ("\n\nClient paths, through RecommendationClient: fold-in = `recommend_for_history` with a test user's "
            "training items; similar items (proxy) = `similar_items` of the user's best-rated training item "
            "against the user's held-out items (ratings: ml-100k only).\n\n" + table(headers, rows))
    timed = [[dataset, method, lat["p50_ms"], lat["p99_ms"], lat["cpu_p50_ms"], lat["floor_p50_ms"], lat["floor"],
              lat["p50_ms"] / lat["floor_p50_ms"], lat["load"]]
             for (dataset, method), r in results.items() if (lat := (r.get("paths") or {}).get("latency"))]
    if timed:
        text += (f"\n\n`recommend(user, k={K})`, one request at a time, {LATENCY_USERS:,} test users (after 50 warm-up "
                 "requests), and the floor of bench/serving.py in the same process right after (one pipelined round "
                 "trip for the same rows plus the cheaper of a raw hnswlib query and an exact numpy top-k, k=10); "
                 "load = the 1-minute load average during the measurement (2 cores).\n\n"
                 + table(["dataset", "model", "p50 ms", "p99 ms", "CPU p50 ms", "floor p50 ms", "floor", "p50 / floor",
                          "load"], timed))
    return text


if __name__ == "__main__":
    main()
