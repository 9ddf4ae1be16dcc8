"""``ea alerts incidents|show|ack|silence|feedback|labels``: what the on-call engineer runs.

Added to the ``ea alerts`` group by :mod:`workers.commands.alerts`.
"""

from __future__ import annotations

import json
import time

import click

__all__ = ["ONCALL_COMMANDS"]


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _last_values(views) -> dict[tuple[str, str], str]:
    """The last value each incident's series has seen (from its stream state), as text."""
    from anomaly import last_point

    found = {}
    for v in views:
        inc = v.incident
        if inc.kind != "series" or not inc.model or (inc.model, inc.key) in found:
            continue
        point = last_point(inc.model, inc.key)
        found[(inc.model, inc.key)] = "-" if point is None else f"{point[1]:.6g} at {point[0]}"
    return found


@click.command("incidents")
@click.option("--all", "all_", is_flag=True, help="Resolved incidents too (the history), newest first.")
@click.option("--since", default=None, help="With --all: incidents that started at or after this (ISO 8601).")
@click.option("--until", default=None, help="With --all: incidents that started at or before this (ISO 8601).")
@click.option("--detector", default=None, help="Only this detector's incidents.")
@click.option("--series", default=None, help="Only this series' incidents.")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per incident.")
def incidents_cmd(all_, since, until, detector, series, limit, as_json) -> None:
    """List the incidents firing now (detector, series, since, peak score, last value, silenced or acknowledged);
    --all adds the resolved ones that started in a time range."""
    from alerts import incidents

    if (since or until) and not all_:
        raise click.UsageError("--since/--until choose among all incidents: add --all")
    views = incidents(all=all_, since=since, until=until, detector=detector, series=series, limit=limit)
    last = _last_values(views)
    for v in views:
        inc = v.incident
        if as_json:
            click.echo(json.dumps({**v.to_dict(), "last_value": last.get((inc.model or "", inc.key))}))
            continue
        marks = []
        if v.silenced_by:
            marks.append(f"SILENCED by {v.silenced_by}")
        if v.acknowledged:
            marks.append(f"ACKED by {v.acknowledged.get('by')}")
        if not v.notified:
            marks.append("not notified")
        end = f"  ended {inc.end}" if inc.end else ""
        click.echo(f"{inc.id}  {v.state.upper():<8} {inc.model or '-'} / {inc.key}  since {inc.start}{end}  "
                   f"peak {inc.peak_score:.4g} (threshold {inc.threshold:.4g}, {inc.alerts} alert"
                   f"{'s' if inc.alerts != 1 else ''})  last {last.get((inc.model or '', inc.key), '-')}"
                   + (f"  [{'; '.join(marks)}]" if marks else ""))
    if not views and not as_json:
        click.echo("no incidents firing" if not all_ else "no incidents in that range")


@click.command("show")
@click.argument("incident_id")
@click.option("--plot", "plot", is_flag=False, flag_value="-", default=None, metavar="[FILE.png]",
              help="Draw the window against its nearest normal ones: as text, or into FILE.png (matplotlib).")
@click.option("--json", "as_json", is_flag=True, help="The incident and its evidence as JSON.")
def show_cmd(incident_id, plot, as_json) -> None:
    """Show incident INCIDENT_ID with its evidence: the window, its nearest normal windows with their timestamps,
    the score against its threshold."""
    from dataclasses import asdict

    from alerts import evidence_text, incident, plot_evidence

    view = incident(incident_id)
    inc = view.incident
    if as_json:
        click.echo(json.dumps({**view.to_dict(), "evidence": asdict(inc)["evidence"]}, indent=2))
        return
    click.echo(f"{inc.id}  {view.state.upper()}  detector {inc.model or '-'}  series {inc.key}  "
               f"(version {inc.model_version or '-'})")
    click.echo(f"from {inc.start} to {inc.end or 'now'}; {inc.alerts} alert{'s' if inc.alerts != 1 else ''}; "
               f"labels {inc.labels or '{}'}")
    if view.silenced_by:
        click.echo(f"silenced by {view.silenced_by}")
    if view.acknowledged:
        click.echo(f"acknowledged by {view.acknowledged.get('by')} at {_when(view.acknowledged['at'])}"
                   f"{': ' + view.acknowledged['comment'] if view.acknowledged.get('comment') else ''}")
    click.echo(evidence_text(inc))
    if plot == "-":
        click.echo(plot_evidence(inc))
    elif plot:
        click.echo(f"plot written to {plot_evidence(inc, plot)}")


