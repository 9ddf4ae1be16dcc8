"""Delta-stream rows of ``bench/serving.py``: a stream of deltas (default 1,000 per second) written by other
processes through ``recsys.CatalogueWriter`` while 4 threads query the client, against the same client's
queries without deltas in the same run (the no-delta floor), and how long each delta took to become visible.

A *delta* is one change to one item or user: an item upserted (a new item, or a new vector for an existing
one), an item deleted, one item's fields set, or one user's new interactions (2 items). Per 10 deltas: 4 user
updates, 3 field updates, 2 upserts with explicit vectors (half new items, half new vectors for existing
ones), 1 deletion. Several writer processes (``writers``, default 4) share the stream, each changing its own
share of the items. Each writer sends what came due in the last ``flush_ms`` milliseconds (default 50) as
one write per kind present (``upsert_items([...])``, ``delete_items([...])``, ``update_users({...})``,
``update_metadata({...})``: one log entry each), as an application that batches its changes would;
``flush_ms=0`` sends each delta as a write of its own. A log entry's visibility delay is the time from its
creation (the stream id is Redis' clock at ``XADD``) until the client applied it (the bench wraps the
client's delta follower to note when); the writer's batching window comes on top (at most ``flush_ms``).
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from recsys import RecommendationClient

HEADERS = ["model", "items", "writers", "flush ms", "deltas/s asked", "deltas/s written", "writes/s", "entries applied",
           "writer CPU us/delta", "floor p50 ms",
           "p50 ms", "p50 ratio", "floor p99 ms", "p99 ms", "p99 ratio", "visible p50 ms", "visible p99 ms",
           "visible max ms", "client apply CPU us/delta"]
THREADS = 4


def _writer(redis_url: str, prefix: str, name: str, rate: float, seconds: float, users: list[str],
            items: list[str], dim: int, norm: float, shard: int, flush_ms: float, ready, go, done) -> None:
    """Another process: write ``rate`` deltas per second for ``seconds``, grouped by ``flush_ms`` windows,
    changing only its own share of the items (writers never delete the same item)."""
    from recsys import CatalogueWriter
    from vectorstore import Settings

    writer = CatalogueWriter(name, settings=Settings(redis_url=redis_url, key_prefix=prefix))
    writer.version  # noqa: B018 - load the catalogue before the clock starts
    rng = np.random.default_rng(3 + shard)
    ready.release()
    go.wait()
    go_at = int(time.time() * 1e3)  # new items' names: unique to this row (a later row's writers split items anew)
    start, n, writes, live = time.perf_counter(), 0, 0, list(items)
    cpu = time.process_time()
    window = max(flush_ms / 1e3, 1.0 / rate)
    while (now := time.perf_counter() - start) < seconds:
        if now < n / rate:
            time.sleep(n / rate - now)
        due = max(1, int((time.perf_counter() - start) * rate) - n)  # what came due since the last flush
        upserts: list[dict] = []
        deletes: list[str] = []
        interactions: dict[str, list[str]] = {}
        fields: dict[str, dict] = {}
        for _ in range(due):
            kind = n % 10
            if kind < 4:
                user = users[int(rng.integers(len(users)))]
                interactions.setdefault(user, []).extend(live[int(rng.integers(len(live)))] for _ in range(2))
            elif kind < 7:
                fields[live[int(rng.integers(len(live)))]] = {"stock": int(rng.integers(100))}
            elif kind < 9:
                item = f"delta-{go_at}-{shard}-{n}" if kind == 7 else live[int(rng.integers(len(live)))]
                vector = rng.standard_normal(dim)
                upserts.append({"id": item, "vector": vector * (norm / np.linalg.norm(vector))})
                if kind == 7:
                    live.append(item)
            else:
                deletes.append(live.pop(int(rng.integers(len(live)))))
            n += 1
        # upserts and field updates before deletions: an item deleted in this window may be named above
        if upserts:
            writer.upsert_items({u["id"]: u for u in upserts}.values())
        if fields:
            writer.update_metadata(fields)
        if interactions:
            writer.update_users({u: [i for i in items_ if i not in deletes] or [live[0]]
                                 for u, items_ in interactions.items()})
        if deletes:
            writer.delete_items(deletes)
        writes += bool(upserts) + bool(fields) + bool(interactions) + bool(deletes)
        if flush_ms and (wait := window - (time.perf_counter() - start - now)) > 0:
            time.sleep(wait)
    elapsed = time.perf_counter() - start
    with done.get_lock():
        done[0] += n / elapsed
        done[1] += writes / elapsed
        done[2] += time.process_time() - cpu
        done[3] += n


def _queries(client: RecommendationClient, users: list[str]) -> list[float]:
    def one(u: str) -> float:
        t = time.perf_counter()
        client.recommend(u, k=10)
        return time.perf_counter() - t

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, users))


def delta_rows(label: str, client: RecommendationClient, queries: int, *, rate: int = 1000,
               seconds: float = 10.0, writers: int = 4, flush_ms: float = 50.0) -> list[list]:
    """One row: query latency at 4 threads with and without a delta stream, and the deltas' visibility."""
    model = client._model
    reg = client.registry
    all_users = [u.decode() for u in reg.client.hkeys(model.vectors_key)]
    rng = np.random.default_rng(5)
    users = [all_users[i] for i in rng.integers(len(all_users), size=queries)]
    _queries(client, users[:200])  # warm-up
    floor = np.asarray(_queries(client, users)) * 1e3

    applied: dict[str, float] = {}
    live = model.live
    original_apply, original_catch_up = live._apply, live.catch_up
    batch: list[str] = []
    spent = [0.0]  # CPU seconds the client spent applying deltas (its listener thread)

    def noted(entry_id: str, body: dict):
        batch.append(entry_id)
        return original_apply(entry_id, body)

    def caught_up() -> int:  # an entry is visible once its batch is in the indexes
        cpu = time.thread_time()
        done = original_catch_up()
        now = time.time()
        spent[0] += time.thread_time() - cpu
        applied.update((entry, now) for entry in batch)
        batch.clear()
        return done

    live._apply, live.catch_up = noted, caught_up
    ctx = mp.get_context("spawn")
    ready, go, done = ctx.Semaphore(0), ctx.Event(), ctx.Array("d", 4)
    settings = reg.settings
    items = [i for i in model.item_ids.tolist() if i in model.item_pos]  # live ones (an earlier row deleted some)
    norm = float(np.median(np.linalg.norm(model.item_vectors, axis=1)))  # new vectors as long as a typical item's
    procs = [ctx.Process(target=_writer, args=(settings.redis_url, settings.key_prefix, model.name, rate / writers,
                                               seconds, all_users[:5000], items[w::writers],
                                               model.item_vectors.shape[1], norm, w, flush_ms, ready, go,
                                               done))
             for w in range(writers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        ready.acquire(timeout=300)
    go.set()
    during: list[float] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            during.extend(_queries(client, users[:200]))

    asker = threading.Thread(target=ask)
    asker.start()
    for proc in procs:
        proc.join()
    stop.set()
    asker.join()
    time.sleep(1.0)  # the last deltas arrive
    live._apply, live.catch_up = original_apply, original_catch_up
    delays = np.asarray([at - int(entry.split("-")[0]) / 1e3 for entry, at in applied.items()]) * 1e3
    with_deltas = np.asarray(during) * 1e3
    f50, f99 = np.percentile(floor, [50, 99])
    d50, d99 = np.percentile(with_deltas, [50, 99])
    return [[label, len(model.item_ids), writers, flush_ms, rate, done[0], done[1], len(applied),
             done[2] / max(done[3], 1) * 1e6, f50, d50, d50 / f50, f99, d99,
             d99 / f99, *np.percentile(delays, [50, 99]), delays.max(), spent[0] / max(done[3], 1) * 1e6]]
