"""Alert delivery under failure: N incidents through a signed webhook that fails 20% of the time, with
one delivery consumer SIGKILLed mid-run and replaced.

    python bench/alerts.py [--incidents 10000] [--failure-rate 0.2] [--consumers 2] [--seed 0]

Set-up: a real HTTP receiver (ThreadingHTTPServer on 127.0.0.1) verifies every signature and answers a
seeded random 20% of requests with 503; ``--consumers`` delivery consumers run as separate processes
(`Deliverer` + `WebhookHook`, as `ea alerts run` does); this process creates the incidents with
`alerts.observe` (one firing notification each) as fast as it can, while the consumers deliver.
When 30% are acknowledged, consumer 0 is killed with SIGKILL and a new one starts; what it had read but
not acknowledged is re-claimed by the others (XAUTOCLAIM) after ``--min-idle`` seconds.

Reported: lost alerts (never answered 2xx), idempotency keys answered 2xx more than once, throughput
(alerts acknowledged per second, from the first incident to the last 2xx) and the notification delay
(incident recorded -> 2xx at the receiver) percentiles. Delay includes queueing behind the backlog: the
producer outruns the consumers on purpose. Written to bench/results/alerts.md.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from alerts import (
    AlertKeys,
    Deliverer,
    IncidentPolicy,
    Notification,
    WebhookHook,
    observe,
    outbox_status,
    verify_signature,
)
from bench._common import machine, table, write
from vectorstore import (
    connect,
    get_settings,
)

SECRET = "bench-secret"


class Receiver:
    """Webhook endpoint: verifies signatures, fails a seeded fraction with 503, records 2xx per key."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.lock = threading.Lock()
        self.ok: dict[str, int] = {}  # idempotency key -> number of 2xx answers
        self.delays: list[float] = []
        self.requests = self.failed = self.bad_signatures = 0
        self.last_ok = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Idempotency-Key"]
                signed = verify_signature(body, self.headers, SECRET)
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.rng.random() < receiver.failure_rate
                    if not signed:
                        receiver.bad_signatures += 1
                        status = 401
                    elif fail:
                        receiver.failed += 1
                        status = 503
                    else:
                        status = 200
                        now = time.time()
                        receiver.ok[key] = receiver.ok.get(key, 0) + 1
                        receiver.delays.append(now - Notification.from_json(body).created_at)
                        receiver.last_ok = now
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda request, address: None  # a killed consumer resets its connection
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.ok)


def consumer_main(args: argparse.Namespace) -> None:
    """A delivery consumer process (what `ea alerts run` does), with the bench's timings."""
    logging.basicConfig(level=logging.ERROR)
    settings = get_settings().with_(key_prefix=args.prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deliverer = Deliverer([WebhookHook(args.url, SECRET, timeout=5)], settings=settings, consumer=args.name,
                          backoff=args.backoff, backoff_max=1.0, min_idle=args.min_idle, batch=10)
    deliverer.client.set(f"{args.prefix}bench:ready:{args.name}", 1)
    stats = deliverer.run(stop, block=0.2)
    deliverer.client.incrby(f"{args.prefix}bench:reclaimed", stats.reclaimed)


def start_consumer(args: argparse.Namespace, prefix: str, url: str, name: str) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--consumer", "--prefix", prefix, "--url", url, "--name", name,
           "--min-idle", str(args.min_idle), "--backoff", str(args.backoff)]
    return subprocess.Popen(cmd, cwd=ROOT)


