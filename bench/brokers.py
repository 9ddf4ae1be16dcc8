"""Jobs per second through each Celery broker: the service's Redis against RabbitMQ (quorum queues, confirms).

    python bench/brokers.py [--jobs 400] [--rounds 2] [--concurrency 4] [--amqp-url URL] [--redis-url URL]

Each round, for each broker in turn: one ``ea worker -Q alerts --pool threads`` process, then ``--jobs``
near-empty jobs (``ea.alerts_deliver`` with no hook registered: it reads the hook list from Redis and
returns) submitted one after another through ``workers.jobs.submit`` (the path of ``ea`` and the client:
a Redis ping, the broker publish, the job record). Measured: submissions per
second (RabbitMQ: each publish waits for the broker's confirm) with the worker paused (its consumer
cancelled), then jobs per second drained by the one worker from the full queue (consumer added back to the
last job done), and the CPU time per job of the worker process and of the broker's server process (Redis:
the dedicated redis-server; RabbitMQ: its ``beam.smp``; less the server's idle use, sampled for 3 s before
the jobs and shown apart), which the shared machine's noise touches less than wall time. Both brokers use
the same Redis as registry and result backend. Printed side by side with the Redis broker as the baseline
(ratios), and written to ``bench/results/brokers.md``.

By default a redis-server of its own is started in a temporary folder, and RabbitMQ is the one at
``amqp://guest:guest@127.0.0.1:5672//`` on a vhost made for the run (``rabbitmqctl``; deleted afterwards).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The repository root first: this folder holds anomaly.py and recsys.py, which would shadow the packages.
sys.path.insert(0, str(ROOT))
from bench._common import machine, table, write

TASK = "ea.alerts_deliver"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rabbitmq_pid() -> int | None:
    """The pid of the local RabbitMQ node (``beam.smp`` running ``rabbit``), if any."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes()
                if b"beam.smp" in cmd and b"rabbit" in cmd:
                    return int(entry.name)
    return None


def _cpu_rate(pid: int, seconds: float) -> float:
    """CPU seconds per second that process ``pid`` uses over the next ``seconds``."""
    before, t0 = cpu_seconds(pid), time.perf_counter()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.perf_counter() - t0)


