"""How `make test` spreads the suite over pytest-xdist workers (``-n N``): :class:`SharedSetupScheduling`.

Each worker is a test session of its own (its own key prefix, Celery worker, temporary folders), so any test
may run on any worker. The unit handed to a worker is a test module, so that what a module builds for its
tests (a model trained by a module-scoped fixture, say) is built once; two units are larger:

* the cluster suite (``tests/cluster/``): the six-node local Redis Cluster is started by one worker only;
* the tests on RabbitMQ (ids with ``[amqp]``): one vhost (``rabbitmqctl`` calls take seconds each).

Units are handed out longest first (the cluster suite, the RabbitMQ tests, the modules of :data:`SLOW_FIRST`,
then the others, most tests first), so that no worker is left with a long module while the others idle at the end.
Correctness does not depend on any of this: with another ``--dist`` (``worksteal``, say) each worker that
needs them starts its own cluster and vhost, and every test still passes.
"""

from __future__ import annotations

from collections import OrderedDict

from xdist.scheduler import LoadScopeScheduling

__all__ = ["SLOW_FIRST", "SharedSetupScheduling", "unit_of"]

CLUSTER = "tests/cluster/"
RABBITMQ = "rabbitmq"

#: Test modules with the longest tests first (``--durations`` on a quiet machine: 4 to 16 s each).
SLOW_FIRST = (
    "tests/workers/test_cli.py",
    "tests/vectorstore/test_embedded_restart.py",
    "tests/anomaly/test_reading.py",
    "tests/reliability/test_worker_crash.py",
    "tests/test_deployment.py",
    "tests/reliability/test_redis_refusals.py",
    "tests/reliability/test_scale_out.py",
    "tests/reliability/test_bad_input.py",
    "tests/reliability/test_task_policy.py",
    "tests/reliability/test_client_listener.py",
    "tests/reliability/test_faults.py",
    "tests/workers/test_demo.py",
    "tests/alerts/test_shared_hooks.py",
    "tests/reliability/test_security.py",
    "tests/recsys/test_model_contract.py",
    "tests/reliability/test_input_safety.py",
    "tests/recsys/test_ann_recall.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: ``tests/cluster/``, ``rabbitmq`` or its module's path."""
    if nodeid.startswith(CLUSTER):
        return CLUSTER
    if "[amqp]" in nodeid:
        return RABBITMQ
    return nodeid.split("::", 1)[0]


def _rank(unit: str) -> int:
    if unit == CLUSTER:
        return 0
    if unit == RABBITMQ:
        return 1
    return 2 + SLOW_FIRST.index(unit) if unit in SLOW_FIRST else 2 + len(SLOW_FIRST)


class SharedSetupScheduling(LoadScopeScheduling):
    """xdist's ``loadscope`` with the units of :func:`unit_of`, handed out in the order of :data:`SLOW_FIRST`."""

    _ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node) -> None:
        if not self._ordered:  # the first call: the queue holds every unit, in collection order
            self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=lambda unit: _rank(unit[0])))
            self._ordered = True
        super()._assign_work_unit(node)
