"""The tests of tests/recsys/serving/test_client.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("recsys/serving/test_client.py"))
