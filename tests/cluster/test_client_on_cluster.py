"""The tests of tests/recsys/test_client.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("recsys/test_client.py"))
