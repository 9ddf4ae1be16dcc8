"""The tests of tests/reliability/test_client_listener.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("reliability/test_client_listener.py"))
