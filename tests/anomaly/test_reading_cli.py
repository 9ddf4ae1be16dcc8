"""The series-reading options of `ea detect`, `ea score` and `ea train series`: --timestamp-col, --value-col
and --duplicates reach the library as ``read_options``."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from anomaly.detect import detect_file
from anomaly.series import DUPLICATE_POLICIES
from workers.cli import main
from workers.commands.anomaly import DUPLICATES

EPOCH = 1704067200


def export(n: int, start: int = EPOCH) -> pd.DataFrame:
    """A messy export: epoch seconds under `Time`, the value under `cpu`, extra columns, one retried write."""
    t = np.arange(n)
    df = pd.DataFrame({"Time": start + 60 * t, "host": "web-1", "cpu": np.round(50 + 10 * np.sin(t / 6), 3),
                       "note": ""})
    df.loc[n // 2, "Time"] = df.loc[n // 2 - 1, "Time"]
    return df


def test_duplicates_choices_are_the_library_policies():
    assert tuple(DUPLICATES.choices) == DUPLICATE_POLICIES
    out = CliRunner().invoke(main, ["detect", "--help"])
    assert "--timestamp-col" in out.output and "--value-col" in out.output and "keep|mean|last|error" in out.output


@pytest.mark.xfail("read_options" not in inspect.signature(detect_file).parameters, strict=False,
                   reason="detect_file does not take read_options yet (the lead is changing its signature)")
def test_ea_detect_reads_with_the_options(tmp_path):
    path, out = tmp_path / "export.csv", tmp_path / "scores.csv"
    given = export(400)
    given.to_csv(path, index=False)
    run = CliRunner().invoke(main, ["detect", "--input", str(path), "--train-until", "200", "--scores-out", str(out),
                                    "--embedding", "raw", "--timestamp-col", "time", "--value-col", "CPU"])
    assert run.exit_code == 0, run.output
    scores = pd.read_csv(out, dtype={"timestamp": str})
    assert len(scores) == len(given)  # the retried write is kept
    assert list(scores["timestamp"]) == [str(t) for t in given["Time"]]  # timestamps come back as given
    refused = CliRunner().invoke(main, ["detect", "--input", str(path), "--train-until", "200", "--scores-out",
                                        str(tmp_path / "no.csv"), "--embedding", "raw", "--timestamp-col", "Time",
                                        "--value-col", "cpu", "--duplicates", "error"])
    assert refused.exit_code == 2 and "duplicate timestamps" in refused.output


@pytest.fixture
def score_args(tmp_path, monkeypatch):
    """`ea score` arguments for a new export of 40 rows (39 timestamps); ``calls`` records what reaches the
    stream (the scoring itself is anomaly.service's, tested there)."""
    import anomaly.service

    calls = []

    def score_points(name, series_id, timestamps, values, **_):
        calls.append({"name": name, "series_id": series_id, "timestamps": timestamps, "values": values})
        n = len(values)
        return {"version": 1, "position": n, "scores": [0.0] * n, "is_anomaly": [0] * n, "notifications": 0,
                "warming_up": False, "explanations": []}

    monkeypatch.setattr(anomaly.service, "score_points", score_points)
    path = tmp_path / "new.csv"
    export(40).to_csv(path, index=False)
    args = ["score", "--model", "cpu", "--input", str(path), "--timestamp-col", "Time", "--value-col", "cpu"]
    return args, calls


def test_ea_score_reads_with_the_options(score_args):
    args, calls = score_args
    given = export(40)
    kept = CliRunner().invoke(main, [*args, "--series-id", "a"])
    assert kept.exit_code == 0, kept.output
    assert calls[-1]["series_id"] == "a" and calls[-1]["values"] == given["cpu"].tolist()  # one point per row
    assert pd.Timestamp(calls[-1]["timestamps"][0]) == pd.Timestamp(EPOCH, unit="s", tz="UTC")  # not 1970
    collapsed = CliRunner().invoke(main, [*args, "--series-id", "b", "--duplicates", "last"])
    assert collapsed.exit_code == 0, collapsed.output
    assert len(calls[-1]["values"]) == 39 and len(set(calls[-1]["timestamps"])) == 39
    refused = CliRunner().invoke(main, [*args, "--series-id", "c", "--duplicates", "error"])
    assert refused.exit_code == 2 and "InvalidSeries" in refused.output and "duplicate timestamps" in refused.output
    unknown = CliRunner().invoke(main, [*args, "--series-id", "d", "--duplicates", "first"])
    assert unknown.exit_code == 2 and "keep" in unknown.output
    default_names = CliRunner().invoke(main, [*args[:5], "--series-id", "e"])
    assert default_names.exit_code == 2 and "missing column 'timestamp'" in default_names.output
    assert len(calls) == 2


def test_ea_train_series_passes_read_options_to_the_job(monkeypatch):
    import workers.jobs

    sent = {}

    class Handle:
        id = "job-1"

    def submit(task, **kwargs):
        sent.update(kwargs, task=task)
        return Handle()

    monkeypatch.setattr(workers.jobs, "submit", submit)
    run = CliRunner().invoke(main, ["train", "series", "--input", "/data/export.csv", "--name", "cpu", "--worker-paths",
                                    "--embedding", "raw", "--timestamp-col", "Time", "--duplicates", "mean"])
    assert run.exit_code == 0, run.output
    assert sent["task"] == "ea.train_series" and sent["series"] == "/data/export.csv"
    assert sent["read_options"] == {"timestamp_col": "Time", "value_col": "value", "duplicates": "mean"}
    json.dumps(sent)  # a Celery message: JSON only
