"""The serving install (`pip install -c constraints.txt .`, no extras) against a real Redis.

`make check-slim` builds that install in its own venv and runs this with ``EA_SLIM_VENV`` naming it (skipped
otherwise). From the slim venv: a job is submitted (`ea train graph`), a worker runs (`ea worker -Q score`,
precomputing the top-N lists), recommendations are served (`ea recommend`, `RecommendationClient` with no
torch imported), and what needs the `train` extra says so in one line. The model is trained by a worker of
the full venv (this interpreter's), as in a deployment where only the training machines install torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _processes import started

SLIM = Path(os.environ["EA_SLIM_VENV"]) if os.environ.get("EA_SLIM_VENV") else None
pytestmark = pytest.mark.skipif(SLIM is None, reason="needs the slim venv: `make check-slim`")


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str) -> Iterator[dict[str, str]]:
    """The environment of a deployment of its own (key prefix under the session's) with two worker processes:
    training in the full venv, scoring in the slim one."""
    prefix = f"{os.environ['EA_KEY_PREFIX']}slim{uuid.uuid4().hex[:6]}:"
    env = {**os.environ, "EA_REDIS_URL": redis_url, "EA_KEY_PREFIX": prefix, "EA_DATA_DIR": str(tmp_path / "data"),
           "PYTHONUNBUFFERED": "1"}
    full_ea = [sys.executable, "-c", "from workers.cli import main; main()"]
    workers = [
        ([*full_ea, "worker", "-Q", "train", "-n", "full-train@%h"], tmp_path / "train-worker.log"),
        ([str(SLIM / "bin" / "ea"), "worker", "-Q", "score,alerts", "-n", "slim-score@%h"],
         tmp_path / "score-worker.log"),
    ]
    with started(workers, env=env, cwd=tmp_path):
        yield env


def slim(env: dict[str, str], cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a program of the slim venv (``ea`` by default) in ``cwd``, not in the source tree."""
    program = args[0] if args and args[0] == "python" else "ea"
    argv = [str(SLIM / "bin" / program), *(args[1:] if program == "python" else args)]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_slim_install_submits_jobs_runs_a_worker_and_serves(deployment: dict[str, str], tmp_path: Path) -> None:
    env = deployment
    probe = slim(env, tmp_path, "python", "-c", "import workers, torch")
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr, "the slim venv has torch"
    where = slim(env, tmp_path, "python", "-c", "import workers; print(workers.__file__)").stdout
    assert str(SLIM) in where, f"the slim venv imports the source tree, not its install: {where}"

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{j}") for u in range(80) for j in rng.choice([j for j in range(40) if j % 4 == u % 4], 6,
                                                                      replace=False)]
    pd.DataFrame(rows, columns=["user", "item"]).to_csv(tmp_path / "interactions.csv", index=False)
    # A relative path, from the slim venv: made absolute here, read by the full venv's training worker.
    submitted = slim(env, tmp_path, "train", "graph", "--interactions", "interactions.csv", "--name", "shop",
                     "--precompute", "10", "--wait")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = re.search(r"submitted (\S+)", submitted.stdout).group(1)
    assert json.loads(submitted.stdout.splitlines()[-1])["model"] == "shop"
    shown = slim(env, tmp_path, "jobs", job_id)
    assert shown.returncode == 0 and "state: SUCCESS" in shown.stdout, shown.stdout + shown.stderr

    # The slim worker precomputes every user's top-N (the train worker queued it on `score`).
    deadline = time.monotonic() + 120
    while True:
        served = slim(env, tmp_path, "recommend", "--user", "u1", "--model", "shop", "--k", "5", "--json")
        assert served.returncode == 0, served.stderr[-3000:]
        recs = json.loads(served.stdout)
        if recs["source"] == "precomputed" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert recs["source"] == "precomputed", (tmp_path / "score-worker.log").read_text()[-3000:]
    assert len(recs["items"]) == 5

    client = slim(env, tmp_path, "python", "-c", """
import sys
from recsys import RecommendationClient
with RecommendationClient(model="shop", listen=False, refresh_interval=0) as c:
    recs = c.recommend("u2", k=5)
    similar = c.similar_items("i3", k=3)
    history = c.recommend_for_history(["i0", "i4"], k=3)
from prometheus_client import generate_latest
served = generate_latest().decode()  # what the application's own /metrics shows
timed = 'ea_client_request_seconds_count{path="recommend",source=' in served
print(len(recs.items), len(similar.items), len(history.items), "torch" in sys.modules, timed)
""")
    assert client.returncode == 0, client.stderr[-3000:]
    assert client.stdout.split() == ["5", "3", "3", "False", "True"]  # the client's metrics: slim install too

    series = tmp_path / "cpu.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=400, freq="h").astype(str),
                  "value": np.sin(np.arange(400) / 6)}).to_csv(series, index=False)
    detect = slim(env, tmp_path, "detect", "--input", "cpu.csv", "--train-until", "300", "--scores-out", "o.csv")
    assert detect.returncode == 0, detect.stderr[-3000:]
    lstm = slim(env, tmp_path, "detect", "--input", "cpu.csv", "--train-until", "300", "--scores-out", "o.csv",
                "--embedding", "lstm")
    assert lstm.returncode == 2 and "Traceback" not in lstm.stderr, lstm.stderr[-3000:]
    assert "embedding-analytics[train]" in lstm.stderr and "--embedding raw+paa" in lstm.stderr
