"""Graph training as a Celery job, and `ea eval recsys` (contract 1) against the scoring script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from vectorstore import ModelRegistry
from workers.cli import main
from workers.jobs import submit

SCORER = Path(__file__).resolve().parents[2].parent / "shared" / "bench" / "recsys_score.py"


def test_train_graph_job_reports_progress_and_publishes(celery_worker, communities, model_name, settings,
                                                        fast_node2vec):
    handle = submit("ea.train_graph", interactions=communities["train"], model="node2vec", name=model_name,
                    params=fast_node2vec, test=communities["test"], item_metadata=communities["items"])
    result = handle.wait(timeout=120, interval=0.05)
    assert result["model"] == model_name and result["metrics"]["recall@20"] > 0.5
    stages = [p["stage"] for p in handle.progress_log()]
    assert {"walks", "evaluate", "publish"} <= set(stages) and stages[-1] == "publish"
    walks = [p for p in handle.progress_log() if p["stage"] == "walks"]
    assert walks[-1]["done"] == walks[-1]["total"] > 0
    loaded = ModelRegistry(settings).load(model_name, result["version"])
    assert loaded.meta["algorithm"] == "node2vec" and loaded.meta["fields"] == ["community", "title"]
    assert loaded.arrays["item_vectors"].shape == (result["n_items"], fast_node2vec["dim"])


def test_bad_interactions_fail_the_job_and_publish_nothing(celery_worker, tmp_path, model_name, settings):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,weight\nu1,i1,1\nu2,i2,-3\n")
    handle = submit("ea.train_graph", interactions=str(bad), name=model_name)
    with pytest.raises(Exception, match="weight"):
        handle.wait(timeout=60)
    assert ModelRegistry(settings).active_version(model_name) is None


def test_eval_recsys_writes_recs_whose_metrics_match_the_scorer(communities, tmp_path, model_name, fast_node2vec):
    recs = tmp_path / "recs.csv"
    params = [f"--param={k}={json.dumps(v)}" for k, v in fast_node2vec.items()]
    out = CliRunner().invoke(main, ["eval", "recsys", "--train", communities["train"], "--test", communities["test"],
                                    "--model", "node2vec", "--k", "10", "--recs-out", str(recs), "--name",
                                    model_name, *params])
    assert out.exit_code == 0, out.output
    line = json.loads(out.output.strip().splitlines()[-1])
    df = pd.read_csv(recs, dtype=str)
    train = pd.read_csv(communities["train"], dtype=str)
    test = pd.read_csv(communities["test"], dtype=str)
    assert list(df.columns) == ["user", "item", "rank"]
    assert set(df.user) == set(test.user)
    assert df.groupby("user").size().max() == 10
    assert not df.merge(train, on=["user", "item"]).shape[0], "a train item was recommended"
    if not SCORER.exists():
        pytest.skip("shared/bench/recsys_score.py not found")
    scored = json.loads(subprocess.run([sys.executable, str(SCORER), "score", communities["test"], str(recs),
                                        "--k", "10"], capture_output=True, text=True, check=True).stdout)
    assert scored["recall@10"] == pytest.approx(line["recall@10"], abs=1e-9)
    assert scored["ndcg@10"] == pytest.approx(line["ndcg@10"], abs=1e-9)
    assert line["recall@10"] > 0.4 and "train_s" in line["stages"]


def test_cli_recommend_and_similar(published):
    out = CliRunner().invoke(main, ["recommend", "--user", "u3", "--k", "4", "--model", published.model, "--json",
                                    "--field", "title"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert len(body["items"]) == 4 and body["version"] == published.version and len(body["fields"]["title"]) == 4
    out = CliRunner().invoke(main, ["similar", "--item", "i3", "--model", published.model])
    assert out.exit_code == 0 and "i3" not in out.output.split("(index)")[-1].split()[:1]
    out = CliRunner().invoke(main, ["recommend", "--user", "u3", "--k", "0", "--model", published.model])
    assert out.exit_code == 2 and "k=0" in out.output
