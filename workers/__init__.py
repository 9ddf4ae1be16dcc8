"""The service's composer: the Celery app and its tasks, the job API and the ``ea`` command line.

Public surface::

    jobs        submit jobs and follow them (train_graph, train_series, score_series, get_job, list_jobs)
    scoring     scoring composed with alerting, graph entities with the outlier rule
    detection   ``ea detect``: a file's scores and the alerting layer's decisions on them
    app         the Celery app (``celery -A workers.app worker``, or ``ea worker``)

Submodules are imported on use: ``from workers import jobs`` does not start Celery's configuration.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["app", "detection", "jobs", "scoring"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
