"""Alert delivery as a Celery task, for deployments that run only Celery workers.

``ea.alerts_deliver`` (routed to the ``alerts`` queue) drains the alert outbox once: re-claims, due
retries and new notifications, for at most ``max_seconds``. Schedule it with celery beat (e.g. every
few seconds) or send it after scoring; a long-running ``ea alerts run`` consumer does the same job
continuously. Hooks are those of the worker process: ``EA_ALERT_WEBHOOK_URL``/``EA_ALERT_FILE`` and any
registered in code at import time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from anomaly.alerts import Deliverer, registered_hooks

from ..app import app

__all__ = ["alerts_deliver"]


@app.task(name="ea.alerts_deliver")
def alerts_deliver(max_seconds: float = 10.0) -> dict:
    """Deliver what the outbox holds; returns the counters (delivered, failed, dead, reclaimed).

    A worker with no hooks configured leaves the outbox alone (a consumer that has hooks delivers it).
    """
    if not registered_hooks():
        logging.getLogger(__name__).info("no alert hooks in this worker; the outbox waits for a consumer")
        return {"skipped": "no hooks configured in this worker"}
    deliverer = Deliverer()
    try:
        return asdict(deliverer.drain(timeout=max_seconds))
    finally:
        deliverer.close()
