"""The anomaly benchmark's corpora and scorer, found beside the repository (``../shared``).

* ``nab``: the 35 shared NAB files, ``../shared/data/anomaly/nab/<category>/<file>.csv`` with their
  ``windows.json`` (NAB's other files are the held-back test: never read here);
* ``beyond``: ``../shared/data/anomaly/beyond-nab`` (``data/<category>/<file>.csv``, ``windows.json``):
  57 labelled series that are not NAB (AIOps 2018 KPIs, NASA SMAP / MSL, UCR);
* the scorer ``../shared/bench/anomaly_score.py`` (NAB-like, event figures, ``--optimize``: NAB's board's
  single best threshold over the ``score`` column), run as a subprocess over a subset of a corpus's files
  (a ``windows.json`` holding only their keys: the scorer scores the keys it is given).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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
    """The scorer's JSON for the files ``results`` names (key -> result CSV; a missing CSV counts as a
    detector that raised nothing), cached in ``cache`` by the result files' identities.

    A subset without windows gets no ``nab_like`` (the scorer's normalisation needs one): its JSON then holds
    only ``files`` and ``false_alarm_rows_per_1k_clean`` counted here from the same files.
    """
    keys = sorted(results)
    ident = hashlib.sha256(json.dumps([corpus.name, optimize, [(k, str(results[k])) for k in keys]]).encode())
    dest = cache / "scores" / f"{ident.hexdigest()[:24]}.json"
    if dest.is_file():
        return json.loads(dest.read_text())
    if corpus.n_windows(keys) == 0:
        out = _clean_only(corpus, results)
    else:
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


def _clean_only(corpus: Corpus, results: dict[str, Path]) -> dict:
    """False-alarm rows per 1,000 scored rows of files without windows (the scorer's own rule)."""
    import pandas as pd

    rows = alerts = 0
    for key, path in results.items():
        n = len(pd.read_csv(corpus.data / key, usecols=["timestamp"]))
        start = probation(n)
        rows += n - start
        if path.is_file():
            alerts += int(pd.read_csv(path, usecols=["is_anomaly"])["is_anomaly"].to_numpy()[start:].sum())
    return {"files": len(results), "windows": 0,
            "false_alarm_rows_per_1k_clean": round(1000 * alerts / max(1, rows), 3)}