def wait_for_consumers(client, prefix: str, names: set[str], timeout: float = 120) -> None:
    """Until every consumer process is ready (process start-up is not delivery delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(client.exists(f"{prefix}bench:ready:{name}") for name in names):
            return
        time.sleep(0.1)
    raise SystemExit(f"consumers {sorted(names)} did not start within {timeout}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--incidents", type=int, default=10_000)
    p.add_argument("--failure-rate", type=float, default=0.2)
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-idle", type=float, default=2.0, help="XAUTOCLAIM min idle time, seconds")
    p.add_argument("--backoff", type=float, default=0.05, help="first retry delay, seconds")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--restart", nargs="+", choices=sorted(RESTARTS), default=["term", "kill"],
                   help="how consumer c0 is stopped mid-run (one run each)")
    p.add_argument("--consumer", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prefix", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.consumer:
        consumer_main(args)
        return

    results = {how: run_scenario(args, how) for how in args.restart}
    rows = [[label] + [results[how][key] for how in args.restart] for key, label in ROWS]
    headers = ["measure"] + [RESTARTS[how] for how in args.restart]
    text = "\n".join([
        "# Alert delivery: webhook with injected failures and a consumer restart",
        "",
        f"{machine()}; Redis {results[args.restart[0]]['redis']}; `python bench/alerts.py --incidents "
        f"{args.incidents} --failure-rate {args.failure_rate} --consumers {args.consumers} --seed {args.seed}` "
        f"(backoff {args.backoff}s doubling to 1s with jitter, XAUTOCLAIM min idle {args.min_idle}s, the "
        "receiver verifies every HMAC signature). The machine was shared with other jobs while measuring.",
        "",
        table(headers, rows),
        "",
        "Each column is a separate run: consumer c0 is stopped when 30% of the alerts are acknowledged, at a",
        "moment it holds entries read but not acknowledged, and a new consumer starts. SIGTERM: c0 finishes",
        "its current step and leaves. SIGKILL: c0 dies at once; what it had read but not acknowledged is",
        "re-claimed (XAUTOCLAIM) by the others after the min idle time, and retries it had leased come back",
        "when the lease ends: that is where the p99/max delay comes from. Delivery is at least once: an alert",
        "whose 2xx arrived after the kill but before c0 recorded it is sent again (at most one per crash, as",
        "a consumer delivers one alert at a time); its Idempotency-Key is what lets a receiver drop it.",
        "Delay includes queueing: the producer creates incidents as fast as it can, concurrently.",
    ])
    print(text)
    print(f"\nwritten to {write('alerts', text)}")


RESTARTS = {"term": "restart by SIGTERM", "kill": "crash by SIGKILL"}
ROWS = [
    ("incidents", "incidents (one firing notification each)"),
    ("requests", "webhook requests / injected 503s"),
    ("restarted_at", "c0 stopped after (alerts acknowledged)"),
    ("reclaimed", "entries c0 left unacknowledged / re-claimed by others (XAUTOCLAIM)"),
    ("lost", "lost (never acknowledged 2xx)"),
    ("duplicated", "idempotency keys acknowledged 2xx more than once"),
    ("bad", "bad signatures at the receiver"),
    ("outbox", "outbox after the run (undelivered/pending/retrying/dead)"),
    ("create_rate", "incident creation rate (alerts/s)"),
    ("throughput", "delivery throughput (alerts/s, first incident -> last 2xx)"),
    ("delay", "delay p50 / p99 / max (s, incident recorded -> 2xx)"),
]


def run_scenario(args: argparse.Namespace, how: str) -> dict:
    """One run: produce, deliver, stop consumer c0 with SIGTERM (``term``) or SIGKILL (``kill``)."""
    settings = get_settings().with_(key_prefix=f"eabench:{uuid.uuid4().hex[:8]}:")
    client = connect(settings)
    receiver = Receiver(args.failure_rate, args.seed)
    Deliverer([WebhookHook(receiver.url)], settings=settings, client=client).close()  # creates the group
    procs = [start_consumer(args, settings.key_prefix, receiver.url, f"c{i}") for i in range(args.consumers)]
    policy = IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0)
    n = args.incidents
    produced_at: list[float] = []

    def produce(t0: float) -> None:
        for i in range(n):
            observe("bench", f"series-{i}", [t0 + i], [5.0], 1.0, policy=policy, model_version="1",
                    labels={"shard": str(i % 16)}, settings=settings, client=client)
        produced_at.append(time.time())

    restarted_at = held = None
    try:
        wait_for_consumers(client, settings.key_prefix, {f"c{i}" for i in range(args.consumers)})
        t0 = time.time()
        threading.Thread(target=produce, args=(t0,), daemon=True).start()
        deadline = time.monotonic() + args.timeout
        while receiver.acknowledged() < n and time.monotonic() < deadline:
            if restarted_at is None and receiver.acknowledged() >= 0.3 * n:
                # Stop c0 mid-delivery: when it holds entries read but not yet acknowledged.
                outbox, until = AlertKeys(settings.key_prefix).outbox, time.monotonic() + 5
                while time.monotonic() < until and not client.xpending_range(outbox, "delivery", "-", "+", 1,
                                                                              consumername="c0"):
                    time.sleep(0.001)
                procs[0].send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
                procs[0].wait()
                restarted_at = receiver.acknowledged()
                held = len(client.xpending_range(outbox, "delivery", "-", "+", 1000, consumername="c0"))
                procs.append(start_consumer(args, settings.key_prefix, receiver.url, "c-restarted"))
            time.sleep(0.05)
        time.sleep(0.5)  # let the consumers record the last successes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    status = outbox_status(settings=settings, client=client)
    reclaimed = int(client.get(f"{settings.key_prefix}bench:reclaimed") or 0)
    redis_version = client.info("server")["redis_version"]
    for key in list(client.scan_iter(f"{settings.key_prefix}*", count=1000)):
        client.delete(key)
    receiver.server.shutdown()
    with receiver.lock:
        ok = dict(receiver.ok)
        delays = np.array(receiver.delays)
        elapsed = receiver.last_ok - t0
    return {
        "redis": redis_version,
        "incidents": n,
        "requests": f"{receiver.requests} / {receiver.failed}",
        "restarted_at": restarted_at,
        "reclaimed": f"{held} / {reclaimed}",
        "lost": n - len(ok),
        "duplicated": sum(1 for c in ok.values() if c > 1),
        "bad": receiver.bad_signatures,
        "outbox": f"{status['undelivered']}/{status['pending']}/{status['retrying']}/{status['dead']}",
        "create_rate": f"{n / (produced_at[0] - t0):.0f}" if produced_at else "n/a",
        "throughput": f"{len(ok) / elapsed:.0f}",
        "delay": f"{np.percentile(delays, 50):.2f} / {np.percentile(delays, 99):.2f} / {delays.max():.2f}",
    }


if __name__ == "__main__":
    main()
