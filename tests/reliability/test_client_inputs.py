"""Requests at the edges of their types (issue 18, item 8): every bad argument is an InvalidRequest."""

from __future__ import annotations

import pytest
from _reliability import copy_version

from recsys import InvalidRequest, RecommendationClient
from vectorstore import ModelRegistry


@pytest.fixture
def client(trained_model, model_name, settings):
    copy_version(ModelRegistry(settings), trained_model, model_name)
    with RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0) as c:
        yield c


@pytest.mark.parametrize("user", [10**5000, -(10**5000), "\ud800", "u" * 5000],
                         ids=["huge-int", "huge-negative", "lone-surrogate", "5000-chars"])
def test_impossible_ids_are_invalid_requests(client, user):
    with pytest.raises(InvalidRequest, match="user id"):
        client.recommend(user)
    with pytest.raises(InvalidRequest, match="item id"):
        client.similar_items(user)


@pytest.mark.parametrize("call", [
    lambda c: c.recommend_many("u1"),
    lambda c: c.recommend_many(None),
    lambda c: c.recommend_many(5),
    lambda c: c.recommend_for_history("i1"),
    lambda c: c.recommend_for_history(None),
    lambda c: c.recommend_for_history(["i1", None]),
    lambda c: c.recommend("u1", fields="title"),
    lambda c: c.recommend("u1", fields=[1]),
    lambda c: c.recommend("u1", exclude="i1"),
    lambda c: c.recommend("u1", include=b"i1"),
    lambda c: c.similar_items("i1", fields="title"),
])
def test_a_str_or_none_where_a_list_belongs_is_refused(client, call):
    with pytest.raises(InvalidRequest, match="must be|id"):
        call(client)


def test_good_requests_still_answer(client):
    assert len(client.recommend(1, k=3)) == 3  # an int id is read as its text (unknown here: popular items)
    assert len(client.recommend_many(("u1", "u2"), k=3)) == 2
    assert len(client.recommend_for_history(iter(["i1", "i2"]), k=3)) == 3
    assert client.recommend("u1", k=3, fields=[]).fields == {}
