"""EA_MILVUS_URI: a Milvus URL or a milvus-lite data path, refused with a message naming the variable."""

from __future__ import annotations

import os

import pytest

from vectorstore import ConfigurationError, Settings


def test_milvus_uri_is_a_url_or_an_absolute_lite_path():
    assert Settings.from_env({}).milvus_uri is None
    assert Settings.from_env({"EA_MILVUS_URI": "http://milvus:19530"}).milvus_uri == "http://milvus:19530"
    path = Settings.from_env({"EA_MILVUS_URI": "data/ea.db"}).milvus_uri
    assert path == os.path.join(os.getcwd(), "data", "ea.db")  # workers started elsewhere name the same file


@pytest.mark.parametrize("value", ["ftp://milvus:19530", "data/milvus", "http://"])
def test_a_milvus_uri_that_cannot_work_is_refused_by_name(value):
    with pytest.raises(ConfigurationError, match="EA_MILVUS_URI"):
        Settings.from_env({"EA_MILVUS_URI": value})
