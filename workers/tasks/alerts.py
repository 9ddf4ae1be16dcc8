"""Alert delivery as a Celery task, for deployments that run only Celery workers.

``ea.alerts_deliver`` (routed to the ``alerts`` queue) drains the alert outbox once: re-claims, due
retries and new notifications, for at most ``max_seconds``. Schedule it with celery beat (e.g. every
few seconds) or send it after scoring; a long-running ``ea alerts run`` consumer does the same job
continuously. Hooks are those registered in Redis (``ea alerts hooks add``, shared by every consumer) plus
the worker process's own: ``EA_ALERT_WEBHOOK_URL``/``EA_ALERT_FILE`` and any registered in code at import.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from alerts import Deliverer

from ..app import app

__all__ = ["alerts_deliver"]


@app.task(name="ea.alerts_deliver")
def alerts_deliver(max_seconds: float = 10.0) -> dict:
    """Deliver what the outbox holds; returns the counters (delivered, failed, dead, reclaimed).

    A worker with no hook at all (none shared, none of its own) leaves the outbox alone.
    """
    deliverer = Deliverer()
    try:
        if not deliverer.hooks:
            logging.getLogger(__name__).info("no alert hooks; the outbox waits for `ea alerts hooks add`")
            return {"skipped": "no hooks: none registered in Redis, none configured in this worker"}
        return asdict(deliverer.drain(timeout=max_seconds))
    finally:
        deliverer.close()
