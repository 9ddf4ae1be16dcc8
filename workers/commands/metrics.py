"""``ea metrics serve``: the workers' metrics for Prometheus."""

from __future__ import annotations

import threading

import click

__all__ = ["COMMANDS", "metrics_group"]


@click.group("metrics")
def metrics_group() -> None:
    """Metrics of the service for Prometheus (Grafana: docs/grafana-dashboard.json)."""


@metrics_group.command("serve")
@click.option("--port", type=int, default=9464, show_default=True)
@click.option("--addr", default="0.0.0.0", show_default=True, help="Address to listen on.")
def serve_cmd(port: int, addr: str) -> None:
    """Serve the workers' metrics on http://ADDR:PORT/metrics until interrupted: jobs by task and state, job
    durations, points scored, incidents opened and resolved, notifications delivered, retried and dead-lettered,
    outbox backlog and age. Read from Redis at each scrape, so every worker process and host is counted and any
    number of these may run."""
    from ..metrics import serve

    server = serve(port, addr)
    click.echo(f"serving the workers' metrics on http://{addr}:{port}/metrics")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


COMMANDS = [metrics_group]
