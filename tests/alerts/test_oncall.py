"""The on-call's view and controls (issue 29, items 1-2), against the real Redis and a real Celery worker:
incidents firing and resolved, one incident's evidence, silences (Alertmanager's matchers) and
acknowledgements, from Python and from ``ea alerts``."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import alerts
from alerts import IncidentPolicy, Notification
from alerts.keys import AlertKeys
from anomaly.service import train_detector
from vectorstore import ModelRegistry
from workers.cli import main
from workers.jobs import submit

POLICY = IncidentPolicy(for_points=1, clear_points=3, cooldown_points=2, warmup_points=0)
T0 = 1_767_225_600.0  # 2026-01-01T00:00Z


def _feed(model, key, scores, settings, client, *, start=0, labels=None, sources=None):
    times = [T0 + 60 * (start + i) for i in range(len(scores))]
    return alerts.observe(model, key, times, scores, 0.5, rows=range(start, start + len(scores)), labels=labels,
                          sources=None if sources is None else np.array(sources), policy=POLICY, settings=settings,
                          client=client)


def _two_sources(a, b, settings, client, *, start):
    """Points whose two sources read ``a`` and ``b`` (the score is the larger)."""
    return _feed("cpu", "eu-1", np.maximum(a, b).tolist(), settings, client, start=start, sources=[a, b])


def _outbox(settings, client) -> list[Notification]:
    return [Notification.from_json(f[b"n"]) for _, f in client.xrange(AlertKeys(settings.key_prefix).outbox)]


def test_incidents_firing_and_resolved_in_a_time_range(alert_settings, alert_client):
    _feed("cpu", "eu-1", [0.1, 0.9, 0.95, 0.2], alert_settings, alert_client)
    _feed("cpu", "eu-2", [0.1, 0.1, 0.7, 0.1, 0.1, 0.1, 0.1], alert_settings, alert_client)
    firing = alerts.incidents(settings=alert_settings, client=alert_client)
    assert [(v.incident.key, v.state) for v in firing] == [("eu-1", "firing")]
    assert firing[0].incident.peak_score == 0.95 and firing[0].since == "2026-01-01T00:01:00Z"
    everything = alerts.incidents(all=True, settings=alert_settings, client=alert_client)
    assert sorted((v.incident.key, v.state) for v in everything) == [("eu-1", "firing"), ("eu-2", "resolved")]
    # The range is on the start: eu-2's incident started at 00:02, eu-1's at 00:01.
    later = alerts.incidents(all=True, since="2026-01-01T00:02Z", settings=alert_settings, client=alert_client)
    assert [v.incident.key for v in later] == ["eu-2"]
    assert alerts.incidents(all=True, until=T0 + 60, settings=alert_settings, client=alert_client)[0].incident.key \
        == "eu-1"
    with pytest.raises(alerts.InvalidAlertSetting, match="not ISO 8601"):
        alerts.incidents(all=True, since="yesterday", settings=alert_settings, client=alert_client)
    with pytest.raises(alerts.IncidentNotFound, match="inc_nope"):
        alerts.incident("inc_nope", settings=alert_settings, client=alert_client)


def test_a_silence_mutes_matching_incidents_which_still_open_and_resolve(alert_settings, alert_client):
    with pytest.raises(alerts.InvalidAlertSetting, match="who made it"):
        alerts.add_silence(["series=eu-1"], duration=60, created_by="", comment="deploy", settings=alert_settings,
                           client=alert_client)
    with pytest.raises(alerts.InvalidAlertSetting, match="not name=value"):
        alerts.parse_matcher("series")
    with pytest.raises(alerts.InvalidAlertSetting, match="not a regex"):
        alerts.parse_matcher("series=~(")
    silence = alerts.add_silence(["detector=~cpu-.*", 'service="checkout"'], duration=3600, created_by="ana",
                                 comment="deploy", settings=alert_settings, client=alert_client)
    # Matched: detector cpu-a and label service=checkout. Not matched: another service, another detector.
    _feed("cpu-a", "eu-1", [0.9, 0.1], alert_settings, alert_client, labels={"service": "checkout"})
    _feed("cpu-a", "eu-2", [0.9, 0.1], alert_settings, alert_client, labels={"service": "search"})
    _feed("mem", "eu-1", [0.9, 0.1], alert_settings, alert_client, labels={"service": "checkout"})
    assert sorted((n.incident.model, n.incident.key) for n in _outbox(alert_settings, alert_client)) == \
        [("cpu-a", "eu-2"), ("mem", "eu-1")]
    [muted] = [v for v in alerts.incidents(settings=alert_settings, client=alert_client)
               if v.incident.model == "cpu-a" and v.incident.key == "eu-1"]
    assert muted.silenced_by == silence.id and not muted.notified
    # It resolves, recorded, and notifies nothing (no hook saw it fire), even after the silence expired.
    alerts.expire_silence(silence.id, settings=alert_settings, client=alert_client)
    _feed("cpu-a", "eu-1", [0.1, 0.1, 0.1], alert_settings, alert_client, start=2, labels={"service": "checkout"})
    assert len(_outbox(alert_settings, alert_client)) == 2
    resolved = alerts.incident(muted.incident.id, settings=alert_settings, client=alert_client)
    assert resolved.state == "resolved" and resolved.incident.end is not None and not resolved.notified
    # The expired silence is kept for the record; a new incident of the series notifies again.
    [kept] = alerts.silences("expired", settings=alert_settings, client=alert_client)
    assert kept.id == silence.id and kept.comment == "deploy" and kept.created_by == "ana"
    _feed("cpu-a", "eu-1", [0.9], alert_settings, alert_client, start=10, labels={"service": "checkout"})
    assert [n.incident.key for n in _outbox(alert_settings, alert_client)][-1] == "eu-1"


def test_an_acknowledged_incident_does_not_repeat_until_it_resolves(alert_settings, alert_client):
    # Both sources fire: an incident opens. Source b stays hot (the incident stays open) while a calms down and
    # re-arms, then fires again: a repeat of the open incident.
    _two_sources([0.9], [0.9], alert_settings, alert_client, start=0)
    [view] = alerts.incidents(settings=alert_settings, client=alert_client)
    with pytest.raises(alerts.IncidentNotFound, match="not open"):
        alerts.acknowledge("inc_nope", by="ana", settings=alert_settings, client=alert_client)
    alerts.acknowledge(view.incident.id, by="ana", comment="looking", settings=alert_settings, client=alert_client)
    _two_sources([0.1, 0.1, 0.1, 0.9], [0.9, 0.9, 0.9, 0.9], alert_settings, alert_client, start=1)
    acked = alerts.incident(view.incident.id, settings=alert_settings, client=alert_client)
    assert acked.incident.alerts == 2 and acked.acknowledged["by"] == "ana" and acked.state == "firing"
    assert [n.state for n in _outbox(alert_settings, alert_client)] == ["firing"]  # the repeat: muted
    _two_sources([0.1] * 5, [0.1] * 5, alert_settings, alert_client, start=5)
    assert [n.state for n in _outbox(alert_settings, alert_client)] == ["firing", "resolved"]  # resolution sent
    done = alerts.incident(view.incident.id, settings=alert_settings, client=alert_client)
    assert done.state == "resolved" and done.acknowledged["comment"] == "looking"
    # The acknowledgement ended with its incident: the next incident of the series repeats again.
    _two_sources([0.9, 0.1, 0.1, 0.1, 0.9], [0.9] * 5, alert_settings, alert_client, start=20)
    assert [n.state for n in _outbox(alert_settings, alert_client)][2:] == ["firing", "firing"]


def test_ea_alerts_incidents_show_silence_ack_on_a_detector_scored_by_the_worker(celery_worker, settings,
                                                                                 model_name, tmp_path):
    """The whole loop through the CLI, on incidents a real detector opened in the score task."""
    rng = np.random.default_rng(0)
    n = 1000
    values = np.sin(2 * np.pi * np.arange(n) / 25) + 0.05 * rng.standard_normal(n)
    values[975:990] *= -1  # a shape within the range seen, near the end: its incident is still open after it
    frame = pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"), "value": values})
    train_detector(frame.iloc[:800], name=model_name, series_id="web-1", registry=ModelRegistry(settings))
    cli = CliRunner()
    out = cli.invoke(main, ["alerts", "silence", "add", f"detector={model_name}", "series=web-2", "--duration", "1h",
                            "--by", "ana", "--comment", "deploy of web-2"])
    assert out.exit_code == 0, out.output
    silence_id = out.output.split(":")[0]
    batch = frame.iloc[800:]
    result = submit("ea.score_series", name=model_name, series_id="web-1", timestamps=batch.timestamp.astype(str)
                    .tolist(), values=batch.value.tolist()).wait(timeout=120)
    assert sum(result["is_anomaly"]) == 1 and result["notifications"] == 1

    out = cli.invoke(main, ["alerts", "incidents", "--detector", model_name])
    assert out.exit_code == 0, out.output
    assert "FIRING" in out.output and "web-1" in out.output and "peak" in out.output and "last " in out.output
    [line] = out.output.splitlines()
    incident_id = line.split()[0]
    out = cli.invoke(main, ["alerts", "show", incident_id, "--plot"])
    assert out.exit_code == 0, out.output
    # The evidence: the window, its nearest normal window with its timestamp, the score against the threshold.
    assert "nearest normal window" in out.output and "2026-01-0" in out.output and "vs threshold 0.5" in out.output
    assert "* alerting window" in out.output  # the text plot's legend
    png = tmp_path / "evidence.png"
    out = cli.invoke(main, ["alerts", "show", incident_id, "--plot", str(png)])
    assert out.exit_code == 0 and png.stat().st_size > 1000, out.output
    out = cli.invoke(main, ["alerts", "ack", incident_id, "--by", "ana"])
    assert out.exit_code == 0, out.output
    out = cli.invoke(main, ["alerts", "incidents", "--json", "--detector", model_name])
    shown = json.loads(out.output)
    assert shown["acknowledged"]["by"] == "ana" and shown["detector"] == model_name and shown["last_value"]
    out = cli.invoke(main, ["alerts", "silence", "list", "--state", "active"])
    assert silence_id in out.output and "deploy of web-2" in out.output
    out = cli.invoke(main, ["alerts", "silence", "expire", silence_id])
    assert out.exit_code == 0, out.output
    time.sleep(0.01)
    out = cli.invoke(main, ["alerts", "silence", "list", "--json"])
    assert [json.loads(x)["state"] for x in out.output.splitlines() if silence_id in x] == ["expired"]
    out = cli.invoke(main, ["alerts", "incidents", "--since", "2026-01-01"])
    assert out.exit_code != 0 and "--all" in out.output


def test_matchers_follow_alertmanager():
    inc = alerts.Incident("inc_x", "f", "series", "eu-1", None, None, 0.9, None, 0.5, model="cpu-a",
                          labels={"service": "checkout"})

    def silence(*texts):
        return alerts.Silence("sil_x", tuple(alerts.parse_matcher(t) for t in texts), 0.0, 1.0, "ana", "why", 0.0)

    assert silence("series=eu-1").matches(inc) and not silence("series=eu").matches(inc)
    assert silence("series!=eu-2", "kind=series").matches(inc) and not silence("series!=eu-1").matches(inc)
    assert silence("detector=~cpu-.*").matches(inc) and not silence("detector=~cpu").matches(inc)  # whole value
    assert silence("service!~check.*|search").matches(inc) is False and silence("region!~.+").matches(inc)
    assert silence('service = "checkout"', "series=~eu-[0-9]").matches(inc)  # spaces and quotes
    assert not silence("team=db").matches(inc)  # a label the incident lacks reads as empty
    assert silence("series=eu-1").state(now=0.5) == "active" and silence("series=eu-1").state(now=2) == "expired"
