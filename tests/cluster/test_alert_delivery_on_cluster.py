"""The tests of tests/alerts/test_alert_delivery.py on a Redis Cluster."""

from _rerun import suite

globals().update(suite("alerts/test_alert_delivery.py"))
