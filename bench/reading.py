"""How fast, and in how much memory, the readers users hand files to read big files.

Two readers, through their public functions (what ``ea detect`` and ``ea train graph`` call):

* ``anomaly.read_one_series`` on a 1M-row series CSV with UTC offsets, rows in reverse order and missing
  values (the slow paths of the reader);
* ``recsys.Interactions.read`` on a 2M-row interactions CSV (about 50 MB): read in chunks, so its peak memory is
  set by one chunk of rows as Python strings plus the int32 codes, not by the whole file as strings (about 10x
  the file for pandas object columns).

Each read runs in a fresh process (its peak RSS is its own); the table gives the median of ``--runs`` runs of
process CPU seconds and of peak RSS growth over the imports, with the machine's load beside them. These
figures were asserted by tests until 2026-12 (a test asserts behaviour; speed and memory are measured here).

Run: ``python bench/reading.py [--runs 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import machine, table  # noqa: E402

_MEASURE = """
import resource, sys, time
kind, path = sys.argv[1], sys.argv[2]
if kind == "series":
    from anomaly import read_one_series as read
else:
    from recsys import Interactions
    read = Interactions.read
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.process_time()
data = read(path)
seconds = time.process_time() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(seconds, (peak - base) * 1024, len(data))
"""


def series_file(folder: Path, n: int = 1_000_000) -> Path:
    """A series CSV of ``n`` rows: UTC offsets, newest first, one value in 97 missing."""
    ts = pd.date_range("2020-01-01", periods=n, freq="min")
    values = np.round(np.random.default_rng(0).normal(size=n), 3).astype(str).astype(object)
    values[::97] = ""
    path = folder / "series.csv"
    frame = pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S+01:00"), "value": values, "host": "web-1"})
    frame.iloc[::-1].to_csv(path, index=False)
    return path


def interactions_file(folder: Path, rows: int = 2_000_000) -> Path:
    """An interactions CSV of ``rows`` rows over 150k users and 40k items."""
    path = folder / "interactions.csv"
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("user,item,weight\n")
        for _ in range(0, rows, 500_000):
            u, i = rng.integers(0, 150_000, 500_000), rng.integers(0, 40_000, 500_000)
            f.write("\n".join(f"user{a},item{b},{1 + (a + b) % 4}" for a, b in zip(u.tolist(), i.tolist())) + "\n")
    return path


def measure(kind: str, path: Path, runs: int) -> tuple[float, float, int]:
    """Median CPU seconds and median peak RSS growth (bytes) of reading ``path`` in a fresh process."""
    seconds, growth, n = [], [], 0
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(path)], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
        seconds.append(float(out[0]))
        growth.append(float(out[1]))
        n = int(out[2])
    return statistics.median(seconds), statistics.median(growth), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("series", series_file), ("interactions", interactions_file)):
            path = make(Path(tmp))
            size = path.stat().st_size
            seconds, growth, n = measure(kind, path, args.runs)
            rows.append([kind, f"{size / 1e6:.1f}", n, f"{seconds:.2f}", f"{n / seconds:,.0f}",
                         f"{growth / 1e6:.0f}", f"{growth / size:.1f}x"])
    print(f"{machine()}; load {load:.1f} before, {os.getloadavg()[0]:.1f} after; median of {args.runs} runs\n")
    print(table(["reader", "file MB", "rows read", "CPU s", "rows per CPU-s", "peak RSS growth MB", "of the file"],
                rows))


if __name__ == "__main__":
    main()
