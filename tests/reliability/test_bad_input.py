"""Bad input: every malformed interactions file, series file or request gets a typed error naming the problem,
and none leaves partial state (no registry version, no keys).

A table of named cases plus hypothesis property tests, through the public entry points: ``Interactions.read``
/ ``from_frame``, ``train_and_publish``, an ``ea.train_graph`` job on a real worker, ``read_series`` /
``read_one_series``, ``ea detect``, and ``RecommendationClient`` requests. A file read in chunks is the file
read at once; the readers' speed and peak memory on big files are measured by ``bench/reading.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _reliability import copy_version
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from anomaly.exceptions import InvalidSeries, SeriesTooShort
from anomaly.series import read_one_series, read_series
from recsys import Interactions, RecommendationClient
from recsys.data._ingest import MAX_WEIGHT, MIN_WEIGHT
from recsys.exceptions import InvalidInteractions, InvalidRequest, UnknownItem, UnknownUser
from recsys.serving.recommendations import MAX_K
from recsys.training import train_and_publish
from vectorstore import ModelNotFound, ModelRegistry, Settings
from workers.cli import main as cli
from workers.exceptions import JobFailed
from workers.jobs import submit

TINY = {"dim": 8, "walk_length": 10, "walks_per_node": 3, "window": 3, "workers": 1, "seed": 3}


def _no_trace(registry: ModelRegistry, model: str) -> None:
    """Nothing of ``model`` exists: no version, no key."""
    with pytest.raises(ModelNotFound):
        registry.versions(model)
    assert not list(registry.client.scan_iter(f"{registry.settings.key_prefix}model:{{{model}}}*"))


# -- interactions: a table of named cases ------------------------------------------------------------------
BAD_FRAMES: dict[str, tuple[pd.DataFrame | object, str]] = {
    "missing item column": (pd.DataFrame({"user": ["a"], "weight": [1.0]}), "missing column"),
    "missing both columns": (pd.DataFrame({"u": ["a"], "i": ["b"]}), "missing column"),
    "weight is text": (pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "weight": ["1", "heavy"]}), "heavy"),
    "weight NaN": (pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "weight": [1.0, math.nan]}), "row 2"),
    "weight inf": (pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"], "weight": [math.inf, 1.0]}), "row 1"),
    "weight negative": (pd.DataFrame({"user": ["a"], "item": ["x"], "weight": [-1.0]}), "finite number > 0"),
    "weight zero": (pd.DataFrame({"user": ["a"], "item": ["x"], "weight": [0]}), "finite number > 0"),
    "missing user id": (pd.DataFrame({"user": ["a", None], "item": ["x", "y"]}), "missing user id"),
    "blank item id": (pd.DataFrame({"user": ["a"], "item": ["  "]}), "missing item id"),
    "bad timestamp": (pd.DataFrame({"user": ["a"], "item": ["x"], "timestamp": ["soon"]}), "timestamp"),
    "empty frame": (pd.DataFrame({"user": [], "item": []}), "empty"),
    "not a frame": ([("a", "x")], "DataFrame"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_interaction_frames_are_refused_by_name(case: str, model_name: str, settings: Settings) -> None:
    frame, needle = BAD_FRAMES[case]
    with pytest.raises(InvalidInteractions, match=needle):
        Interactions.from_frame(frame)
    if isinstance(frame, pd.DataFrame) and {"user", "item"} <= set(frame.columns):
        # The same through the training entry point: nothing trained, nothing published.
        path = Path(settings.data_dir) / f"{model_name}.csv"
        frame.to_csv(path, index=False)
        registry = ModelRegistry(settings)
        with pytest.raises(InvalidInteractions):
            train_and_publish(str(path), name=model_name, algorithm="node2vec", params=TINY, registry=registry)
        _no_trace(registry, model_name)


BAD_FILES: dict[str, str] = {
    "header only": "user,item\n",
    "short line": "user,item,weight\na,b,1\nc\n",
    "weight text in file": "user,item,weight\na,b,1\nc,d,lots\n",
    "missing column in file": "user,weight\na,1\n",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_interaction_files_are_refused_with_the_line(case: str, tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(BAD_FILES[case])
    with pytest.raises(InvalidInteractions, match=str(path)):
        Interactions.read(path)


@pytest.mark.parametrize("content", ["", "\n\n", 'user,item\n"a,b\n'], ids=["empty", "blank", "open quote"])
def test_unreadable_interaction_files_raise_invalid_interactions(content: str, tmp_path: Path) -> None:
    path = tmp_path / "interactions.csv"
    path.write_text(content)
    try:
        Interactions.read(path)
    except InvalidInteractions as exc:
        assert str(path) in str(exc)
        return
    raise AssertionError("no error")


def test_missing_file_is_a_clear_error(tmp_path: Path, model_name: str, settings: Settings) -> None:
    with pytest.raises(FileNotFoundError, match="no interactions file"):
        train_and_publish(str(tmp_path / "nope.csv"), name=model_name, registry=ModelRegistry(settings))
    _no_trace(ModelRegistry(settings), model_name)


EDGE_FRAMES: dict[str, tuple[pd.DataFrame, tuple[int, int]]] = {
    "one user": (pd.DataFrame({"user": ["a"] * 3, "item": ["x", "y", "z"]}), (1, 3)),
    "one item": (pd.DataFrame({"user": ["a", "b", "c"], "item": ["x"] * 3}), (3, 1)),
    "huge ids": (pd.DataFrame({"user": [10**30, "u" * 5000, "c"], "item": ["x", "y" * 3000, "x"]}), (3, 2)),
    "duplicate rows": (pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "x", "x"], "weight": [1, 2.5, 1]}),
                       (2, 1)),
}


@pytest.mark.parametrize("case", list(EDGE_FRAMES))
def test_edge_case_interactions_train_and_serve(case: str, model_name: str, settings: Settings) -> None:
    frame, (users, items) = EDGE_FRAMES[case]
    data = Interactions.from_frame(frame)
    assert (data.n_users, data.n_items) == (users, items)
    assert data.weights.sum() == pytest.approx(pd.to_numeric(frame.get("weight", pd.Series([1] * len(frame)))).sum())
    result = train_and_publish(data, name=model_name, algorithm="node2vec", params=TINY,
                               registry=ModelRegistry(settings))
    with RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0) as client:
        user = str(frame["user"].iloc[0])
        recs = client.recommend(user, k=5)
        assert recs.model_version == result.version
        seen = set(map(str, frame.loc[frame["user"] == frame["user"].iloc[0], "item"]))
        assert len(recs) <= items and not set(recs.items) & seen
        assert len(client.similar_items(str(frame["item"].iloc[0]), k=5)) <= items - 1


def test_bad_file_through_a_training_job_fails_the_job_and_publishes_nothing(
    celery_worker, tmp_path: Path, model_name: str, settings: Settings
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("user,item,weight\na,x,1\nb,y,NaN\nc,z,-2\n")
    handle = submit("ea.train_graph", interactions=str(path), model="node2vec", name=model_name, params=TINY)
    with pytest.raises(JobFailed, match=r"InvalidInteractions.*2 bad line\(s\) of 3.*line 3.*line 4"):
        handle.wait(timeout=120)
    _no_trace(ModelRegistry(settings), model_name)
    out = CliRunner().invoke(cli, ["train", "graph", "--interactions", str(path), "--name", model_name, "--wait"])
    assert out.exit_code == 2 and "InvalidInteractions" in out.output and "Traceback" not in out.output
    _no_trace(ModelRegistry(settings), model_name)


# -- interactions: properties ----------------------------------------------------------------------------
ids = st.one_of(st.text(min_size=0, max_size=8), st.integers(-(10**20), 10**20), st.none())
weights = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-3, 3))


def _bad_id(v: object) -> bool:
    return v is None or (isinstance(v, str) and (not v.strip() or "\x00" in v))  # a NUL would cut the id


def _good_weight(w: object) -> bool:
    return MIN_WEIGHT <= float(w) <= MAX_WEIGHT  # NaN is neither


@hsettings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(ids, ids, weights), min_size=1, max_size=20))
def test_from_frame_accepts_exactly_the_valid_rows(rows: list[tuple]) -> None:
    frame = pd.DataFrame(rows, columns=["user", "item", "weight"], dtype=object)
    bad = [i for i, (u, it, w) in enumerate(rows, start=1)
           if _bad_id(u) or _bad_id(it) or not _good_weight(w)]
    if bad:
        with pytest.raises(InvalidInteractions) as err:
            Interactions.from_frame(frame)
        assert f"{len(bad)} bad row(s) of {len(rows)}" in str(err.value)
        assert f"row {bad[0]}:" in str(err.value)
    else:
        data = Interactions.from_frame(frame)
        assert data.n_users == len({str(u) for u, _, _ in rows})
        assert data.n_items == len({str(i) for _, i, _ in rows})
        assert float(data.weights.sum()) == pytest.approx(sum(float(w) for *_, w in rows), rel=1e-4)
        assert len(data) == len({(str(u), str(i)) for u, i, _ in rows})  # duplicates summed


# -- series ----------------------------------------------------------------------------------------------
def _hours(n: int, start: str = "2024-01-01") -> list[str]:
    return [str(t) for t in pd.date_range(start, periods=n, freq="h")]


BAD_SERIES: dict[str, tuple[pd.DataFrame, type[Exception], str]] = {
    "missing column": (pd.DataFrame({"time": _hours(3), "value": [1, 2, 3]}), InvalidSeries, "missing column"),
    "bad timestamp": (pd.DataFrame({"timestamp": ["2024-01-01", "someday"], "value": [1, 2]}), InvalidSeries,
                      "unparseable"),
    "no rows": (pd.DataFrame({"timestamp": [], "value": []}), InvalidSeries, "no rows"),
    "too short": (pd.DataFrame({"timestamp": _hours(1), "value": [1.0]}), SeriesTooShort, "at least"),
    "no value at all": (pd.DataFrame({"timestamp": _hours(3), "value": [math.nan] * 3}), InvalidSeries, "missing"),
    "a text column": (pd.DataFrame({"timestamp": _hours(3), "value": ["high", "low", "high"]}), InvalidSeries,
                      "not numeric|text"),
}
# Real exports hold these; they are scored, one output row per input row (issue 15: refusing them refused a
# seventh of NAB's real files).
MESSY_SERIES: dict[str, pd.DataFrame] = {
    "duplicate timestamps": pd.DataFrame({"timestamp": ["2024-01-01", "2024-01-01", "2024-01-02"], "value": [1, 2, 3]}),
    "changing UTC offsets": pd.DataFrame({"timestamp": ["2024-01-01T00:00+00:00", "2024-01-01T02:00+01:00"],
                                          "value": [1, 2]}),
    "naive and aware": pd.DataFrame({"timestamp": ["2024-01-01T00:00+00:00", "2024-01-01 03:00"], "value": [1, 2]}),
    "long NaN gap": pd.DataFrame({"timestamp": _hours(8), "value": [1, *[math.nan] * 4, 6, 7, 8]}),
    "inf value": pd.DataFrame({"timestamp": _hours(3), "value": [1, math.inf, 3]}),
    "one text value": pd.DataFrame({"timestamp": _hours(3), "value": [1, "high", 3]}),
}


@pytest.mark.parametrize("case", list(BAD_SERIES))
def test_bad_series_are_refused_by_name(case: str, tmp_path: Path) -> None:
    frame, error, needle = BAD_SERIES[case]
    with pytest.raises(error, match=needle):
        read_series(frame)
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(error, match=needle):
        read_one_series(path)


@pytest.mark.parametrize("case", list(MESSY_SERIES))
def test_messy_series_are_read_row_for_row(case: str, tmp_path: Path) -> None:
    frame = MESSY_SERIES[case]
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    for source in (frame, path):
        series = read_one_series(source)
        assert len(series) == len(frame) and series.timestamps.is_monotonic_increasing
        assert np.isfinite(series.values).sum() == pd.to_numeric(frame["value"], errors="coerce").replace(
            [math.inf, -math.inf], math.nan).notna().sum()


def test_empty_series_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InvalidSeries, match="empty"):
        read_series(path)


def test_unsorted_series_is_sorted_and_gaps_kept_missing() -> None:
    frame = pd.DataFrame({"timestamp": ["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-04"],
                          "value": [3.0, 1.0, math.nan, 4.0]})
    series = read_one_series(frame)
    assert np.array_equal(series.values, [1.0, math.nan, 3.0, 4.0], equal_nan=True)
    assert series.timestamps.is_monotonic_increasing and series.rows.tolist() == [1, 2, 0, 3]


def _detect(path: Path, out: Path, train_until: int = 150):
    return CliRunner().invoke(cli, ["detect", "--input", str(path), "--train-until", str(train_until),
                                    "--scores-out", str(out), "--embedding", "raw"])


@pytest.mark.parametrize("case", ["duplicate timestamps", "changing UTC offsets", "long NaN gap"])
def test_ea_detect_scores_messy_series_row_for_row(case: str, tmp_path: Path) -> None:
    n = 200
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"timestamp": _hours(n), "value": np.sin(np.arange(n) / 5) + rng.normal(0, 0.1, n)})
    if case == "duplicate timestamps":
        frame.loc[57, "timestamp"] = frame.loc[56, "timestamp"]
    elif case == "changing UTC offsets":
        frame["timestamp"] = [t + ("+02:00" if i < 100 else "+01:00") for i, t in enumerate(frame["timestamp"])]
    else:
        frame.loc[40:50, "value"] = math.nan
    path, out = tmp_path / "series.csv", tmp_path / "scores.csv"
    frame.to_csv(path, index=False)
    result = _detect(path, out)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert len(scores) == n and scores["timestamp"].tolist() == frame["timestamp"].tolist()
    has_value = frame["value"].notna().to_numpy()
    assert np.isfinite(scores["score"][has_value]).all() and scores["score"][~has_value].isna().all()
    assert not scores["is_anomaly"][~has_value].any()


def test_ea_detect_refuses_a_file_without_values_with_exit_2(tmp_path: Path) -> None:
    path, out = tmp_path / "series.csv", tmp_path / "scores.csv"
    pd.DataFrame({"timestamp": _hours(200), "value": ["n/a"] * 200}).to_csv(path, index=False)
    result = _detect(path, out)
    assert result.exit_code == 2, result.output
    assert "InvalidSeries" in result.output and "Traceback" not in result.output
    assert not out.exists(), "a partial scores file was written"


def test_ea_detect_sorts_an_unsorted_series(tmp_path: Path) -> None:
    n = 200
    frame = pd.DataFrame({"timestamp": _hours(n), "value": np.sin(np.arange(n) / 5)})
    shuffled = frame.sample(frac=1.0, random_state=0)
    path, out = tmp_path / "series.csv", tmp_path / "scores.csv"
    shuffled.to_csv(path, index=False)
    result = _detect(path, out)
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert len(scores) == n and pd.to_datetime(scores["timestamp"]).is_monotonic_increasing
    assert np.isfinite(scores["score"]).all()


@hsettings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 30), st.one_of(st.floats(-1e6, 1e6), st.just(math.nan))),
                min_size=2, max_size=25))
def test_read_series_scores_any_rows_or_refuses_only_when_nothing_is_known(rows: list[tuple[int, float]]) -> None:
    frame = pd.DataFrame({"timestamp": [pd.Timestamp("2024-01-01") + pd.Timedelta(hours=h) for h, _ in rows],
                          "value": [v for _, v in rows]})
    try:
        series = read_one_series(frame)
    except InvalidSeries as exc:
        assert frame["value"].isna().all(), exc
        return
    # Row for row (a clock that steps back and replays, as in a DST fall-back hour, keeps the file's order).
    assert len(series) == len(rows) and sorted(series.rows.tolist()) == list(range(len(rows)))
    assert sorted(np.nan_to_num(series.values, nan=-7e9)) == sorted(np.nan_to_num(frame["value"], nan=-7e9))


# -- a large file passed by reference ----------------------------------------------------------------------
def test_a_file_read_in_chunks_is_the_file_read_at_once(tmp_path: Path) -> None:
    """Chunked reading (what bounds a big file's memory: bench/reading.py measures it) changes nothing read."""
    rows = 30_000
    path = tmp_path / "large.csv"
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 1_500, rows), rng.integers(0, 400, rows)
    path.write_text("user,item,weight\n" + "\n".join(
        f"user{a},item{b},{1 + (a + b) % 4}" for a, b in zip(u.tolist(), i.tolist())) + "\n")
    # By reference: the job message names the file, it does not carry it.
    assert len(json.dumps({"interactions": str(path), "name": "big"})) < 500
    whole, chunked = Interactions.read(path, chunksize=10**9), Interactions.read(path, chunksize=997)
    assert len(chunked) == len(whole) and chunked.n_users == whole.n_users and chunked.n_items == whole.n_items
    pd.testing.assert_frame_equal(chunked.to_frame().sort_values(["user", "item"], ignore_index=True),
                                  whole.to_frame().sort_values(["user", "item"], ignore_index=True))


