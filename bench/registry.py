"""Publish/load times of the model registry against the floor (one raw SET/GET of the same bytes).

Cases: a 100k x 64 float32 model (user and item vectors + an hnswlib index over the items) and a
1M x 64 hnswlib index. Baselines measured in the same run: raw SET/GET of the concatenated bytes (the
floor: no chunking, no checksums, no atomic activation), and pickle + SET/GET (what a notebook does).

    python bench/registry.py [--items 1000000]
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import best_of, machine, table, write
from vectorstore import ItemIndex, ModelRegistry, Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    ap.add_argument("--items", type=int, default=1_000_000, help="size of the large index case")
    a = ap.parse_args()
    settings = Settings(redis_url=a.redis_url, key_prefix="eabench:", keep_versions=1)
    registry = ModelRegistry(settings)
    raw = redis.Redis.from_url(a.redis_url)
    rng = np.random.default_rng(0)
    cases = []

    vectors = rng.standard_normal((100_000, 64)).astype(np.float32)
    t = time.perf_counter()
    small_index = ItemIndex.build(vectors, M=16, ef_construction=100, ef=64).to_bytes()
    print(f"built 100k index in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    cases.append(("100k x 64 model (2 arrays + index)", {"users": vectors, "items": vectors}, {"index": small_index}))

    big = rng.standard_normal((a.items, 64)).astype(np.float32)
    t = time.perf_counter()
    big_index = ItemIndex.build(big, M=16, ef_construction=100, ef=64).to_bytes()
    print(f"built {a.items} index in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    cases.append((f"{a.items // 1000}k x 64 index", {}, {"index": big_index}))

    rows = []
    for name, arrays, blobs in cases:
        payload = b"".join([x.tobytes() for x in arrays.values()] + list(blobs.values()))
        mb = len(payload) / 1e6
        pub = best_of(lambda arrays=arrays, blobs=blobs: registry.publish("bench", arrays=arrays, blobs=blobs))
        load = best_of(lambda: registry.load("bench"))
        load_idx = best_of(lambda: ItemIndex.from_bytes(registry.load("bench", parts=["index"]).blobs["index"]))
        set_t = best_of(lambda payload=payload: raw.set("eabench:raw", payload))
        get_t = best_of(lambda: raw.get("eabench:raw"))
        pick = pickle.dumps((arrays, blobs), protocol=5)
        pset = best_of(lambda pick=pick: raw.set("eabench:pickle", pick))
        pget = best_of(lambda: pickle.loads(raw.get("eabench:pickle")))  # noqa: S301 - baseline only
        rows.append([name, f"{mb:.0f}", pub, set_t, pset, pub / set_t, load, get_t, pget, load / get_t, load_idx])
    raw.delete("eabench:raw", "eabench:pickle")
    for key in raw.scan_iter("eabench:*"):
        raw.delete(key)
    headers = ["case", "MB", "publish s", "raw SET s", "pickle+SET s", "publish / SET", "load s", "raw GET s",
               "GET+unpickle s", "load / GET", "load + index ready s"]
    text = f"Registry publish/load ({machine()}; best of 3)\n\n" + table(headers, rows)
    print(text)
    print(f"written to {write('registry', text)}", file=sys.stderr)


if __name__ == "__main__":
    main()
