"""``ea detect`` over a corpus's files for each candidate settings, cached, in a process pool.

Each (file, settings) goes through :func:`workers.detection.detect_file`, the function ``ea detect`` calls
(the same reader, detector, incident machine and output file; ``--param KEY=VALUE`` are its ``params``),
trained on the file's probationary prefix. Its output CSV is cached under
``<cache>/<code version>/<settings id>/<corpus>/<category>/<file>.csv``: the code version hashes the
sources that decide a file's output (for ``ea detect``: ``anomaly/``, ``alerts/``, ``workers/detection.py``,
the index, the pins and the ``EA_ALERT_*`` environment; for a baseline: its module, the reader, the pins),
so a rerun of unchanged code costs only the scoring, and any change to the detector runs it again (and only
it). A file the detector refuses (too short for its settings) gets no
output (the scorer counts it as raising nothing) and a ``.refused`` note naming why.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from bench._anomaly_data import ROOT, Corpus, probation

#: What decides a file's output: hashed into the cache's code version (``ea detect``'s, a baseline's).
VERSIONED = ("anomaly", "alerts", "workers/detection.py", "vectorstore/store/index", "constraints.txt")
BASELINE_VERSIONED = ("bench/_anomaly_baselines.py", "anomaly/series.py", "anomaly/_reading.py",
                      "anomaly/_timestamps.py", "anomaly/windows.py", "constraints.txt")


def default_cache() -> Path:
    """``$EA_BENCH_CACHE``, else ``~/.cache/ea-bench/anomaly`` (outside the repository)."""
    env = os.environ.get("EA_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ea-bench" / "anomaly"


@functools.cache
def code_version(baseline: bool = False) -> str:
    """A short hash of the sources in :data:`VERSIONED` (contents, uncommitted edits included) and the
    ``EA_ALERT_*`` variables; with ``baseline``, of :data:`BASELINE_VERSIONED`."""
    h = hashlib.sha256()
    for entry in BASELINE_VERSIONED if baseline else VERSIONED:
        path = ROOT / entry
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    if not baseline:
        h.update(json.dumps(sorted((k, v) for k, v in os.environ.items() if k.startswith("EA_ALERT_"))).encode())
    return h.hexdigest()[:12]


def settings_id(params: dict[str, Any]) -> str:
    """A short stable name of a candidate's settings (``defaults`` for none)."""
    if not params:
        return "defaults"
    if set(params) == {"baseline"}:
        return f"baseline-{params['baseline']}"
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def describe(params: dict[str, Any]) -> str:
    """``key=value, ...`` of a candidate (``defaults`` for none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"


def policy_fields() -> set[str]:
    """The incident machine's settings (``EA_ALERT_*_POINTS``) a candidate may set beside the detector's."""
    from alerts import IncidentPolicy

    return {f.name for f in fields(IncidentPolicy)} - {"group_by"}


def check_candidate(params: dict[str, Any]) -> str | None:
    """``None`` when the detector and the incident machine accept ``params``; else the refusal's message."""
    from alerts import IncidentPolicy
    from anomaly import InvalidParameter, KnnDetector

    policy = {k: v for k, v in params.items() if k in policy_fields()}
    try:
        IncidentPolicy(**policy)
        KnnDetector(**{k: v for k, v in params.items() if k not in policy})
    except (InvalidParameter, ValueError, TypeError) as exc:
        return str(exc)
    return None


def result_path(cache: Path, corpus: Corpus, params: dict[str, Any], key: str) -> Path:
    """Where the output of ``params`` (a candidate, or ``{"baseline": name}``) on ``key`` is cached."""
    return cache / code_version("baseline" in params) / settings_id(params) / corpus.name / key


def _detect_one(data: str, key: str, params: dict[str, Any], dest: str) -> tuple[str, float, str | None]:
    """Run ``ea detect``'s function on one file (in a pool process); returns (key, CPU seconds, refusal)."""
    import pandas as pd

    from alerts import IncidentPolicy
    from anomaly import SeriesTooShort
    from workers.detection import detect_file

    if "baseline" in params:
        return _baseline_one(data, key, params["baseline"], dest)
    split = {k: v for k, v in params.items() if k in policy_fields()}
    policy = replace(IncidentPolicy.from_settings(), **split) if split else None
    path = Path(data) / key
    n = len(pd.read_csv(path, usecols=[0]))  # the reader keeps every row (repeated timestamps too)
    tmp = Path(dest + ".tmp")
    cpu = time.process_time()
    try:
        detect_file(path, probation(n), tmp, policy=policy, **{k: v for k, v in params.items() if k not in split})
    except SeriesTooShort as exc:
        Path(dest + ".refused").write_text(str(exc))
        return key, time.process_time() - cpu, str(exc)
    os.replace(tmp, dest)
    return key, time.process_time() - cpu, None


def _baseline_one(data: str, key: str, name: str, dest: str) -> tuple[str, float, str | None]:
    """A baseline of :mod:`bench._anomaly_baselines` on one file, read by ``ea detect``'s reader."""
    import numpy as np
    import pandas as pd

    from anomaly import read_one_series
    from bench._anomaly_baselines import BASELINE_FUNCS

    series = read_one_series(Path(data) / key)
    cpu = time.process_time()
    scores, flags = BASELINE_FUNCS[name](series.values, probation(len(series)))
    spent = time.process_time() - cpu
    pd.DataFrame({"timestamp": series.raw_timestamps, "value": series.values, "score": np.round(scores, 6),
                  "is_anomaly": flags.astype(int)}).to_csv(dest + ".tmp", index=False)
    os.replace(dest + ".tmp", dest)
    return key, spent, None


def _init_worker() -> None:
    import logging

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    # The reader's warnings (repeated timestamps kept) are the same on every run of a file: once is enough.
    logging.getLogger("anomaly").setLevel(logging.ERROR)


def run_all(jobs: Iterable[tuple[Corpus, dict[str, Any]]], cache: Path, workers: int = 2) -> dict[str, float]:
    """Make sure every file of every (corpus, settings) job has its cached output; returns, per settings id,
    the CPU seconds spent now (0 when all came from the cache). Progress goes to stderr."""
    todo = []
    for corpus, params in jobs:
        for key in corpus.keys:
            dest = result_path(cache, corpus, params, key)
            if not dest.is_file() and not Path(str(dest) + ".refused").is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                todo.append((corpus, params, key, dest))
    spent: dict[str, float] = {}
    if not todo:
        return spent
    print(f"ea detect: {len(todo)} (file, settings) runs to make, {workers} processes", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        futures = {pool.submit(_detect_one, str(c.data), k, p, str(d)): p for c, p, k, d in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            key, cpu, refused = fut.result()
            sid = settings_id(futures[fut])
            spent[sid] = spent.get(sid, 0.0) + cpu
            if refused or i % 25 == 0 or i == len(todo):
                note = f" refused {key}: {refused}" if refused else ""
                print(f"  {i}/{len(todo)} {time.perf_counter() - start:.0f} s{note}", file=sys.stderr, flush=True)
    return spent


def refused(cache: Path, corpus: Corpus, params: dict[str, Any], keys: list[str]) -> list[str]:
    """The files of ``keys`` the detector refused with ``params``."""
    return [k for k in keys if Path(str(result_path(cache, corpus, params, k)) + ".refused").is_file()]
