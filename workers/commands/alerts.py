"""``ea alerts run|tail|dead|retry|hooks|enable|status|test``: operate alert delivery (the on-call's
``incidents|show|ack|silence|feedback|labels`` are in :mod:`workers.commands.oncall`)."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time

import click

from vectorstore import redact_url

from .oncall import ONCALL_COMMANDS

__all__ = ["COMMANDS", "alerts_group"]


@click.group("alerts")
def alerts_group() -> None:
    """Deliver anomaly alerts and look after their outbox.

    \b
    Hooks registered in Redis (`ea alerts hooks add NAME --webhook URL`) are delivered to by every consumer
    (`ea alerts run`, `alerts` workers). A consumer also delivers to its own: EA_ALERT_WEBHOOK_URL
    (+ EA_ALERT_WEBHOOK_SECRET, EA_ALERT_WEBHOOK_FORMAT), EA_ALERT_FILE and the options of `ea alerts run`.
    """


def _hooks(webhook: tuple[str, ...], secret: str | None, fmt: str, files: tuple[str, ...]) -> list:
    from alerts import Hook, JsonLinesHook, WebhookHook, registered_hooks

    hooks: dict[str, Hook] = {h.name: h for h in registered_hooks()}
    for url in webhook:
        sender = WebhookHook(url, secret, format=fmt)  # type: ignore[arg-type]  # a click.Choice of the formats
        hooks[sender.name] = sender
    for path in files:
        writer = JsonLinesHook(path)
        hooks[writer.name] = writer
    return list(hooks.values())


@alerts_group.command("run")
@click.option("--webhook", multiple=True, help="Webhook URL to deliver to (repeatable; adds to EA_ALERT_WEBHOOK_URL).")
@click.option("--secret", envvar="EA_ALERT_WEBHOOK_SECRET", default=None, show_envvar=True,
              help="HMAC secret of the --webhook signatures.")
@click.option("--format", "fmt", type=click.Choice(["native", "alertmanager"]), default="native", show_default=True)
@click.option("--file", "files", multiple=True, help="Append notifications to this JSON-lines file (repeatable).")
@click.option("--consumer", default=None, help="Consumer name in the group (default: host-pid-random).")
@click.option("--batch", type=int, default=10, show_default=True, help="Entries read at a time.")
def run(webhook, secret, fmt, files, consumer, batch) -> None:
    """Run a delivery consumer until interrupted (Ctrl-C or SIGTERM finish the current delivery first).

    It delivers to every hook registered in Redis (picking up changes as they come) and to its own.
    """
    from alerts import Deliverer

    deliverer = Deliverer(_hooks(webhook, secret, fmt, files), consumer=consumer, batch=batch)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    names = ", ".join(h.name for h in deliverer.hooks) or "nothing yet (waiting for `ea alerts hooks add`)"
    click.echo(f"consumer {deliverer.consumer} delivering to: {names}")
    try:
        stats = deliverer.run(stop)
    except KeyboardInterrupt:
        stop.set()
        deliverer.close()
        stats = deliverer.stats
    click.echo(f"stopped: {stats.delivered} delivered, {stats.failed} failed attempts, {stats.dead} dead, "
               f"{stats.reclaimed} re-claimed")


@alerts_group.command("tail")
@click.option("--last", type=int, default=10, show_default=True, help="Show this many past deliveries first.")
@click.option("--follow/--no-follow", default=True, show_default=True, help="Keep waiting for new deliveries.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tail_cmd(last, follow, as_json) -> None:
    """Show notifications as they are delivered."""
    from alerts import tail

    stop = threading.Event()
    if not follow:
        stop.set()
    try:
        for d in tail(last=last, stop=stop, block=0.5 if follow else 0.01):
            if as_json:
                click.echo(json.dumps({"hook": d.hook, "at": d.at, **d.notification.to_dict()}))
                continue
            inc = d.notification.incident
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.at))
            by = f" ({inc.model})" if inc.model else ""
            click.echo(f"{when}  {d.notification.state:<8} {inc.kind} {inc.key}{by}  peak {inc.peak_score:.4g} > "
                       f"{inc.threshold:.4g}  start {inc.start}  -> {d.hook}  [{d.notification.idempotency_key}]")
    except KeyboardInterrupt:
        pass


@alerts_group.command("dead")
@click.option("--count", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dead(count, as_json) -> None:
    """List dead letters: deliveries given up (4xx, too many failures, disabled hook)."""
    from alerts import dead_letters

    letters = dead_letters(count)
    for x in letters:
        if as_json:
            click.echo(json.dumps({"id": x.id, "hook": x.hook, "error": x.error, "attempts": x.attempts,
                                   "at": x.at, "notification": json.loads(x.raw or "null")}))
        else:
            what = f"{x.notification.id}" if x.notification else "(malformed entry)"
            click.echo(f"{x.id}  {what}  hook={x.hook}  attempts={x.attempts}  error={x.error}")
    if not letters and not as_json:
        click.echo("no dead letters")


@alerts_group.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Requeue every dead letter.")
def retry(ids, all_) -> None:
    """Send dead letters IDS (or --all) back to the outbox, each for the hook that failed."""
    from alerts import requeue

    if not ids and not all_:
        raise click.UsageError("give dead-letter IDS or --all")
    n = requeue(ids, all=all_)
    click.echo(f"requeued {n} dead letter{'s' if n != 1 else ''}")


@alerts_group.group("hooks", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hook.")
@click.pass_context
def hooks_group(ctx: click.Context, as_json: bool) -> None:
    """List the hooks: those registered in Redis (every consumer's), this environment's, the disabled ones.

    Secrets are never shown, only whether a hook has one.
    """
    if ctx.invoked_subcommand is not None:
        return
    from alerts import disabled_hooks, registered_hooks, shared_hooks

    gone = disabled_hooks()
    shared = shared_hooks()
    rows = [{"name": h.name, "scope": "shared", "kind": h.kind, "url": h.url, "format": h.format,
             "secret": "set" if h.has_secret else "none", "state": "DISABLED" if h.name in gone else "enabled"}
            for h in shared]
    rows += [{"name": h.name, "scope": "this environment", "kind": type(h).__name__,
              "url": redact_url(getattr(h, "url", "")), "format": getattr(h, "format", ""),
              "secret": "set" if getattr(h, "_secret", None) else "none",
              "state": "DISABLED" if h.name in gone else "enabled"} for h in registered_hooks()]
    for row in rows:
        if as_json:
            click.echo(json.dumps(row))
        else:
            fields = (row["name"], row["state"], row["scope"], row["url"] or "-", f"format={row['format'] or '-'}",
                      f"secret={row['secret']}")
            click.echo("  ".join(fields))
    listed = {row["name"] for row in rows}
    for name, info in gone.items():
        if name not in listed and not as_json:
            click.echo(f"{name}  DISABLED since {time.ctime(info['at'])}: {info['reason']}  (ea alerts enable {name})")
    if not rows and not as_json:
        click.echo("no hooks: `ea alerts hooks add NAME --webhook URL` registers one for every consumer")


@hooks_group.command("add")
@click.argument("name")
@click.option("--webhook", "url", required=True,
              help="The endpoint (http or https; user:password@ becomes Basic auth).")
@click.option("--secret", default=None, help="HMAC key of the X-Signature-256 header; `-` reads it from stdin.")
@click.option("--format", "fmt", type=click.Choice(["native", "alertmanager"]), default="native", show_default=True)
def hooks_add(name: str, url: str, secret: str | None, fmt: str) -> None:
    """Register webhook NAME in Redis: every consumer delivers to it from now on (replaces one of that name)."""
    from alerts import add_hook

    if secret == "-":
        secret = sys.stdin.readline().strip() or None
    hook = add_hook(name, url, secret=secret, format=fmt)  # type: ignore[arg-type]  # a click.Choice of the formats
    click.echo(f"{hook.name}: delivering to {hook.url} ({hook.format}, {'signed' if hook.has_secret else 'unsigned'})")


@hooks_group.command("remove")
@click.argument("name")
def hooks_remove(name: str) -> None:
    """Unregister hook NAME: consumers stop delivering to it."""
    from alerts import remove_hook

    remove_hook(name)
    click.echo(f"{name}: removed")


@alerts_group.command("enable")
@click.argument("name")
def enable(name) -> None:
    """Re-enable hook NAME after its endpoint is back (then `ea alerts retry --all`)."""
    from alerts import enable_hook

    click.echo(f"{name}: {'enabled' if enable_hook(name) else 'was not disabled'}")


@alerts_group.command("status")
def status() -> None:
    """Outbox counts: undelivered, pending, retrying, dead, and the consumers."""
    from alerts import outbox_status

    click.echo(json.dumps(outbox_status(), indent=2))


@alerts_group.command("test")
@click.option("--key", default="ea-test", show_default=True, help="Series name of the synthetic incident.")
def test_cmd(key) -> None:
    """Queue a synthetic firing alert (label test=true) to check consumers and hooks end to end."""
    from alerts import send_test

    note = send_test(key)
    click.echo(f"queued {note.id}: a running `ea alerts run` delivers it (watch with `ea alerts tail`)")


for _command in ONCALL_COMMANDS:  # incidents, show, ack, silence, feedback, labels
    alerts_group.add_command(_command)

COMMANDS = [alerts_group]
