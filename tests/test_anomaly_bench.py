"""bench/anomaly.py's held-out tables sum each file's share of the shared scorer's NAB-like over folds: those
sums must be what the scorer itself prints for the same files (any subset: a training fold, a category, a
file without windows), and a cached detector output must follow the code that made it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench._anomaly_data import SCORER, Corpus, aggregate, file_stats, score
from bench._anomaly_runs import code_version, result_path, settings_id

pytestmark = pytest.mark.skipif(not SCORER.is_file(), reason="../shared/bench/anomaly_score.py not found")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, dict[str, object]]:
    """Four small labelled files in two categories (one without windows) and random alerts for each."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(26)
    windows: dict[str, list[list[str]]] = {}
    results = {}
    for i, key in enumerate(["a/one.csv", "a/two.csv", "b/three.csv", "b/clean.csv"]):
        n = 600 + 150 * i
        stamps = pd.date_range("2026-01-01", periods=n, freq="5min")
        (root / "data" / key).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": stamps, "value": rng.standard_normal(n)}).to_csv(root / "data" / key, index=False)
        spans = [] if key == "b/clean.csv" else [(200 + 40 * j, 230 + 40 * j) for j in range(1 + i % 2)]
        windows[key] = [[str(stamps[a]), str(stamps[b])] for a, b in spans]
        alerts = (rng.random(n) < 0.01).astype(int)
        if key == "a/two.csv":
            alerts[210] = 1  # inside its first window
        out = root / "results" / key
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"timestamp": stamps, "value": 0.0, "score": rng.random(n), "is_anomaly": alerts}).to_csv(
            out, index=False)
        results[key] = out
    return Corpus("test", root / "data", windows), results


@pytest.mark.parametrize("keys", [["a/one.csv", "a/two.csv", "b/three.csv", "b/clean.csv"],
                                  ["a/two.csv", "b/clean.csv"], ["b/three.csv"]])
def test_summed_file_shares_are_the_scorer_s_figures(corpus, keys, tmp_path) -> None:
    data, results = corpus
    subset = {k: results[k] for k in keys}
    theirs = score(data, subset, False, tmp_path)
    ours = aggregate([file_stats(data.data / k, data.windows[k], results[k], tmp_path) for k in keys])
    for field in ("windows", "detected", "false_alarm_runs", "false_alarm_rows_per_1k_clean", "nab_like"):
        assert ours[field] == theirs[field], field
    assert math.isfinite(ours["nab_like"])


def test_a_file_without_result_counts_as_raising_nothing(corpus, tmp_path) -> None:
    data, results = corpus
    missing = {"a/one.csv": tmp_path / "absent.csv"}
    ours = aggregate([file_stats(data.data / "a/one.csv", data.windows["a/one.csv"], missing["a/one.csv"], tmp_path)])
    assert ours == {k: v for k, v in score(data, missing, False, tmp_path).items() if k in ours}
    assert ours["nab_like"] == 0.0 and ours["detected"] == 0


def test_files_without_windows_get_false_alarms_but_no_nab_like(corpus, tmp_path) -> None:
    data, results = corpus
    out = aggregate([file_stats(data.data / "b/clean.csv", [], results["b/clean.csv"], tmp_path)])
    assert "nab_like" not in out and out["windows"] == 0 and out["false_alarm_rows_per_1k_clean"] > 0


def test_cached_outputs_are_keyed_by_settings_and_by_the_code_that_made_them(corpus, tmp_path) -> None:
    data, _ = corpus
    ours, tuned, base = ({}, {"effect": 2.0}, {"baseline": "zscore"})
    paths = {settings_id(p): result_path(tmp_path, data, p, "a/one.csv") for p in (ours, tuned, base)}
    assert len(set(paths.values())) == 3 and settings_id(ours) == "defaults"
    assert paths["defaults"].relative_to(tmp_path).parts[0] == code_version()
    assert paths[settings_id(base)].relative_to(tmp_path).parts[0] == code_version(baseline=True)
    assert code_version() != code_version(baseline=True)
    assert settings_id({"alpha": 1e-3, "effect": 2.0}) == settings_id({"effect": 2.0, "alpha": 1e-3})
