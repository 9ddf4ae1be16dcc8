"""LightGCN: propagation math against PyG, learning on planted communities, determinism, early stopping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys import Interactions, make_model, ranking_metrics, top_k
from recsys.exceptions import InvalidParameter
from recsys.models.lightgcn._bpr import PositiveSet, sample_negatives
from recsys.models.lightgcn.propagation import normalized_adjacency, propagate, to_torch_csr

N_COMMUNITIES = 4
USERS_PER = 30
ITEMS_PER = 15

# Small, fast settings for the synthetic graph (the defaults are sized for ~1M edges).
FAST = {"dim": 16, "batch_size": 256, "lr": 0.05, "threads": 1}


def planted(seed: int = 0, per_user: int = 7, noise: float = 0.03) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users of community c interact with random items of community c (plus a little noise).

    Returns (train, held-out) frames; the held-out frame has 2 more in-community items per user.
    """
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in range(N_COMMUNITIES):
        items = np.arange(c * ITEMS_PER, (c + 1) * ITEMS_PER)
        for u in range(c * USERS_PER, (c + 1) * USERS_PER):
            chosen = rng.choice(items, per_user + 2, replace=False)
            train += [(f"u{u}", f"i{i}") for i in chosen[:per_user]]
            held += [(f"u{u}", f"i{i}") for i in chosen[per_user:]]
            if rng.random() < noise * per_user:
                train.append((f"u{u}", f"i{rng.integers(N_COMMUNITIES * ITEMS_PER)}"))
    cols = ["user", "item"]
    return pd.DataFrame(train, columns=cols).drop_duplicates(), pd.DataFrame(held, columns=cols)


@pytest.fixture(scope="module")
def data() -> tuple[Interactions, Interactions]:
    train_df, held_df = planted()
    train = Interactions.from_frame(train_df)
    return train, train.align(Interactions.from_frame(held_df))


@pytest.fixture(scope="module")
def fitted(data):
    train, _ = data
    return make_model("lightgcn", epochs=40, **FAST).fit(train)


