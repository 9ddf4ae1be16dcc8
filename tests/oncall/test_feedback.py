"""Feedback the detector learns from (issue 29, item 3), against the real Redis and a real Celery worker.

A NAB-like series (5-minute points, a daily cycle, noise) has a benign batch job: a ramp at the same time of
day, once and again 18 days later (past the 4,000 rows the detector's recent memory holds, so the stream has
forgotten it). Its first run raises a false alarm. The on-call says "not an anomaly" on it; the repeat then
does not alert, while a detector given no feedback alerts on it again, and a real anomaly still alerts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import alerts
import anomaly
from anomaly.service import train_detector
from vectorstore import ModelRegistry
from workers.cli import main
from workers.jobs import submit
from workers.scoring import score_series

DAY = 288  # 5-minute points
TRAIN = 1500
FIRST = 2100  # the batch job's first run: a false alarm
REPEAT = FIRST + 18 * DAY  # its repeat, at the same time of day
SPIKE = REPEAT + 600  # a real anomaly after it
N = SPIKE + 100
EXTRA = 10  # rows after N, scored after an undo
BATCH = 500


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(N + EXTRA)
    v = 10 + 3 * np.sin(2 * np.pi * t / DAY) + 0.3 * rng.standard_normal(t.size)
    for start in (FIRST, REPEAT):
        v[start : start + 12] += np.linspace(0, 4, 12)  # the batch job: a one-hour ramp
    v[SPIKE] += 6
    return pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=t.size, freq="5min"), "value": v})


def _stream(name: str, frame: pd.DataFrame, start: int, stop: int, registry, *, task: bool = False) -> list[int]:
    """Rows start..stop-1 scored in batches (in process, or by the ``ea.score_series`` task on the worker);
    the rows that alerted."""
    alerted = []
    for a in range(start, stop, BATCH):
        chunk = frame.iloc[a : min(stop, a + BATCH)]
        stamps, values = chunk.timestamp.astype(str).tolist(), chunk.value.tolist()
        if task:
            out = submit("ea.score_series", name=name, series_id="job-1", timestamps=stamps,
                         values=values).wait(timeout=120)
        else:
            out = score_series(name, "job-1", stamps, values, registry=registry)
        alerted += [a + i for i, x in enumerate(out["is_anomaly"]) if x]
    return alerted


@pytest.mark.timeout(300)
def test_not_an_anomaly_stops_the_repeat_of_a_nab_like_false_alarm(celery_worker, settings, model_name):
    registry = ModelRegistry(settings)
    frame = _frame()
    given, control = f"{model_name}f", f"{model_name}c"
    for name in (given, control):
        train_detector(frame.iloc[:TRAIN], name=name, series_id="job-1", registry=registry)
    halfway = FIRST + 2 * BATCH  # after the first run, and a context's length past it
    for name in (given, control):
        assert _stream(name, frame, TRAIN, halfway, registry) == [FIRST + 4]  # the false alarm
    [false_alarm] = alerts.incidents(all=True, detector=given, series="job-1", settings=settings)

    out = CliRunner().invoke(main, ["alerts", "feedback", false_alarm.incident.id, "--not-anomaly", "--by", "ana",
                                    "--comment", "the monthly batch job"])
    assert out.exit_code == 0, out.output
    assert "normal for" in out.output
    version, [label] = anomaly.series_labels(given, "job-1", registry=registry)
    assert (version, label.kind, label.incident, label.by) == (1, "normal", false_alarm.incident.id, "ana")
    assert label.rows[0] == FIRST + 4 and label.active

    # The rest of the stream goes through the score task on the worker: the repeat alerts only where no
    # feedback was given; the real anomaly alerts in both.
    repeat, spike = _stream(control, frame, halfway, N, registry, task=True)
    assert REPEAT <= repeat < REPEAT + 20 and spike == SPIKE
    assert _stream(given, frame, halfway, N, registry, task=True) == [SPIKE]
    firing = [v.incident.start for v in alerts.incidents(all=True, detector=given, settings=settings)]
    assert len(firing) == 2  # the false alarm and the spike: no incident for the repeat

    # Undone, the label stays (marked) and the series' next batch is scored without its normal windows.
    out = CliRunner().invoke(main, ["alerts", "feedback", "--undo", label.id, "--detector", given, "--series", "job-1",
                                    "--by", "ana"])
    assert out.exit_code == 0, out.output
    version, [undone] = anomaly.series_labels(given, "job-1", registry=registry)
    assert version == 2 and undone.undone_at is not None
    _stream(given, frame, N, N + EXTRA, registry)
    scorer = _live_scorer(settings, given)
    assert all(ref.normal_rows.size == 0 for ref in scorer.references)


def test_feedback_records_a_missed_anomaly_and_refuses_rows_no_longer_held(settings, model_name):
    registry = ModelRegistry(settings)
    frame = _frame()
    train_detector(frame.iloc[:TRAIN], name=model_name, series_id="job-1", registry=registry)
    with pytest.raises(anomaly.InvalidParameter, match="never scored"):
        anomaly.label_normal(model_name, "job-1", frame.timestamp[TRAIN], None, by="ana", registry=registry)
    _stream(model_name, frame, TRAIN, TRAIN + 6000, registry)
    # Rows older than the stream state holds (its last few thousand) cannot become normal windows.
    with pytest.raises(anomaly.InvalidParameter, match="no row between .* held"):
        anomaly.label_normal(model_name, "job-1", str(frame.timestamp[TRAIN]), str(frame.timestamp[TRAIN + 10]),
                             by="ana", registry=registry)
    out = CliRunner().invoke(main, ["alerts", "feedback", "--missed", str(frame.timestamp[3000]),
                                    str(frame.timestamp[3010]), "--detector", model_name, "--series", "job-1",
                                    "--by", "ana", "--comment", "a slow leak"])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["alerts", "labels", "--detector", model_name, "--series", "job-1"])
    assert "missed" in out.output and "a slow leak" in out.output and "labels version 1" in out.output
    with pytest.raises(anomaly.InvalidParameter, match="who gives it"):
        anomaly.label_missed(model_name, "job-1", "2026-01-02", "2026-01-03", by=" ", registry=registry)
    with pytest.raises(anomaly.InvalidParameter, match="before start"):
        anomaly.label_missed(model_name, "job-1", "2026-01-03", "2026-01-02", by="ana", registry=registry)


def _live_scorer(settings, name):
    from anomaly import service

    return service._live[(settings.key_prefix, name, "job-1")][2]
