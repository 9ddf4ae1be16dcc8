"""``ea demo``: the main job end to end on the embedded default."""

from __future__ import annotations

import json

import click

__all__ = ["COMMANDS"]


@click.command()
@click.option("--redis-url", default=None, help="Use this Redis and external workers instead of the embedded ones.")
def demo(redis_url: str | None) -> None:
    """Run a real job round trip: embedded Redis, an in-process worker, a job with progress, a published model."""
    import contextlib
    import os

    from vectorstore.embedded import EmbeddedRedis
    from vectorstore.settings import get_settings

    if redis_url:
        os.environ["EA_REDIS_URL"] = redis_url
    settings = get_settings()
    from ..jobs import submit
    from ..local import local_worker

    if settings.redis_url:
        click.echo("using Redis from --redis-url/EA_REDIS_URL and external workers")
        worker = contextlib.nullcontext()
    else:
        url = EmbeddedRedis(settings.data_dir).ensure()
        click.echo(f"embedded Redis at {url} (files in {EmbeddedRedis(settings.data_dir).directory})")
        worker = local_worker()
    with worker:
        handle = submit("ea.train_selfcheck", model="demo-selfcheck", items=5000, dim=32)
        click.echo(f"submitted job {handle.id}")
        result = handle.wait(timeout=300, show_progress=True)
    click.echo(json.dumps(result))
    click.echo("next: `ea models`, `ea jobs`, `ea --help`")


COMMANDS = [demo]
