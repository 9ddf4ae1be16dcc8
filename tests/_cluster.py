"""A real local Redis Cluster for tests and benchmarks: three masters, three replicas, loopback ports.

Started with ``redis-server --cluster-enabled yes`` (through :func:`vectorstore.start_redis_server`)
and joined with ``redis-cli --cluster create ... --cluster-replicas 1``; :meth:`LocalCluster.stop` ends every
node and leaves nothing running.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from vectorstore import start_redis_server
from vectorstore.platform.embedded import RedisProcess, _port_is_free

__all__ = ["LocalCluster", "on_cluster", "start_cluster"]


@dataclass
class LocalCluster:
    """The nodes of a running local cluster; ``url`` names one of them (any node will do)."""

    directory: Path
    nodes: list[RedisProcess] = field(default_factory=list)
    node_timeout_ms: int = 3000

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def client(self) -> RedisCluster:
        return RedisCluster.from_url(self.url)

    def node(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def role(self, port: int) -> str:
        """``master`` or ``slave`` as the node itself says."""
        return str(redis.Redis(port=port, socket_timeout=2).info("replication")["role"])

    def master_of_slot(self, slot: int) -> int:
        """The port of the master serving ``slot``, as the cluster says now."""
        for node in self.nodes:
            with contextlib.suppress(redis.RedisError, OSError):
                for start, end, master, *_ in redis.Redis(port=node.port, socket_timeout=2).execute_command(
                        "CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return int(master[1])
        raise RuntimeError(f"no node answers for slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no save): as a crashed machine would go."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.node(port).pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.node(port).pid, 0)

    def wait_healthy(self, timeout: float = 30.0, exclude: tuple[int, ...] = ()) -> None:
        """Wait until every live node reports ``cluster_state:ok`` with all 16384 slots served."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                if node.port in exclude:
                    continue
                try:
                    info = redis.Redis(port=node.port, socket_timeout=1).cluster("info")
                    states.append(info.get("cluster_state") == "ok" and int(info["cluster_slots_ok"]) == 16384)
                except (redis.RedisError, OSError):
                    states.append(False)
            if states and all(states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"cluster in {self.directory} not healthy within {timeout} s")

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Wait until every replica has its master's data (``master_link_status:up``): a replica that never
        synced does not take over when its master dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            links = []
            for node in self.nodes:
                with contextlib.suppress(redis.RedisError, OSError):
                    info = redis.Redis(port=node.port, socket_timeout=1).info("replication")
                    links.append(info["role"] == "master" or info.get("master_link_status") == "up")
            if len(links) == len(self.nodes) and all(links):
                return
            time.sleep(0.1)
        raise RuntimeError(f"replicas of the cluster in {self.directory} not in sync within {timeout} s")

    def wait_replicas_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until every replica has acknowledged what its master held when this was called.

        Redis replicates asynchronously: a master killed before its replica read the last writes takes them
        along, which is Redis' documented trade-off, not the failover the test is about.
        """
        targets: dict[int, int] = {}
        for node in self.nodes:
            with contextlib.suppress(redis.RedisError, OSError):
                info = redis.Redis(port=node.port, socket_timeout=2).info("replication")
                if info["role"] == "master":
                    targets[node.port] = int(info["master_repl_offset"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = []
            for port, offset in targets.items():
                with contextlib.suppress(redis.RedisError, OSError):
                    info = redis.Redis(port=port, socket_timeout=2).info("replication")
                    replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                    if not replicas or any(int(r.get("offset", -1)) < offset for r in replicas):
                        behind.append(port)
            if not behind:
                return
            time.sleep(0.05)
        raise RuntimeError(f"replicas of the cluster in {self.directory} did not catch up within {timeout} s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _free_node_port() -> int:
    # A cluster node also listens on port + 10000 (the cluster bus): both must be free and below 65536.
    for _ in range(200):
        port = random.randrange(20000, 40000)
        if _port_is_free(port) and _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free pair of ports (port, port + 10000) for a cluster node")


def start_cluster(directory: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 3000,
                  timeout: float = 60.0) -> LocalCluster:
    """Start ``masters * (1 + replicas)`` cluster nodes in ``directory`` and join them into one cluster."""
    if shutil.which("redis-cli") is None:
        raise RuntimeError("redis-cli not found: it joins the nodes into a cluster")
    # 3 s, not Redis' 15 s, so a killed master fails over quickly; not 1 s either: on a loaded CI machine a
    # busy node missed 1 s and its replica took over mid-test, and writes the old master took in between
    # were lost with its demotion (Redis' documented window), so the test saw keys vanish.
    cluster = LocalCluster(Path(directory), node_timeout_ms=node_timeout_ms)
    try:
        for i in range(masters * (1 + replicas)):
            cluster.nodes.append(start_redis_server(
                cluster.directory / f"node{i}", _free_node_port(),
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", str(node_timeout_ms),
                            # Replicas sync at once (not after the default 5 s wait for more replicas).
                            "--repl-diskless-sync-delay", "0"]))
        addresses = [f"127.0.0.1:{n.port}" for n in cluster.nodes]
        subprocess.run(["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", str(replicas),
                        "--cluster-yes"], check=True, capture_output=True, timeout=timeout)
        cluster.wait_healthy(timeout)
        cluster.wait_replicas_synced(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def on_cluster(cluster: LocalCluster) -> Iterator[None]:
    """The service's settings point at ``cluster`` for the block (``EA_REDIS_URL``, ``EA_REDIS_CLUSTER=1``); the
    environment is the process's, so a Celery worker's task threads see it too. Celery's broker and result
    backend stay on the single Redis (kombu and Celery's Redis backend speak no cluster protocol)."""
    single = os.environ.get("EA_BROKER_URL") or os.environ["EA_REDIS_URL"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EA_BROKER_URL", single)
        patch.setenv("EA_RESULT_BACKEND", os.environ.get("EA_RESULT_BACKEND") or single)
        patch.setenv("EA_REDIS_URL", cluster.url)
        patch.setenv("EA_REDIS_CLUSTER", "1")
        yield
