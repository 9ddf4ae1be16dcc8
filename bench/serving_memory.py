"""Memory of serving, per item and per user: what a `RecommendationClient` holds, and what Redis holds.

For each `--items` size (default 100,000 and 200,000; 64-d, 20 items a user, so items/20 users) one
synthetic model is published with the hnswlib index (the default) and with
`index_backend="milvus"` on a milvus-lite server process (`EA_MILVUS_URI=http://127.0.0.1:PORT`, so the
engine's memory is not the client's). A fresh Python process then opens a `RecommendationClient` on it and
answers one request: its RSS growth over the same process before the client (imports done) is the client's
memory for the model. Redis's side: `MEMORY USAGE` of the version's user tables (vectors and seen items)
per user. The baseline row is the raw float32 item vectors (n x d x 4 bytes).

    python bench/serving_memory.py [--items 100000 200000] [--backends hnswlib milvus]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine, table, write
from bench.milvus import model
from recsys import publish_embeddings, user_table_keys
from vectorstore import ModelRegistry, Settings

# Run in a fresh interpreter: RSS before and after the client loads the model and answers one request.
PROBE = """
import json, os, sys, psutil
from recsys import RecommendationClient
from vectorstore import Settings
proc = psutil.Process()
before = proc.memory_info().rss
s = json.loads(sys.argv[1])
settings = Settings(redis_url=s["redis_url"], key_prefix=s["prefix"], milvus_uri=s.get("milvus_uri"))
client = RecommendationClient(model="mem", settings=settings, listen=False, refresh_interval=0)
client.recommend(s["user"], k=10)
print(json.dumps({"rss": proc.memory_info().rss - before, "pymilvus": "pymilvus" in sys.modules}))
"""


def publish(settings: Settings, n_items: int, backend: str) -> tuple[str, int]:
    """Publish bench/milvus.py's synthetic model (64-d, 20 items a user); returns a known user and the user count."""
    inter, emb, _ = model(n_items)
    publish_embeddings(ModelRegistry(settings), "mem", inter, emb, algorithm="synthetic", index_backend=backend)
    return str(inter.user_ids[0]), inter.n_users


def measure(settings: Settings, user: str) -> dict:
    probe = {"redis_url": settings.redis_url, "prefix": settings.key_prefix, "milvus_uri": settings.milvus_uri,
             "user": user}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(probe)], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    return json.loads(out.stdout.strip().splitlines()[-1])


def redis_bytes(settings: Settings) -> int:
    registry = ModelRegistry(settings)
    version = registry.active_version("mem")
    assert version is not None
    return sum(int(registry.client.memory_usage(key, samples=0) or 0)
               for key in user_table_keys(registry, "mem", version))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--items", type=int, nargs="+", default=[100_000, 200_000])
    ap.add_argument("--backends", nargs="+", choices=["hnswlib", "milvus"], default=["hnswlib", "milvus"])
    a = ap.parse_args()
    rows: list = []
    folder = Path(tempfile.mkdtemp(prefix="ea-bench-mem-"))
    server = None
    prefixes = []
    try:
        for n in a.items:
            for backend in a.backends:
                prefix = f"eabench-mem-{os.getpid()}-{n}-{backend}:"
                prefixes.append(prefix)
                settings = Settings(redis_url=a.redis_url, key_prefix=prefix, keep_versions=1)
                if backend == "milvus":
                    if server is None:
                        with socket.socket() as s:
                            s.bind(("127.0.0.1", 0))
                            port = s.getsockname()[1]
                        server = subprocess.Popen(
                            [str(Path(sys.executable).parent / "milvus-lite"), "server", "--data-dir",
                             str(folder / "milvus"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        time.sleep(5)
                    settings = settings.with_(milvus_uri=f"http://127.0.0.1:{port}")
                t = time.perf_counter()
                user, n_users = publish(settings, n, backend)
                publish_s = time.perf_counter() - t
                probe = measure(settings, user)
                per_user = redis_bytes(settings) / n_users
                rows.append([backend, n, n_users, probe["rss"] / 2**20, probe["rss"] / n, n * 64 * 4 / 2**20,
                             probe["rss"] / (n * 64 * 4), probe["rss"] / n * 1e6 / 2**30, per_user,
                             per_user * 1e6 / 2**30, probe["pymilvus"], publish_s])
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
        registry = ModelRegistry(Settings(redis_url=a.redis_url))
        for prefix in prefixes:
            for key in registry.client.scan_iter(f"{prefix}*"):
                registry.client.delete(key)
    headers = ["index", "items", "users", "client RSS MiB", "client bytes / item", "raw item vectors MiB",
               "RSS / raw vectors", "client GiB per 1M items", "Redis bytes / user (vector + seen)",
               "Redis GiB per 1M users", "client imported pymilvus", "publish s"]
    text = (f"Serving memory, 64-d, 20 items per user ({machine()})\n\n" + table(headers, rows))
    print(text)
    print(f"written to {write('serving_memory', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
