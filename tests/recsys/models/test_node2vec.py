"""Node2Vec: walks (edges, (p, q) bias, seeds), the model contract, planted communities, both engines."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys import GraphEmbeddings, Interactions, InvalidParameter, Node2Vec, make_model, top_k
from recsys.models.node2vec.walks import CSRGraph, random_walks, set_threads


def community_frame(users: int, items: int, communities: int, per_user: int, seed: int) -> pd.DataFrame:
    """User u and item j are in community u % c and j % c; users pick items of their own community."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        own = np.arange(u % communities, items, communities)
        rows += [(f"u{u}", f"i{j}") for j in rng.choice(own, size=per_user, replace=False)]
    return pd.DataFrame(rows, columns=["user", "item"])


def bipartite_graph(n_users=6, n_items=9, per_user=4, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{j}") for u in range(n_users) for j in rng.choice(n_items, per_user, replace=False)]
    return Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))


def edge_set(adj) -> set:
    coo = sp.coo_matrix(adj)
    return set(zip(coo.row.tolist(), coo.col.tolist()))


@pytest.mark.parametrize("bipartite", [True, False])
def test_walks_follow_edges_and_start_from_every_node(bipartite):
    x = bipartite_graph()
    g = CSRGraph(x.graph(), bipartite=bipartite)
    walks = random_walks(g, walk_length=12, walks_per_node=3, p=0.5, q=2.0, seed=1)
    assert walks.shape == (3 * g.n_nodes, 12) and walks.dtype == np.int32
    assert np.bincount(walks[:, 0], minlength=g.n_nodes).tolist() == [3] * g.n_nodes
    edges = edge_set(x.graph())
    steps = set(zip(walks[:, :-1].ravel().tolist(), walks[:, 1:].ravel().tolist()))
    assert steps <= edges


def test_walk_stops_at_a_node_without_neighbours():
    adj = sp.csr_matrix(([1.0, 1.0], ([0, 1], [1, 0])), shape=(3, 3))
    walks = random_walks(CSRGraph(adj), walk_length=4, walks_per_node=1, seed=0)
    isolated = walks[walks[:, 0] == 2][0]
    assert isolated.tolist() == [2, -1, -1, -1]


def test_same_seed_same_walks_for_any_thread_count():
    g = CSRGraph(bipartite_graph(n_users=40, n_items=30).graph(), bipartite=True)
    kw = {"walk_length": 15, "walks_per_node": 4, "p": 0.7, "q": 1.5}
    set_threads(1)
    one = random_walks(g, seed=7, **kw)
    set_threads(2)
    two = random_walks(g, seed=7, chunks=3, **kw)
    assert np.array_equal(one, two)
    assert not np.array_equal(one, random_walks(g, seed=8, **kw))


def return_rate(walks, degrees):
    """Observed and expected-under-uniform fraction of steps that go back to the previous node."""
    prev, cur, nxt = walks[:, :-2].ravel(), walks[:, 1:-1].ravel(), walks[:, 2:].ravel()
    return (nxt == prev).mean(), degrees[cur]


@pytest.mark.parametrize("p, q", [(1.0, 1.0), (0.25, 1.0), (4.0, 0.5), (1.0, 4.0)])
@pytest.mark.parametrize("bipartite", [True, False])
def test_return_probability_follows_p_and_q_on_a_bipartite_graph(p, q, bipartite):
    # On a bipartite graph every non-return step is at distance 2 from the previous node, so from a node
    # of degree d: P(return) = (1/p) / (1/p + (d - 1)/q).
    x = bipartite_graph(n_users=20, n_items=12, per_user=5, seed=2)
    g = CSRGraph(x.graph(), bipartite=bipartite)
    walks = random_walks(g, walk_length=30, walks_per_node=40, p=p, q=q, seed=3)
    prev, cur, nxt = walks[:, :-2].ravel(), walks[:, 1:-1].ravel(), walks[:, 2:].ravel()
    d = g.degrees()[cur]
    expected = ((1 / p) / (1 / p + (d - 1) / q)).mean()
    observed = (nxt == prev).mean()
    n = len(cur)
    assert abs(observed - expected) < 5 * np.sqrt(expected * (1 - expected) / n) + 1e-3


@pytest.mark.parametrize("p", [0.5, 2.0])
def test_general_graph_weights_common_neighbours_by_one(p):
    # K4: from v (coming from t) the other two neighbours are also neighbours of t (weight 1), so
    # P(return) = (1/p) / (1/p + 2) whatever q is.
    adj = sp.csr_matrix(np.ones((4, 4)) - np.eye(4))
    walks = random_walks(CSRGraph(adj), walk_length=50, walks_per_node=200, p=p, q=3.0, seed=0)
    observed = (walks[:, 2:] == walks[:, :-2]).mean()
    assert observed == pytest.approx((1 / p) / (1 / p + 2), abs=0.01)


