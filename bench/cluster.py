"""The service on a Redis Cluster against one Redis server, measured in the same run on the same machine.

Both are started here, fresh, from the same redis-server binary: a single server, and a local cluster of
three masters with a replica each (``tests/_cluster.py``, the test suite's launcher). Through the service's
own paths (``EA_REDIS_CLUSTER`` on: :func:`vectorstore.connect` gives a ``RedisCluster``):

* **registry**: ``ModelRegistry.publish`` and ``load`` of a model (item vectors, an hnswlib index blob and a
  per-user table), best of 3;
* **serving**: ``RecommendationClient.recommend`` for random known users, no user cache (each request reads
  its user's row from Redis), 1 and 4 threads for ``--seconds`` each: requests per second, and the CPU time
  per request of this process (the client) and of all redis-server processes together (less what they use
  idle: cluster bus pings, replicas following);
* **alerts**: ``alerts.observe`` (a WATCH/MULTI transaction over a series' state, the open incidents and the
  outbox) on distinct series, one thread.

The rounds alternate between the two stores and each figure is the best of its rounds. The machine is shared
and noisy: compare the ratio column (cluster / single) of one run, and the CPU times.

    python bench/cluster.py [--users 3000] [--items 600] [--seconds 5]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the local cluster launcher of the test suite
from _cluster import start_cluster

from alerts import observe
from bench._common import machine, table, write
from recsys import (
    RecommendationClient,
    train_and_publish,
)
from vectorstore import ItemIndex, ModelRegistry, Settings, find_redis_server, redis_server_version, start_redis_server  # noqa: E402


def community_csv(folder: Path, users: int, items: int, per_user: int = 20, seed: int = 0) -> str:
    """Interactions with planted communities (users of community c mostly pick items of community c)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        own = np.arange(u % 5, items, 5)
        rows += [(f"u{u}", f"i{j}") for j in rng.choice(own, size=min(per_user, len(own)), replace=False)]
    path = folder / "interactions.csv"
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(path, index=False)
    return str(path)


def server_cpu(ports: list[int]) -> float:
    """CPU seconds used so far by the redis-servers on ``ports`` (user + system)."""
    total = 0.0
    for port in ports:
        info = redis.Redis(port=port).info("cpu")
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def serve(client: RecommendationClient, users: list[str], threads: int, seconds: float) -> int:
    """Requests answered by ``threads`` threads in ``seconds``."""
    counts = [0] * threads
    stop = threading.Event()

    def run(i: int) -> None:
        rng = np.random.default_rng(i)
        while not stop.is_set():
            client.recommend(users[int(rng.integers(len(users)))], k=10)
            counts[i] += 1

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts)


class Backend:
    """One store under test: its settings, registry, serving client and server ports."""

    def __init__(self, settings: Settings, ports: list[int], source: ModelRegistry, model: str) -> None:
        self.settings, self.ports = settings, ports
        self.registry = ModelRegistry(settings)
        loaded = source.load(model)
        tables = {t: source.read_table(model, loaded.version, t) for t in loaded.tables}
        self.registry.publish(model, arrays=dict(loaded.arrays), blobs=dict(loaded.blobs), tables=tables,
                              meta=dict(loaded.meta))
        self.client = RecommendationClient(model=model, settings=settings, listen=False, refresh_interval=0,
                                           user_cache=0)
        self.out: dict[str, list[float]] = {}

    def add(self, key: str, value: float) -> None:
        self.out.setdefault(key, []).append(value)


