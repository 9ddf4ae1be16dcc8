"""The ``ea`` command line: workers, jobs, models, and the demo.

Area commands (training, evaluation, recommendations, detection, alerts) live in ``workers.commands.*``;
each module exports ``COMMANDS`` and is added here.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import sys
import time

import click

from vectorstore import get_settings, redact_url

from ._cli_errors import one_line
from .exceptions import WorkerError

__all__ = ["main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("embedding-analytics")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


class _Group(click.Group):
    """Turns failures into one-line messages and exit code 2 instead of tracebacks (``workers._cli_errors``);
    a closed output pipe (``ea models | head``) ends the command quietly."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # The reader went away: point stdout at /dev/null so that the final flush does not fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(141)  # as a process ended by SIGPIPE
        except Exception as exc:
            message = one_line(exc, ctx)
            if message is None:
                raise
            click.echo(message, err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "-V", "--version", prog_name="ea", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """Embedding analytics: recommendations and anomaly detection from graph and time-series embeddings.

    \b
    Start here:
      ea demo                      the whole pipeline on generated data, nothing to install
      ea worker -Q train           run a worker (training jobs; -Q score,alerts for the others)
      ea jobs                      recent jobs and their progress
      ea models                    published models and their versions

    Every command reads EA_REDIS_URL; when it is unset, an embedded redis-server is started under
    EA_DATA_DIR and shared by all processes (see `ea redis url`).
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
def version() -> None:
    """Print the version, the Redis in use and which optional parts are installed."""
    import importlib.util

    settings = get_settings()
    click.echo(f"ea {_version()} (Python {sys.version.split()[0]})")
    click.echo(f"redis: {redact_url(settings.redis_url) if settings.redis_url else 'embedded (EA_REDIS_URL unset)'}")
    for extra, module in (("train", "torch"), ("train", "torch_geometric"), ("train", "gensim")):
        found = importlib.util.find_spec(module) is not None
        click.echo(f"{module}: {'installed' if found else f'not installed (pip install embedding-analytics[{extra}])'}")


@main.command()
@click.option("-Q", "--queues", default="train,score,alerts", show_default=True,
              help="Comma-separated queues to consume.")
@click.option("-P", "--pool", type=click.Choice(["solo", "threads", "prefork"]), default=None,
              help="Execution pool. Default: solo when consuming 'train' (torch and fork do not mix), else threads.")
@click.option("-c", "--concurrency", type=int, default=None, help="Threads/processes (not for solo).")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("-n", "--hostname", default=None, help="Worker node name (default: celery@<host>).")
def worker(queues: str, pool: str | None, concurrency: int | None, loglevel: str, hostname: str | None) -> None:
    """Run a Celery worker for the given queues until interrupted.

    \b
    Typical deployment:
      ea worker -Q train                  training (solo pool; one job at a time, all cores to torch)
      ea worker -Q score,alerts -c 4      scoring and alert delivery (threads)
    """
    from .app import QUEUES, app

    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {unknown}; the queues are {list(QUEUES)}", param_hint="-Q")
    pool = pool or ("solo" if "train" in names else "threads")
    argv = ["worker", "-Q", ",".join(names), "-P", pool, "-l", loglevel]
    if concurrency and pool != "solo":
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    app.worker_main(argv)


@main.command()
@click.argument("job_id", required=False)
@click.option("-n", "--limit", default=20, show_default=True, help="How many recent jobs to list.")
@click.option("--wait", is_flag=True, help="With JOB_ID: wait for it with a progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def jobs(ctx: click.Context, job_id: str | None, limit: int, wait: bool, as_json: bool) -> None:
    """List recent jobs, or show one job (JOB_ID, or a unique start of it) with its progress and result.

    Exit status with JOB_ID: 0 when the job succeeded or is still going, 1 when it failed, 2 on an error.
    """
    from .jobs import get_job, list_jobs

    if job_id is None:
        records = list_jobs(limit)
        if as_json:
            click.echo(json.dumps([r.__dict__ for r in records]))
            return
        if not records:
            click.echo("no jobs yet: submit one with `ea train ...` or workers.jobs.submit(...)")
        for r in records:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_at))
            progress = f"  {r.progress}" if r.progress else ""
            click.echo(f"{r.id}  {when}  {r.task:<24} {r.state}{progress}")
        return
    handle = get_job(job_id)
    if wait:
        result = handle.wait(show_progress=True)
        click.echo(json.dumps({"id": handle.id, "state": handle.state, "result": result}))
        return
    stages = list(dict.fromkeys(p.get("stage") for p in handle.progress_log()))
    info = {"id": handle.id, "task": handle.task, "state": handle.state, "progress": handle.progress,
            "stages": stages}
    if handle.done:
        try:
            info["result"] = handle.result
        except WorkerError as exc:
            info["error"] = str(exc)
    click.echo(json.dumps(info, default=str) if as_json else "\n".join(f"{k}: {v}" for k, v in info.items()))
    if "error" in info:
        ctx.exit(1)


@main.command()
@click.argument("name", required=False)
@click.option("--verify", is_flag=True,
              help="With NAME: also check every version's checksums (reads all its data); exit 2 if one fails.")
@click.option("--json", "as_json", is_flag=True, help="With NAME: one JSON object per version.")
@click.pass_context
def models(ctx: click.Context, name: str | None, verify: bool, as_json: bool) -> None:
    """List published models, or the versions of model NAME (the active one is marked *).

    A graph model's versions show the ANN recall@10 of each client path against exact search, measured
    when it was published, and how its item index is searched.
    """
    from vectorstore import IntegrityError, ModelRegistry

    registry = ModelRegistry()
    if name is None:
        names = registry.models()
        if not names:
            click.echo("no models yet: `ea demo` or `ea train graph --interactions FILE` publishes one")
        for model in names:
            click.echo(f"{model}  active v{registry.active_version(model)}")
        return
    corrupt = []
    for info in registry.versions(name):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at))
        mark = "*" if info.active else " "
        status = ""
        if info.problem:  # its manifest cannot be read: listed, so that a rollback can go past it
            status = f"  CORRUPT ({info.problem})"
            corrupt.append(info.version)
        elif verify:
            try:
                loaded = registry.load(name, info.version)
                for table in loaded.tables:
                    registry.verify_table(name, info.version, table)
                status = "  ok"
            except IntegrityError as exc:
                status = f"  CORRUPT ({type(exc).__name__}: {exc})"
                corrupt.append(info.version)
        if as_json:
            click.echo(json.dumps({"model": name, "version": info.version, "active": info.active,
                                   "created_at": info.created_at, "nbytes": info.nbytes, "parts": list(info.parts),
                                   "kind": info.meta.get("kind"), "algorithm": info.meta.get("algorithm"),
                                   "index": info.meta.get("index"), "ann_recall": info.meta.get("ann_recall"),
                                   "status": status.strip() or None}, default=str))
            continue
        click.echo(f"{mark} v{info.version}  {when}  {info.nbytes / 1e6:8.2f} MB  parts: {', '.join(info.parts)}"
                   f"{status}{_recall_note(info.meta)}")
    if corrupt:
        click.echo(f"error: IntegrityError: {name} version(s) {corrupt} fail their integrity check; they are refused "
                   f"by readers (`ea rollback {name} --version N` activates a good one)", err=True)
        ctx.exit(2)


def _recall_note(meta: dict) -> str:
    """``ANN recall@10: recommend 0.998 (ef=200), history 1.000 (exact), ...`` for a graph model's version."""
    report = meta.get("ann_recall")
    if not report:
        return ""
    index = meta.get("index") or {}
    search = report.get("search", {})

    def how(path: str) -> str:
        args = search.get(path, {})
        return "exact" if args.get("exact") else f"ef={args.get('ef', index.get('ef'))}"

    recall = ", ".join(f"{path} {value:.3f} ({how(path)})" for path, value in report["recall"].items())
    return f"\n      ANN recall@{report['k']}: {recall}; {index.get('space')} index, {index.get('mips')} graph"


@main.command()
@click.argument("name")
@click.option("--version", "version_", type=int, default=None, help="Version to activate (default: the previous).")
def rollback(name: str, version_: int | None) -> None:
    """Activate an earlier version of model NAME (serving clients switch to it at once)."""
    from vectorstore import ModelRegistry

    active = ModelRegistry().rollback(name, version_)
    click.echo(f"{name}: v{active} is active")


@main.group()
def redis() -> None:
    """The embedded redis-server used when EA_REDIS_URL is unset."""


@redis.command("url")
def redis_url() -> None:
    """Print the URL of the Redis in use (starting the embedded one if needed) and where it lives."""
    from vectorstore import EmbeddedRedis, resolve_redis_url

    settings = get_settings()
    url = resolve_redis_url(settings)
    click.echo(redact_url(url))
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir)
        record = embedded.record()
        click.echo(f"embedded server files: {embedded.directory} (redis-server {record.get('version')}: "
                   f"{record.get('binary')}, kept for this folder with its port)", err=True)


@redis.command("stop")
def redis_stop() -> None:
    """Stop the embedded redis-server (its data is kept on disk, AOF)."""
    from vectorstore import EmbeddedRedis

    stopped = EmbeddedRedis(get_settings().data_dir).stop()
    click.echo("stopped" if stopped else "not running")


def _add_area_commands() -> None:
    from . import commands

    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_add_area_commands()