@click.command("ack")
@click.argument("incident_id")
@click.option("--by", required=True, help="Who acknowledges.")
@click.option("--comment", default="", help="Why, or what is being done.")
def ack_cmd(incident_id, by, comment) -> None:
    """Acknowledge open incident INCIDENT_ID: its repeats are not notified until it resolves."""
    from alerts import acknowledge

    acknowledge(incident_id, by=by, comment=comment)
    click.echo(f"{incident_id}: acknowledged by {by}; repeats are muted until it resolves")


@click.group("silence")
def silence_group() -> None:
    """Silences (Alertmanager's): matchers on detector, series and labels, a start and an end, who and why.

    \b
    A silenced incident still opens and resolves (and is listed as silenced) but notifies no hook.
      ea alerts silence add series=cpu-eu-1 --duration 2h --by ana --comment "deploy"
      ea alerts silence add detector=~"cpu-.*" service!=checkout --until 2026-12-08T18:00Z --by ana --comment x
    """


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    try:
        return float(text[:-1]) * _UNITS[text[-1]] if text and text[-1] in _UNITS else float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (e.g. 90m, 2h, 1d)") from None


@silence_group.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--duration", default=None, help="How long from its start (e.g. 30m, 2h, 1d).")
@click.option("--until", "until", default=None, help="Its end (ISO 8601), instead of --duration.")
@click.option("--start", default=None, help="Its start (ISO 8601; default now).")
@click.option("--by", required=True, help="Who silences.")
@click.option("--comment", required=True, help="Why.")
def silence_add(matchers, duration, until, start, by, comment) -> None:
    """Silence the incidents that MATCHERS match (name=value, name!=value, name=~regex, name!~regex; names:
    detector, series, kind, or a label)."""
    from alerts import add_silence

    if (duration is None) == (until is None):
        raise click.UsageError("give --duration or --until (one of them)")
    silence = add_silence(matchers, starts_at=start, ends_at=until,
                          duration=None if duration is None else _duration(duration), created_by=by, comment=comment)
    click.echo(f"{silence.id}: {' '.join(map(str, silence.matchers))} from {_when(silence.starts_at)} to "
               f"{_when(silence.ends_at)}")


@silence_group.command("list")
@click.option("--state", type=click.Choice(["active", "pending", "expired"]), default=None,
              help="Only these (default: all, expired ones kept for the record).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per silence.")
def silence_list(state, as_json) -> None:
    """List silences, newest first."""
    from alerts import silences

    found = silences(state)
    for s in found:
        if as_json:
            click.echo(json.dumps(s.to_dict()))
        else:
            click.echo(f"{s.id}  {s.state().upper():<8} {' '.join(map(str, s.matchers))}  {_when(s.starts_at)} -> "
                       f"{_when(s.ends_at)}  by {s.created_by}: {s.comment}")
    if not found and not as_json:
        click.echo("no silences")


@silence_group.command("expire")
@click.argument("silence_ids", nargs=-1, required=True)
def silence_expire(silence_ids) -> None:
    """End silences SILENCE_IDS now (they stay listed, expired)."""
    from alerts import expire_silence

    for sid in silence_ids:
        s = expire_silence(sid)
        click.echo(f"{s.id}: expired at {_when(s.ends_at)}")


