"""The `ea` command line as a user meets it: one-line errors (exit 2, never a traceback), paths checked before a
job is queued, job ids that round-trip, interaction files in other encodings, compressed or with other column
names, and progress that is true and readable in a log.

Commands run as real processes (stdout and stderr apart, a pipe instead of a terminal) against the session's
Redis and its Celery worker, unless they only need the in-process runner.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from celery.result import AsyncResult

from workers.app import app
from workers.jobs import list_jobs

ROOT = Path(__file__).resolve().parents[2]
NODE2VEC = ["--model", "node2vec", "--param", "dim=8", "--param", "walk_length=8", "--param", "walks_per_node=3",
            "--param", "window=3", "--param", "workers=1"]


def ea(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, prelude: str = "",
       timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `ea ARGS` in a fresh interpreter (``prelude``: Python run before the CLI, e.g. to hide a module)."""
    code = f"{prelude}\nfrom workers.cli import main\nmain(prog_name='ea')"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd or ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert ``proc`` failed with exit 2 and one line on stderr containing every needle; return that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def communities(path: Path, users: int = 60, items: int = 30, per_user: int = 12, **to_csv) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(users):
        own = [j for j in range(items) if j % 3 == u % 3]
        rows += [(f"u{u}", f"i{j}") for j in rng.choice(own, size=min(per_user, len(own)), replace=False)]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame.to_csv(path, index=False, **to_csv)
    return frame


# -- one-line errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["jobs"], ["alerts", "tail", "--no-follow"], ["models"], ["train", "series",
                                  "--input", __file__, "--name", "x"]], ids=" ".join)
def test_unreachable_redis_is_one_line(args: list[str]) -> None:
    proc = ea(*args, env={"EA_REDIS_URL": "redis://127.0.0.1:1/0", "EA_SOCKET_TIMEOUT": "2"})
    one_line_error(proc, "RedisUnavailable", "127.0.0.1")


def test_wrong_redis_password_is_one_line(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:wrong@")
    line = one_line_error(ea("jobs", env={"EA_REDIS_URL": url}), "RedisUnavailable")
    assert "wrong" not in line


@pytest.mark.parametrize(("variable", "value", "command"), [
    ("EA_SOCKET_TIMEOUT", "abc", "jobs"), ("EA_KEEP_VERSIONS", "two", "jobs"), ("EA_REDIS_URL", "localhost", "jobs"),
    ("EA_ALERT_WEBHOOK_FORMAT", "xml", "alerts hooks"),  # alerting settings are read by what alerts
])
def test_bad_settings_name_the_variable(variable: str, value: str, command: str) -> None:
    one_line_error(ea(*command.split(), env={variable: value}), "ConfigurationError", variable)


def test_unknown_detector_parameter_lists_the_accepted_ones(tmp_path: Path) -> None:
    series = tmp_path / "s.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=300, freq="h").astype(str),
                  "value": np.sin(np.arange(300) / 5)}).to_csv(series, index=False)
    line = one_line_error(ea("detect", "--input", str(series), "--train-until", "200", "--scores-out",
                             str(tmp_path / "o.csv"), "--param", "kk=3"), "InvalidParameter", "kk")
    assert "accepted" in line and "delay" in line


def test_a_missing_train_extra_names_the_extra_and_the_default_embedding(tmp_path: Path) -> None:
    series = tmp_path / "s.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=300, freq="h").astype(str),
                  "value": np.sin(np.arange(300) / 5)}).to_csv(series, index=False)
    proc = ea("detect", "--input", str(series), "--train-until", "200", "--scores-out", str(tmp_path / "o.csv"),
              "--embedding", "lstm", prelude="import sys; sys.modules['torch'] = None  # as on the slim install")
    one_line_error(proc, "MissingExtra", "torch", "embedding-analytics[train]", "--embedding raw+paa")


def test_a_closed_output_pipe_ends_quietly() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "from workers.cli import main; main(prog_name='ea')", "models"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # `ea models | head -0`: the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


