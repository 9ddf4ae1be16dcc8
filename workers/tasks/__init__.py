"""Celery tasks, one module per area; importing this package registers them all on ``workers.app``."""

from . import alerts, catalogue, core, graph, series  # noqa: F401
