"""RabbitMQ as the broker (``EA_BROKER_URL=amqp://...``), against the session's real RabbitMQ.

What only this broker has: a delayed job (a retry's backoff, a countdown) waits in RabbitMQ's delay queues
(native delayed delivery, possible because each queue sits behind a topic exchange), not in a worker's
memory; and every producer declares the quorum queues alike, so the alert hook's messages are accepted.
The worker-killing tests run on both brokers (``test_worker_crash.py``, ``test_scale_out.py``,
``test_task_policy.py``).
"""

from __future__ import annotations

import subprocess
import time

import pytest
from _reliability import Deployment, wait_for

from alerts import CeleryTaskHook, Incident, Notification

on_rabbitmq = pytest.mark.parametrize("isolated", ["amqp"], indirect=True)


@on_rabbitmq
def test_a_delayed_job_waits_in_rabbitmq_not_in_the_worker(isolated: Deployment, model_name: str) -> None:
    worker = isolated.start_worker("delayed", queues="train")
    sent = time.monotonic()
    job = isolated.app.send_task("ea.train_selfcheck", kwargs={"model": model_name, "items": 200, "dim": 4,
                                                               "steps": 2}, countdown=4)
    time.sleep(1.5)
    # A worker holding an ETA job lists it as scheduled; with native delayed delivery it holds nothing.
    scheduled = isolated.app.control.inspect([worker.hostname], timeout=2).scheduled() or {}
    assert scheduled.get(worker.hostname, []) == [], scheduled
    assert job.state == "PENDING"
    out = job.get(timeout=60)
    assert time.monotonic() - sent >= 4 and out["version"] == 1
    assert "direct exchange" not in worker.output()


@on_rabbitmq
def test_a_solo_worker_runs_without_amqp_heartbeats(isolated: Deployment, rabbitmq_vhost: str | None) -> None:
    """A solo-pool worker runs its job in the loop that would send heartbeats: with them, RabbitMQ dropped the
    connection of a job longer than two beats (~2 min with the server's 60 s), the ack failed and the job ran
    again on another worker. Every connection of the worker negotiates no heartbeat (timeout 0)."""
    if rabbitmq_vhost is None:
        pytest.skip("needs rabbitmqctl and a vhost of the session to list the worker's connections")
    isolated.start_worker("solo", queues="train", pool="solo")
    out = subprocess.run(["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "vhost", "name",
                          "timeout"], capture_output=True, text=True, timeout=60).stdout
    timeouts = [line.split("\t")[-1] for line in out.splitlines() if line.startswith(f"{rabbitmq_vhost}\t")]
    assert timeouts and set(timeouts) == {"0"}, out


@on_rabbitmq
def test_the_alert_hook_sends_onto_the_services_quorum_queue(isolated: Deployment) -> None:
    """The hook's producer declares ``alerts`` as the workers do (a quorum queue): RabbitMQ accepts it,
    where a plain declaration of the same name is refused (PRECONDITION_FAILED, inequivalent arguments)."""
    with isolated.app.connection_for_write() as conn:
        for queue in isolated.app.amqp.queues.values():
            queue.bind(conn.default_channel).declare()  # what a worker does at start
    incident = Incident("inc_q", "f" * 16, "series", "cpu", "1970-01-01T00:00:01Z", None, 2.0,
                        "1970-01-01T00:00:01Z", 1.0)
    hook = CeleryTaskHook("tests.nowhere", queue="alerts", settings=isolated.settings)
    hook.deliver(Notification("n1", "firing", incident, 1.0))
    wait_for(lambda: isolated.ready_messages("alerts") == 1, 10, what="the alert's message in the alerts queue")
