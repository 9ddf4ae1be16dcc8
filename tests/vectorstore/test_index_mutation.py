"""ItemIndex changed in place: items added, updated, deleted (hnswlib add_items / mark_deleted / resize_index),
with queries running meanwhile."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vectorstore import AllowedIds, InvalidModelData, ItemIndex, search_allowed


@pytest.fixture(params=[("ip", "augmented"), ("ip", "native"), ("cosine", "augmented")])
def index(request):
    space, mips = request.param
    vectors = np.random.default_rng(0).standard_normal((1500, 12)).astype(np.float32)
    return ItemIndex.build(vectors, space=space, mips=mips, M=16, ef=64), vectors


@pytest.mark.parametrize("exact", [False, True])
def test_deleted_ids_are_never_returned(index, exact):
    idx, vectors = index
    query = vectors[7]
    first, _ = idx.query(query, k=10, exact=exact)
    assert idx.mark_deleted(first[:3].tolist()) == 3
    assert idx.mark_deleted(first[:1].tolist()) == 0  # already deleted: skipped
    again, _ = idx.query(query, k=10, exact=exact)
    assert not set(first[:3].tolist()) & set(again.tolist()) and len(again) == 10
    batch, _ = idx.query(np.repeat(query[None, :], 20, axis=0), k=10, exact=exact)
    assert not set(first[:3].tolist()) & set(batch.ravel().tolist())
    assert len(idx) == 1497 and idx.deleted == 3 and 7 not in idx.ids()[:0]


def test_added_and_updated_items_are_found_and_the_index_grows(index):
    idx, vectors = index
    query = vectors[3]
    idx.add_items(query[None, :] * 1.0, [5000])  # a new id beside its twin
    ids, _ = idx.query(query, k=2, exact=True)
    assert set(ids.tolist()) == {3, 5000}
    graph, _ = idx.query(query, k=2, exact=False)
    assert set(graph.tolist()) == {3, 5000}
    many = np.random.default_rng(1).standard_normal((3000, 12)).astype(np.float32)
    idx.add_items(many, np.arange(10_000, 13_000))  # beyond the capacity: resize_index
    assert len(idx) == 1500 + 1 + 3000
    every, _ = idx.query(many[0], k=len(idx), exact=True)
    assert set(range(10_000, 13_000)) <= set(every.tolist())
    exact, _ = idx.query(many[:20], k=10, exact=True)
    graph, _ = idx.query(many[:20], k=10, exact=False)
    assert np.mean([len(set(g) & set(e)) / 10 for g, e in zip(graph, exact)]) > 0.9
    loaded = ItemIndex.from_bytes(idx.to_bytes())
    assert len(loaded) == len(idx) and set(loaded.query(many[:20], k=10, exact=False)[0].ravel()) == set(graph.ravel())
    idx.mark_deleted([3])
    idx.add_items(-query[None, :], [3])  # an update brings a deleted id back with its new vector
    for exact in (True, False):
        ids, scores = idx.query(query, k=len(idx), exact=exact)
        expected = -1.0 if idx.space == "cosine" else -float(query @ query)
        assert ids[0] == 5000 and scores[ids.tolist().index(3)] == pytest.approx(expected, rel=1e-4)
    with pytest.raises(InvalidModelData, match="replaced in place"):
        idx.to_bytes()


@pytest.mark.parametrize("exact", [False, True])
def test_a_changed_vector_replaces_the_old_one_everywhere(index, exact, monkeypatch):
    """A new vector for a live id: found by it, never by the old one, counted once, read back as the new one."""
    from vectorstore.store.index import filtered

    monkeypatch.setattr(filtered, "EXACT_ALLOWED", 0)  # filtered queries by hnswlib's filter unless exact
    monkeypatch.setattr(filtered, "EXACT_PRODUCT", 0)
    idx, vectors = index
    moved = vectors[40] * 0 + vectors[900]  # item 40 takes item 900's direction
    for _ in range(3):  # changed again and again
        idx.add_items(moved[None, :], [40])
    assert len(idx) == 1500 and idx.ids().size == 1500 and 40 in idx.ids().tolist()
    near_900 = idx.query(vectors[900], k=3, exact=exact)[0].tolist()
    assert 40 in near_900 and 900 in near_900
    assert 40 not in idx.query(vectors[40], k=5, exact=exact)[0].tolist()
    unit = moved / np.linalg.norm(moved) if idx.space == "cosine" else moved
    assert np.allclose(idx.get_vectors([40])[0], unit, atol=1e-5)
    batch = idx.query(np.stack([vectors[900]] * 20), k=3, exact=exact)[0]
    assert all(40 in row for row in batch.tolist())
    even = filtered.search(idx, vectors[900], 3, filtered.AllowedIds(np.arange(0, 1500, 2)), exact=exact)[0].tolist()
    assert 40 in even and all(i % 2 == 0 for i in even)
    assert idx.mark_deleted([40]) == 1 and 40 not in idx.query(vectors[900], k=10, exact=exact)[0].tolist()
    assert len(idx) == 1499


def test_bad_additions_are_refused_naming_the_problem(index):
    idx, _ = index
    with pytest.raises(InvalidModelData, match="dimension 3"):
        idx.add_items(np.zeros((1, 3), np.float32), [9000])
    with pytest.raises(InvalidModelData, match="NaN"):
        idx.add_items(np.full((1, 12), np.nan, np.float32), [9000])
    with pytest.raises(InvalidModelData, match="unique"):
        idx.add_items(np.zeros((2, 12), np.float32), [9000, 9000])
    with pytest.raises(InvalidModelData, match="id 99999 is not in the index"):
        idx.mark_deleted([99999])


def test_queries_run_while_the_index_changes(index):
    idx, vectors = index
    rng = np.random.default_rng(2)
    stop, errors, deleted = threading.Event(), [], set()

    def ask() -> None:
        while not stop.is_set():
            try:
                ids, _ = idx.query(vectors[rng.integers(1500)], k=10)
                if set(ids.tolist()) & set(list(deleted)[:-1]):  # the newest may race with this query
                    errors.append("a deleted id was returned")
            except Exception as exc:  # noqa: BLE001 - any failure fails the test
                errors.append(repr(exc))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for b in range(100):  # grows past the capacity several times
            idx.add_items(rng.standard_normal((40, 12)).astype(np.float32), np.arange(2000 + 40 * b, 2040 + 40 * b))
            idx.mark_deleted([b])
            deleted.add(b)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert len(idx) == 1500 + 4000 - 100


def test_a_loaded_index_with_deletions_answers_exactly(index):
    idx, vectors = index
    loaded = ItemIndex.from_bytes(idx.to_bytes())  # no exact copy yet: made after the deletion
    loaded.mark_deleted([0, 1])
    ids, _ = loaded.query(vectors[0], k=20, exact=True)
    assert len(ids) == 20 and not {0, 1} & set(ids.tolist())


@pytest.mark.parametrize("exact", [False, True])
def test_one_change_adds_updates_and_deletes_together(index, exact):
    idx, vectors = index
    query = vectors[11]
    first, _ = idx.query(query, k=5, exact=exact)
    new = np.stack([query, vectors[20] + 0.01]).astype(np.float32)
    # 9000 is new, 20 gets a new vector; the first two neighbours go; 7777 is not held (skipped)
    assert idx.change(new, [9000, 20], [*first[:2].tolist(), 7777]) == 2
    ids, _ = idx.query(query, k=5, exact=exact)
    assert 9000 in ids.tolist() and not set(first[:2].tolist()) & set(ids.tolist())
    assert len(idx) == 1500 + 1 - 2 and idx.deleted == 2
    assert idx.change(None, [], [9000]) == 1 and 9000 not in idx.query(query, k=5, exact=exact)[0].tolist()
    with pytest.raises(InvalidModelData, match="dimension"):
        idx.change(np.ones((1, 3), np.float32), [1])


def test_vectors_added_longer_than_the_radius_are_found(monkeypatch):
    """Issue 28, item 17: 1,000 vectors re-added 3x longer than the augmented index's radius are found as exact
    search finds them (recall@10 was 0.0), filtered or not, and a deleted one is not."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    idx = ItemIndex.build(vectors, space="ip", mips="augmented", M=16, ef=64)
    radius = float(np.linalg.norm(vectors, axis=1).max())
    long = rng.standard_normal((1000, 16)).astype(np.float32)
    long *= 3 * radius / np.linalg.norm(long, axis=1, keepdims=True)
    ids = np.arange(1000, 2000)
    idx.add_items(long, ids)
    queries = rng.standard_normal((50, 16)).astype(np.float32)
    graph, _ = idx.query(queries, k=10, exact=False)
    truth, _ = idx.query(queries, k=10, exact=True)
    recall = np.mean([len(set(g) & set(t)) / 10 for g, t in zip(graph.tolist(), truth.tolist())])
    assert np.isin(truth, ids).mean() > 0.9 and recall > 0.95
    one, _ = idx.query(queries[0], k=10, exact=False)
    assert one.tolist() == truth[0].tolist()
    idx.mark_deleted([int(one[0])])
    assert int(one[0]) not in idx.query(queries[0], k=10, exact=False)[0].tolist()
    import vectorstore.store.index.filtered as filtered

    monkeypatch.setattr(filtered, "EXACT_ALLOWED", 0)  # thresholds of a large catalogue: hnswlib's filter answers
    monkeypatch.setattr(filtered, "EXACT_PRODUCT", 0)
    allowed = AllowedIds(np.arange(0, 3000, 2))
    with_filter, _ = search_allowed(idx, queries[1], 10, allowed, exact=False)
    by_exact, _ = search_allowed(idx, queries[1], 10, allowed, exact=True)
    assert with_filter.tolist() == by_exact.tolist() and np.isin(by_exact, ids).mean() > 0.5
