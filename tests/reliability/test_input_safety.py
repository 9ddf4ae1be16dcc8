"""Input files named by jobs: nothing of a file that is not plainly an input leaks, and ``EA_DATA_ROOT`` holds.

* A worker *process* whose environment holds a canary secret is sent ``/proc/self/environ`` and files that
  are not interaction tables or series (a ``.env``, a passwd-like file, a bare token, a CSV whose header is a
  secret): every job fails with the reader's typed error naming the file, and no 8 characters of the secret
  appear in the job's error, the result backend (the raw ``celery-task-meta`` value, traceback included),
  any key of the deployment, or the worker's log.
* Every reader (interactions, series, item metadata, a test file) quotes a file plainly of its format with
  a short excerpt at most, and a file that is not without quoting it.
* ``EA_DATA_ROOT``: a job naming a path outside it (directly, through ``..`` or through a symlink) fails
  with ``InputNotAllowed`` naming the path; a path inside is read.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _reliability import community_frame, wait_for

from anomaly.exceptions import InvalidSeries
from anomaly.series import read_series
from recsys import Interactions
from recsys.data.item_table import item_metadata_columns
from recsys.exceptions import InvalidInteractions, InvalidParameter
from recsys.training import train_and_publish
from vectorstore import ConfigurationError, InputNotAllowed, ModelNotFound, ModelRegistry, Settings, input_path
from workers.exceptions import JobFailed
from workers.jobs import submit

SECRET = "cnry" + uuid.uuid4().hex  # 36 characters no file of the project holds


def _windows(secret: str = SECRET, width: int = 8) -> list[str]:
    return [secret[i : i + width] for i in range(len(secret) - width + 1)]


def _assert_no_secret(texts: list[str], where: str) -> None:
    for text in texts:
        leaked = [w for w in _windows() if w in text]
        assert not leaked, f"{where} holds part of the secret ({leaked[0]!r}): {text[:300]!r}"


def _hostile_files(tmp: Path) -> dict[str, Path]:
    """Files that are plainly not interactions or series, each holding the secret near its start."""
    files = {
        "dotenv": ("app.env", f"EA_SIGNING_KEY={SECRET}\nEA_REDIS_PASSWORD={SECRET}\n"),
        "passwd-like": ("passwd", f"root:x:0:0:{SECRET}:/root:/bin/bash\nbin:x:1:1::/bin:/sbin/nologin\n"),
        "bare token": ("token", f"{SECRET}\n"),
        "token with a csv suffix": ("secret.csv", f"{SECRET}\n"),
        "header is a secret": ("keys.csv", f"{SECRET},x\n1,2\n"),
        "tab-separated secret": ("secret.tsv", f"{SECRET}\t{SECRET}\n"),
    }
    out = {}
    for case, (name, text) in files.items():
        path = tmp / name
        path.write_text(text)
        out[case] = path
    return out


# -- readers, in process ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["dotenv", "passwd-like", "bare token", "token with a csv suffix",
                                  "header is a secret", "tab-separated secret"])
def test_no_reader_quotes_a_file_that_is_not_its_format(case: str, tmp_path: Path, settings: Settings,
                                                        model_name: str, caplog) -> None:
    path = _hostile_files(tmp_path)[case]
    errors = []
    for read in (Interactions.read, read_series):
        with pytest.raises((InvalidInteractions, InvalidSeries)) as err:
            read(path)
        errors.append(str(err.value))
    with pytest.raises((InvalidInteractions, InvalidParameter)) as err:  # the public aligner reads paths too
        item_metadata_columns(str(path), np.array(["i1", "i2"], dtype=object))
    errors.append(str(err.value))
    train = tmp_path / "train.csv"
    community_frame(users=20, items=12).to_csv(train, index=False)
    registry = ModelRegistry(settings)
    for kwargs in ({"test": str(path)}, {"valid": str(path)}, {"item_metadata": str(path)}):
        with pytest.raises((InvalidInteractions, InvalidParameter)) as err:
            train_and_publish(str(train), name=model_name, registry=registry, **kwargs)
        errors.append(str(err.value))
    for message in errors:
        assert str(path) in message, message
    _assert_no_secret(errors + [caplog.text], f"the errors of {case}")


def test_a_file_plainly_of_its_format_is_quoted_by_a_short_excerpt_only(tmp_path: Path) -> None:
    interactions = tmp_path / "train.csv"
    interactions.write_text(f"user,item,weight\na,x,1\nb,y,{SECRET}\n")
    with pytest.raises(InvalidInteractions, match=r"line 3: weight='cnry.{16}…'") as err:
        Interactions.read(interactions)
    assert SECRET[:21] not in str(err.value)
    lines = tmp_path / "train.txt"
    lines.write_text(f"1 2 3\n4 {SECRET} 6\n")
    with pytest.raises(InvalidInteractions, match=r"line 2: 'cnry.{16}…' is not an integer id \(field 2\)") as err:
        Interactions.read(lines)
    assert SECRET[:21] not in str(err.value)
    series = tmp_path / "series.csv"
    series.write_text("timestamp,value\n" + "".join(f"2024-01-0{d},{SECRET}\n" for d in range(1, 4)))
    with pytest.raises(InvalidSeries) as err:
        read_series(series)
    assert "cnry" in str(err.value) and SECRET[:21] not in str(err.value)
    items = tmp_path / "items.csv"
    items.write_text(f"item,title\n{SECRET},a\n{SECRET},b\n")
    from recsys.data.item_table import read_item_table

    with pytest.raises(InvalidParameter, match=r"repeated item\(s\) at lines \[3\]") as err:
        read_item_table(items)
    assert SECRET[:21] not in str(err.value)


# -- through a worker process: the job's error, the result backend, the worker log ------------------------
def test_jobs_on_files_that_are_not_inputs_leak_nothing_of_them(isolated, tmp_path: Path) -> None:
    isolated.env["EA_CANARY_SECRET"] = SECRET
    worker = isolated.start_worker("leak", queues="train")
    jobs: dict[str, tuple[str, str]] = {"/proc/self/environ": (
        isolated.send("ea.train_graph", interactions="/proc/self/environ", model="spectral", name="leak0").id,
        "InvalidInteractions"), "/proc/self/environ (series)": (
        isolated.send("ea.train_series", series="/proc/self/environ", name="leak1").id, "InvalidSeries")}
    for i, (case, path) in enumerate(_hostile_files(tmp_path).items()):
        jobs[case] = (isolated.send("ea.train_graph", interactions=str(path), model="spectral",
                                    name=f"leak{i + 2}").id, "InvalidInteractions")
        jobs[f"{case} (series)"] = (isolated.send("ea.train_series", series=str(path), name=f"leaks{i}").id,
                                    "InvalidSeries")
    texts = []
    for case, (job_id, error) in jobs.items():
        with pytest.raises(Exception) as err:
            isolated.app.AsyncResult(job_id).get(timeout=120, propagate=True)
        assert type(err.value).__name__ == error, (case, err.value)
        texts.append(str(err.value))
    client = isolated.registry.client
    for job_id, _ in jobs.values():
        raw = wait_for(lambda job_id=job_id: _backend_value(client, isolated.settings, job_id), 30,
                       what=f"the result of {job_id}")
        meta = json.loads(raw)
        assert meta["status"] == "FAILURE" and meta["traceback"], meta
        texts.append(raw.decode(errors="replace"))
    stored = isolated.keys()
    texts += [repr(_value(client, key)) for key in stored]
    worker.stop()
    log = worker.output()
    assert "InvalidInteractions" in log and "InvalidSeries" in log  # the failures were logged...
    _assert_no_secret(texts + [log], "the jobs' errors, the result backend or the worker log")  # ...not the file


def _backend_value(client, settings: Settings, job_id: str) -> bytes | None:
    for key in (f"celery-task-meta-{job_id}", f"{settings.key_prefix}celery:celery-task-meta-{job_id}"):
        value = client.get(key)
        if value:
            return value
    return None


def _value(client, key: str) -> object:
    kind = client.type(key)
    if kind == b"string":
        return client.get(key)
    if kind == b"hash":
        return client.hgetall(key)
    if kind == b"list":
        return client.lrange(key, 0, -1)
    if kind == b"stream":
        return client.xrange(key)
    if kind == b"zset":
        return client.zrange(key, 0, -1)
    return None


# -- the data root ------------------------------------------------------------------------------------------
@pytest.fixture
def data_root(tmp_path: Path, monkeypatch) -> Path:
    """``EA_DATA_ROOT`` for this test (the session's in-process worker reads settings per job)."""
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("EA_DATA_ROOT", str(root))
    return root


def test_data_root_refuses_paths_outside_it_through_dotdot_and_symlinks(celery_worker, data_root: Path,
                                                                        tmp_path: Path, model_name: str) -> None:
    outside = tmp_path / "outside.csv"
    community_frame(users=20, items=12).to_csv(outside, index=False)
    (data_root / "link.csv").symlink_to(outside)
    (data_root / "sub").mkdir()
    cases = [str(outside), str(data_root / "link.csv"), f"{data_root}/sub/../../outside.csv", "/proc/self/environ",
             str(data_root / "sub" / ".." / ".." / "root" / ".." / "outside.csv")]
    for path in cases:
        with pytest.raises(InputNotAllowed, match="outside EA_DATA_ROOT"):
            input_path(path)
        handle = submit("ea.train_graph", interactions=path, model="spectral", name=model_name)
        with pytest.raises(JobFailed, match=r"InputNotAllowed: interactions path .* is outside EA_DATA_ROOT") as err:
            handle.wait(timeout=60)
        assert path in str(err.value)
    inside = data_root / "train.csv"
    community_frame(users=20, items=12).to_csv(inside, index=False)
    for key in ("test", "valid", "item_metadata"):
        handle = submit("ea.train_graph", interactions=str(inside), model="spectral", name=model_name,
                        **{key: str(outside)})
        with pytest.raises(JobFailed, match="InputNotAllowed"):
            handle.wait(timeout=60)
    handle = submit("ea.train_series", series=str(data_root / "link.csv"), name=model_name)
    with pytest.raises(JobFailed, match=r"InputNotAllowed: series path"):
        handle.wait(timeout=60)
    with pytest.raises(ModelNotFound):  # nothing was published by the refused jobs
        ModelRegistry().versions(model_name)
    # Inside the root (the same file through a symlink that stays inside, too): read and published.
    (data_root / "alias.csv").symlink_to(inside)
    result = submit("ea.train_graph", interactions=str(data_root / "alias.csv"), model="spectral",
                    name=model_name).wait(timeout=120)
    assert result["version"] == 1 and result["n_users"] == 20


def test_data_root_setting_is_validated_and_unset_by_default(tmp_path: Path) -> None:
    assert Settings.from_env({}).data_root is None
    assert input_path("relative/ok.csv", Settings.from_env({})) == Path("relative/ok.csv")
    with pytest.raises(ConfigurationError, match="EA_DATA_ROOT='data' must be an absolute directory"):
        Settings.from_env({"EA_DATA_ROOT": "data"})
    rooted = Settings.from_env({"EA_DATA_ROOT": str(tmp_path)})
    with pytest.raises(InputNotAllowed, match="relative"):
        input_path("train.csv", rooted)
    assert input_path(str(tmp_path / "a" / ".." / "b.csv"), rooted) == Path(os.path.realpath(tmp_path)) / "b.csv"


def test_a_file_with_content_plainly_of_its_format_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}).to_csv(path, index=False)
    assert Interactions.read(path).n_users == 2


