"""Serving latency and quality of RecommendationClient against the floor measured in the same run.

Models: one trained on ml-1m (the default model by default; `--algorithm lightgcn` for LightGCN) and a
synthetic catalogue of `--items` (default 1,000,000) x 64 clustered vectors. For each:

- `recommend` p50/p99 latency, 1 thread and 4 threads, against the floor measured in the same run: one
  pipelined Redis round trip (the same two HMGETs) plus the cheaper of a raw hnswlib `knn_query` and an
  exact numpy top-k over the same item vectors for the same user, no Python around either;
- `recommend_many` throughput (users/s, batches of 1,000);
- ANN recall@10 of the served top-10 against exact full-ranking search (seen items excluded in both);
- a version switch under 8 querying threads: the new version is staged (published, not active), the
  client preloads it, then `activate()`: errors, preload time, and the time from activation until the
  client serves the new version.

A second table: `--varied-items` (default 100,000) clustered 64-d items whose norms vary 0.3-3x
(`vectorstore.varied_norm_vectors`), 500 queries: recall@10 against exact search and latency of
one query for each graph kind (augmented L2 / native ip) and ef, exact search, and what publication
(`vectorstore.tune_index`) chooses.

    python bench/serving.py [--items 1000000] [--queries 2000] [--skip-synthetic] [--skip-varied]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, table, write
from bench._deltas import HEADERS as DELTA_HEADERS
from bench._deltas import delta_rows
from bench._filtered import HEADERS as FILTERED_HEADERS
from bench._filtered import bucket_metadata, filtered_rows
from recsys import (
    DEFAULT_MODEL,
    GraphEmbeddings,
    Interactions,
    RecommendationClient,
    publish_embeddings,
    train_and_publish,
    user_rows,
)
from vectorstore import ModelRegistry, Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "recsys" / "ml-1m"


def percentiles(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples) * 1e3
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def latency(fn, users: list[str], threads: int) -> list[float]:
    def one(u: str) -> float:
        t = time.perf_counter()
        fn(u)
        return time.perf_counter() - t

    for u in users[:50]:
        fn(u)  # warm-up
    if threads == 1:
        return [one(u) for u in users]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, users))


def floor_fn(client: RecommendationClient, k: int, exact: bool = False):
    """One pipelined round trip for the user's vector and seen items, then a raw knn_query or (``exact``) an
    exact numpy top-k over the same items (scores, seen items masked, argpartition of the k best)."""
    model = client._model
    vec_key, seen_key = model.vectors_key, model.seen_key
    raw = model.index._index
    items = np.ascontiguousarray(model.item_vectors, dtype=np.float32)

    def run(user: str):
        pipe = client.registry.client.pipeline(transaction=False)
        pipe.hmget(vec_key, [user])
        pipe.hmget(seen_key, [user])
        vec, seen = pipe.execute()
        v = np.frombuffer(vec[0], "<f4")
        if exact:
            scores = items @ v
            scores[np.frombuffer(seen[0], "<i4")] = -np.inf
            top = np.argpartition(-scores, k)[:k]
            return top[np.argsort(-scores[top])]
        n_seen = len(seen[0]) // 4
        if model.index.space == "ip":  # the index is an augmented L2 graph (see ItemIndex)
            v = np.append(v, np.float32(0.0))
        return raw.knn_query(v, k=min(k + n_seen, len(model.item_ids)))

    return run


def floor_percentiles(client: RecommendationClient, users: list[str], threads: int) -> tuple[float, float, str]:
    """The floor's (p50, p99) ms: the cheaper (by p50) of a raw hnswlib query and an exact numpy top-k."""
    graph = percentiles(latency(floor_fn(client, 10), users, threads))
    exact = percentiles(latency(floor_fn(client, 10, exact=True), users, threads))
    return (*graph, "hnswlib") if graph[0] <= exact[0] else (*exact, "exact")


def exact_recall(client: RecommendationClient, users: list[str], k: int = 10) -> float:
    model = client._model
    reg = client.registry
    hits = 0
    for user, (v, seen) in zip(users, user_rows(reg, model.name, model.version, users)):
        scores = model.item_vectors @ v
        scores[seen] = -np.inf
        truth = set(np.argpartition(-scores, k)[:k].tolist())
        served = {model.item_pos[i] for i in client.recommend(user, k=k).items}
        hits += len(truth & served)
    return hits / (k * len(users))


def swap_under_load(client: RecommendationClient, stage) -> tuple[int, float, float]:
    """Stage a new version (published, not active), let the client preload it, then activate it while 8
    threads query: errors, preload seconds, and seconds from activate() until the client serves it."""
    errors, stop = [], threading.Event()
    users = [u.decode() for u in client.registry.client.hkeys(client._model.vectors_key)[:500]]

    def loop(seed: int):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            try:
                client.recommend(users[int(rng.integers(len(users)))], k=10)
            except Exception as exc:  # noqa: BLE001 - every error counts
                errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    new_version = stage()  # publication (index build included) is not part of the switch
    t0 = time.perf_counter()
    while new_version not in client.staged_versions and time.perf_counter() - t0 < 300:
        time.sleep(0.005)
    preload = time.perf_counter() - t0
    client.registry.activate(client.name, new_version)
    t0 = time.perf_counter()
    while client.model_version != new_version and time.perf_counter() - t0 < 30:
        time.sleep(0.001)
    switched = time.perf_counter() - t0
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    return len(errors), preload, switched


