"""The graph-filter model (issue 27, item 2): its filter, its tuning on a carved split, its two-stage serving
(exact per request, fold-in equal to known users), and deltas on a version served that way."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp

from recsys import CatalogueWriter, Interactions, InvalidParameter, RecommendationClient, make_model, publish_embeddings
from recsys.models.graph_filter import GRID, truncated_residual
from vectorstore import ModelRegistry

SMALL = {"dim": 8, "rank": 24, "oversample": 16}


@pytest.fixture(scope="module")
def train(communities) -> Interactions:
    return Interactions.from_frame(communities["frame"])


@pytest.fixture(scope="module")
def fitted(train):
    return make_model("filter", **SMALL).fit(train)


def community(item) -> int:
    return int(str(item)[1:]) % 3


def test_settings_left_open_are_tuned_on_a_carved_split(fitted):
    tried = [h for h in fitted.history if h["stage"] == "tune"]
    done = fitted.history[-1]
    assert done["stage"] == "done" and done["rank"] == 24 and done["dim"] == 8
    assert len(tried) >= 1 + sum(len(GRID[name]) - 1 for name in ("sharpen", "ideal", "degree"))
    best = max(tried, key=lambda t: t["recall@20"] + t["ndcg@20"])
    assert {name: best[name] for name in ("sharpen", "ideal", "degree")} == {
        name: done["tuned"][name] for name in ("sharpen", "ideal", "degree")}


def test_fixed_settings_skip_the_tuning(train):
    emb = make_model("filter", **SMALL, sharpen=1.0, ideal=0.2, degree=0.3, candidates=40).fit(train)
    assert [h["stage"] for h in emb.history] == ["done"]
    assert emb.rerank.rank == 24 and emb.rerank.candidates == 40


def test_the_candidates_are_the_fewest_that_keep_the_filters_recall(train):
    frame = train.to_frame()
    frame["item"] = frame["item"] + "-" + (frame["user"].str[1:].astype(int) % 4).astype(str)  # 240 items
    emb = make_model("filter", **SMALL, sharpen=1.0, ideal=0.2, degree=0.3, tune_users=120).fit(
        Interactions.from_frame(frame))
    kept = next(h for h in emb.history if h["stage"] == "candidates")
    counts = sorted(int(c) for c in kept if c != "stage")
    assert counts[-1] == emb.rerank.n_items  # the exact filter over every item
    chosen = emb.rerank.candidates
    assert kept[str(chosen)] >= 0.995 * kept[str(counts[-1])]
    assert all(kept[str(c)] < 0.995 * kept[str(counts[-1])] for c in counts if c < chosen)


def test_per_request_scores_are_the_batched_filter(train, fitted):
    f = fitted.rerank
    matrix = train.user_matrix()
    full = f.score_all(matrix[:10])
    rng = np.random.default_rng(0)
    for u in range(10):
        cand = rng.choice(train.n_items, 25, replace=False)
        np.testing.assert_allclose(f.score(matrix[u].indices, cand), full[u, cand], rtol=1e-4, atol=1e-6)


def test_the_tail_keeps_each_rows_largest_residual_entries():
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((40, 30)) < 0.3).astype(np.float32))
    p = (x.T @ x).toarray()
    lam, vectors = np.linalg.eigh(p)
    lam, vectors = lam[::-1][:4].copy(), np.ascontiguousarray(vectors[:, ::-1][:, :4], dtype=np.float32)
    residual = p - (vectors * lam) @ vectors.T
    whole = truncated_residual(x, vectors, lam, 30, block=7).toarray()
    np.testing.assert_allclose(whole, residual, atol=1e-4)
    kept = truncated_residual(x, vectors, lam, 5, block=7)
    for row in range(30):
        values = kept[row].toarray().ravel()
        assert kept[row].nnz == 5
        np.testing.assert_allclose(np.sort(np.abs(values[kept[row].indices])), np.sort(np.abs(residual[row]))[-5:],
                                   rtol=1e-4)


def test_two_stage_serves_the_exact_filter_and_fold_in_equals_known_users(train, fitted, settings):
    registry = ModelRegistry(settings)
    publish_embeddings(registry, "filter-exact", train, fitted, algorithm="filter")
    matrix = train.user_matrix()
    full = fitted.rerank.score_all(matrix)
    full[matrix.nonzero()] = -np.inf
    with RecommendationClient(model="filter-exact", settings=settings, listen=False, refresh_interval=0) as client:
        # fewer than 100 items: the candidates are all of them, and the answer is the filter's own top 5
        assert client.model_meta["rerank"] == {"candidates": train.n_items, "rank": 24, "items": train.n_items}
        for u in range(0, train.n_users, 7):
            user = str(train.user_ids[u])
            rec = client.recommend(user, k=5)
            assert rec.items == train.item_ids[np.argsort(-full[u], kind="stable")[:5]].tolist()
            np.testing.assert_allclose(rec.scores, np.sort(full[u])[::-1][:5], rtol=1e-4)
            folded = client.recommend_for_history(train.item_ids[matrix[u].indices].tolist(), k=5)
            assert folded.items == rec.items and np.allclose(folded.scores, rec.scores)
        many = client.recommend_many([str(train.user_ids[u]) for u in range(6)], k=5)
        assert [r.items for r in many] == [client.recommend(r.user, k=5).items for r in many]
        similar = client.similar_items("i0", k=5)
        assert similar.items == client.recommend_for_history(["i0"], k=5).items
        assert np.mean([community(i) == 0 for i in similar.items]) >= 0.8


def test_deltas_on_a_two_stage_version(train, fitted, settings):
    registry = ModelRegistry(settings)
    publish_embeddings(registry, "filter-deltas", train, fitted, algorithm="filter")
    with RecommendationClient(model="filter-deltas", settings=settings, refresh_interval=30) as client:
        writer = CatalogueWriter("filter-deltas", settings=settings)
        writer.upsert_items([{"id": "c1-new", "users": ["u1", "u4", "u7", "u10", "u13"]}])
        writer.delete_items(["i4"])
        deadline = time.time() + 5
        while "c1-new" not in client._model.item_pos or "i4" in client._model.item_pos:
            assert time.time() < deadline, "the deltas never became visible"
            time.sleep(0.01)
        assert "c1-new" in client.recommend("u16", k=10).items  # scored beside the filter's items
        assert "i4" not in client.recommend("u16", k=60, exclude_seen=False).items
        writer.update_users({"newcomer": ["i0", "i3", "i6", "c1-new"]})
        deadline = time.time() + 5
        while client.recommend("newcomer", k=3).source != "index":
            assert time.time() < deadline, "the user update never became visible"
            time.sleep(0.01)
        known = client.recommend("newcomer", k=5)
        assert known.items == client.recommend_for_history(["i0", "i3", "i6", "c1-new"], k=5).items


@pytest.mark.parametrize("bad", [{"rank": 0}, {"sharpen": -1.0}, {"degree": float("nan")}, {"candidates": 0},
                                 {"ideal": "0.1"}])
def test_bad_parameters_are_refused_naming_them(bad):
    with pytest.raises(InvalidParameter, match=next(iter(bad))):
        make_model("filter", **bad)


def test_a_job_without_a_model_trains_the_default_filter_one(celery_worker, communities, model_name):
    from recsys import DEFAULT_MODEL
    from workers.jobs import train_graph

    result = train_graph(communities["train"], name=model_name, params={"dim": 8, "rank": 24},
                         test=communities["test"]).wait(timeout=120)
    assert DEFAULT_MODEL == "filter" and result["algorithm"] == "filter"
    assert result["metrics"]["recall@20"] > 0.5