def one_round(b: Backend, users: list[str], items: np.ndarray, index: bytes, rows: dict[str, bytes],
              round_: int, a: argparse.Namespace) -> None:
    """Every case once on ``b`` (the rounds alternate between the backends, so both meet the same load)."""
    t = time.perf_counter()
    b.registry.publish("bench-registry", arrays={"items": items}, blobs={"index": index}, tables={"users": rows})
    b.add("publish_s", time.perf_counter() - t)
    t = time.perf_counter()
    b.registry.load("bench-registry")
    b.add("load_s", time.perf_counter() - t)
    # What the servers use doing nothing (a cluster's nodes ping each other, replicas follow their masters) is
    # taken out of the per-request figure.
    idle = server_cpu(b.ports)
    time.sleep(1.0)
    idle_rate = server_cpu(b.ports) - idle
    b.add("idle_cpu_pct", idle_rate * 100)
    for threads in (1, 4):
        cpu, server, t = time.process_time(), server_cpu(b.ports), time.perf_counter()
        n = serve(b.client, users, threads, a.seconds)
        elapsed = time.perf_counter() - t
        b.add(f"rps_{threads}", n / elapsed)
        b.add(f"client_cpu_ms_{threads}", (time.process_time() - cpu) / n * 1e3)
        b.add(f"server_cpu_ms_{threads}", (server_cpu(b.ports) - server - idle_rate * elapsed) / n * 1e3)
    t = time.perf_counter()
    for i in range(a.alerts):
        observe("bench", f"bench-{round_}-{i}", [i], [0.1], 1.0, settings=b.settings, client=b.registry.client)
    b.add("observe_per_s", a.alerts / (time.perf_counter() - t))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--items", type=int, default=600)
    ap.add_argument("--registry-items", type=int, default=20_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--alerts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds, alternating between the two stores")
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ea-bench-cluster-"))
    single = start_redis_server(folder / "single")
    cluster = start_cluster(folder / "cluster")
    try:
        base = Settings(key_prefix="eabench:", keep_versions=1)
        on_single = base.with_(redis_url=single.url, redis_cluster=False)
        on_cluster = base.with_(redis_url=cluster.url, redis_cluster=True)
        source = ModelRegistry(on_single)
        model = "bench-serving"
        t = time.perf_counter()
        train_and_publish(community_csv(folder, a.users, a.items), algorithm="spectral", name=model,
                          params={"dim": 32}, registry=source)
        print(f"trained {model} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        users = [f"u{u}" for u in range(a.users)]
        rng = np.random.default_rng(1)
        items = rng.standard_normal((a.registry_items, 64)).astype(np.float32)
        index = ItemIndex.build(items, M=16, ef_construction=100, ef=64).to_bytes()
        rows = {f"u{i}": items[i].tobytes() for i in range(a.registry_items)}
        backends = {"single": Backend(on_single, [single.port], source, model),
                    "cluster": Backend(on_cluster, [n.port for n in cluster.nodes], source, model)}
        for b in backends.values():
            serve(b.client, users, 1, 0.5)  # warm up
        for round_ in range(a.rounds):
            for b in backends.values():
                one_round(b, users, items, index, rows, round_, a)
        for b in backends.values():
            b.client.close()
    finally:
        cluster.stop()
        single.stop()
        shutil.rmtree(folder, ignore_errors=True)
    # The best of the rounds: the one least disturbed by the rest of the machine.
    lower_is_better = ("publish_s", "load_s", "client_cpu_ms_1", "client_cpu_ms_4", "server_cpu_ms_1",
                       "server_cpu_ms_4", "idle_cpu_pct")
    s, c = ({k: (min(v) if k in lower_is_better else max(v)) for k, v in backends[name].out.items()}
            for name in ("single", "cluster"))
    k = a.registry_items // 1000
    labels = [
        ("publish_s", f"registry publish ({k}k x 64 items + index + {k}k-row table), s"),
        ("load_s", "registry load (arrays + index), s"),
        ("rps_1", "client recommend, 1 thread, requests/s"),
        ("rps_4", "client recommend, 4 threads, requests/s"),
        ("client_cpu_ms_1", "client CPU per request (1 thread), ms"),
        ("server_cpu_ms_1", "redis-server CPU per request (1 thread, all nodes, idle use taken out), ms"),
        ("client_cpu_ms_4", "client CPU per request (4 threads), ms"),
        ("server_cpu_ms_4", "redis-server CPU per request (4 threads, all nodes, idle use taken out), ms"),
        ("idle_cpu_pct", "redis-server CPU when idle (all nodes), % of a core"),
        ("observe_per_s", "alerts.observe (WATCH/MULTI), batches/s"),
    ]
    rows = [[label, s[key], c[key], c[key] / s[key]] for key, label in labels]
    text = "\n".join([
        f"# Redis Cluster (3 masters + 3 replicas, local) against one Redis server\n\n{machine()}; "
        f"redis-server {'.'.join(map(str, redis_server_version(find_redis_server())))}; "
        f"spectral model of {a.users} users x {a.items} items; {a.seconds:g} s per serving case; best of "
        f"{a.rounds} rounds alternating between the two.\n",
        table(["operation", "single server", "cluster", "cluster / single"], rows),
    ])
    print(text)
    print(f"\nwritten to {write('cluster', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
