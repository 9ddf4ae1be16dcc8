"""Filtered queries of a published model on a real Redis: only matching items, k of them, exact recall, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import GraphEmbeddings, Interactions, RecommendationClient, publish_embeddings
from recsys.exceptions import InvalidFilter
from vectorstore import ModelRegistry

N_ITEMS, N_USERS, DIM = 3000, 200, 16
GENRES = ["Comedy", "Drama", "Horror", "Action"]


def metadata() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "item": [f"i{j}" for j in range(N_ITEMS)],
        "genre": [GENRES[j % 4] for j in range(N_ITEMS)],
        "year": [1950 + j % 70 for j in range(N_ITEMS)],
        "rare": [j % 100 == 0 for j in range(N_ITEMS)],  # 1% of the items
        "price": [None if j % 10 == 0 else float(rng.uniform(1, 100)) for j in range(N_ITEMS)],
    })


@pytest.fixture(scope="module")
def catalogue(redis_url, tmp_path_factory):
    """A published model of 3,000 items whose scores favour a few popular, non-matching items."""
    from vectorstore import get_settings

    settings = get_settings()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([(f"u{u}", f"i{j}") for u in range(N_USERS)
                          for j in rng.choice(N_ITEMS, size=15, replace=False)], columns=["user", "item"])
    rated = set(frame.item)  # once: a set per item made this fixture take 10 s
    frame = pd.concat([frame, pd.DataFrame({"user": "u0", "item": [f"i{j}" for j in range(N_ITEMS)
                                                                    if f"i{j}" not in rated]})])
    inter = Interactions.from_frame(frame)
    items = rng.standard_normal((inter.n_items, DIM)).astype(np.float32)
    items *= rng.uniform(0.5, 2.0, (inter.n_items, 1)).astype(np.float32)
    users = rng.standard_normal((inter.n_users, DIM)).astype(np.float32)
    meta = metadata().set_index("item").reindex(inter.item_ids.astype(str)).reset_index()
    columns = {c: [None if isinstance(v, float) and v != v else v for v in meta[c].tolist()]
               for c in meta.columns if c != "item"}
    columns = {c: [v.item() if isinstance(v, np.generic) else v for v in vals] for c, vals in columns.items()}
    registry = ModelRegistry(settings)
    name = "filters" + str(rng.integers(1 << 30))
    publish_embeddings(registry, name, inter, GraphEmbeddings(users, items, "ip"), algorithm="synthetic",
                       item_metadata=columns)
    with RecommendationClient(model=name, settings=settings, listen=False, refresh_interval=0) as client:
        yield client, meta.set_index("item"), users, items, inter


def exact_filtered(client, vector, mask_ids, exclude, k):
    model = client._model
    scores = model.item_vectors @ vector
    allowed = np.zeros(model.n_items, bool)
    allowed[mask_ids] = True
    allowed[list(exclude)] = False
    scores[~allowed] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    return [model.item_ids[i] for i in top if np.isfinite(scores[i])]


def matching(meta: pd.DataFrame, predicate) -> set[str]:
    return {item for item, row in meta.iterrows() if predicate(row)}


@pytest.mark.parametrize(("expression", "predicate"), [
    ('genre == "Comedy" and year >= 1990', lambda r: r.genre == "Comedy" and r.year >= 1990),
    ('genre in ["Horror", "Drama"]', lambda r: r.genre in ("Horror", "Drama")),
    ("rare == true", lambda r: bool(r.rare)),
    ("1960 <= year < 1962 or price > 99", lambda r: 1960 <= r.year < 1962 or (r.price == r.price and r.price > 99)),
    ("not (genre != 'Action') and price <= 50", lambda r: r.genre == "Action" and r.price == r.price
     and r.price <= 50),
])
def test_filtered_queries_return_only_matching_items_and_k_of_them(catalogue, expression, predicate):
    client, meta, _, _, _ = catalogue
    good = matching(meta, predicate)
    assert len(good) >= 20
    for user in ("u3", "u17", "u150"):
        rec = client.recommend(user, k=20, filter=expression, fields=["genre"])
        assert len(rec) == 20 and set(rec.items) <= good, expression
    many = client.recommend_many(["u3", "u17", "nobody"], k=20, filter=expression)
    assert all(len(r) == 20 and set(r.items) <= good for r in many)
    assert many[2].source == "popularity"
    rec = client.recommend_for_history(["i1", "i2", "i3"], k=20, filter=expression)
    assert len(rec) == 20 and set(rec.items) <= good and not {"i1", "i2", "i3"} & set(rec.items)
    rec = client.similar_items("i5", k=20, filter=expression)
    assert len(rec) == 20 and set(rec.items) <= good - {"i5"}
    rec = client.similar_items("i5", k=20, filter=expression, metric="cosine")
    assert len(rec) == 20 and set(rec.items) <= good - {"i5"}


def test_a_filter_matching_fewer_than_k_returns_all_of_them_and_none_matching_none(catalogue):
    client, meta, _, _, _ = catalogue
    few = matching(meta, lambda r: r.year == 1951 and r.genre == "Drama")
    rec = client.recommend_for_history(["i1"], k=100, filter='year == 1951 and genre == "Drama"')
    assert set(rec.items) == few - {"i1"}
    assert len(client.recommend("u3", k=10, filter='genre == "Western"')) == 0


@pytest.mark.parametrize("graph", [False, True], ids=["exact", "graph"])
@pytest.mark.parametrize("share", ["rare == true", "genre == 'Comedy'", "year < 1985"])
def test_filtered_results_are_the_exact_filtered_top_k(catalogue, share, graph, monkeypatch):
    """Recall@10 of filtered results against exact search over the matching items, for 1%, 25% and 50%, by
    exact search over the allowed items and (thresholds lowered, as on a large catalogue) hnswlib's filter."""
    from vectorstore.store.index import filtered

    if graph:
        monkeypatch.setattr(filtered, "EXACT_ALLOWED", 10)
        monkeypatch.setattr(filtered, "EXACT_PRODUCT", 0)
    client, meta, users, _, inter = catalogue
    allowed = client._filters.allowed(client._model, share).ids
    hits = total = 0
    for u in range(0, N_USERS, 5):
        user = str(inter.user_ids[u])
        seen = set(client._model.item_ids[np.frombuffer(
            client.registry.table_get(client.name, client.model_version, "seen", [user])[0], "<i4")])
        truth = exact_filtered(client, users[u], allowed, [client._model.item_pos[i] for i in seen], 10)
        got = client.recommend(user, k=10, filter=share).items
        hits += len(set(truth) & set(got))
        total += len(truth)
    assert hits / total >= 0.95


