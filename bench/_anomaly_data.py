"""The anomaly benchmark's corpora and scorer, found beside the repository (``../shared``).

* ``nab``: the 35 shared NAB files, ``../shared/data/anomaly/nab/<category>/<file>.csv`` with their
  ``windows.json`` (NAB's other files are the held-back test: never read here);
* ``beyond``: ``../shared/data/anomaly/beyond-nab`` (``data/<category>/<file>.csv``, ``windows.json``):
  57 labelled series that are not NAB (AIOps 2018 KPIs, NASA SMAP / MSL, UCR);
* the scorer ``../shared/bench/anomaly_score.py`` (NAB-like, event figures, ``--optimize``: NAB's board's
  single best threshold over the ``score`` column). Its NAB-like is a sum over files normalised once, so
  each file's share is taken once by the scorer's own functions (:func:`file_stats`) and any set of files
  (a training fold, a category) is summed from them (:func:`aggregate`); the benchmark checks that sum
  against the scorer run whole (a subprocess, :func:`score`) on every corpus, and the threshold search is
  the scorer's own run.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCORER = SHARED / "bench" / "anomaly_score.py"
LOCATIONS = {"nab": (SHARED / "data" / "anomaly" / "nab", ""),
             "beyond": (SHARED / "data" / "anomaly" / "beyond-nab", "data")}
CORPUS_NAMES = {"nab": "NAB (35 shared files)", "beyond": "beyond-nab"}


def probation(n: int) -> int:
    """NAB's probationary prefix of an ``n``-row file, the detector's training rows: ``min(15%, 750)``."""
    return min(int(math.floor(0.15 * n)), 750)


@dataclass(frozen=True)
class Corpus:
    """One labelled corpus in NAB's layout.

    Attributes:
        name: ``"nab"`` or ``"beyond"``.
        data: the folder holding ``<category>/<file>.csv`` (the scorer's ``--data``).
        windows: ``"category/file.csv" -> [[start, end], ...]`` (the corpus's ``windows.json``).
    """

    name: str
    data: Path
    windows: dict[str, list[list[str]]]

    @property
    def keys(self) -> list[str]:
        return sorted(self.windows)

    def categories(self) -> list[str]:
        """The corpus's categories (first path part of its keys), sorted."""
        return sorted({k.split("/", 1)[0] for k in self.windows})

    def in_category(self, category: str) -> list[str]:
        return [k for k in self.keys if k.split("/", 1)[0] == category]

    def n_windows(self, keys: list[str]) -> int:
        return sum(len(self.windows[k]) for k in keys)


def load_corpora(names: tuple[str, ...] = ("nab", "beyond")) -> dict[str, Corpus]:
    """The corpora found under ``../shared``; SystemExit naming what is missing when the scorer or NAB is
    absent; a corpus other than NAB that is absent is left out (reported on stderr)."""
    if not SCORER.is_file():
        raise SystemExit(f"the anomaly scorer was not found at {SCORER} (expected ../shared/bench/anomaly_score.py "
                         "beside the repository)")
    out = {}
    for name in names:
        folder, sub = LOCATIONS[name]
        windows = folder / "windows.json"
        if not windows.is_file():
            if name == "nab":
                raise SystemExit(f"NAB's shared files were not found at {folder} (expected "
                                 "../shared/data/anomaly/nab beside the repository)")
            print(f"{CORPUS_NAMES[name]} not found at {folder}: its figures are left out", file=sys.stderr)
            continue
        out[name] = Corpus(name, folder / sub if sub else folder, json.loads(windows.read_text()))
    return out


def score(corpus: Corpus, results: dict[str, Path], optimize: bool, cache: Path) -> dict:
    """The scorer's JSON, run as NAB's files are scored (a subprocess), for the files ``results`` names (key
    -> result CSV; a missing CSV counts as a detector that raised nothing), cached in ``cache`` by the
    result files' identities. ``optimize`` adds NAB's board's single best threshold over ``score``."""
    keys = sorted(results)
    ident = hashlib.sha256(json.dumps([corpus.name, optimize, [(k, _identity(results[k])) for k in keys]]).encode())
    dest = cache / "scores" / f"{ident.hexdigest()[:24]}.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    with tempfile.TemporaryDirectory(prefix="ea-anomaly-score-") as tmp:
        (Path(tmp) / "windows.json").write_text(json.dumps({k: corpus.windows[k] for k in keys}))
        links = Path(tmp) / "results"
        for k in keys:
            if results[k].is_file():
                (links / k).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(results[k], links / k)
        cmd = [sys.executable, str(SCORER), "--data", str(corpus.data), "--windows",
               str(Path(tmp) / "windows.json"), "--results", str(links)] + (["--optimize"] if optimize else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            raise RuntimeError(f"the scorer failed on {corpus.name} ({len(keys)} files): {run.stderr[-2000:]}")
        out = json.loads(run.stdout.strip().splitlines()[-1])
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out))
    return out


def _identity(path: Path) -> str:
    """A result file's path with its modification time (a rerun writes a new file)."""
    return f"{path}@{path.stat().st_mtime_ns if path.is_file() else 'absent'}"


@functools.cache
def scorer_module() -> Any:
    """``../shared/bench/anomaly_score.py`` as a module: its ``file_score`` and ``probation``."""
    spec = importlib.util.spec_from_file_location("anomaly_score", SCORER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def file_stats(data: Path, windows: list[list[str]], result: Path, cache: Path) -> dict[str, float]:
    """One file's share of the scorer's sums, by the scorer's own ``file_score`` and its rules for events
    and clean rows (its ``main``, per file): the raw NAB-like score, windows, windows hit, false-alarm runs,
    clean rows and alerts on them. Cached in ``cache`` by the result file's identity."""
    ident = hashlib.sha256(json.dumps([str(data), windows, _identity(result)]).encode()).hexdigest()[:24]
    dest = cache / "file_stats" / f"{ident}.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    import pandas as pd

    mod = scorer_module()
    ts = list(pd.read_csv(data, parse_dates=["timestamp"])["timestamp"])
    alerts = list(pd.read_csv(result)["is_anomaly"].astype(int) == 1) if result.is_file() else [False] * len(ts)
    if len(alerts) != len(ts):
        raise RuntimeError(f"{result}: {len(alerts)} result rows for {len(ts)} input rows")
    raw, spans, hit = mod.file_score(ts, alerts, windows)
    start = mod.probation(len(ts))
    inside = {i for a, b in spans for i in range(a, b + 1)}
    runs, run = 0, False
    for i in range(start, len(ts)):
        fp = alerts[i] and i not in inside
        runs += fp and not run
        run = fp
    out = {"raw": raw, "windows": len(spans), "detected": len(hit), "false_alarm_runs": runs,
           "clean_rows": 0 if spans else len(ts) - start, "clean_alerts": 0 if spans else int(sum(alerts[start:]))}
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out))
    return out