def _epoch(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def measure_one(args: argparse.Namespace) -> dict:
    """One broker, one round (run in a child process: ``workers.app`` reads its settings once)."""
    from celery.result import AsyncResult

    from vectorstore import get_settings
    from workers.app import app
    from workers.jobs import submit

    settings = get_settings()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = Path(args.log)
    with open(log, "wb") as out:
        argv = [str(Path(sys.executable).parent / "ea"), "worker", "-Q", "alerts", "-P", "threads", "-c",
                str(args.concurrency), "-l", "WARNING", "-n", f"bench-{uuid.uuid4().hex[:6]}@%h"]
        worker = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        # Ready when it has run a first job (start-up and queue declaration are not throughput).
        AsyncResult(submit(TASK, settings=settings, max_seconds=0).id, app=app).get(timeout=180)
        # Submissions with the worker paused (its consumer cancelled), so that the drain below is the worker
        # and the broker alone, not the pace of one submitting loop.
        app.control.cancel_consumer("alerts", reply=True, timeout=10)
        # The broker server's CPU while nothing is sent (other users of a shared server, its own timers),
        # taken off the figure below so that it counts this run's jobs only.
        idle = _cpu_rate(args.broker_pid, 3.0) if args.broker_pid else 0.0
        broker_cpu0 = cpu_seconds(args.broker_pid) if args.broker_pid else 0.0
        broker_t0 = time.perf_counter()
        start = time.perf_counter()
        handles = [submit(TASK, settings=settings, max_seconds=0) for _ in range(args.jobs)]
        submit_s = time.perf_counter() - start
        worker_cpu0 = cpu_seconds(worker.pid)
        resumed = time.time()
        app.control.add_consumer("alerts", reply=True, timeout=10)
        results = [AsyncResult(handle.id, app=app) for handle in handles]
        for result in results:
            result.get(timeout=600)
        last_done = max(_epoch(r.date_done) for r in results)
        worker_cpu = cpu_seconds(worker.pid) - worker_cpu0
        broker_cpu = (cpu_seconds(args.broker_pid) - broker_cpu0 - idle * (time.perf_counter() - broker_t0)
                      if args.broker_pid else float("nan"))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
    return {"submit_rate": args.jobs / submit_s, "rate": args.jobs / (last_done - resumed),
            "worker_cpu_ms": 1000 * worker_cpu / args.jobs, "broker_cpu_ms": 1000 * broker_cpu / args.jobs,
            "broker_idle": 100 * idle}


def run_child(kind: str, broker_url: str | None, redis_url: str, broker_pid: int | None,
              args: argparse.Namespace, tmp: Path) -> dict:
    env = {**os.environ, "EA_REDIS_URL": redis_url, "EA_KEY_PREFIX": f"eabench:{uuid.uuid4().hex[:8]}:",
           "EA_DATA_DIR": str(tmp)}
    env.pop("EA_BROKER_URL", None)
    if broker_url:
        env["EA_BROKER_URL"] = broker_url
    log = tmp / f"worker-{kind}-{uuid.uuid4().hex[:4]}.log"
    cmd = [sys.executable, __file__, "--child", "--jobs", str(args.jobs), "--concurrency", str(args.concurrency),
           "--log", str(log), "--broker-pid", str(broker_pid or 0)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the {kind} run failed:\n{out.stderr[-3000:]}\nworker log:\n"
                         f"{log.read_text(errors='replace')[-3000:] if log.exists() else ''}")
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def rabbitmq_vhost(url: str):
    """``url`` on a vhost made for the run when ``rabbitmqctl`` is here (deleted afterwards), else ``url``."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    name = f"ea-bench-{uuid.uuid4().hex[:8]}"

    def ctl(*a: str) -> bool:
        return subprocess.run(["rabbitmqctl", *a], capture_output=True).returncode == 0

    made = bool(shutil.which("rabbitmqctl")) and ctl("add_vhost", name) and ctl(
        "set_permissions", "-p", name, unquote(parts.username or "guest"), ".*", ".*", ".*")
    try:
        yield f"{parts.scheme}://{parts.netloc}/{name}" if made else url
    finally:
        if made:
            ctl("delete_vhost", name)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=400)
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per broker; the median is shown")
    p.add_argument("--concurrency", type=int, default=4, help="threads of the one worker process")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672//")
    p.add_argument("--redis-url", default=None, help="default: a redis-server of this run")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--broker-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure_one(args)))
        return

    from vectorstore import find_redis_server, redis_server_version, start_redis_server

    tmp = Path(tempfile.mkdtemp(prefix="ea-bench-brokers-"))
    server = None if args.redis_url else start_redis_server(tmp / "redis")
    redis_url = args.redis_url or server.url  # type: ignore[union-attr]
    redis_pid = server.pid if server is not None else None
    runs: dict[str, list[dict]] = {"redis": [], "amqp": []}
    try:
        with rabbitmq_vhost(args.amqp_url) as amqp_url:
            for _ in range(args.rounds):
                runs["redis"].append(run_child("redis", None, redis_url, redis_pid, args, tmp))
                runs["amqp"].append(run_child("amqp", amqp_url, redis_url, rabbitmq_pid(), args, tmp))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    rows = []
    for kind, label in (("redis", "Redis (default)"), ("amqp", "RabbitMQ (quorum queues, confirms)")):
        rows.append([label, med(kind, "submit_rate"), f"{med(kind, 'submit_rate') / med('redis', 'submit_rate'):.2f}x",
                     med(kind, "rate"), f"{med(kind, 'rate') / med('redis', 'rate'):.2f}x",
                     med(kind, "worker_cpu_ms"), med(kind, "broker_cpu_ms"), med(kind, "broker_idle")])
    redis_version = ".".join(map(str, redis_server_version(find_redis_server()))) if server is not None else "given"
    text = "\n".join([
        "# Celery brokers: jobs per second, Redis against RabbitMQ",
        "",
        f"{machine()}; redis-server {redis_version}; `python bench/brokers.py --jobs {args.jobs} --rounds "
        f"{args.rounds} --concurrency {args.concurrency}`: one worker process (threads pool, "
        f"{args.concurrency} threads), {args.jobs} near-empty `{TASK}` jobs submitted one after another through "
        "`workers.jobs.submit` while the worker is paused, then drained by it (resumed to the last job done); "
        f"median of {args.rounds} alternating rounds. The machine was shared with other jobs while measuring: "
        "compare the ratios and the CPU columns, not the absolute rates.",
        "",
        table(["broker", "submitted jobs/s", "vs Redis", "drained jobs/s (1 worker)", "vs Redis",
               "worker CPU ms/job", "broker server CPU ms/job", "broker idle, % of a core"], rows),
        "",
        "Redis is the registry and the result backend in both rows; the broker is what differs. Submission",
        "includes `submit`'s Redis ping and job record; on RabbitMQ each publish also waits for the broker's",
        "confirm (the message is on a majority of the quorum queue's replicas, one node here).",
    ])
    print(text)
    print(f"\nwritten to {write('brokers', text)}")


if __name__ == "__main__":
    main()
