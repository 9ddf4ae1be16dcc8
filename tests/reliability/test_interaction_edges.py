"""Interactions at the edges: 20-digit ids, extreme weights, NUL bytes in ids, float ids, malformed lines.

Each case through the public API (``Interactions.read`` / ``from_frame``) and the command line
(``ea eval recsys`` in process, ``ea train graph --wait`` through the session's worker): an accepted input
trains and serves with its ids as text; a refused one is one line naming the file and the line (exit 2, no
traceback) and publishes nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _reliability import community_frame
from click.testing import CliRunner

from recsys import Interactions
from recsys.data._ingest import MAX_WEIGHT, MIN_WEIGHT
from recsys.exceptions import InvalidInteractions
from vectorstore import ModelNotFound, ModelRegistry
from workers.cli import main as cli

BIG = 12345678901234567890  # 20 digits: beyond int64


def _user_lines(path: Path, users: int = 24, items: int = 12, big_user: int | None = 3) -> Path:
    """A LightGCN-format file (``user item item ...``) of planted communities; user ``big_user`` has a
    20-digit id, and so has one item."""
    lines = []
    for u in range(users):
        own = [j for j in range(items) if j % 3 == u % 3]
        uid = BIG + u if u == big_user else u
        lines.append(" ".join(map(str, [uid, *own[: 3 + u % 2], *([BIG] if u % 3 == 0 else [])])))
    path.write_text("\n".join(lines) + "\n")
    return path


def _eval(train: Path, test: Path, tmp: Path, name: str):
    return CliRunner().invoke(cli, ["eval", "recsys", "--train", str(train), "--test", str(test), "--k", "5",
                                    "--recs-out", str(tmp / "recs.csv"), "--name", name])


def _train_graph(path: Path, name: str):
    return CliRunner().invoke(cli, ["train", "graph", "--interactions", str(path), "--name", name, "--wait"])


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _nothing_published(name: str) -> None:
    with pytest.raises(ModelNotFound):
        ModelRegistry().versions(name)


# -- 20-digit ids -----------------------------------------------------------------------------------------
def test_twenty_digit_ids_are_text_in_every_format(tmp_path: Path) -> None:
    data = Interactions.read(_user_lines(tmp_path / "train.txt"))
    assert str(BIG + 3) in data.user_ids and str(BIG) in data.item_ids
    frame = pd.DataFrame({"user": [str(BIG), "7"], "item": ["1", str(BIG + 1)]})
    frame.to_csv(tmp_path / "big.csv", index=False)
    assert set(Interactions.read(tmp_path / "big.csv").user_ids) == {str(BIG), "7"}
    (tmp_path / "big.tsv").write_text(f"{BIG}\t{BIG + 1}\t5\t881250949\n")
    assert Interactions.read(tmp_path / "big.tsv").item_ids.tolist() == [str(BIG + 1)]
    assert Interactions.from_frame(pd.DataFrame({"user": [BIG, 10**30], "item": [1, 2]})).user_ids.tolist() == [
        str(BIG), str(10**30)]


def test_ea_eval_recsys_serves_twenty_digit_ids(tmp_path: Path, model_name: str) -> None:
    train = _user_lines(tmp_path / "train.txt")
    test = tmp_path / "test.txt"
    test.write_text(f"{BIG + 3} 0 6\n1 4\n")
    result = _eval(train, test, tmp_path, model_name)
    assert result.exit_code == 0, result.output
    recs = pd.read_csv(tmp_path / "recs.csv", dtype=str)
    assert str(BIG + 3) in set(recs["user"])


# -- weights --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight", ["1e308", "1e-320", "1e39", "5e-13"])
def test_weights_beyond_the_range_are_refused_with_the_line(weight: str, tmp_path: Path, celery_worker,
                                                            model_name: str) -> None:
    path = tmp_path / "train.csv"
    frame = community_frame(users=20, items=12).assign(weight="1")
    frame.loc[7, "weight"] = weight
    frame.to_csv(path, index=False)
    expected = f"line 9: weight='{weight}' is outside {MIN_WEIGHT:g}..{MAX_WEIGHT:g}"
    with pytest.raises(InvalidInteractions, match="1 bad line") as err:
        Interactions.read(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    with pytest.raises(InvalidInteractions, match="row 8: weight="):
        Interactions.from_frame(frame.assign(weight=pd.to_numeric(frame["weight"])))
    _one_line_error(_eval(path, path, tmp_path, model_name), "InvalidInteractions", expected)
    _one_line_error(_train_graph(path, model_name), "InvalidInteractions", expected)
    _nothing_published(model_name)


def test_weights_at_the_ends_of_the_range_train_finite_vectors(tmp_path: Path) -> None:
    from recsys import make_model

    frame = community_frame(users=30, items=12)
    frame["weight"] = np.where(np.arange(len(frame)) % 2, MAX_WEIGHT, MIN_WEIGHT)
    data = Interactions.from_frame(frame)
    assert np.isfinite(data.weights).all() and (data.weights > 0).all()
    for algorithm, params in (("spectral", {}), ("node2vec", {"dim": 8, "walk_length": 10, "walks_per_node": 2,
                                                               "window": 3, "workers": 1, "seed": 1})):
        users, items = make_model(algorithm, **params).fit(data).scoring_vectors()
        assert np.isfinite(users).all() and np.isfinite(items).all(), algorithm


# -- NUL bytes ------------------------------------------------------------------------------------------
def test_a_nul_byte_in_an_id_is_refused_with_its_line_not_merged(tmp_path: Path, celery_worker,
                                                                 model_name: str) -> None:
    rows = ["user,item"] + [f"u{i},i{i % 40}" for i in range(8000)]  # past the 64 KiB sniffed for binary
    rows[7001] = "ab\x00cd,i1"
    rows[7002] = "ab,i2"
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    assert path.stat().st_size > 1 << 16
    with pytest.raises(InvalidInteractions, match=r"line 7002 holds a NUL byte"):
        Interactions.read(path)
    (tmp_path / "u.data").write_text("1\t2\t5\t881250949\n" * 6000 + "3\x004\t2\t5\t881250949\n")
    with pytest.raises(InvalidInteractions, match=r"line 6001 holds a NUL byte"):
        Interactions.read(tmp_path / "u.data")
    (tmp_path / "train.txt").write_text("1 2 3\n" * 12000 + "4 5\x006 7\n")
    with pytest.raises(InvalidInteractions, match=r"line 12001: '5\?6' is not an integer id \(field 2\)"):
        Interactions.read(tmp_path / "train.txt")
    frame = pd.DataFrame({"user": ["a\x00", "a", "b\x00c", "b"], "item": ["x", "y", "x", "y\x00"]})
    with pytest.raises(InvalidInteractions, match=r"3 bad row.*row 1: user id holds a NUL byte.*row 3.*row 4: item"):
        Interactions.from_frame(frame)
    _one_line_error(_eval(path, path, tmp_path, model_name), "InvalidInteractions", "line 7002 holds a NUL byte")
    _one_line_error(_train_graph(path, model_name), "InvalidInteractions", "line 7002 holds a NUL byte")
    _nothing_published(model_name)


# -- float ids from Parquet -------------------------------------------------------------------------------
def _parquet_or_skip(frame: pd.DataFrame, path: Path) -> Path:
    try:
        frame.to_parquet(path)
    except ImportError:
        pytest.skip("no working pyarrow")
    return path


def test_float_ids_from_parquet_read_as_integers_everywhere(tmp_path: Path, model_name: str) -> None:
    frame = community_frame(users=24, items=12)
    numeric = pd.DataFrame({"user": frame["user"].str[1:].astype(float), "item": frame["item"].str[1:].astype(float)})
    train = _parquet_or_skip(numeric, tmp_path / "train.parquet")
    data = Interactions.read(train)
    assert set(data.user_ids) == {str(u) for u in range(24)} and "1.0" not in set(data.item_ids)
    # An integer column with a gap comes back from Parquet as floats: its ids read as the integers too.
    gappy = pd.DataFrame({"user": pd.array([1, 2, None], dtype="Int64"), "item": [3, 4, 5]})
    with pytest.raises(InvalidInteractions, match="row 3: missing user id"):
        Interactions.read(_parquet_or_skip(gappy, tmp_path / "gappy.parquet"))
    assert Interactions.from_frame(gappy.dropna().astype(float)).user_ids.tolist() == ["1", "2"]
    # A test file read separately (CSV text, or Parquet integers) names the same users and items.
    test_csv = tmp_path / "test.csv"
    pd.DataFrame({"user": ["0", "1", "2"], "item": ["3", "4", "5"]}).to_csv(test_csv, index=False)
    aligned = data.align(Interactions.read(test_csv))
    assert aligned.dropped["users"] == 0 and aligned.dropped["items"] == 0
    test_parquet = _parquet_or_skip(pd.DataFrame({"user": [0, 1], "item": [3.0, 4.0]}), tmp_path / "test.parquet")
    assert data.align(Interactions.read(test_parquet)).dropped == {"rows": 0, "users": 0, "items": 0}
    result = _eval(train, test_csv, tmp_path, model_name)
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(tmp_path / "recs.csv", dtype=str)["user"]) == {"0", "1", "2"}


@pytest.mark.parametrize("value", [2.0**60, 1.5, math.inf])
def test_float_ids_that_are_not_exact_integers_are_refused(value: float) -> None:
    frame = pd.DataFrame({"user": [1.0, 2.0], "item": [3.0, value]})
    with pytest.raises(InvalidInteractions, match=r"row 2: item id is a float beyond 2\*\*53 or with a fraction"):
        Interactions.from_frame(frame)


# -- the user item item ... format -----------------------------------------------------------------------
@pytest.mark.parametrize("line, field", [("7 8 x9", 3), ("7 8.5 9", 2), ("seven 8", 1), ("7 ² 9", 2)])
def test_a_malformed_user_line_names_its_line_and_field(line: str, field: int, tmp_path: Path, celery_worker,
                                                       model_name: str) -> None:
    path = _user_lines(tmp_path / "train.txt", big_user=None)
    text = path.read_text().splitlines()
    text.insert(4, line)
    path.write_text("\n".join(text) + "\n")
    expected = f"line 5: {line.split()[field - 1]!r} is not an integer id (field {field})"
    with pytest.raises(InvalidInteractions, match="1 bad line") as err:
        Interactions.read(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    _one_line_error(_eval(path, path, tmp_path, model_name), "InvalidInteractions", expected)
    _one_line_error(_train_graph(path, model_name), "InvalidInteractions", expected)
    _nothing_published(model_name)
