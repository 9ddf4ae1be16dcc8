"""A version's :class:`~recsys.serving.version_index.VersionIndex` (the serving side of the index-backend seam),
chosen by its manifest; pymilvus stays out of a process that serves or writes hnswlib versions."""

from __future__ import annotations

import subprocess
import sys

from recsys.serving.index_backends import open_index
from recsys.serving.version_index import InProcessIndex, VersionIndex

SPEC = {"collection": "ea_x_v3", "alias": "ea_x", "dim": 8, "fields": {"title": "VARCHAR", "year": "INT64"}}


def test_a_version_s_index_is_the_one_its_manifest_records(settings):
    assert isinstance(open_index(settings, {"kind": "recsys", "index": {"M": 32}}), InProcessIndex)
    milvus = open_index(settings.with_(milvus_uri=None), {"kind": "recsys", "milvus": SPEC})
    assert isinstance(milvus, VersionIndex) and not isinstance(milvus, InProcessIndex)
    assert milvus.backend.name == "milvus" and milvus.field_names(None) == ["title", "year"]


def test_opening_a_version_s_index_imports_no_pymilvus(settings):
    # Opening a version's index, Milvus-backed or not, connects to nothing and imports no pymilvus: a writer
    # or a client reaches Milvus (and loads pymilvus) only at its first call that needs the collection.
    code = (
        "import sys\n"
        "import recsys, workers.jobs\n"
        "from vectorstore import get_settings\n"
        "from recsys.serving.index_backends import open_index\n"
        "open_index(get_settings(), {})\n"
        f"open_index(get_settings(), {{'milvus': {SPEC!r}}})\n"
        "assert 'pymilvus' not in sys.modules, 'pymilvus imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
