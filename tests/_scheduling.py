"""How `make test` spreads the suite over pytest-xdist workers (``-n N``): :class:`SharedSetupScheduling`.

Each worker is a test session of its own (its own key prefix, Celery worker, temporary folders), so any test
may run on any worker, and each is handed out on its own, but three kinds of test are kept together on one
worker, so that what they share is built once instead of once per worker:

* the cluster suite (``tests/cluster/``): a six-node local Redis Cluster;
* the tests on RabbitMQ (``[amqp]``): a vhost (``rabbitmqctl`` calls take seconds each);
* the tests of a module that use a module- or class-scoped fixture (a model trained for the module, say).

Which fixtures a test uses is known where it is collected, in the workers, not in the controlling process
that hands out the work: each worker writes the units of its tests to ``EA_TEST_UNITS_FILE`` (a path the
controlling process chose) before it reports its collection, and the scheduler reads it.

Units are handed out longest first (the cluster suite, the RabbitMQ tests, the modules of :data:`SLOW_FIRST`,
then the rest), so that no worker is left with a long test while the others idle at the end.
Correctness does not depend on any of this: with another ``--dist`` (``worksteal``, say) each worker that
needs them starts its own cluster and vhost, and every test still passes.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

__all__ = ["SLOW_FIRST", "SharedSetupScheduling", "unit_of", "write_units"]

CLUSTER = "tests/cluster/"
RABBITMQ = "rabbitmq"

#: Test modules with the longest tests first (``--durations``: 4 to 16 s each on a quiet machine).
SLOW_FIRST = (
    "tests/vectorstore/test_embedded_restart.py",
    "tests/test_deployment.py",
    "tests/reliability/test_bad_input.py",
    "tests/workers/test_cli.py",
    "tests/reliability/test_redis_refusals.py",
    "tests/workers/test_demo.py",
    "tests/reliability/test_worker_crash.py",
    "tests/reliability/test_scale_out.py",
    "tests/reliability/test_task_policy.py",
    "tests/recsys/models/test_model_contract.py",
    "tests/reliability/test_security.py",
    "tests/anomaly/test_encoder.py",
    "tests/reliability/test_faults.py",
    "tests/reliability/test_client_listener.py",
    "tests/recsys/publish/test_ann_recall.py",
    "tests/anomaly/test_service.py",
    "tests/vectorstore/test_index_mutation.py",
    "tests/vectorstore/test_recall.py",
)

_SHARED_SCOPES = ("module", "class")


def unit_of(item: pytest.Item) -> str:
    """The unit of work ``item`` is handed out in: ``tests/cluster/``, ``rabbitmq``, its module's path (it
    uses a module- or class-scoped fixture), or its own id."""
    if item.nodeid.startswith(CLUSTER):
        return CLUSTER
    callspec = getattr(item, "callspec", None)
    if "rabbitmq_url" in item.fixturenames or (callspec and callspec.params.get("isolated") == "amqp"):
        return RABBITMQ
    # pytest's record of the fixtures a test uses (its public API gives their names, not their scopes).
    definitions = item._fixtureinfo.name2fixturedefs  # type: ignore[attr-defined]
    if any(d.scope in _SHARED_SCOPES for defs in definitions.values() for d in defs):
        return item.nodeid.split("::", 1)[0]
    return item.nodeid


def write_units(items: list[pytest.Item], path: Path) -> None:
    """Write ``{test id: unit}`` for the tests that share a unit (the others are units of their own)."""
    units = {item.nodeid: unit for item in items if (unit := unit_of(item)) != item.nodeid}
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(units))
    partial.replace(path)  # every worker writes the same: the last one whole, never a half-written file


def _rank(unit: str) -> int:
    if unit == CLUSTER:
        return 0
    if unit == RABBITMQ:
        return 1
    module = unit.split("::", 1)[0]
    return 2 + SLOW_FIRST.index(module) if module in SLOW_FIRST else 2 + len(SLOW_FIRST)


class SharedSetupScheduling(LoadScopeScheduling):
    """xdist's ``loadscope`` with the units that the workers wrote to ``units_file``, longest first."""

    def __init__(self, config: pytest.Config, log=None, *, units_file: Path) -> None:
        super().__init__(config, log)
        self.units_file = units_file
        self._units: dict[str, str] | None = None
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        if self._units is None:  # first called once every worker reported its collection (and wrote the file)
            self._units = json.loads(self.units_file.read_text()) if self.units_file.exists() else {}
        return self._units.get(nodeid, nodeid)

    def _assign_work_unit(self, node) -> None:
        if not self._ordered:  # the first call: the queue holds every unit (largest first, as xdist sorts)
            self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=lambda unit: _rank(unit[0])))
            self._ordered = True
        super()._assign_work_unit(node)
