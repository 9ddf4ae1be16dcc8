"""The tests of tests/anomaly/test_service.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("anomaly/test_service.py"))