def community_of_user(ids: np.ndarray) -> np.ndarray:
    return np.array([int(x[1:]) // USERS_PER for x in ids])


def community_of_item(ids: np.ndarray) -> np.ndarray:
    return np.array([int(x[1:]) // ITEMS_PER for x in ids.ravel()]).reshape(ids.shape)


# -- propagation -------------------------------------------------------------------------------------


def tiny_graph() -> tuple[sp.csr_matrix, int]:
    rng = np.random.default_rng(3)
    r = sp.random(7, 5, density=0.4, random_state=rng, format="csr")
    r.data[:] = 1.0
    return sp.csr_matrix(r), 7


@pytest.mark.parametrize("layers", [0, 1, 3])
def test_propagation_equals_pyg_lgconv_forward_and_gradient(layers):
    from torch_geometric.nn import LGConv

    r, n_users = tiny_graph()
    adj = to_torch_csr(normalized_adjacency(r))
    n = adj.shape[0]
    g = sp.bmat([[None, r], [r.T, None]]).tocoo()
    edge_index = torch.from_numpy(np.vstack([g.row, g.col]).astype(np.int64))

    torch.manual_seed(0)
    x0 = torch.randn(n, 4, dtype=torch.float32)
    weights = torch.randn(n, 4)

    ours_x = x0.clone().requires_grad_(True)
    ours = propagate(adj, ours_x, layers)
    (ours * weights).sum().backward()

    ref_x = x0.clone().requires_grad_(True)
    conv = LGConv()
    h, layers_out = ref_x, [ref_x]
    for _ in range(layers):
        h = conv(h, edge_index)
        layers_out.append(h)
    ref = torch.stack(layers_out).mean(dim=0)
    (ref * weights).sum().backward()

    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours_x.grad, ref_x.grad, rtol=1e-5, atol=1e-6)


def test_normalized_adjacency_is_symmetric_and_ignores_weights():
    r, _ = tiny_graph()
    weighted = r.copy()
    weighted.data *= 5.0
    a = normalized_adjacency(weighted)
    assert abs(a - a.T).max() < 1e-7
    np.testing.assert_allclose(a.toarray(), normalized_adjacency(r).toarray())


def test_negative_sampler_avoids_positives():
    users = np.repeat(np.arange(50), 4)
    items = np.tile(np.arange(4), 50)
    positives = PositiveSet(users, items, 50, 10)
    rng = np.random.default_rng(0)
    neg = sample_negatives(users, 10, rng, positives, retries=20)
    assert not positives.contains(users, neg).any()
    sparse_keys = PositiveSet(users, items, 50, 10, dense_limit=0)
    assert np.array_equal(sparse_keys.contains(users, neg), positives.contains(users, neg))
    assert sparse_keys.contains(users[:5], items[:5]).all()


# -- learning ------------------------------------------------------------------------------------------


def test_recovers_planted_communities(data, fitted):
    train, _ = data
    assert fitted.space == "ip"
    assert fitted.user_vectors.shape == (train.n_users, 16)
    items, _ = top_k(fitted.user_vectors, fitted.item_vectors, 5, exclude=train.user_matrix())
    same = community_of_item(train.item_ids[items]) == community_of_user(train.user_ids)[:, None]
    # chance is 1/4; a user with 8 seen of 15 community items still has 7 unseen ones to rank first
    assert same.mean() > 0.9


def test_beats_chance_on_held_out_items(data, fitted):
    train, held = data
    items, _ = top_k(fitted.user_vectors, fitted.item_vectors, 5, exclude=train.user_matrix())
    m = ranking_metrics((np.arange(train.n_users), items), held, 5)
    # a random unseen item is held out with probability ~2/53, so random recall@5 is ~0.1
    assert m["recall@5"] > 0.4


def test_loss_decreases_and_progress_reports_every_epoch(data):
    train, _ = data
    events = []
    emb = make_model("lightgcn", epochs=8, holdout=0, **FAST).fit(train, progress=events.append)
    assert [e["epoch"] for e in events] == list(range(1, 9))
    assert all(e["stage"] == "train" and e["total"] == 8 and e["done"] == e["epoch"] for e in events)
    losses = [e["loss"] for e in events]
    assert losses[-1] < 0.8 * losses[0]
    assert emb.history[-1]["stage"] == "done" and emb.history[-1]["stopped"] == "epochs"


def test_same_seed_same_embeddings_other_seed_differs(data):
    train, _ = data
    a = make_model("lightgcn", epochs=3, seed=7, **FAST).fit(train)
    b = make_model("lightgcn", epochs=3, seed=7, **FAST).fit(train)
    c = make_model("lightgcn", epochs=3, seed=8, **FAST).fit(train)
    np.testing.assert_array_equal(a.user_vectors, b.user_vectors)
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    assert not np.allclose(a.item_vectors, c.item_vectors)


def test_early_stopping_keeps_best_epoch(data):
    train, held = data
    events = []
    # A learning rate this high makes validation recall wander (Recall@2: @20 saturates on 60 items), so
    # the best epoch is neither the first nor the last and patience runs out.
    params = {**FAST, "lr": 0.3, "reg": 0.0, "plateau_decay": 1.0}
    emb = make_model("lightgcn", epochs=30, eval_every=1, patience=4, eval_k=2, **params).fit(
        train, valid=held, progress=events.append
    )
    evaluated = [(e["epoch"], e["recall@2"]) for e in events if "recall@2" in e]
    assert len(evaluated) == len(events)  # eval_every=1
    best_epoch, best_recall = max(evaluated, key=lambda t: (t[1], -t[0]))
    summary = emb.history[-1]
    assert summary["best_epoch"] == best_epoch
    assert summary["stopped"] == "converged" and summary["validation"] == "given"
    assert events[-1]["epoch"] - best_epoch == 4 < events[-1]["epoch"] < 30
    users = np.unique(held.users)
    items, _ = top_k(emb.user_vectors, emb.item_vectors, 2, exclude=train.user_matrix(), users=users)
    kept = ranking_metrics((users, items), held, 2)["recall@2"]
    assert kept == pytest.approx(best_recall, abs=1e-9)


def test_time_budget_stops_gracefully(data):
    train, _ = data
    emb = make_model("lightgcn", epochs=10_000, time_budget_s=0.5, **FAST).fit(train)
    assert emb.history[-1]["stopped"] == "time_budget"
    assert np.isfinite(emb.user_vectors).all()


def test_valid_in_other_id_space_is_aligned(data):
    train, held = data
    _, held_df = planted()
    raw = Interactions.from_frame(held_df.iloc[::-1])  # same pairs, different dense ids
    a = make_model("lightgcn", epochs=2, eval_every=1, **FAST).fit(train, valid=held)
    b = make_model("lightgcn", epochs=2, eval_every=1, **FAST).fit(train, valid=raw)
    assert a.history[1]["recall@20"] == pytest.approx(b.history[1]["recall@20"])


@pytest.mark.parametrize(
    "params",
    [
        {"dim": 0}, {"layers": -1}, {"lr": 0}, {"lr": float("nan")}, {"reg": -1e-4}, {"epochs": 1.5},
        {"batch_size": 0}, {"eval_every": 0}, {"patience": 0}, {"init": "xavier"}, {"threads": 0},
        {"time_budget_s": -1}, {"reject_positives": "yes"}, {"learning_rate": 0.01}, {"plateau_decay": 2.0},
        {"plateau_decay": 0}, {"holdout": 0.9}, {"holdout_min": 0}, {"eval_users": 0}, {"refit_epochs": -1},
        {"init_filter": -1.0}, {"batch_size": -5}, {"cpu_budget_s": 0}, {"sampling": "items"},
    ],
)
def test_bad_params_raise_invalid_parameter(params):
    name = next(iter(params))
    with pytest.raises(InvalidParameter, match=name):
        make_model("lightgcn", **params)


def test_normal_init_learns_too(data):
    train, _ = data
    emb = make_model("lightgcn", epochs=10, init="normal", **FAST).fit(train)
    items, _ = top_k(emb.user_vectors, emb.item_vectors, 5, exclude=train.user_matrix())
    same = community_of_item(train.item_ids[items]) == community_of_user(train.user_ids)[:, None]
    assert same.mean() > 0.8


# -- stopping on convergence ---------------------------------------------------------------------------


def test_carved_split_holds_out_a_share_of_each_users_interactions_except_sparse_users():
    from recsys.models._holdout import carve_validation

    rng = np.random.default_rng(0)
    counts = np.r_[np.full(20, 4), np.full(30, 40)]  # 20 sparse users, 30 with 40 interactions
    rows = np.repeat(np.arange(50), counts)
    cols = np.concatenate([rng.choice(100, c, replace=False) for c in counts])
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(50, 100))
    fit, held = carve_validation(m, 0.05, 10, seed=3)
    assert (fit + held != m).nnz == 0 and fit.multiply(held).nnz == 0
    held_per_user = np.diff(held.indptr)
    assert (held_per_user[:20] == 0).all() and (held_per_user[20:] == 2).all()
    again, _ = carve_validation(m, 0.05, 10, seed=3)
    assert (again != fit).nnz == 0


def test_without_valid_it_carves_one_stops_on_a_plateau_and_refits_on_everything():
    train_df, _ = planted(per_user=12)
    train = Interactions.from_frame(train_df)
    events = []
    emb = make_model("lightgcn", epochs=500, eval_every=1, patience=2, refit_epochs=2, **FAST).fit(
        train, progress=events.append)
    done = emb.history[-1]
    assert done["validation"] == "carved" and done["stopped"] == "converged"
    assert "recall@20 did not improve" in done["reason"] and "2 evaluations" in done["reason"]
    trained = [e for e in events if e["stage"] == "train"]
    assert len(trained) < 500 and all("recall@20" in e and "ndcg@20" in e for e in trained)
    assert len(trained) - done["best_epoch"] == 2
    assert [e["stage"] for e in events[-2:]] == ["refit", "refit"]
    # no clock was involved: the same fit again gives the same vectors
    again = make_model("lightgcn", epochs=500, eval_every=1, patience=2, refit_epochs=2, **FAST).fit(train)
    np.testing.assert_array_equal(emb.user_vectors, again.user_vectors)


# -- the default recipe: spectral start, full-batch BPR ------------------------------------------------


def test_full_batch_bpr_gradient_equals_autograd_with_repeated_negatives():
    from recsys.models.lightgcn._bpr import bpr_gradient

    r, n_users = tiny_graph()
    r.sort_indices()
    negatives = np.random.default_rng(0).integers(0, r.shape[1], r.nnz)  # repeats within a user's row
    final = torch.randn(n_users + r.shape[1], 4, generator=torch.Generator().manual_seed(0))
    loss, grad = bpr_gradient(final, r.indptr, r.indices, negatives)

    x = final.clone().requires_grad_()
    users = torch.from_numpy(np.repeat(np.arange(n_users), np.diff(r.indptr)))
    pos = torch.from_numpy(r.indices.astype(np.int64) + n_users)
    neg = torch.from_numpy(negatives + n_users)
    ref = torch.nn.functional.softplus(-(x[users] * (x[pos] - x[neg])).sum(dim=1)).mean()
    ref.backward()
    assert loss == pytest.approx(float(ref.detach()), rel=1e-6)
    torch.testing.assert_close(grad, x.grad, rtol=1e-5, atol=1e-7)


def test_spectral_start_propagates_to_the_spectral_filter(data):
    """Before any step, LightGCN's scores are U S^2 V^T of the normalised interaction matrix."""
    train, _ = data
    emb = make_model("lightgcn", init="spectral", dim=8, epochs=1, lr=1e-12, holdout=0, threads=1).fit(train)
    r = normalized_adjacency(train.user_matrix())[: train.n_users, train.n_users:].toarray().astype(np.float64)
    u, s, vt = np.linalg.svd(r, full_matrices=False)
    expected = (u[:, :8] * s[:8] ** 2) @ vt[:8]
    scores = emb.user_vectors.astype(np.float64) @ emb.item_vectors.T.astype(np.float64)
    ratio = float((scores * expected).sum() / (expected * expected).sum())  # the start's overall scale
    np.testing.assert_allclose(scores, ratio * expected, atol=1e-4 * np.abs(ratio * expected).max())


def test_default_recipe_carves_stops_and_beats_popularity():
    train_df, held_df = planted(per_user=12)
    train = Interactions.from_frame(train_df)
    held = train.align(Interactions.from_frame(held_df))
    emb = make_model("lightgcn", threads=1).fit(train)  # the defaults: spectral start, full-batch BPR
    done = emb.history[-1]
    assert done["validation"] == "carved" and done["stopped"] == "converged"
    truth = held.user_matrix()
    items, _ = top_k(emb.user_vectors, emb.item_vectors, 5, exclude=train.user_matrix())
    recall = ranking_metrics((np.arange(train.n_users), items), truth, 5)["recall@5"]
    popularity = np.asarray(train.user_matrix().sum(axis=0), dtype=np.float32).reshape(-1, 1)
    pop_items, _ = top_k(np.ones((train.n_users, 1), np.float32), popularity, 5, exclude=train.user_matrix())
    pop_recall = ranking_metrics((np.arange(train.n_users), pop_items), truth, 5)["recall@5"]
    assert recall > 0.5 > 2 * pop_recall


# -- trained as a GNN: random start, mini-batch BPR, bounded ----------------------------------------------


def test_random_start_mini_batch_training_does_not_collapse():
    """Validation recall at the end stays at its best, less noise: no step size that wrecks what was learnt."""
    train_df, held_df = planted(per_user=10)
    train = Interactions.from_frame(train_df)
    held = train.align(Interactions.from_frame(held_df))
    events = []
    params = {**FAST, "init": "normal", "lr": 0.01, "batch_size": 128}
    make_model("lightgcn", epochs=40, eval_every=2, patience=100, eval_k=5, **params).fit(
        train, valid=held, progress=events.append)
    recalls = [e["recall@5"] for e in events if "recall@5" in e]
    assert len(recalls) == 20
    assert max(recalls) > 0.4  # it learnt (chance is ~0.1)
    assert recalls[-1] >= max(recalls) - 0.03


@pytest.mark.parametrize("sampling", ["edge", "user"])
def test_both_samplers_learn(data, sampling):
    train, held = data
    emb = make_model("lightgcn", epochs=20, init="normal", sampling=sampling, holdout=0, **FAST).fit(train)
    items, _ = top_k(emb.user_vectors, emb.item_vectors, 5, exclude=train.user_matrix())
    assert ranking_metrics((np.arange(train.n_users), items), held, 5)["recall@5"] > 0.4


def test_cpu_budget_stops_gracefully(data):
    train, _ = data
    emb = make_model("lightgcn", epochs=10_000, cpu_budget_s=0.5, holdout=0, **FAST).fit(train)
    done = emb.history[-1]
    assert done["stopped"] == "time_budget" and "CPU budget of 0.5 CPU-s" in done["reason"]
    assert len(emb.history) < 10_000 and np.isfinite(emb.user_vectors).all()


@pytest.mark.parametrize("layers", [1, 3])
def test_fold_in_vectors_give_a_known_users_propagated_part(layers):
    """mean_{i in N(u)} f_i is (L+1) / sqrt(d_u) times u's final embedding less its own ego term e_u / (L+1)."""
    from recsys.models.lightgcn._training import _Graph, fold_in_vectors

    r, n_users = tiny_graph()
    graph = _Graph(r, reject_positives=False)
    ego = torch.randn(graph.adj.shape[0], 4, generator=torch.Generator().manual_seed(1))
    final = propagate(graph.adj, ego, layers).numpy()
    fold = fold_in_vectors(graph, ego, layers)
    m = graph.matrix
    for u in range(n_users):
        items = m.indices[m.indptr[u]:m.indptr[u + 1]]
        if len(items) == 0:
            continue
        known = final[u] - ego[u].numpy() / (layers + 1)
        folded = fold[items].mean(axis=0) * np.sqrt(len(items)) / (layers + 1)
        np.testing.assert_allclose(folded, known, rtol=1e-4, atol=1e-5)
    assert fold_in_vectors(graph, ego, 0) is None


def test_fitted_model_publishes_fold_in_vectors(data, fitted):
    train, _ = data
    assert fitted.fold_in_vectors is not None and fitted.fold_in_vectors.shape == fitted.item_vectors.shape
    assert fitted.paths()["fold_in"] == "mean of fold_in_vectors -> item index"