def test_precomputed_lists_serve_a_filter_when_k_of_their_items_pass(catalogue, celery_worker):
    from workers.jobs import submit

    client, meta, _, _, _ = catalogue
    submit("ea.precompute_recommendations", name=client.name, version=client.model_version, n=50).wait(timeout=120)
    client._watcher.check_precomputed()  # this client does not poll (refresh_interval=0): look now
    base = client.recommend("u3", k=50)
    assert base.source == "precomputed"
    common = pd.Series([meta.loc[i, "genre"] for i in base.items]).value_counts().index[0]
    rec = client.recommend("u3", k=5, filter=f"genre == '{common}'")
    assert rec.source == "precomputed" and all(meta.loc[i, "genre"] == common for i in rec.items)
    rec = client.recommend("u3", k=5, filter="rare == true")  # the list holds fewer than 5: the index answers
    assert rec.source == "index" and len(rec) == 5 and all(meta.loc[i, "rare"] for i in rec.items)


@pytest.mark.parametrize(("expression", "message"), [
    ("genr == 'Comedy'", "unknown field 'genr' at position 0; .* has fields \\['genre', 'price', 'rare', 'year'\\]"),
    ("year == '1990'", "field 'year' at position 0 holds number values, compared with a string"),
    ("genre > 3", "holds string values, compared with a number"),
    ("rare < true", "booleans compare only with == and !="),
    ("year >", "expected a value"),
])
def test_bad_filters_are_refused_before_any_lookup(catalogue, expression, message):
    client, _, _, _, _ = catalogue
    for call in (lambda: client.recommend("u3", filter=expression),
                 lambda: client.recommend_many(["u3"], filter=expression),
                 lambda: client.similar_items("i5", filter=expression),
                 lambda: client.recommend_for_history(["i5"], filter=expression)):
        with pytest.raises(InvalidFilter, match=message):
            call()


