"""The tests of tests/alerts/test_shared_hooks.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("alerts/test_shared_hooks.py"))
