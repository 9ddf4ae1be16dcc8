"""Benchmark: what "not an anomaly" feedback changes, replayed on labelled series no setting was chosen on.

Each series of a labelled corpus in NAB's layout (default: ``../shared/data/anomaly/beyond-nab``, which no
detector setting and nothing of the feedback was chosen on) goes through the service's streaming path twice:
a detector trained on the probation prefix (min(15%, 750) rows, NAB's rule; ``anomaly.train_detector``, what
``ea train series`` runs), then the rest scored in batches through ``workers.scoring.score_series`` (what
``ea score`` and the score workers run: the stream state and incidents in Redis).

* **before**: no feedback;
* **after**: an on-call replayed from the labels: when an incident has resolved and its start lies outside
  every labelled window (a false alarm by NAB's rule), it gets ``anomaly.label_normal`` on its rows, as
  ``ea alerts feedback ID --not-anomaly`` does, before the next batch is scored.

Reported per category: labelled windows found (an alert inside), false alarms (alert rows outside every
window), and the feedback given. Feedback is judged by the labels, so "after" is what a perfect on-call would
get; found windows falling says feedback excused a real anomaly's shape. Not a speed benchmark.

Usage: nice -n 5 .venv/bin/python bench/anomaly_feedback.py [--corpus DIR] [--per-category N] [--batch 288]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, table, write  # noqa: E402

import alerts  # noqa: E402
from anomaly import label_normal, read_one_series, train_detector  # noqa: E402
from vectorstore import ModelRegistry  # noqa: E402
from workers.scoring import score_series  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "anomaly" / "beyond-nab"


def replay(path: Path, windows: list[tuple[pd.Timestamp, pd.Timestamp]], *, feedback: bool, batch: int,
           registry: ModelRegistry) -> dict[str, int]:
    """Stream one series after its probation prefix; returns windows found, false alarms, labels given."""
    series = read_one_series(path)
    n = len(series)
    prefix = min(int(0.15 * n), 750)
    name = f"fb{uuid.uuid4().hex[:8]}"
    train_detector(_frame(series, 0, prefix), name=name, series_id="s", registry=registry)
    times = series.timestamps.tz_convert(None) if series.timestamps.tz is not None else series.timestamps
    alerted: list[pd.Timestamp] = []
    labelled: set[str] = set()
    for a in range(prefix, n, batch):
        chunk = _frame(series, a, min(n, a + batch))
        out = score_series(name, "s", chunk.timestamp.astype(str).tolist(),
                           [None if v != v else float(v) for v in chunk.value], registry=registry)
        alerted += [times[a + i] for i, x in enumerate(out["is_anomaly"]) if x]
        if not feedback:
            continue
        for view in alerts.incidents(all=True, detector=name, series="s", settings=registry.settings,
                                     client=registry.client):
            inc = view.incident
            if view.state != "resolved" or inc.id in labelled:
                continue
            start = pd.Timestamp(inc.start).tz_convert(None)
            if any(lo <= start <= hi for lo, hi in windows):
                continue
            try:
                label_normal(name, "s", inc.start, inc.end, by="bench", incident=inc.id, registry=registry)
            except Exception as exc:  # rows no longer held: the on-call was too late; counted as not given
                print(f"  {path.name}: feedback on {inc.id} refused: {exc}", file=sys.stderr)
            labelled.add(inc.id)
    found = sum(any(lo <= t <= hi for t in alerted) for lo, hi in windows)
    false = sum(not any(lo <= t <= hi for lo, hi in windows) for t in alerted)
    return {"windows": len(windows), "found": found, "false": false, "labels": len(labelled)}


def _frame(series, a: int, b: int) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": series.timestamps[a:b], "value": series.values[a:b]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--per-category", type=int, default=0, help="At most this many files per category (0: all).")
    parser.add_argument("--batch", type=int, default=288)
    args = parser.parse_args()
    if not (args.corpus / "windows.json").exists():
        sys.exit(f"{args.corpus}/windows.json not found: the corpus is absent")
    labels = json.loads((args.corpus / "windows.json").read_text())
    data = args.corpus / "data" if (args.corpus / "data").is_dir() else args.corpus
    per: dict[str, list[str]] = defaultdict(list)
    for key in sorted(labels):
        per[key.split("/")[0]].append(key)
    registry = ModelRegistry()
    rows, total = [], defaultdict(lambda: np.zeros(8, int))
    for category, keys in per.items():
        keys = keys[: args.per_category] if args.per_category else keys
        sums = np.zeros(8, int)
        for key in keys:
            windows = [(pd.Timestamp(lo), pd.Timestamp(hi)) for lo, hi in labels[key]]
            before = replay(data / key, windows, feedback=False, batch=args.batch, registry=registry)
            after = replay(data / key, windows, feedback=True, batch=args.batch, registry=registry)
            print(f"{key}: before {before}, after {after}", flush=True)
            sums += [1, before["windows"], before["found"], after["found"], before["false"], after["false"],
                     after["labels"], 0]
        rows.append([category, *sums[:7].tolist()])
        total["all"] += sums
    rows.append(["all", *total["all"][:7].tolist()])
    load = os.getloadavg()
    text = "\n".join([
        f"# Feedback replay ({args.corpus.name}; held out: no setting was chosen on it)", "",
        f"{machine()}; load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; batches of {args.batch} points through "
        "workers.scoring.score_series (Redis); on-call replayed from the labels", "",
        table(["category", "files", "windows", "found before", "found after", "false alarms before",
               "false alarms after", "feedback given"], rows),
        "", f"`nice -n 5 .venv/bin/python bench/anomaly_feedback.py --per-category {args.per_category} "
            f"--batch {args.batch}`"])
    print(text)
    print(f"written to {write('anomaly_feedback', text)}")


if __name__ == "__main__":
    main()
