"""The index backends by name and by a version's manifest (the seam's storage side: ``vectorstore.IndexBackend``)."""

from __future__ import annotations

import numpy as np
import pytest

from vectorstore import INDEX_BACKENDS, ConfigurationError, IndexBackend, IndexItems, index_backend, version_backend


def test_every_backend_is_found_by_its_name_and_an_unknown_name_is_refused_naming_it():
    assert INDEX_BACKENDS[0] == "hnswlib" and "milvus" in INDEX_BACKENDS  # the default first
    for name in INDEX_BACKENDS:
        backend = index_backend(name)
        assert isinstance(backend, IndexBackend) and backend.name == name
        assert index_backend(backend) is backend
    with pytest.raises(ConfigurationError, match=r"index_backend='annoy'.*hnswlib, milvus"):
        index_backend("annoy")


def test_a_version_s_backend_is_the_one_its_manifest_records():
    spec = {"collection": "ea_x_v3", "alias": "ea_x", "dim": 8, "fields": {"title": "VARCHAR"}}
    assert version_backend({"milvus": spec}).name == "milvus"
    assert version_backend({"milvus": spec}).record({"milvus": spec}) == spec
    # every version published before there was a choice, or without a record, is in process
    for meta in ({}, {"index": {"M": 32}}, {"milvus": None}, None):
        assert version_backend(meta).name == "hnswlib" and version_backend(meta).in_process


def test_the_in_process_backend_keeps_the_index_among_the_version_s_parts(settings):
    backend = index_backend("hnswlib")
    items = IndexItems(np.zeros((2, 4), np.float32), ["a", "b"], {"title": ["A", "B"]})
    assert backend.publish(settings, "m", 1, items) == {}  # the commit writes the index part
    assert backend.serving_parts(["index", "item_ids", "item_vectors"]) is None  # a client loads every part
    backend.activated(settings, {}, strict=True)
    backend.dropped(settings, {})


def test_a_milvus_backed_client_loads_one_set_of_item_vectors():
    backend = index_backend("milvus")
    assert not backend.in_process
    parts = ["item_ids", "item_vectors", "fold_in_vectors", "item_popularity", "item_metadata"]
    assert backend.serving_parts(parts) == ["item_ids", "fold_in_vectors", "item_popularity"]
    assert backend.serving_parts(["item_ids", "item_vectors", "item_popularity"]) == ["item_ids", "item_vectors",
                                                                                      "item_popularity"]
    # a part the collection does not hold (e.g. a two-stage model's filter) is the client's to load
    assert backend.serving_parts(["item_ids", "item_vectors", "filter_u"]) == ["item_ids", "item_vectors", "filter_u"]
