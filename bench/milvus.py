"""The item index in the serving process (hnswlib) against Milvus, on the same model, through the same client.

One synthetic model (`--items` clustered 64-d item vectors, users drawn near the same centres, 20 items
each; a `category` column of 10 values) is published three times, differing only in where the index lives:

- `hnswlib`: the default, an in-process HNSW graph (M=32, ef tuned at publication);
- `milvus-lite (embedded)`: `index_backend="milvus"` with `EA_MILVUS_URI` a `.db` path: pymilvus starts
  milvus-lite in this process and talks gRPC to it;
- `milvus-lite (server)`: the same engine as a separate process on loopback (`milvus-lite server`), reached
  like Milvus standalone (`EA_MILVUS_URI=http://127.0.0.1:PORT`): a network hop and a process of its own.

Each answers the same `--queries` users through `RecommendationClient.recommend(k=10)`, unfiltered and with
`filter='category == 3'`; recall@10 is against exact search over all items (seen items excluded; with the
filter, over the category's items); the embedded engine is also asked with ef 1000. Milvus standalone (C++
Knowhere, `docker compose --profile milvus`; `--milvus-uri` adds it) is not measured here: no Docker on this
machine. milvus-lite is pure Python (FAISS HNSW under a Python gRPC server), so its latencies are an upper
bound of what the Milvus path costs, not Milvus' own.

    python bench/milvus.py [--items 20000] [--queries 300] [--milvus-uri http://localhost:19530]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, table, write
from recsys import (
    GraphEmbeddings,
    Interactions,
    RecommendationClient,
    publish_embeddings,
)
from vectorstore import (
    ModelRegistry,
    Settings,
    varied_norm_vectors,
)

FILTER = "category == 3"


def model(n_items: int, dim: int = 64, per_user: int = 20):
    """Interactions, embeddings and item metadata of a clustered synthetic catalogue."""
    n_users = n_items // per_user
    items, users = varied_norm_vectors(n_items, dim, norms=(1.0, 1.0), queries=n_users)
    perm = np.random.default_rng(0).permutation(n_items)
    frame = pd.DataFrame({"user": np.repeat(np.arange(n_users), per_user).astype(str),
                          "item": perm[: n_users * per_user].astype(str)})
    inter = Interactions.from_frame(frame)
    order = inter.item_ids.astype(np.int64)
    emb = GraphEmbeddings(users[inter.user_ids.astype(np.int64)], items[order], "ip", params={"synthetic": True})
    return inter, emb, {"category": [int(i) % 10 for i in order]}


def exact(emb: GraphEmbeddings, inter: Interactions, users: list[str], category: np.ndarray | None, k: int = 10):
    """Exact top-k dense ids per user (seen items excluded; only ``category`` 3 when given)."""
    matrix = inter.user_matrix()
    pos = {u: i for i, u in enumerate(inter.user_ids.tolist())}
    out = []
    for user in users:
        u = pos[user]
        scores = emb.item_vectors @ emb.user_vectors[u]
        scores[matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]]] = -np.inf
        if category is not None:
            scores[category != 3] = -np.inf
        out.append(set(np.argsort(-scores, kind="stable")[:k].tolist()))
    return out


def run(label: str, settings: Settings, backend: str, inter, emb, metadata, users, truths, rows, k=10,
        efs: tuple[int, ...] = (200,)) -> None:
    registry = ModelRegistry(settings)
    t = time.perf_counter()
    publish_embeddings(registry, "bench", inter, emb, algorithm="synthetic", item_metadata=metadata,
                       index_backend=backend)
    publish_s = time.perf_counter() - t
    with RecommendationClient(model="bench", settings=settings, listen=False, refresh_interval=0) as client:
        pos = client._model.item_pos
        cases = [(ef, name, expression, truth) for ef in efs
                 for name, expression, truth in (("unfiltered", None, truths[0]), (FILTER, FILTER, truths[1]))]
        for ef, name, expression, truth in cases:
            if backend == "milvus":
                client._model.index.ef = ef  # the search breadth Milvus is asked with (publication: 200)
            for user in users[:20]:
                client.recommend(user, k=k, filter=expression)  # warm-up
            times, cpu, hits = [], time.process_time(), 0
            for user, want in zip(users, truth):
                t = time.perf_counter()
                recs = client.recommend(user, k=k, filter=expression)
                times.append(time.perf_counter() - t)
                hits += len(want & {pos[i] for i in recs.items})
            cpu = (time.process_time() - cpu) / len(users)
            ms = np.asarray(times) * 1e3
            shown = label if ef == 200 else f"{label}, ef {ef}"
            rows.append([shown, name, len(pos), float(np.percentile(ms, 50)), float(np.percentile(ms, 99)),
                         cpu * 1e3, hits / (k * len(users)), publish_s])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--milvus-uri", default=None,
                    help="also measure this Milvus (e.g. http://localhost:19530 of `docker compose --profile milvus`)")
    a = ap.parse_args()
    inter, emb, metadata = model(a.items)
    rng = np.random.default_rng(1)
    users = [str(u) for u in rng.choice(inter.user_ids, size=a.queries, replace=False)]
    category = np.asarray(metadata["category"])
    truths = (exact(emb, inter, users, None), exact(emb, inter, users, category))
    folder = Path(tempfile.mkdtemp(prefix="ea-bench-milvus-"))
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir",
                               str(folder / "server"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows: list = []
    try:
        base = Settings(redis_url=a.redis_url, key_prefix=f"eabench-milvus-{os.getpid()}:", keep_versions=1)
        run("hnswlib (in process)", base, "hnswlib", inter, emb, metadata, users, truths, rows)
        run("milvus-lite (embedded)", base.with_(key_prefix=base.key_prefix + "e:",
                                                 milvus_uri=str(folder / "embedded.db")),
            "milvus", inter, emb, metadata, users, truths, rows, efs=(200, 1000))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        run("milvus-lite (server)", base.with_(key_prefix=base.key_prefix + "s:", milvus_uri=f"http://127.0.0.1:{port}"),
            "milvus", inter, emb, metadata, users, truths, rows)
        if a.milvus_uri:
            run(f"Milvus at {a.milvus_uri}", base.with_(key_prefix=base.key_prefix + "m:", milvus_uri=a.milvus_uri),
                "milvus", inter, emb, metadata, users, truths, rows)
    finally:
        server.terminate()
        server.wait(timeout=30)
        registry = ModelRegistry(Settings(redis_url=a.redis_url))
        for key in registry.client.scan_iter(f"eabench-milvus-{os.getpid()}:*"):
            registry.client.delete(key)
        shutil.rmtree(folder, ignore_errors=True)
    hnsw = {r[1]: r for r in rows if r[0].startswith("hnswlib")}
    for r in rows:
        r.insert(5, r[3] / hnsw[r[1]][3])
    headers = ["index", "query", "items", "p50 ms", "p99 ms", "p50 / hnswlib", "client CPU ms / query",
               "recall@10 vs exact", "publish s"]
    text = (f"hnswlib in process against Milvus (milvus-lite) through RecommendationClient.recommend(k=10), "
            f"{a.queries} users, {a.items:,} x 64 clustered items ({machine()})\n\n" + table(headers, rows))
    print(text)
    print(f"written to {write('milvus', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