def test_version_option() -> None:
    proc = ea("--version")
    assert proc.returncode == 0 and re.fullmatch(r"ea \d+\.\d+\.\d+\S*\n", proc.stdout), proc.stdout


def test_an_unknown_model_lists_the_published_ones(trained_graph: str) -> None:
    line = one_line_error(ea("recommend", "--user", "u1", "--model", "no-such-model"), "no-such-model")
    assert "published models:" in line and trained_graph in line
    one_line_error(ea("models", "no-such-model"), "ModelNotFound", trained_graph)


# -- paths and job ids -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_graph(celery_worker, tmp_path_factory) -> str:
    """A Node2Vec model trained through `ea train graph` from a relative path (its name)."""
    folder = tmp_path_factory.mktemp("relative")
    communities(folder / "train.csv")
    name = f"cli{os.getpid()}"
    proc = ea("train", "graph", "--interactions", "train.csv", "--name", name, *NODE2VEC, "--wait", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job_id = re.search(r"submitted (\S+)", proc.stdout).group(1)
    kwargs = AsyncResult(job_id, app=app).kwargs
    assert kwargs["interactions"] == str(folder / "train.csv"), kwargs  # made absolute before it was queued
    assert json.loads(proc.stdout.splitlines()[-1])["model"] == name
    return name


def test_missing_or_relative_worker_paths_are_refused_before_queueing(tmp_path: Path, celery_worker) -> None:
    before = len(list_jobs(1000))
    one_line_error(ea("train", "graph", "--interactions", "nope.csv", cwd=tmp_path), "FileNotFoundError", "nope.csv")
    one_line_error(ea("train", "series", "--input", "s.csv", "--name", "x", cwd=tmp_path), "FileNotFoundError")
    one_line_error(ea("train", "graph", "--interactions", "data/x.csv", "--worker-paths"), "must be absolute")
    communities(tmp_path / "ok.csv")
    one_line_error(ea("train", "graph", "--interactions", "ok.csv", "--test", "missing-test.csv", cwd=tmp_path),
                   "test", "missing-test.csv")
    assert len(list_jobs(1000)) == before


def test_job_ids_round_trip_and_a_failed_job_exits_non_zero(tmp_path: Path, celery_worker, trained_graph) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,weight\na,x,1\nb,y,heavy\n")
    proc = ea("train", "graph", "--interactions", str(bad), *NODE2VEC, "--name", "bad", "--wait")
    one_line_error(proc, "JobFailed", "InvalidInteractions", "line 3")
    job_id = re.search(r"submitted (\S+)", proc.stdout).group(1)
    for given in (job_id, job_id[:8]):
        shown = ea("jobs", given)
        assert shown.returncode == 1, shown.stderr
        assert f"id: {job_id}" in shown.stdout and "state: FAILURE" in shown.stdout
        assert "InvalidInteractions" in shown.stdout
    ok = next(r for r in list_jobs(1000) if r.state == "SUCCESS")
    assert ea("jobs", ok.id).returncode == 0
    one_line_error(ea("jobs", "0000-not-a-job"), "UnknownJob")


# -- interaction files -------------------------------------------------------------------------------------
def test_eval_reads_latin1_gzip_and_other_column_names(tmp_path: Path) -> None:
    frame = communities(tmp_path / "plain.csv")
    frame["item"] = frame["item"].str.replace("i", "café-")  # not ASCII
    renamed = frame.rename(columns={"user": "userId", "item": "movieId"}).assign(rating=4.0)
    train = tmp_path / "train.csv"
    renamed.to_csv(train, index=False, encoding="latin-1")
    test = tmp_path / "test.csv.gz"
    test.write_bytes(gzip.compress(renamed.head(40).to_csv(index=False).encode()))
    proc = ea("eval", "recsys", "--train", str(train), "--test", str(test), "--recs-out", str(tmp_path / "r.csv"),
              "--user-col", "userId", "--item-col", "movieId", "--weight-col", "rating", "--name", "enc",
              *NODE2VEC[:2], "--k", "5", *NODE2VEC[2:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not UTF-8: read as latin-1" in proc.stderr
    recs = pd.read_csv(tmp_path / "r.csv")
    assert recs["item"].str.startswith("café-").all() and set(recs["user"]) <= set(frame["user"])


def test_unreadable_interaction_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    secret = b"TOP-SECRET-CONTENT-" * 50
    cases = {"binary.csv": bytes(range(256)) * 8 + secret,
             "broken.csv.gz": gzip.compress(b"user,item\n" + os.urandom(60000).hex().encode())[:3000],
             "wrong-columns.csv": b"who,what\n" + secret + b",x\n"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        line = one_line_error(ea("eval", "recsys", "--train", str(tmp_path / name), "--test", str(tmp_path / name),
                                 "--recs-out", str(tmp_path / "r.csv")), "InvalidInteractions", str(tmp_path / name))
        assert "SECRET" not in line and len(line) < 400, line
    line = one_line_error(ea("eval", "recsys", "--train", str(tmp_path / "wrong-columns.csv"), "--test", "x",
                             "--recs-out", "r.csv", "--user-col", "who", "--item-col", "item"),
                          "missing column(s) item")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("user,item\nu1,caf\xe9\n".encode("latin-1"))
    one_line_error(ea("eval", "recsys", "--train", str(latin), "--test", str(latin), "--recs-out", "r.csv",
                      "--encoding", "utf-8"), "not valid utf-8", str(latin))


# -- progress ----------------------------------------------------------------------------------------------
def _lines(stderr: str, stage: str) -> list[tuple[int, int]]:
    return [(int(d), int(t)) for d, t in re.findall(rf"^{stage}: (\d+)/(\d+)", stderr, re.M)]


def test_progress_is_true_and_written_as_lines_when_not_a_terminal(tmp_path: Path, celery_worker) -> None:
    from recsys import Interactions, LightGCN

    communities(tmp_path / "train.csv", users=90, items=45)
    params = {"dim": 8, "epochs": 60, "eval_every": 1, "patience": 2, "layers": 1, "threads": 1}
    history = LightGCN(**params).fit(Interactions.read(tmp_path / "train.csv")).history
    last_epoch = max(r["epoch"] for r in history if "epoch" in r and r.get("stage", "train") == "train")
    assert last_epoch < params["epochs"], "the test needs a fit that stops on convergence"

    lightgcn = ea("train", "graph", "--interactions", str(tmp_path / "train.csv"), "--model", "lightgcn",
                  *[f"--param={k}={v}" for k, v in params.items()], "--name", "progress-lgcn", "--wait")
    assert lightgcn.returncode == 0, lightgcn.stderr[-3000:]
    assert "\r" not in lightgcn.stderr
    train = _lines(lightgcn.stderr, "train")
    assert train and train[-1] == (last_epoch, params["epochs"]), lightgcn.stderr

    node2vec = ea("train", "graph", "--interactions", str(tmp_path / "train.csv"), *NODE2VEC, "--name",
                  "progress-n2v", "--wait")
    assert node2vec.returncode == 0, node2vec.stderr[-3000:]
    walks, skipgram = _lines(node2vec.stderr, "walks"), _lines(node2vec.stderr, "skipgram")
    assert walks and walks[-1][0] == walks[-1][1] and skipgram[0] == (0, 1) and skipgram[-1] == (1, 1)

    series = tmp_path / "s.csv"
    pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=400, freq="h").astype(str),
                  "value": np.sin(np.arange(400) / 5)}).to_csv(series, index=False)
    detector = ea("train", "series", "--input", str(series), "--name", "progress-series", "--embedding", "raw",
                  "--wait")
    assert detector.returncode == 0, detector.stderr[-3000:]
    stages = re.findall(r"^(\w+): \d+/\d+", detector.stderr, re.M)
    assert list(dict.fromkeys(stages)) == ["read", "fit", "publish"], detector.stderr
