"""The one incident machine, point by point (pure, in memory): opening, cooldown, re-arming per source,
resolving, re-alerting, warm-up, and the same decisions however the points are batched."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from alerts import IncidentMachine, IncidentPolicy, InvalidAlertSetting, Notification
from alerts._key_state import decode_state, encode_state

POLICY = IncidentPolicy(for_points=1, clear_points=5, cooldown_points=20, warmup_points=30)
HOT, CALM = 0.9, 0.1


def machine(policy: IncidentPolicy = POLICY, **kw) -> IncidentMachine:
    return IncidentMachine(policy, threshold=0.5, model="det", key="web-1", **kw)


def feed(m: IncidentMachine, readings: np.ndarray, start: int = 0):
    """Feed sources x points readings as rows ``start...``, a minute apart."""
    r = np.atleast_2d(readings)
    rows = np.arange(start, start + r.shape[1])
    return m.feed(rows * 60.0, np.nanmax(np.nan_to_num(r, nan=0.0), axis=0), rows=rows, sources=r)


def test_a_lasting_change_alerts_once_and_resolves_once_it_is_calm():
    m = machine()
    r = np.full(400, CALM)
    r[100:350] = HOT  # hot for 250 points, far longer than the cooldown
    d = feed(m, r)
    assert np.flatnonzero(d.alerts).tolist() == [100]
    assert [s for s, _ in d.changes] == ["firing", "resolved"]
    assert np.flatnonzero(d.in_incident).tolist() == list(range(100, 354))  # resolved at the 5th calm point
    firing, resolved = d.changes
    assert firing[1].start == "1970-01-01T01:40:00Z" and resolved[1].end == "1970-01-01T05:50:00Z"


def test_sources_re_arm_on_their_own():
    m = machine()
    r = np.full((2, 200), CALM)
    r[0, 10] = HOT  # source 0 alerts
    r[1, 15] = HOT  # source 1 hot within the cooldown: part of the incident, disarmed
    r[0, 40:45] = HOT  # source 0 again after the cooldown, but the incident is over and 0 re-armed: alerts
    r[1, 55] = HOT  # source 1, re-armed long ago, within the cooldown of that alert: held back, disarmed
    r[1, 70] = HOT  # ... and has calmed since: past the cooldown, it alerts
    r[1, 73] = HOT  # hot again within 5 points: still the same incident, no alert
    d = feed(m, r)
    assert np.flatnonzero(d.alerts).tolist() == [10, 40, 70]
    assert [s for s, _ in d.changes] == ["firing", "resolved"] * 3


def test_a_source_that_keeps_coming_back_during_the_cooldown_must_calm_down_first():
    m = machine()
    r = np.full(100, CALM)
    r[10] = HOT
    r[18:40] = HOT  # back within the cooldown (after the incident resolved), and it stays
    d = feed(m, r)
    assert np.flatnonzero(d.alerts).tolist() == [10]  # not at 31, when the cooldown ends
    again = feed(m, np.array([CALM] * 5 + [HOT]), start=100)  # calm for 5 points: re-armed
    assert np.flatnonzero(again.alerts).tolist() == [5]


def test_a_new_anomaly_while_the_incident_is_open_re_alerts_the_same_incident():
    m = machine()
    r = np.full((2, 120), CALM)
    r[0, 10:100] = HOT  # a lasting change on source 0
    r[1, 50] = HOT  # something else, on source 1, after the cooldown
    d = feed(m, r)
    assert np.flatnonzero(d.alerts).tolist() == [10, 50]
    (s1, first), (s2, second), (s3, resolved) = d.changes
    assert (s1, s2, s3) == ("firing", "firing", "resolved")
    assert first.id == second.id == resolved.id and (first.alerts, second.alerts) == (1, 2)
    ids = [Notification.of_change(s, inc, 0.0).id for s, inc in d.changes]
    assert ids == [f"{first.id}:firing", f"{first.id}:firing:2", f"{first.id}:resolved"]
    assert d.in_incident[10:104].all() and not d.in_incident[104:].any()


def test_a_new_series_warms_up_a_trained_one_does_not():
    r = np.full(100, CALM)
    r[[5, 40]] = HOT
    assert np.flatnonzero(feed(machine(new_series=True), r).alerts).tolist() == [40]
    assert np.flatnonzero(feed(machine(), r).alerts).tolist() == [5, 40]
    m = machine(new_series=True)
    assert feed(m, r[:29]).warming_up and not feed(m, r[29:], start=29).warming_up


def test_for_points_in_a_row_open_and_the_incident_starts_at_the_first():
    m = machine(IncidentPolicy(for_points=3, clear_points=2, cooldown_points=0))
    d = feed(m, np.array([HOT, HOT, CALM, HOT, HOT, HOT, CALM, CALM]))
    assert np.flatnonzero(d.alerts).tolist() == [5]
    assert d.changes[0][1].start == "1970-01-01T00:03:00Z"


def test_missing_scores_are_calm_points_and_replays_change_nothing():
    m = machine()
    r = np.array([HOT] + [np.nan] * 5 + [CALM])
    d = feed(m, r)
    assert [s for s, _ in d.changes] == ["firing", "resolved"]  # the missing points resolved it
    again = feed(m, r)
    assert not again.alerts.any() and again.changes == [] and m.state.points == r.size


def test_a_detector_with_another_number_of_sources_keeps_the_open_incident_until_all_calm():
    m = machine()
    feed(m, np.array([[HOT]]))
    d = feed(m, np.full((3, 6), CALM), start=1)
    assert d.in_incident[:4].all() and [s for s, _ in d.changes] == ["resolved"]


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(InvalidAlertSetting, match="clear_points=0"):
        IncidentPolicy(clear_points=0)
    with pytest.raises(InvalidAlertSetting, match="cooldown_points=-1"):
        IncidentPolicy(cooldown_points=-1)
    with pytest.raises(InvalidAlertSetting, match="threshold"):
        IncidentMachine(POLICY, threshold=float("inf"), model="m", key="k")
    with pytest.raises(InvalidAlertSetting, match="3 timestamps, 2 scores"):
        machine().feed([1, 2, 3], [0.1, 0.2])


@settings_(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_batches_in_any_chunks_and_state_round_trips_decide_alike(data):
    """The streaming path feeds a key batch after batch, its state through JSON in Redis; the batch path feeds
    it whole: the alerts, incidents and notifications are the same."""
    n = data.draw(st.integers(1, 120))
    sources = data.draw(st.integers(1, 3))
    cells = st.sampled_from([CALM, HOT, 0.5, np.nan])
    r = np.array(data.draw(st.lists(st.lists(cells, min_size=n, max_size=n), min_size=sources, max_size=sources)))
    policy = IncidentPolicy(for_points=data.draw(st.integers(1, 3)), clear_points=data.draw(st.integers(1, 6)),
                            cooldown_points=data.draw(st.integers(0, 15)), warmup_points=data.draw(st.integers(0, 10)))
    new = data.draw(st.booleans())
    whole = feed(machine(policy, new_series=new), r)
    cuts = sorted({0, n, *data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=5))})
    state, alerts, inside, changes = None, [], [], []
    for a, b in zip(cuts, cuts[1:]):
        m = machine(policy, new_series=new, state=state)
        d = feed(m, r[:, a:b], start=a)
        alerts.append(d.alerts)
        inside.append(d.in_incident)
        changes += d.changes
        record, _ = encode_state(m.state)  # as the streaming path keeps it in Redis
        state = decode_state(record.encode(), "test")
    assert np.concatenate(alerts).tolist() == whole.alerts.tolist()
    assert np.concatenate(inside).tolist() == whole.in_incident.tolist()
    assert changes == whole.changes


def test_the_state_record_is_read_back_whole_and_garbage_starts_the_key_afresh(caplog):
    m = machine()
    feed(m, np.array([[HOT, CALM], [CALM, HOT]]))
    record, ttl = encode_state(m.state)
    assert decode_state(record.encode(), "k") == m.state and ttl is None  # an open incident never expires
    for garbage in (b"\xff{", b"[1]", b'{"format": 2, "points": -1}', record.replace('"hot":[', '"hot":[7,').encode()):
        assert decode_state(garbage, "the-key") is None
    assert "the-key" in caplog.text