def aggregate(stats: list[dict[str, float]]) -> dict[str, Any]:
    """The scorer's figures over files from their :func:`file_stats` (its normalisation: null = 0,
    perfect = 100); no ``nab_like`` when the files hold no window."""
    mod = scorer_module()
    windows = sum(s["windows"] for s in stats)
    detected = sum(s["detected"] for s in stats)
    fp_runs = sum(s["false_alarm_runs"] for s in stats)
    out: dict[str, Any] = {"files": len(stats), "windows": windows, "detected": detected,
                           "false_alarm_runs": fp_runs,
                           "false_alarm_rows_per_1k_clean": round(1000 * sum(s["clean_alerts"] for s in stats)
                                                                  / max(1, sum(s["clean_rows"] for s in stats)), 3)}
    if windows:
        null, perfect = -mod.FN_W * windows, mod.TP_W * mod.sigmoid(-1.0) * windows
        out["nab_like"] = round(100 * (sum(s["raw"] for s in stats) - null) / (perfect - null), 2)
    return out


def threshold_search(corpus: Corpus, results: dict[str, Path]) -> dict[str, Any]:
    """The scorer's ``--optimize`` (NAB's board: the best NAB-like of one threshold on ``score`` over all the
    files), its candidates and sums exactly, each file's windows found once by the scorer's ``file_score``
    and the rest of it (:func:`_raw`) checked against ``file_score`` at the best threshold: the scorer itself
    re-finds every window for every threshold, which on beyond-nab takes an hour of this shared machine."""
    import pandas as pd

    mod = scorer_module()
    files = []
    for key in sorted(results):
        ts = list(pd.read_csv(corpus.data / key, parse_dates=["timestamp"])["timestamp"])
        scores = list(pd.read_csv(results[key])["score"].astype(float)) if results[key].is_file() else [0.0] * len(ts)
        files.append((key, ts, np.asarray(scores), mod.file_score(ts, [False] * len(ts), corpus.windows[key])[1]))
    n_windows = sum(len(spans) for *_, spans in files)
    null, perfect = -mod.FN_W * n_windows, mod.TP_W * mod.sigmoid(-1.0) * n_windows
    cands = sorted({round(v, 6) for _, _, scores, _ in files for v in scores.tolist()})
    step = max(1, len(cands) // 200)
    best = (-1e9, None)
    for th in cands[::step]:
        best = max(best, (sum(_raw(len(ts), spans, np.flatnonzero(scores >= th)) for _, ts, scores, spans in files),
                           th))
    for key, ts, scores, spans in files:
        ours = _raw(len(ts), spans, np.flatnonzero(scores >= best[1]))
        if not math.isclose(ours, mod.file_score(ts, list(scores >= best[1]), corpus.windows[key])[0], abs_tol=1e-9):
            raise RuntimeError(f"threshold search: {key} scores otherwise than the scorer's file_score")
    return {"nab_like_best_threshold": round(100 * (best[0] - null) / (perfect - null), 2), "threshold": best[1]}


def _raw(n: int, spans: list[tuple[int, int]], alert_rows: np.ndarray) -> float:
    """The scorer's ``file_score`` after it has found the windows' rows ``spans``: its loop, as written, over
    the rows that alert (``alert_rows``, increasing; the others add nothing)."""
    mod = scorer_module()
    start = mod.probation(n)
    score, hit, prev_end, w = 0.0, set(), None, 0
    for i in alert_rows[alert_rows >= start].tolist():
        while w < len(spans) and i > spans[w][1]:
            prev_end = spans[w]
            w += 1
        if w < len(spans) and spans[w][0] <= i <= spans[w][1]:
            if w not in hit:
                a, b = spans[w]
                score += mod.TP_W * mod.sigmoid(-(b - i + 1) / (b - a + 1))
                hit.add(w)
        elif prev_end is None:
            score += -mod.FP_W
        else:
            a, b = prev_end
            score += mod.FP_W * mod.sigmoid(abs(b - i) / (b - a + 1))
    return score - mod.FN_W * (len(spans) - len(hit))