def synthetic_model(registry: ModelRegistry, name: str, n_items: int, dim: int = 64, per_user: int = 20):
    """A clustered catalogue where every item is used by some user (so the id maps cover it)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((max(10, n_items // 1000), dim)).astype(np.float32)
    assign = rng.integers(len(centres), size=n_items)
    items = centres[assign] + 0.5 * rng.standard_normal((n_items, dim)).astype(np.float32)
    n_users = n_items // per_user
    perm = rng.permutation(n_items)
    frame = pd.DataFrame({"user": np.repeat(np.arange(n_users), per_user).astype(str),
                          "item": perm[: n_users * per_user].astype(str)})
    inter = Interactions.from_frame(frame)
    item_order = inter.item_ids.astype(np.int64)
    users = centres[rng.integers(len(centres), size=inter.n_users)] + 0.5 * rng.standard_normal(
        (inter.n_users, dim)).astype(np.float32)
    emb = GraphEmbeddings(users, items[item_order], "ip", params={"synthetic": True})

    def publish(activate: bool = True) -> int:
        return publish_embeddings(registry, name, inter, emb, algorithm="synthetic", activate=activate,
                                  item_metadata=bucket_metadata(inter.item_ids))

    return publish


def measure(label: str, client: RecommendationClient, republish, queries: int, rows: list) -> None:
    reg = client.registry
    all_users = [u.decode() for u in reg.client.hkeys(client._model.vectors_key)]
    rng = np.random.default_rng(1)
    users = [all_users[i] for i in rng.integers(len(all_users), size=queries)]
    f1 = floor_percentiles(client, users, 1)
    r1 = percentiles(latency(lambda u: client.recommend(u, k=10), users, 1))
    f4 = floor_percentiles(client, users, 4)
    r4 = percentiles(latency(lambda u: client.recommend(u, k=10), users, 4))
    batch = users[:1000]
    client.recommend_many(batch, k=10)
    t = time.perf_counter()
    reps = 3
    for _ in range(reps):
        client.recommend_many(batch, k=10)
    many = reps * len(batch) / (time.perf_counter() - t)
    recall = exact_recall(client, users[:300])
    errors, preload, switched = swap_under_load(client, lambda: republish(activate=False))
    rows.append([label, len(client._model.item_ids), client._model.dim, client._model.index.params["M"],
                 client._model.index.ef, f1[2], f1[0], r1[0], r1[0] / f1[0], f1[1], r1[1], r1[1] / f1[1],
                 f4[0], r4[0], r4[0] / f4[0], f4[1], r4[1], r4[1] / f4[1], many, recall, errors, preload, switched])


def varied_norm_rows(n_items: int) -> list[list]:
    """Recall@10 and single-query latency per graph kind and ef on varied-norm vectors, exact search, and
    tune_index's choice (its build time included)."""
    from vectorstore import ItemIndex, Probe, measure_recall, tune_index, varied_norm_vectors

    items, queries = varied_norm_vectors(n_items, 64, queries=500, seed=0)
    probe = Probe(queries)
    rows: list[list] = []
    for kind in ("augmented", "native"):
        t = time.perf_counter()
        index = ItemIndex.build(items, space="ip", M=32, ef_construction=200, ef=200, mips=kind)
        built = time.perf_counter() - t
        for ef in (200, 400, 800):
            index.set_ef(ef)
            recall, seconds = measure_recall(index, probe)
            rows.append([f"{kind} graph", ef, recall, seconds * 1e3, built])
        index.set_exact(True)
        if kind == "native":
            recall, seconds = measure_recall(index, probe)
            rows.append(["exact search", "-", recall, seconds * 1e3, 0.0])
    t = time.perf_counter()
    index, report = tune_index(items, {"recommend": probe})
    search = report["search"]["recommend"]
    how = "exact search" if search.get("exact") else f"{report['mips']} graph"
    rows.append([f"chosen at publication: {how}", search.get("ef", report["ef"]), report["recall"]["recommend"],
                 report["query_ms"]["recommend"], time.perf_counter() - t])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--algorithm", default=DEFAULT_MODEL, help="ml-1m's model (default: the default model)")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-ml1m", action="store_true")
    ap.add_argument("--varied-items", type=int, default=100_000)
    ap.add_argument("--skip-varied", action="store_true")
    ap.add_argument("--filtered-only", action="store_true", help="Only the filtered-query rows.")
    ap.add_argument("--key-prefix", default="eabench-serving:", help="Redis key prefix (one per concurrent run).")
    ap.add_argument("--deltas-only", action="store_true", help="Only the delta-stream rows.")
    ap.add_argument("--delta-rate", type=int, default=1000, help="Deltas per second of the delta-stream rows.")
    ap.add_argument("--delta-writers", type=int, default=4, help="Writer processes sharing the delta stream.")
    ap.add_argument("--delta-flush-ms", type=float, nargs="+", default=[50.0],
                    help="Each writer sends the deltas of this many ms as one write per kind (0: one write each); "
                    "one row per value.")
    a = ap.parse_args()
    settings = Settings(redis_url=a.redis_url, key_prefix=a.key_prefix, keep_versions=2)
    registry = ModelRegistry(settings)
    rows: list = []
    filtered: list = []  # filtered-query rows (bench/_filtered.py)
    deltas: list = []  # delta-stream rows (bench/_deltas.py)

    def bench_model(model: str, label: str, republish) -> None:
        """The rows the flags ask for, of one published model, through one client."""
        with RecommendationClient(model=model, settings=settings, refresh_interval=1.0) as client:
            if not (a.filtered_only or a.deltas_only):
                measure(label, client, republish, a.queries, rows)
            if not a.deltas_only:
                filtered.extend(filtered_rows(label, client, a.queries))
            if not a.filtered_only:
                for flush_ms in a.delta_flush_ms:
                    deltas.extend(delta_rows(label, client, a.queries, rate=a.delta_rate,
                                             writers=a.delta_writers, flush_ms=flush_ms))

    if not a.skip_ml1m:
        params = {"node2vec": {"dim": 64}, "lightgcn": {"dim": 64, "epochs": 30}}.get(a.algorithm, {})
        t = time.perf_counter()
        items_csv = Path(tempfile.mkdtemp()) / "items.csv"  # every item's filter bucket (bench/_filtered.py)
        ml1m_items = Interactions.read(str(DATA / "train.txt")).item_ids
        pd.DataFrame({"item": ml1m_items, **bucket_metadata(ml1m_items)}).to_csv(items_csv, index=False)
        train_and_publish(str(DATA / "train.txt"), algorithm=a.algorithm, name="ml1m", params=params,
                          registry=registry, item_metadata=str(items_csv))
        print(f"trained ml-1m {a.algorithm} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        mv = registry.load("ml1m")

        tables = {t: registry.read_table("ml1m", mv.version, t) for t in mv.tables}

        def republish_ml1m(activate: bool = True) -> int:
            return registry.publish("ml1m", arrays=dict(mv.arrays), blobs=dict(mv.blobs), tables=tables,
                                    meta=mv.meta, activate=activate)

        bench_model("ml1m", f"ml-1m ({a.algorithm})", republish_ml1m)
    if not a.skip_synthetic:
        t = time.perf_counter()
        publish = synthetic_model(registry, "synthetic", a.items)
        publish()
        print(f"built and published the {a.items:,}-item model in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        bench_model("synthetic", f"synthetic {a.items // 1000}k x 64", publish)
    for key in registry.client.scan_iter(f"{a.key_prefix}*"):
        registry.client.delete(key)
    headers = ["model", "items", "dims", "M", "ef", "floor search", "floor p50 ms", "recommend p50 ms", "p50 ratio",
               "floor p99 ms", "recommend p99 ms", "p99 ratio", "floor p50 ms (4 thr)", "p50 ms (4 thr)",
               "p50 ratio (4 thr)", "floor p99 ms (4 thr)", "p99 ms (4 thr)", "p99 ratio (4 thr)",
               "recommend_many users/s", "ANN recall@10", "swap errors", "preload s", "switch s"]
    text = (f"Serving ({machine()}; floor = one pipelined Redis round trip + the cheaper of a raw hnswlib "
            "knn_query and an exact numpy top-k over the same items, measured in the same run)\n\n"
            + table(headers, rows))
    text += ("\n\nFiltered queries (recommend k=10 with filter 'bucket < S', S% of the items allowed) against the "
             "unfiltered query of the same users in the same run; recall@10 against exact search over the allowed "
             "items\n\n" + table(FILTERED_HEADERS, filtered))
    text += ("\n\nA stream of deltas (recsys.CatalogueWriter in another process) while 4 threads call recommend(k=10), "
             "against the same queries without deltas (floor) in the same run; a delta is one change to one item or "
             "user, sent in writes of what came due in the last 'flush ms' (bench/_deltas.py); "
             "visible = from the log entry to the client applying it\n\n" + table(DELTA_HEADERS, deltas))
    print(text, flush=True)  # before the varied-norm table, which takes minutes more
    if not a.skip_varied:
        varied = (f"\n\nInner product on {a.varied_items:,} clustered 64-d items with norms 0.3-3x, 500 queries "
                  "(M=32, ef_construction=200; one query at a time)\n\n"
                  + table(["search", "ef", "recall@10", "ms / query", "build s"], varied_norm_rows(a.varied_items)))
        print(varied)
        text += varied
    print(f"written to {write('serving', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