def test_item_tables_keep_integer_columns_and_refuse_numbers_filters_cannot_hold(tmp_path: Path) -> None:
    """Issue 28, items 4 and 21: a column with one gap printed 1994.0; a 401-digit year was kept and broke
    every filter on it (pandas' own OverflowError, raw, for a file)."""
    gap = tmp_path / "gap.csv"
    gap.write_text("item,year,price,seen\ni1,1994,1.5,true\ni2,,2.0,\ni3,2001,,false\n")
    columns = item_metadata_columns(str(gap), np.array(["i1", "i2", "i3"], dtype=object))
    assert columns == {"year": [1994, None, 2001], "price": [1.5, 2.0, None], "seen": [True, None, False]}
    assert all(type(v) is int for v in columns["year"] if v is not None)
    huge = tmp_path / "huge.csv"
    huge.write_text("item,year\ni1,1" + "0" * 400 + "\ni2,1994\n")
    with pytest.raises(InvalidParameter, match="number beyond float64's range"):
        item_metadata_columns(str(huge), np.array(["i1", "i2"], dtype=object))
    frame = pd.DataFrame({"item": ["i1", "i2"], "year": [10**20, 1994], "score": [float("inf"), 1.0]})
    with pytest.raises(InvalidParameter, match="field 'year' of item 'i1' is an integer of 67 bits"):
        item_metadata_columns(frame[["item", "year"]], np.array(["i1", "i2"], dtype=object))
    with pytest.raises(InvalidParameter, match="field 'score' of item 'i1' is inf"):
        item_metadata_columns(frame[["item", "score"]], np.array(["i1", "i2"], dtype=object))
