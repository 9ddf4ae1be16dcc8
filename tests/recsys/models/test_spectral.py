"""The spectral model: planted communities, determinism, exact fold-in, parameters, and `--model spectral`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from recsys import MODELS, Interactions, InvalidParameter, make_model, ranking_metrics, top_k
from workers.cli import main

SMALL = {"dim": 8, "oversample": 16}


@pytest.fixture(scope="module")
def train(communities) -> Interactions:
    return Interactions.from_frame(communities["frame"])


@pytest.fixture(scope="module")
def fitted(train):
    return make_model("spectral", **SMALL).fit(train)


def community(ids) -> np.ndarray:
    return np.array([int(str(x)[1:]) % 3 for x in np.ravel(ids)]).reshape(np.shape(ids))


def test_registered_and_scored_by_inner_product(train, fitted):
    assert MODELS["spectral"] == "recsys.models.spectral:Spectral"
    assert fitted.space == "ip"
    assert fitted.user_vectors.shape == (train.n_users, 8) and fitted.item_vectors.shape == (train.n_items, 8)
    assert fitted.fold_in_vectors.shape == fitted.item_vectors.shape
    done = fitted.history[-1]
    assert done["stage"] == "done" and done["singular_values"][0] == pytest.approx(1.0, abs=1e-4)


def test_recovers_planted_communities(train, fitted):
    items, _ = top_k(fitted.user_vectors, fitted.item_vectors, 5, exclude=train.user_matrix())
    same = community(train.item_ids[items]) == community(train.user_ids)[:, None]
    assert same.mean() > 0.95  # chance: 1/3


def test_beats_popularity_on_held_out_items(train, fitted, communities):
    truth = train.align(Interactions.read(communities["test"]))
    emb = fitted
    items, _ = top_k(emb.user_vectors, emb.item_vectors, 5, exclude=train.user_matrix())
    ours = ranking_metrics((np.arange(train.n_users), items), truth, 5)["recall@5"]
    popularity = np.bincount(train.items, minlength=train.n_items).astype(np.float32)[:, None]
    items, _ = top_k(np.ones((train.n_users, 1), np.float32), popularity, 5, exclude=train.user_matrix())
    assert ours > 2 * ranking_metrics((np.arange(train.n_users), items), truth, 5)["recall@5"]


def test_same_seed_same_vectors(train, fitted):
    again = make_model("spectral", **SMALL).fit(train)
    np.testing.assert_array_equal(fitted.user_vectors, again.user_vectors)
    np.testing.assert_array_equal(fitted.item_vectors, again.item_vectors)


def test_fold_in_of_a_history_is_the_vector_of_a_known_user_with_it(train, fitted):
    for user in range(train.n_users):
        np.testing.assert_allclose(fitted.fold_in(train.seen(user)), fitted.user_vectors[user], rtol=1e-5, atol=1e-6)
    # a new user: the same items in another order, one repeated
    history = train.seen(7)
    np.testing.assert_allclose(fitted.fold_in(np.r_[history[::-1], history[:1]]), fitted.user_vectors[7],
                               rtol=1e-5, atol=1e-6)


def test_more_components_than_items_are_padded_with_zero_weight(train):
    emb = make_model("spectral", dim=80).fit(train)  # 60 items
    assert np.isfinite(emb.user_vectors).all() and np.isfinite(emb.fold_in_vectors).all()
    assert np.abs(emb.item_vectors[:, 60:]).max() == 0


@pytest.mark.parametrize("params", [{"dim": 0}, {"weight": -1}, {"weight": float("nan")}, {"item_degree": "x"},
                                    {"power_iterations": -1}, {"threads": 0}, {"rank": 8}])
def test_bad_params_raise_invalid_parameter(params):
    with pytest.raises(InvalidParameter, match=next(iter(params))):
        make_model("spectral", **params)


def test_eval_recsys_accepts_model_spectral(communities, tmp_path, model_name):
    recs = tmp_path / "recs.csv"
    out = CliRunner().invoke(main, ["eval", "recsys", "--train", communities["train"], "--test", communities["test"],
                                    "--model", "spectral", "--k", "10", "--recs-out", str(recs), "--name", model_name,
                                    "--param", "dim=8", "--param", "oversample=16"])
    assert out.exit_code == 0, out.output
    line = json.loads(out.output.strip().splitlines()[-1])
    assert line["algorithm"] == "spectral" and line["recall@10"] > 0.4


def test_a_job_trains_the_spectral_model_when_named(celery_worker, communities, model_name):
    from workers.jobs import train_graph

    result = train_graph(communities["train"], model="spectral", name=model_name, params={"dim": 8},
                         test=communities["test"]).wait(timeout=120)
    assert result["algorithm"] == "spectral"
    assert result["metrics"]["recall@20"] > 0.5
