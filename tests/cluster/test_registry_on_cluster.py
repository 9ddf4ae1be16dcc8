"""The registry's tests (tests/vectorstore/test_registry.py) on a Redis Cluster."""

from _rerun import suite

globals().update(suite("vectorstore/test_registry.py"))