def test_weighted_first_step_follows_edge_weights():
    adj = sp.csr_matrix(np.array([[0, 1, 3], [1, 0, 0], [3, 0, 0]], dtype=float))
    walks = random_walks(CSRGraph(adj), walk_length=2, walks_per_node=20000, seed=0)
    firsts = walks[walks[:, 0] == 0, 1]
    assert (firsts == 2).mean() == pytest.approx(0.75, abs=0.02)


def test_invalid_parameters_named():
    with pytest.raises(InvalidParameter, match="p=-1"):
        Node2Vec(p=-1)
    with pytest.raises(InvalidParameter, match="engine='gpu'"):
        Node2Vec(engine="gpu")
    with pytest.raises(InvalidParameter, match="dim=0"):
        Node2Vec(dim=0)
    with pytest.raises(InvalidParameter, match="unknown parameter.*walklength"):
        Node2Vec(walklength=3)
    with pytest.raises(InvalidParameter, match="valid models: filter, lightgcn, node2vec"):
        make_model("deepwalk")
    assert isinstance(make_model("node2vec", dim=8), Node2Vec)


def test_planted_communities_rank_first():
    x = Interactions.from_frame(community_frame(users=90, items=45, communities=3, per_user=8, seed=5))
    events = []
    emb = make_model("node2vec", dim=16, walk_length=20, walks_per_node=10, window=5, workers=1,
                     seed=1).fit(x, progress=events.append)
    assert isinstance(emb, GraphEmbeddings) and emb.space == "ip"
    assert emb.user_vectors.shape == (x.n_users, 16) and emb.item_vectors.shape == (x.n_items, 16)
    assert {e["stage"] for e in events} == {"walks", "skipgram"}
    assert events[-1]["done"] == events[-1]["total"]
    u, v = emb.scoring_vectors()
    items, _ = top_k(u, v, 5, exclude=x.user_matrix())
    item_community = np.array([int(s[1:]) % 3 for s in x.item_ids])
    user_community = np.array([int(s[1:]) % 3 for s in x.user_ids])
    own = item_community[items] == user_community[:, None]
    assert (own.mean(axis=1) >= 0.8).mean() >= 0.9


@pytest.mark.parametrize("trainer", ["numba", "gensim"])
def test_fit_reproducible_with_one_worker(trainer):
    x = bipartite_graph(n_users=30, n_items=20, per_user=5)
    kw = {"dim": 8, "walk_length": 10, "walks_per_node": 3, "window": 3, "workers": 1, "trainer": trainer}
    a, b = Node2Vec(seed=4, **kw).fit(x), Node2Vec(seed=4, **kw).fit(x)
    assert np.array_equal(a.user_vectors, b.user_vectors) and np.array_equal(a.item_vectors, b.item_vectors)
    c = Node2Vec(seed=5, **kw).fit(x)
    assert not np.array_equal(a.user_vectors, c.user_vectors)


def test_numba_fit_is_bit_reproducible_with_parallel_walkers():
    """Walks on two threads, skip-gram in one lane: the default fit is a function of the seed alone."""
    x = bipartite_graph(n_users=60, n_items=40, per_user=6)
    kw = {"dim": 8, "walk_length": 12, "walks_per_node": 4, "window": 4, "workers": 2}
    runs = [Node2Vec(seed=3, **kw).fit(x) for _ in range(3)]
    for other in runs[1:]:
        assert np.array_equal(runs[0].user_vectors, other.user_vectors)
        assert np.array_equal(runs[0].item_vectors, other.item_vectors)
    lone = Node2Vec(seed=3, **{**kw, "workers": 1}).fit(x)
    assert np.array_equal(runs[0].user_vectors, lone.user_vectors)
    hogwild = Node2Vec(seed=3, hogwild=True, **kw).fit(x)  # two lock-free lanes: a different (valid) fit
    assert np.isfinite(hogwild.user_vectors).all() and not np.array_equal(hogwild.user_vectors, lone.user_vectors)
    with pytest.raises(InvalidParameter, match="hogwild='yes'"):
        Node2Vec(hogwild="yes")


def test_reference_package_engine_runs_on_a_tiny_graph():
    x = bipartite_graph(n_users=8, n_items=6, per_user=3)
    emb = Node2Vec(engine="node2vec", dim=8, walk_length=6, walks_per_node=2, window=3, workers=1).fit(x)
    assert emb.user_vectors.shape == (8, 8) and emb.item_vectors.shape == (6, 8)
    assert np.isfinite(emb.user_vectors).all() and np.abs(emb.item_vectors).sum() > 0


def test_importing_recsys_loads_neither_torch_nor_gensim():
    code = "import sys, recsys; recsys.make_model; print(sorted({'torch', 'gensim', 'numba'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
