"""Filtered search (vectorstore.store.index.filtered): restricted to allowed ids, by exact search or hnswlib's filter,
equal to exact."""

from __future__ import annotations

import numpy as np
import pytest

import vectorstore.store.index.filtered as filtered
from vectorstore import InvalidModelData, ItemIndex
from vectorstore.store.index.filtered import AllowedIds, search


def exact_top(vectors, q, allowed, exclude, k):
    scores = vectors @ q
    mask = np.zeros(len(vectors), bool)
    mask[allowed] = True
    mask[list(exclude)] = False
    scores[~mask] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return {int(i) for i in top if np.isfinite(scores[i])}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((4000, 16)).astype(np.float32) * rng.uniform(0.5, 2, (4000, 1)).astype(np.float32)
    indexes = {mips: ItemIndex.build(vectors, space="ip", M=16, ef=100, mips=mips) for mips in ("augmented", "native")}
    return vectors, rng.standard_normal((40, 16)).astype(np.float32), indexes


@pytest.mark.parametrize("mips", ["augmented", "native"])
@pytest.mark.parametrize("share", [0.001, 0.01, 0.2, 0.6])
@pytest.mark.parametrize("graph", [False, True], ids=["exact", "graph"])
def test_filtered_search_returns_k_allowed_ids_equal_to_exact_search(data, mips, share, graph, monkeypatch):
    if graph:  # thresholds of a large catalogue: hnswlib's filter answers
        monkeypatch.setattr(filtered, "EXACT_ALLOWED", 0)
        monkeypatch.setattr(filtered, "EXACT_PRODUCT", 0)
    vectors, queries, indexes = data
    index = indexes[mips]
    rng = np.random.default_rng(1)
    allowed = np.flatnonzero(rng.random(len(vectors)) < share)
    ids = AllowedIds(allowed)
    hits = total = 0
    for q in queries:
        banned = [int(allowed[0])]
        got, scores = search(index, q, 10, ids, exclude=banned)
        want = exact_top(vectors, q, allowed, banned, 10)
        found = [int(i) for i in got if i >= 0]
        assert len(found) == min(10, len(allowed) - 1) and set(found) <= set(allowed.tolist()) - set(banned)
        assert np.all(np.diff(scores[: len(found)]) <= 1e-4)
        np.testing.assert_allclose(scores[: len(found)], vectors[found] @ q, rtol=1e-3, atol=1e-3)
        hits += len(want & set(found))
        total += len(want)
    assert hits / total >= (0.97 if mips == "native" or not graph else 0.6)  # the graph's own recall


def test_batches_rows_and_an_empty_allowed_set(data):
    vectors, queries, indexes = data
    index = indexes["augmented"]
    allowed = AllowedIds(np.arange(0, 4000, 7))
    got, scores = search(index, queries[:5], 3, allowed, exclude=[[0], [7], [], [14], [21]])
    assert got.shape == (5, 3) and np.all(got % 7 == 0)
    assert 0 not in got[0] and 7 not in got[1]
    got, scores = search(index, queries[0], 5, AllowedIds([]))
    assert got.shape == (0,)
    assert 14 in AllowedIds([14, 3]) and 15 not in AllowedIds([14, 3]) and "14" not in AllowedIds([14])
    with pytest.raises(InvalidModelData, match=">= 0"):
        AllowedIds([-1, 2])
    with pytest.raises(InvalidModelData, match="dimension"):
        search(index, np.ones(3, np.float32), 5, allowed)
    with pytest.raises(InvalidModelData, match="k=0"):
        search(index, queries[0], 0, allowed)


@pytest.mark.parametrize("graph", [False, True], ids=["exact", "graph"])
def test_deleted_and_added_ids_are_honoured(graph, monkeypatch):
    """An index changed in place: a deleted allowed id is never returned, an added one can be."""
    if graph:
        monkeypatch.setattr(filtered, "EXACT_ALLOWED", 0)
        monkeypatch.setattr(filtered, "EXACT_PRODUCT", 0)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1000, 8)).astype(np.float32)
    index = ItemIndex.build(vectors, space="ip", M=16, ef=64, mips="native")
    q = rng.standard_normal(8).astype(np.float32)
    allowed = np.arange(0, 1000, 2)
    best = [int(i) for i in search(index, q, 5, AllowedIds(allowed))[0]]
    index.mark_deleted(best[:3])
    got = [int(i) for i in search(index, q, 5, AllowedIds(allowed))[0]]
    assert len(got) == 5 and not set(best[:3]) & set(got) and all(i % 2 == 0 for i in got)
    index.add_items((q * 10)[None, :], [1000])
    got = [int(i) for i in search(index, q, 5, AllowedIds(np.append(allowed, 1000)))[0]]
    assert got[0] == 1000
