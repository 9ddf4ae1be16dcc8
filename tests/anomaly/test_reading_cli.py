"""The series-reading options of `ea detect`, `ea score` and `ea train series`: --timestamp-col, --value-col
and --duplicates reach the library as ``read_options``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

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
def score_args(tmp_path, model_name, settings):
    """`ea score` arguments for a new export of 40 rows (39 timestamps), against a real detector in Redis."""
    from anomaly.service import train_detector

    history = tmp_path / "history.csv"
    export(600, start=EPOCH - 60 * 600).to_csv(history, index=False)
    train_detector(str(history), name=model_name, read_options={"timestamp_col": "Time", "value_col": "cpu"})
    path = tmp_path / "new.csv"
    export(40).to_csv(path, index=False)
    args = ["score", "--model", model_name, "--input", str(path), "--timestamp-col", "Time", "--value-col", "cpu"]
    return args, model_name


def _stream_times(settings, model: str, series_id: str) -> np.ndarray:
    from anomaly import StreamScorer, load_detector
    from anomaly._stream_state import from_hash, state_key
    from vectorstore import ModelRegistry

    registry = ModelRegistry(settings)
    meta, arrays = from_hash(registry.client.hgetall(state_key(settings.key_prefix, model, series_id)))
    scorer: StreamScorer = load_detector(registry, model)[1].new_stream().load_state(meta, arrays)
    return scorer.times


def test_ea_score_reads_with_the_options(score_args, settings):
    args, model = score_args
    kept = CliRunner().invoke(main, [*args, "--series-id", "a"])
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.output.strip().splitlines()[-1])["rows"] == 40  # one point per row
    times = _stream_times(settings, model, "a")
    assert pd.Timestamp(int(times[0]), tz="UTC") == pd.Timestamp(EPOCH, unit="s", tz="UTC")  # not 1970
    collapsed = CliRunner().invoke(main, [*args, "--series-id", "b", "--duplicates", "last"])
    assert collapsed.exit_code == 0, collapsed.output
    assert json.loads(collapsed.output.strip().splitlines()[-1])["rows"] == 39
    assert len(set(_stream_times(settings, model, "b").tolist())) == 39
    refused = CliRunner().invoke(main, [*args, "--series-id", "c", "--duplicates", "error"])
    assert refused.exit_code == 2 and "InvalidSeries" in refused.output and "duplicate timestamps" in refused.output
    unknown = CliRunner().invoke(main, [*args, "--series-id", "d", "--duplicates", "first"])
    assert unknown.exit_code == 2 and "keep" in unknown.output
    default_names = CliRunner().invoke(main, [*args[:5], "--series-id", "e"])
    assert default_names.exit_code == 2 and "missing column 'timestamp'" in default_names.output


def test_ea_train_series_passes_read_options_to_the_job(celery_worker, tmp_path, model_name):
    path = tmp_path / "export.csv"
    export(400).to_csv(path, index=False)
    run = CliRunner().invoke(main, ["train", "series", "--input", str(path), "--name", model_name, "--wait",
                                    "--embedding", "raw", "--timestamp-col", "Time", "--value-col", "cpu",
                                    "--duplicates", "mean"])
    assert run.exit_code == 0, run.output
    result = json.loads(run.output.strip().splitlines()[-1])
    assert result["rows"] == 399  # the retried write averaged into one row: the options reached the worker
