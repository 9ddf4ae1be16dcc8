"""Incidents from scores through Redis: opening, resolving, cooldown, grouping, replays and concurrent observers
(real Redis). The machine's rules point by point are tests/alerts/test_incident_machine.py's."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from alerts import IncidentPolicy, Notification, observe, open_incidents
from alerts._key_state import former_state_key
from alerts.exceptions import InvalidAlertSetting
from alerts.keys import AlertKeys

T0 = datetime(2024, 1, 1, tzinfo=UTC)
POLICY = IncidentPolicy(for_points=3, clear_points=4, cooldown_points=30, warmup_points=0, group_by=("service",))


def minutes(n: int, start: int = 0) -> list[datetime]:
    return [T0 + timedelta(minutes=start + i) for i in range(n)]


def feed(key, scores, s, c, start=0, model="m", **kw):
    kw.setdefault("policy", POLICY)
    return observe(model, key, minutes(len(scores), start), scores, 1.0, settings=s, client=c, **kw)


def outbox(s, c) -> list[Notification]:
    return [Notification.from_json(f[b"n"]) for _, f in c.xrange(AlertKeys(s.key_prefix).outbox)]


def test_a_flapping_score_makes_one_incident_not_a_storm(alert_settings, alert_client):
    flapping = [0.1, 2, 3, 0.5, 2.5, 4, 2, 0.2, 0.3, 3, 2, 0.1, 2, 0.2, 0.1, 0.2, 0.1, 0.1]
    notes = feed("cpu", flapping, alert_settings, alert_client)
    assert [n.state for n in notes] == ["firing", "resolved"]
    # The anomaly comes back and flaps again within the cooldown (30 points after the alert): still nothing.
    again = feed("cpu", [3, 3, 3, 3, 0.1, 3, 3, 0.1, 0.1, 0.1, 0.1, 0.1], alert_settings, alert_client, start=18)
    assert again == []
    assert [n.state for n in outbox(alert_settings, alert_client)] == ["firing", "resolved"]


def test_incident_fields(alert_settings, alert_client):
    evidence = [{"window_start": "2023-12-31T00:00:00Z", "distance": 0.1}]
    scores = [0.5, 1.5, 3.0, 2.0, 0.2, 0.2, 0.2, 0.2]
    firing, resolved = feed("cpu", scores, alert_settings, alert_client, model="m", model_version=7,
                            labels={"service": "checkout", "region": "eu"}, evidence=evidence)
    inc = firing.incident
    assert (inc.kind, inc.key, inc.model, inc.model_version, inc.alerts) == ("series", "cpu", "m", "7", 1)
    assert inc.start == "2024-01-01T00:01:00Z" and inc.end is None
    assert (inc.peak_score, inc.peak_at, inc.threshold) == (3.0, "2024-01-01T00:02:00Z", 1.0)
    assert inc.labels == {"service": "checkout", "region": "eu"} and inc.evidence == evidence
    assert inc.group_key == "service=checkout"
    assert resolved.incident.id == inc.id and resolved.incident.fingerprint == inc.fingerprint
    assert resolved.incident.end == "2024-01-01T00:04:00Z"
    assert firing.idempotency_key != resolved.idempotency_key
    assert Notification.from_json(firing.to_json()) == firing


def test_short_spikes_do_not_open_and_the_cooldown_holds_a_quick_return_back(alert_settings, alert_client):
    assert feed("k", [2, 2, 0, 2, 0, 2, 2, 0], alert_settings, alert_client) == []
    policy = IncidentPolicy(for_points=2, clear_points=1, cooldown_points=5)
    first = feed("k2", [2, 2, 0], alert_settings, alert_client, policy=policy)
    # Anomalous again 1 minute after resolving, within the cooldown: held back, and the source that came back
    # must calm down before it may alert again; once it has, past the cooldown, a new incident opens.
    later = feed("k2", [2, 2, 2, 0, 2, 2, 2, 2], alert_settings, alert_client, start=3, policy=policy)
    assert [n.state for n in first] == ["firing", "resolved"]
    assert [n.state for n in later] == ["firing"]
    assert later[0].incident.start == "2024-01-01T00:07:00Z"
    assert later[0].incident.id != first[0].incident.id


def test_replayed_and_split_batches_count_once(alert_settings, alert_client):
    scores = [0, 2, 2, 2, 2, 0, 0, 0, 0]
    whole = feed("a", scores, alert_settings, alert_client)
    parts = [n for i in range(0, 9, 2) for n in feed("b", scores[i:i + 2], alert_settings, alert_client, start=i)]
    assert feed("b", scores, alert_settings, alert_client) == []  # a replayed batch changes nothing
    assert [n.state for n in whole] == [n.state for n in parts] == ["firing", "resolved"]
    assert whole[0].incident.start == parts[0].incident.start


def test_concurrent_observers_make_one_incident(alert_settings, alert_client):
    ts = np.array(minutes(5), dtype="datetime64[us]")
    results, barrier = [], threading.Barrier(6)

    def worker():
        barrier.wait()
        results.extend(observe("m", "shared", ts, [2, 2, 2, 2, 2], 1.0, policy=POLICY, settings=alert_settings))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [n.state for n in results] == ["firing"]
    assert len(outbox(alert_settings, alert_client)) == 1


def test_open_incidents_by_group(alert_settings, alert_client):
    feed("a", [2, 2, 2], alert_settings, alert_client, labels={"service": "x"})
    feed("b", [2, 2, 2], alert_settings, alert_client, labels={"service": "x"})
    feed("c", [2, 2, 2], alert_settings, alert_client, labels={"service": "y"})
    feed("d", [2, 2, 2, 0, 0, 0, 0], alert_settings, alert_client, labels={"service": "x"})
    kw = {"settings": alert_settings, "client": alert_client}
    assert sorted(i.key for i in open_incidents("service=x", **kw)) == ["a", "b"]
    assert len(open_incidents(**kw)) == 3


def test_entities_numeric_timestamps_and_bad_input(alert_settings, alert_client):
    kw = {"settings": alert_settings, "client": alert_client, "policy": POLICY}
    notes = observe("graph", "user-1", [10, 11, 12], [5, 5, 5], 1.0, kind="entity", **kw)
    assert notes[0].incident.kind == "entity" and notes[0].incident.start == "1970-01-01T00:00:10Z"
    with pytest.raises(InvalidAlertSetting, match="1 scores"):
        observe("m", "x", [1, 2], [1.0], 1.0, **kw)
    with pytest.raises(InvalidAlertSetting, match="yesterday"):
        observe("m", "x", ["yesterday"], [1.0], 1.0, **kw)
    with pytest.raises(InvalidAlertSetting, match="threshold"):
        observe("m", "x", [1], [1.0], float("nan"), **kw)
    with pytest.raises(InvalidAlertSetting, match="table"):
        observe("m", "x", [1], [1.0], 1.0, kind="table", **kw)
    with pytest.raises(InvalidAlertSetting, match="a:b"):
        observe("a:b", "x", [1], [1.0], 1.0, **kw)


@settings_(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(scores=st.lists(st.sampled_from([0.0, 0.5, 2.0, 9.0]), min_size=1, max_size=60),
       cuts=st.lists(st.integers(1, 59), max_size=6))
def test_batches_in_any_chunks_give_the_same_incidents(alert_settings, alert_client, scores, cuts):
    policy = IncidentPolicy(for_points=2, clear_points=3, cooldown_points=4)
    run = uuid.uuid4().hex[:8]
    whole = feed(f"w{run}", scores, alert_settings, alert_client, policy=policy)
    bounds = sorted({0, len(scores), *[c for c in cuts if c < len(scores)]})
    chunked = [n for a, b in zip(bounds, bounds[1:])
               for n in feed(f"c{run}", scores[a:b], alert_settings, alert_client, start=a, policy=policy)]
    shape = [(n.state, n.incident.start, n.incident.end, n.incident.peak_score) for n in whole]
    assert shape == [(n.state, n.incident.start, n.incident.end, n.incident.peak_score) for n in chunked]
    # Firing and resolved alternate, one of each per incident, and incidents never overlap.
    assert [n.state for n in whole] == ["firing", "resolved"] * (len(whole) // 2) + ["firing"] * (len(whole) % 2)


def test_a_former_state_s_open_incident_is_carried_over_to_its_detector(alert_settings, alert_client):
    """States kept per series id alone, before incidents had a detector: the key's first batch by the
    incident's detector carries the open incident over (same id: its resolution pairs with its firing); a
    state without an open incident is dropped; another detector's is left for that detector."""
    def former(key: str) -> str:
        return former_state_key(alert_settings.key_prefix, "series", key)

    old_incident = {"id": "inc_old", "fingerprint": "f", "kind": "series", "key": "cpu", "end": None,
                    "start": "2024-01-01T00:00:00Z", "peak_score": 0.9, "peak_at": "2024-01-01T00:00:00Z",
                    "threshold": 0.5, "model": "m", "model_version": "1", "labels": {}, "evidence": [],
                    "group_key": "series=cpu"}
    state = {"last": T0.timestamp(), "bad": 0, "good": 0, "run": None, "cool_until": None, "open": old_incident}
    alert_client.set(former("cpu"), json.dumps(state))
    alert_client.set(former("idle"), json.dumps({**state, "open": None}))
    alert_client.set(former("other"), json.dumps({**state, "open": {**old_incident, "model": "x"}}))
    policy = IncidentPolicy(for_points=1, clear_points=3, cooldown_points=0)
    notes = feed("cpu", [0.1, 0.1, 0.1], alert_settings, alert_client, start=60, policy=policy)
    assert [(n.state, n.incident.id, n.incident.end) for n in notes] == [("resolved", "inc_old",
                                                                          "2024-01-01T01:00:00Z")]
    assert not alert_client.exists(former("cpu"))
    assert feed("idle", [0.1], alert_settings, alert_client, policy=policy) == []
    assert not alert_client.exists(former("idle"))
    assert feed("other", [0.1, 0.1, 0.1], alert_settings, alert_client, policy=policy) == []
    assert alert_client.exists(former("other"))


def test_a_re_alert_of_an_open_incident_is_one_more_firing_notification(alert_settings, alert_client):
    policy = IncidentPolicy(for_points=1, clear_points=3, cooldown_points=2)
    kw = {"settings": alert_settings, "client": alert_client, "policy": policy}
    lasting = [[2, 2, 2, 2, 2, 2, 2, 0, 0, 0], [0, 0, 0, 0, 2, 0, 0, 0, 0, 0]]  # a second source, later
    notes = observe("m", "cpu", minutes(10), np.max(lasting, axis=0), 1.0, rows=range(10),
                    sources=np.array(lasting), **kw)
    assert [n.id.removeprefix(notes[0].incident.id) for n in notes] == [":firing", ":firing:2", ":resolved"]
    assert [n.incident.alerts for n in notes] == [1, 2, 2] and len({n.incident.id for n in notes}) == 1
    assert [n.id for n in outbox(alert_settings, alert_client)] == [n.id for n in notes]
