"""ItemIndex: bytes round trip, ef, exclusions, k larger than the index, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from vectorstore import IntegrityError, InvalidModelData, ItemIndex


@pytest.fixture(scope="module")
def vectors():
    return np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)


@pytest.mark.parametrize("space", ["ip", "l2", "cosine"])
def test_bytes_round_trip_gives_identical_results(vectors, space):
    index = ItemIndex.build(vectors, ids=np.arange(1000, 1500), space=space, ef=77)
    clone = ItemIndex.from_bytes(index.to_bytes())
    assert clone.params == index.params and clone.ef == 77 and len(clone) == 500
    a_ids, a_scores = index.query(vectors[:20], k=10)
    b_ids, b_scores = clone.query(vectors[:20], k=10)
    np.testing.assert_array_equal(a_ids, b_ids)
    np.testing.assert_allclose(a_scores, b_scores, rtol=1e-5)
    assert set(np.unique(a_ids)) <= set(range(1000, 1500))


def test_scores_follow_the_space(vectors):
    q = vectors[3]
    ids, scores = ItemIndex.build(vectors, space="ip").query(q, k=5)
    np.testing.assert_allclose(scores, vectors[ids] @ q, rtol=1e-4)
    assert np.all(np.diff(scores) <= 1e-6)
    ids, dist = ItemIndex.build(vectors, space="l2").query(q, k=5)
    assert ids[0] == 3 and dist[0] == pytest.approx(0.0, abs=1e-5)
    np.testing.assert_allclose(dist, ((vectors[ids] - q) ** 2).sum(1), rtol=1e-4)


def test_ef_survives_and_can_be_changed(vectors):
    index = ItemIndex.build(vectors, ef=33)
    index.set_ef(120)
    assert ItemIndex.from_bytes(index.to_bytes()).ef == 120


def test_exclusions_shared_and_per_row(vectors):
    index = ItemIndex.build(vectors, space="l2")
    ids, _ = index.query(vectors[7], k=5, exclude=[7, 8])
    assert 7 not in ids and 8 not in ids and len(ids) == 5
    ids, _ = index.query(vectors[:2], k=4, exclude=[[0], [1, 2]])
    assert 0 not in ids[0] and not {1, 2} & set(ids[1])
    exact = np.argsort(((vectors - vectors[7]) ** 2).sum(1))
    expected = [i for i in exact if i not in (7, 8)][:5]
    assert set(index.query(vectors[7], k=5, exclude={7, 8})[0]) == set(expected)


def test_more_neighbours_than_items_gives_what_exists():
    small = np.eye(3, dtype=np.float32)
    index = ItemIndex.build(small)
    ids, scores = index.query(small[0], k=10)
    assert sorted(ids.tolist()) == [0, 1, 2]
    ids, scores = index.query(small[0], k=10, exclude=[0, 1])
    assert ids[0] == 2 and (ids[1:] == -1).all() and np.isnan(scores[1:]).all()


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.array([[1.0, np.nan]]), None, "NaN"),
        (np.array(["a", "b"]), None, "numeric"),
        (np.zeros(4), None, "2-D"),
        (np.zeros((3, 2)), [1, 2], "one per vector"),
        (np.zeros((2, 2)), [1, 1], "unique"),
        (np.zeros((2, 2)), [0, -4], ">= 0"),
    ],
)
def test_bad_vectors_and_ids(vectors, ids, message):
    with pytest.raises(InvalidModelData, match=message):
        ItemIndex.build(vectors, ids=ids)


def test_bad_queries_and_params(vectors):
    index = ItemIndex.build(vectors)
    with pytest.raises(InvalidModelData, match="dimension"):
        index.query(np.zeros(3), k=1)
    for k in (0, -1, 2.5, True):
        with pytest.raises(InvalidModelData, match="k="):
            index.query(vectors[0], k=k)
    with pytest.raises(InvalidModelData, match="space"):
        ItemIndex.build(vectors, space="dot")


def test_corrupt_bytes_are_refused(vectors):
    data = ItemIndex.build(vectors).to_bytes()
    with pytest.raises(IntegrityError):
        ItemIndex.from_bytes(b"garbage")
    with pytest.raises(IntegrityError):
        ItemIndex.from_bytes(data[: len(data) // 3])


def _exact_top(vectors, queries, k, exclude=()):
    scores = queries @ vectors.T
    scores[:, list(exclude)] = -np.inf
    return np.argsort(-scores, axis=1)[:, :k]


def test_inner_product_graph_keeps_recall_when_norms_vary():
    """Clustered vectors (like real embeddings) whose norms vary 10x: the graph search keeps its recall."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((30, 32))
    vectors = centres[rng.integers(30, size=3000)] + 0.5 * rng.standard_normal((3000, 32))
    vectors = (vectors * rng.uniform(0.2, 2.0, (3000, 1))).astype(np.float32)
    queries = (vectors[rng.integers(3000, size=200)] + 0.3 * rng.standard_normal((200, 32))).astype(np.float32)
    index = ItemIndex.build(vectors, space="ip", M=16, ef=100)
    got, scores = index.query(queries, k=10, exact=False)
    truth = _exact_top(vectors, queries, 10)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)])
    assert recall >= 0.99
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, got, axis=1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("space", ["ip", "l2", "cosine"])
def test_exact_and_graph_paths_agree(vectors, space):
    index = ItemIndex.from_bytes(ItemIndex.build(vectors, space=space, M=32, ef=200).to_bytes())
    excl = [[i, i + 1] for i in range(40)]
    g_ids, g_scores = index.query(vectors[:40], k=8, exclude=excl, exact=False)
    e_ids, e_scores = index.query(vectors[:40], k=8, exclude=excl, exact=True)
    assert np.mean(g_ids == e_ids) > 0.97
    np.testing.assert_allclose(g_scores[g_ids == e_ids], e_scores[g_ids == e_ids], rtol=1e-3, atol=1e-3)
    for row, ex in zip(e_ids, excl):
        assert not set(ex) & set(row)


def test_excluding_most_of_the_catalogue_still_answers(vectors):
    index = ItemIndex.build(vectors, space="ip")
    keep = {3, 77, 123}
    excluded = [i for i in range(500) if i not in keep]
    ids, scores = index.query(vectors[0], k=5, exclude=excluded)
    assert set(ids[:3]) == keep and (ids[3:] == -1).all() and np.isnan(scores[3:]).all()
