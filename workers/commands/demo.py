"""``ea demo``: the main job end to end on the embedded default."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["COMMANDS"]


@click.command()
@click.option("--redis-url", default=None,
              help="Use this Redis and external workers (`ea worker`) instead of the embedded ones.")
@click.option("--out", "out_dir", default=None, help="Output folder (default: EA_DATA_DIR/demo).")
@click.option("--small", is_flag=True, help="Tiny sizes (a quick smoke run).")
def demo(redis_url: str | None, out_dir: str | None, small: bool) -> None:
    """Generate data, train Node2Vec, LightGCN and series detectors as Celery jobs, recommend, detect, alert.

    \b
    With no Redis configured it starts the embedded redis-server and runs a worker in this process.
    Outputs (data, plots, alerts.jsonl, summary.json) go to --out.
    """
    from vectorstore import EmbeddedRedis, get_settings

    from ..demo import DemoSizes, run_demo

    if redis_url:
        os.environ["EA_REDIS_URL"] = redis_url
    settings = get_settings()
    if settings.redis_url:
        click.echo("using the Redis of --redis-url/EA_REDIS_URL; jobs run on its workers (`ea worker`)")
    else:
        embedded = EmbeddedRedis(settings.data_dir)
        click.echo(f"embedded Redis at {embedded.ensure()} (files in {embedded.directory}; stop: `ea redis stop`)")
    out = Path(out_dir) if out_dir else settings.data_dir / "demo"
    run_demo(out, sizes=DemoSizes.small() if small else DemoSizes(), external_workers=bool(redis_url),
             echo=click.echo)


COMMANDS = [demo]
