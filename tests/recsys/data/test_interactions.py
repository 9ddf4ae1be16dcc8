"""Interactions: validation, id maps, file formats, matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import Interactions, InvalidInteractions, UnknownItem, UnknownUser


def frame(rows, columns=("user", "item", "weight")):
    return pd.DataFrame(rows, columns=list(columns))


def test_duplicates_summed_and_ids_dense_in_order_of_appearance():
    df = frame([("b", "x", 1.0), ("a", "y", 2.0), ("b", "x", 3.0), ("a", "x", 0.5)])
    x = Interactions.from_frame(df)
    assert list(x.user_ids) == ["b", "a"] and list(x.item_ids) == ["x", "y"]
    assert len(x) == 3 and x.n_users == 2 and x.n_items == 2
    pairs = {(x.user_ids[u], x.item_ids[i]): w for u, i, w in zip(x.users, x.items, x.weights)}
    assert pairs == {("b", "x"): 4.0, ("a", "y"): 2.0, ("a", "x"): 0.5}
    assert x.users.dtype == np.int32 and x.weights.dtype == np.float32


def test_default_weight_and_latest_timestamp_kept():
    df = frame([(1, 10, 5), (1, 10, 9), (2, 10, 1)], columns=("user", "item", "timestamp"))
    x = Interactions.from_frame(df)
    assert x.weights.tolist() == [2.0, 1.0]
    assert x.timestamps.tolist() == [9.0, 1.0]
    assert list(x.user_ids) == ["1", "2"]  # external ids are strings


def test_arrays_are_immutable():
    x = Interactions.from_frame(frame([("a", "x", 1.0)]))
    with pytest.raises(ValueError):
        x.weights[0] = 3.0


@pytest.mark.parametrize("columns, missing", [(("user", "weight"), "item"), (("usr", "item"), "user")])
def test_missing_columns_named(columns, missing):
    with pytest.raises(InvalidInteractions, match=f"missing column.*{missing}"):
        Interactions.from_frame(pd.DataFrame([("a", 1)], columns=list(columns)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 0.0, "heavy"])
def test_bad_weights_rejected_with_row_numbers(bad):
    df = frame([("a", "x", 1.0), ("b", "y", bad), ("c", "z", 2.0), ("d", "z", bad)])
    with pytest.raises(InvalidInteractions) as err:
        Interactions.from_frame(df)
    msg = str(err.value)
    assert "2 bad row(s) of 4" in msg and "row 2:" in msg and "row 4:" in msg and "weight=" in msg


@pytest.mark.parametrize("bad", [None, np.nan, "", "  "])
def test_missing_ids_rejected(bad):
    df = frame([("a", "x", 1.0), (bad, "y", 1.0), ("c", bad, 1.0)])
    with pytest.raises(InvalidInteractions, match=r"row 2: missing user id; row 3: missing item id"):
        Interactions.from_frame(df)


def test_empty_frame_rejected():
    with pytest.raises(InvalidInteractions, match="empty"):
        Interactions.from_frame(frame([]))


def test_first_bad_rows_are_listed_but_all_counted():
    df = frame([("a", "x", -1.0)] * 50)
    with pytest.raises(InvalidInteractions, match="50 bad row") as err:
        Interactions.from_frame(df)
    assert str(err.value).count("row ") <= 6


def test_id_round_trip_and_unknown_ids():
    x = Interactions.from_frame(frame([("u1", "i1", 1.0), ("u2", "i2", 1.0), ("u1", "i3", 1.0)]))
    dense = x.user_index(["u2", "u1"])
    assert dense.tolist() == [1, 0] and list(x.user_ids[dense]) == ["u2", "u1"]
    assert x.item_index("i3") == 2 and isinstance(x.item_index("i3"), int)
    with pytest.raises(UnknownUser, match="'ghost'"):
        x.user_index(["u1", "ghost"])
    with pytest.raises(UnknownItem, match="'nope'"):
        x.item_index("nope")
    assert x.item_index(["i1", "nope"], missing=-1).tolist() == [0, -1]
    with pytest.raises(KeyError):  # the typed errors are KeyErrors too
        x.user_index("ghost")


def test_to_frame_round_trip():
    df = frame([("u1", "i1", 1.5), ("u2", "i2", 1.0), ("u1", "i3", 2.0)])
    back = Interactions.from_frame(Interactions.from_frame(df).to_frame())
    assert back.to_frame().equals(Interactions.from_frame(df).to_frame())


def test_matrices_and_seen():
    x = Interactions.from_frame(frame([("a", "x", 1.0), ("a", "y", 2.0), ("b", "y", 3.0)]))
    m = x.user_matrix()
    assert m.shape == (2, 2) and m.toarray().tolist() == [[1.0, 2.0], [0.0, 3.0]]
    g = x.graph()
    assert g.shape == (4, 4) and (g != g.T).nnz == 0
    dense = g.toarray()
    assert dense[:2, :2].sum() == 0 and dense[2:, 2:].sum() == 0  # bipartite: no user-user/item-item edge
    assert dense[1, 2 + 1] == 3.0  # user b -- item y (offset by n_users)
    assert x.seen(0).tolist() == [0, 1] and x.seen(1).tolist() == [1]
    with pytest.raises(UnknownUser):
        x.seen(5)


def test_align_drops_and_counts_unknowns():
    train = Interactions.from_frame(frame([("a", "x", 1.0), ("b", "y", 1.0)]))
    test = Interactions.from_frame(frame([("a", "y", 1.0), ("c", "x", 1.0), ("b", "z", 1.0), ("b", "x", 2.0)]))
    aligned = train.align(test)
    assert aligned.dropped == {"rows": 2, "users": 1, "items": 1}
    assert aligned.n_users == 2 and list(aligned.item_ids) == ["x", "y"]
    pairs = {(aligned.user_ids[u], aligned.item_ids[i]) for u, i in zip(aligned.users, aligned.items)}
    assert pairs == {("a", "y"), ("b", "x")}


def test_csv_read_in_chunks_equals_whole(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": rng.integers(0, 30, 500), "item": rng.integers(0, 40, 500),
                       "weight": rng.random(500) + 0.1, "timestamp": rng.integers(0, 10**6, 500)})
    path = tmp_path / "x.csv"
    df.to_csv(path, index=False)
    whole = Interactions.read(path)
    chunked = Interactions.read(path, chunksize=7)
    assert whole.to_frame().equals(chunked.to_frame())
    assert np.isclose(whole.weights.sum(), df.weight.sum())
    assert whole.to_frame().equals(Interactions.from_frame(df).to_frame())


def test_csv_errors_name_file_lines(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user,item,weight\na,x,1\nb,y,-2\n,z,1\n")
    with pytest.raises(InvalidInteractions, match=r"2 bad line.*line 3: weight='-2'.*line 4: missing user"):
        Interactions.read(path, chunksize=1)
    (tmp_path / "cols.csv").write_text("user,thing\na,x\n")
    with pytest.raises(InvalidInteractions, match="missing column.*item"):
        Interactions.read(tmp_path / "cols.csv")
    (tmp_path / "empty.csv").write_text("user,item\n")
    with pytest.raises(InvalidInteractions, match="empty"):
        Interactions.read(tmp_path / "empty.csv")


def test_parquet_read(tmp_path):
    # Parquet needs a pyarrow built for the installed numpy (pyarrow 26 with numpy 1.26 could not import).
    try:
        pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "probe.parquet")
    except ImportError:
        pytest.skip("no working pyarrow")
    df = frame([("a", "x", 1.0), ("b", "y", 2.0), ("a", "x", 1.0)])
    df.to_parquet(tmp_path / "x.parquet")
    x = Interactions.read(tmp_path / "x.parquet", chunksize=2)
    assert len(x) == 2 and sorted(x.weights.tolist()) == [2.0, 2.0]


def test_movielens_udata_format(tmp_path):
    path = tmp_path / "u1.base"
    path.write_text("1\t10\t5\t881250949\n1\t20\t3\t881250950\n2\t10\t1\t881250951\n")
    x = Interactions.read(path)
    assert (x.n_users, x.n_items, len(x)) == (2, 2, 3)
    assert x.weights.tolist() == [1.0, 1.0, 1.0] and x.timestamps[0] == 881250949
    path.write_text("1\t10\t5\t881250949\n1\t20\n")
    with pytest.raises(InvalidInteractions, match="line 2"):
        Interactions.read(path)


def test_user_lines_format(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("0 5 6 7\n1 5\n\n2\n3 8 5\n")
    x = Interactions.read(path)
    assert (x.n_users, x.n_items, len(x)) == (3, 4, 6)  # user 2 has no items: not a pair
    assert list(x.item_ids) == ["5", "6", "7", "8"]
    path.write_text("0 5 6\n1 x 7\n2 3\n4 5.5\n")
    with pytest.raises(InvalidInteractions, match=r"2 bad line.*line 2: 'x' is not.*line 4: '5.5'"):
        Interactions.read(path)
    path.write_text("\n\n")
    with pytest.raises(InvalidInteractions, match="empty"):
        Interactions.read(path)


def test_real_data_files(shared_data):
    base = Interactions.read(shared_data / "recsys/ml-100k/u1.base")
    assert (base.n_users, len(base)) == (943, 80000)
    train = Interactions.read(shared_data / "recsys/ml-1m/train.txt")
    assert (train.n_users, len(train)) == (6039, 590733)
    test = train.align(Interactions.read(shared_data / "recsys/ml-1m/test.txt"))
    assert test.n_items == train.n_items and len(test) + test.dropped["rows"] == 164848