@click.command("feedback")
@click.argument("incident_id", required=False)
@click.option("--not-anomaly", "not_anomaly", is_flag=True,
              help="The incident was no anomaly: its windows join the detector's normal reference for the series.")
@click.option("--missed", nargs=2, metavar="FROM TO", default=None,
              help="An anomaly the detector did not flag, from FROM to TO (ISO 8601): kept as a label.")
@click.option("--undo", "undo", default=None, metavar="LABEL_ID", help="Undo a label (ea alerts labels lists them).")
@click.option("--detector", default=None, help="The detector (default: the incident's).")
@click.option("--series", default=None, help="The series (default: the incident's).")
@click.option("--by", required=True, help="Who gives the feedback.")
@click.option("--comment", default="", help="Why.")
def feedback_cmd(incident_id, not_anomaly, missed, undo, detector, series, by, comment) -> None:
    """Tell the detector about INCIDENT_ID (--not-anomaly), a missed anomaly (--missed FROM TO), or take a label
    back (--undo LABEL_ID). No retraining: the series' next batch is scored with it."""
    from alerts import incident
    from anomaly import label_missed, label_normal, undo_label

    if sum([not_anomaly, missed is not None, undo is not None]) != 1:
        raise click.UsageError("give one of --not-anomaly, --missed FROM TO, --undo LABEL_ID")
    inc = incident(incident_id).incident if incident_id else None
    if inc is not None and inc.kind != "series":
        raise click.UsageError(f"{incident_id} is an incident of {inc.kind} {inc.key}: feedback is for series")
    detector = detector or (inc.model if inc else None)
    series = series or (inc.key if inc else None)
    if not detector or not series:
        raise click.UsageError("name the series: an INCIDENT_ID, or --detector and --series")
    if not_anomaly:
        if inc is None:
            raise click.UsageError("--not-anomaly needs the INCIDENT_ID")
        label = label_normal(detector, series, inc.start, inc.end, by=by, comment=comment, incident=inc.id)
        first, last = label.rows or (0, 0)
        click.echo(f"{label.id}: rows {first}-{last} of {series} ({label.start} to {label.end}) are "
                   f"normal for {detector} from its next batch (labels v{label.version}; undo: ea alerts feedback "
                   f"--undo {label.id} --detector {detector} --series {series} --by {by})")
    elif missed is not None:
        label = label_missed(detector, series, missed[0], missed[1], by=by, comment=comment)
        click.echo(f"{label.id}: missed anomaly of {series} from {label.start} to {label.end} recorded "
                   f"(labels v{label.version})")
    else:
        label = undo_label(detector, series, undo, by=by)
        click.echo(f"{label.id}: undone ({label.kind} label of {series}); from the series' next batch on it no "
                   "longer counts")


@click.command("labels")
@click.option("--detector", required=True)
@click.option("--series", required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per label.")
def labels_cmd(detector, series, as_json) -> None:
    """List the labels of a series: normal (not an anomaly) and missed anomalies, undone ones marked."""
    from anomaly import series_labels

    version, found = series_labels(detector, series)
    for lab in found:
        if as_json:
            click.echo(json.dumps(lab.to_dict(with_values=False)))
            continue
        state = f"UNDONE {_when(lab.undone_at)}" if lab.undone_at else "active"
        rows = f" rows {lab.rows[0]}-{lab.rows[1]}" if lab.rows else ""
        click.echo(f"{lab.id}  {lab.kind:<7} {state:<8} {lab.start} to {lab.end}{rows}  v{lab.version}  by {lab.by}"
                   f"{': ' + lab.comment if lab.comment else ''}{'  (' + lab.incident + ')' if lab.incident else ''}")
    if not as_json:
        click.echo(f"labels version {version}" if found else "no labels")


ONCALL_COMMANDS = [incidents_cmd, show_cmd, ack_cmd, silence_group, feedback_cmd, labels_cmd]
