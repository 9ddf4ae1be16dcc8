"""top_k against brute force; ranking_metrics against the shared scoring script."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import InvalidParameter, ranking_metrics, top_k


def brute_top_k(U, V, k, seen):
    scores = U @ V.T
    for u, items in enumerate(seen):
        scores[u, items] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_top_k_equals_brute_force_with_exclusions(batch):
    rng = np.random.default_rng(0)
    U, V = rng.normal(size=(23, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    seen = [rng.choice(40, size=rng.integers(0, 10), replace=False) for _ in range(23)]
    rows = np.repeat(np.arange(23), [len(s) for s in seen])
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(seen))), shape=(23, 40))
    expected = brute_top_k(U, V, 10, seen)
    for exclude in (matrix, seen):
        items, scores = top_k(U, V, 10, exclude=exclude, batch=batch)
        assert items.tolist() == expected.tolist()
        assert np.all(np.diff(scores, axis=1) <= 0)
    subset, _ = top_k(U, V, 10, exclude=matrix, users=[5, 2])
    assert subset.tolist() == expected[[5, 2]].tolist()


def test_top_k_pads_when_candidates_run_out():
    U, V = np.ones((1, 2), np.float32), np.eye(2, dtype=np.float32)
    items, scores = top_k(U, V, 3, exclude=[np.array([1])])
    assert items.tolist() == [[0, -1, -1]] and np.isneginf(scores[0, 1:]).all()


def test_bad_arguments():
    with pytest.raises(InvalidParameter, match="k=0"):
        top_k(np.ones((1, 2)), np.ones((3, 2)), 0)
    with pytest.raises(InvalidParameter, match="dims"):
        top_k(np.ones((1, 2)), np.ones((3, 4)), 1)
    with pytest.raises(InvalidParameter, match="k=0"):
        ranking_metrics({}, {"a": [1]}, 0)


def test_hand_computed_example():
    recs = {"u": ["a", "b", "c"], "v": ["x"]}
    truth = {"u": {"b", "z"}, "v": {"q"}, "w": {"a"}}  # w has no recommendations: counts as 0
    m = ranking_metrics(recs, truth, 3)
    assert m["users"] == 3
    assert m["recall@3"] == pytest.approx((1 / 2) / 3)
    dcg = 1 / math.log2(3)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((dcg / idcg) / 3)
    assert m["precision@3"] == pytest.approx((1 / 3) / 3)


def test_matrix_inputs_and_coverage():
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    items = np.array([[1, 2], [0, 3], [2, -1]])
    m = ranking_metrics((np.arange(3), items), truth, 2, n_items=4)
    assert m["users"] == 2  # user 1 has an empty truth set
    assert m["recall@2"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["coverage@2"] == pytest.approx(4 / 4)


def test_metrics_equal_the_shared_scoring_script(tmp_path, shared_data):
    rng = np.random.default_rng(4)
    truth, recs = {}, {}
    for u in range(60):
        truth[f"u{u}"] = {f"i{j}" for j in rng.choice(80, size=rng.integers(1, 30), replace=False)}
        if u % 7:  # some users get no recommendations at all
            recs[f"u{u}"] = [f"i{j}" for j in rng.choice(80, size=rng.integers(1, 25), replace=False)]
    test_csv, recs_csv = tmp_path / "test.csv", tmp_path / "recs.csv"
    pd.DataFrame([(u, i) for u, items in truth.items() for i in items], columns=["user", "item"]).to_csv(
        test_csv, index=False
    )
    rows = [(u, i, r) for u, items in recs.items() for r, i in enumerate(items, start=1)]
    pd.DataFrame(rows, columns=["user", "item", "rank"]).sample(frac=1, random_state=0).to_csv(
        recs_csv, index=False
    )
    scorer = shared_data.parent / "bench" / "recsys_score.py"  # ../shared beside the repository
    for k in (5, 20):
        out = subprocess.run([sys.executable, str(scorer), "score", str(test_csv), str(recs_csv), "--k", str(k)],
                             capture_output=True, text=True, check=True)
        expected = json.loads(out.stdout)
        ours = ranking_metrics(recs, truth, k)
        assert ours["users"] == expected["users"] == 60
        assert ours[f"recall@{k}"] == pytest.approx(expected[f"recall@{k}"], abs=1e-12)
        assert ours[f"ndcg@{k}"] == pytest.approx(expected[f"ndcg@{k}"], abs=1e-12)