# -- requests --------------------------------------------------------------------------------------------
@pytest.fixture
def client(trained_model: str, model_name: str, settings: Settings):
    copy_version(ModelRegistry(settings), trained_model, model_name)
    with RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0) as c:
        yield c


BAD_REQUESTS: dict[str, tuple[Callable, type[Exception], str]] = {
    "k zero": (lambda c: c.recommend("u0", k=0), InvalidRequest, "k=0"),
    "k negative": (lambda c: c.recommend("u0", k=-5), InvalidRequest, "k=-5"),
    "k huge": (lambda c: c.recommend("u0", k=10**12), InvalidRequest, "between 1 and"),
    "k float": (lambda c: c.recommend("u0", k=2.5), InvalidRequest, "integer"),
    "k text": (lambda c: c.recommend("u0", k="10"), InvalidRequest, "integer"),
    "k bool": (lambda c: c.recommend("u0", k=True), InvalidRequest, "integer"),
    "k None": (lambda c: c.similar_items("i0", k=None), InvalidRequest, "integer"),
    "user list": (lambda c: c.recommend(["u0"], k=3), InvalidRequest, "user id"),
    "user None": (lambda c: c.recommend(None, k=3), InvalidRequest, "user id"),
    "user float": (lambda c: c.recommend(1.5, k=3), InvalidRequest, "user id"),
    "unknown user strict": (lambda c: c.recommend("nobody", k=3, strict=True), UnknownUser, "nobody"),
    "unknown item": (lambda c: c.similar_items("no-such-item", k=3), UnknownItem, "no-such-item"),
    "item dict": (lambda c: c.similar_items({"i": 1}, k=3), InvalidRequest, "item id"),
    "exclude as string": (lambda c: c.recommend("u0", k=3, exclude="i1"), InvalidRequest, "collection"),
    "unknown field": (lambda c: c.recommend("u0", k=3, fields=["price"]), InvalidRequest, "price"),
    "many with bad user": (lambda c: c.recommend_many(["u0", object()], k=3), InvalidRequest, "user id"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_typed_errors(case: str, client: RecommendationClient) -> None:
    call, error, needle = BAD_REQUESTS[case]
    with pytest.raises(error, match=needle):
        call(client)
    assert client.recommend("u0", k=3).items  # and the client keeps serving


def test_unknown_user_without_strict_gets_popular_items(client: RecommendationClient) -> None:
    recs = client.recommend("nobody", k=4)
    assert recs.source == "popularity" and len(recs) == 4
    assert client.recommend_for_history(["unknown-1", "unknown-2"], k=3).source == "popularity"
    assert len(client.recommend("u0", k=MAX_K)) <= 60


@hsettings(max_examples=50, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.one_of(st.integers(-(10**15), 10**15), st.floats(), st.text(max_size=3), st.none(), st.booleans()))
def test_any_k_is_served_or_refused_as_invalid_request(client: RecommendationClient, k: object) -> None:
    try:
        recs = client.recommend("u1", k=k)
    except InvalidRequest:
        assert not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_K)
        return
    assert isinstance(k, int) and 1 <= k <= MAX_K and len(recs) <= k