def test_missing_values_match_no_comparison_and_not_of_them_neither(catalogue):
    client, meta, _, _, _ = catalogue
    model = client._model
    priced = set(client._filters.allowed(model, "price > 0").ids.tolist())
    unpriced = set(client._filters.allowed(model, "not (price > 0)").ids.tolist())
    missing = {model.item_pos[i] for i in meta.index[meta.price.isna()]}
    assert not priced & missing and not unpriced & missing and len(priced) + len(missing) == N_ITEMS


def test_changed_metadata_is_filtered_by_its_new_values(catalogue):
    """Metadata changed while serving (deltas) is read anew: the allowed set follows the state it was built for."""
    client, _, _, _, _ = catalogue
    model = client._model
    before = client._filters.allowed(model, "year == 1950")
    pos = model.item_pos["i1"]
    old = model.metadata["year"][pos]
    try:
        model.metadata["year"][pos] = 1950
        object.__setattr__(model, "metadata_revision", getattr(model, "metadata_revision", 0) + 1)
        after = client._filters.allowed(model, "year == 1950")
        assert pos in after and pos not in before
        assert "i1" in client.recommend_for_history(["i2"], k=len(after), filter="year == 1950").items
    finally:
        model.metadata["year"][pos] = old
        object.__setattr__(model, "metadata_revision", model.metadata_revision + 1)


def test_cli_recommend_and_similar_take_a_filter(catalogue):
    import json

    from click.testing import CliRunner

    from workers.cli import main

    client, meta, _, _, _ = catalogue
    out = CliRunner().invoke(main, ["recommend", "--user", "u3", "--k", "5", "--model", client.name, "--json",
                                    "--filter", "genre == 'Drama' and year < 1990", "--field", "genre"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert len(body["items"]) == 5 and set(body["fields"]["genre"]) == {"Drama"}
    assert all(meta.loc[i, "year"] < 1990 for i in body["items"])
    out = CliRunner().invoke(main, ["similar", "--item", "i5", "--model", client.name, "--json", "--metric", "cosine",
                                    "--filter", "rare == true"])
    assert out.exit_code == 0, out.output
    assert all(meta.loc[i, "rare"] for i in json.loads(out.output)["items"])
    out = CliRunner().invoke(main, ["recommend", "--user", "u3", "--model", client.name, "--filter", "genre = 1"])
    assert out.exit_code == 2 and "'=' at position 6" in out.output


class _Model:
    """What a filter reads of a serving model: name, version, metadata, catalogue size."""

    def __init__(self, metadata: dict[str, list]) -> None:
        self.name, self.version, self.metadata = "m", 1, metadata
        self.n_items = len(next(iter(metadata.values())))


def test_an_integer_beyond_float64_stored_before_the_checks_costs_its_item_not_the_field():
    """Issue 28, item 4: ``year`` = 1 followed by 400 zeros made every filter on ``year`` raise OverflowError."""
    from recsys.serving._filter_cache import FilterCache

    cache = FilterCache()
    model = _Model({"year": [1990, 10**400, None, 2001, 2001], "tag": ["a", 10**400, "b", "a", None]})
    assert cache.allowed(model, "year >= 2000").ids.tolist() == [3, 4]
    assert cache.allowed(model, "year in [1990, 2001]").ids.tolist() == [0, 3, 4]
    assert cache.allowed(model, "year not in [2001]").ids.tolist() == [0]
    assert cache.allowed(model, 'tag in ["a", "zz"]').ids.tolist() == [0, 3]


def test_cached_filters_are_bounded_by_bytes():
    """Issue 28, item 15: 64 distinct broad filters on a million items kept 488 MB."""
    from recsys.serving._filter_cache import FilterCache

    n = 100_000
    model = _Model({"year": list(range(n))})
    cache = FilterCache(max_bytes=4 << 20)  # a broad filter here holds about 1.6 MB
    kept = [cache.allowed(model, f"year >= {i}") for i in range(8)]
    assert cache.allowed(model, "year >= 7") is kept[-1]  # the newest are kept
    assert cache.allowed(model, "year >= 0") is not kept[0]  # the oldest went, and is computed again
    assert all(len(a) == n - i for i, a in enumerate(kept))
