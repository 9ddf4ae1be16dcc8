"""Records in Redis that hold garbage: read back with a typed error or recovered from, never a raw error.

Garbage is planted with plain Redis writes (HSET, XADD), as anyone with write access to Redis could.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from alerts import (
    CallableHook,
    Deliverer,
    IncidentPolicy,
    add_hook,
    dead_letters,
    disabled_hooks,
    forget,
    observe,
    open_incidents,
    send_test,
    tail,
)
from alerts.keys import AlertKeys
from anomaly import CorruptState, StreamScorer
from anomaly.service import score_points, train_detector
from vectorstore import ModelRegistry
from workers.commands.alerts import alerts_group

TRAIN = 600
STEP = 100


def _frame(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = np.sin(2 * np.pi * np.arange(n) / 40) + 0.05 * rng.standard_normal(n)
    return pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"), "value": values})


@pytest.fixture(scope="module")
def detector_model() -> tuple[str, pd.DataFrame]:
    """A detector trained on the first rows of a sine series (its training series id: ``train``)."""
    import uuid

    name = f"m{uuid.uuid4().hex[:10]}"
    frame = _frame()
    train_detector(frame, name=name, train_until=TRAIN, series_id="train")
    return name, frame


def _batch(name: str, series: str, frame: pd.DataFrame, a: int) -> dict:
    chunk = frame.iloc[a : a + STEP]
    return score_points(name, series, chunk.timestamp.astype(str).tolist(), chunk.value.tolist(),
                        registry=ModelRegistry())


def _state_key(settings, name: str, series: str) -> str:
    from anomaly._stream_state import state_key

    return state_key(settings.key_prefix, name, series)


def _meta(redis_client, key: str) -> dict:
    return json.loads(redis_client.hget(key, "meta"))


GARBAGE = {
    "truncated values": lambda meta: {"values": b"\x00" * 7},
    "truncated calibration readings": lambda meta: {"cal0_readings": b"\x01\x02\x03"},
    "meta not JSON": lambda meta: {"meta": b"\xff\xfe{junk"},
    "meta a JSON list": lambda meta: {"meta": b"[1, 2]"},
    "meta empty object": lambda meta: {"meta": b"{}"},
    "non-numeric position": lambda meta: {"meta": json.dumps({**meta, "position": "abc"})},
    "non-numeric values seen": lambda meta: {"meta": json.dumps({**meta, "value_range": {**meta["value_range"],
                                                                                          "seen": "x"}})},
    "calibrations not objects": lambda meta: {"meta": json.dumps({**meta,
                                                                  "calibrators": [1] * len(meta["calibrators"])})},
    "version not a number": lambda meta: {"meta": json.dumps({**meta, "version": "v1"})},
    "times of another length": lambda meta: {"times": np.arange(400, 0, -1, dtype="<i8").tobytes()[-8 * 80:]},
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
@pytest.mark.parametrize("series", ["train", "other"])
def test_a_corrupt_stream_state_restarts_the_series_loudly(detector_model, settings, redis_client, caplog,
                                                            case: str, series: str) -> None:
    name, frame = detector_model
    series = f"{series}" if series == "train" else f"{series}-{case.replace(' ', '-')}"
    key = _state_key(settings, name, series)
    redis_client.delete(key)
    first = _batch(name, series, frame, TRAIN)
    planted = GARBAGE[case](_meta(redis_client, key))
    redis_client.hset(key, mapping={**planted, "token": "planted-by-someone-else"})
    with caplog.at_level(logging.WARNING, logger="anomaly.service"):
        out = _batch(name, series, frame, TRAIN + STEP)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and repr(series) in errors[0].getMessage() and key in errors[0].getMessage()
    assert "junk" not in caplog.text and "abc" not in caplog.text
    assert len(out["scores"]) == STEP and out["version"] == first["version"]
    if series == "train":  # the training series continues right after its prefix: scored from the first row
        assert out["position"] == TRAIN + STEP and not out["new_series"]
    # The state was rewritten whole: the next batch reads it back without complaint.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomaly.service"):
        _batch(name, series, frame, TRAIN + 2 * STEP)
    assert not caplog.records


def test_the_score_task_scores_a_series_whose_state_holds_garbage(detector_model, settings, redis_client,
                                                                  celery_worker) -> None:
    from workers.jobs import submit

    name, frame = detector_model
    key = _state_key(settings, name, "via-task")
    _batch(name, "via-task", frame, TRAIN)
    redis_client.hset(key, mapping={"values": b"\x00" * 5, "meta": b"\xff{junk", "token": "someone-else"})
    chunk = frame.iloc[TRAIN + STEP : TRAIN + 2 * STEP]
    out = submit("ea.score_series", name=name, series_id="via-task", timestamps=chunk.timestamp.astype(str).tolist(),
                 values=chunk.value.tolist()).wait(timeout=60)
    assert len(out["scores"]) == STEP
    assert json.loads(redis_client.hget(key, "meta"))["position"] == out["position"]  # rewritten whole


def test_a_token_that_is_not_text_does_not_break_scoring(detector_model, settings, redis_client) -> None:
    name, frame = detector_model
    key = _state_key(settings, name, "token")
    _batch(name, "token", frame, TRAIN)
    redis_client.hset(key, "token", b"\xff\xfe\x00")
    out = _batch(name, "token", frame, TRAIN + STEP)
    assert len(out["scores"]) == STEP


def test_load_state_names_the_part_never_its_content(detector_model) -> None:
    name, frame = detector_model
    from anomaly.service import load_detector

    _, detector = load_detector(ModelRegistry(), name)
    scorer: StreamScorer = detector.new_stream()
    scorer.update(frame.value.to_numpy()[:300], frame.timestamp.to_numpy().astype("datetime64[ns]").astype("i8")[:300])
    meta, arrays = scorer.to_state()
    with pytest.raises(CorruptState, match="meta.position") as err:
        detector.new_stream().load_state({**meta, "position": "secret-text"}, arrays)
    assert "secret-text" not in str(err.value)
    with pytest.raises(CorruptState, match="'times'"):
        detector.new_stream().load_state(meta, {**arrays, "times": b"\x00" * 9})
    assert isinstance(err.value, ValueError)


# --- alerts: outbox entries, delivery records, dead letters, incidents, hooks ------------------------------


@pytest.fixture
def own(settings):
    """Settings with a key prefix of this test's own, and a client."""
    import uuid

    from vectorstore import connect

    s = settings.with_(key_prefix=f"{settings.key_prefix}{uuid.uuid4().hex[:8]}:")
    client = connect(s)
    yield s, client, AlertKeys(s.key_prefix)
    client.close()


def test_garbage_outbox_entries_are_dead_lettered_and_the_others_delivered(own, caplog) -> None:
    s, c, keys = own
    first = send_test("first", settings=s, client=c)
    good = json.loads(send_test("model", settings=s, client=c).to_json())
    planted = [
        {"n": b"\xff\xfe{junk"},  # not text
        {"n": json.dumps({"id": 5})},  # JSON, not a notification
        {"n": json.dumps({**good, "incident": {**good["incident"], "peak_score": "junk"}})},
        {"n": json.dumps(good), "hooks": b"\x00not json"},  # a requeued entry whose hook list is garbage
        {"n": json.dumps(good), "hooks": "[1]"},
        {"x": "junk"},  # no notification at all
    ]
    for fields in planted:
        c.xadd(keys.outbox, fields)
    failing = send_test("failing", settings=s, client=c)
    c.hset(keys.delivery(failing.id), "sink#n", "junk")  # its attempt count holds garbage
    last = send_test("last", settings=s, client=c)
    got: list[str] = []

    def sink(note) -> None:
        if note.id == failing.id:
            raise RuntimeError("endpoint down")
        got.append(note.id)

    with caplog.at_level(logging.WARNING):
        Deliverer([CallableHook(sink, name="sink")], shared=False, settings=s, client=c, max_attempts=2,
                  backoff=0.01, backoff_max=0.02, min_idle=0.3).drain(20)
    assert got[0] == first.id and got[-1] == last.id and len(got) == 3  # first, the model's one, last
    dead = dead_letters(settings=s, client=c)
    malformed = [d for d in dead if d.hook == "*"]
    assert len(malformed) == len(planted) and all(d.error.startswith("malformed: ") for d in malformed)
    assert any("'peak_score'" in d.error for d in malformed) and any("'hooks'" in d.error for d in malformed)
    assert [d.notification.id for d in dead if d.hook == "sink"] == [failing.id]
    assert "junk" not in " ".join(d.error for d in dead) and "junk" not in caplog.text


def test_garbage_dead_letters_delivered_log_and_disabled_marks_are_listed_not_raised(own) -> None:
    s, c, keys = own
    c.xadd(keys.dead, {"n": b"\xff\xfe", "hook": b"\xff", "attempts": "x", "at": "nan"})
    c.xadd(keys.delivered, {"hook": "h"})  # no notification, no time
    c.xadd(keys.delivered, {"hook": "h", "at": "1", "n": b"{junk"})
    note = send_test(settings=s, client=c)
    c.xadd(keys.delivered, {"hook": "h", "at": "1", "n": note.to_json()})
    c.hset(keys.disabled, "gone", b"\xff{junk")
    [letter] = dead_letters(settings=s, client=c)
    assert letter.notification is None and letter.attempts == 0 and letter.at == 0.0
    stop = threading.Event()
    stop.set()
    assert [d.notification.id for d in tail(last=10, stop=stop, settings=s, client=c)] == [note.id]
    assert disabled_hooks(settings=s, client=c) == {"gone": {"reason": "unreadable mark", "at": 0.0, "status": None}}
    c.hset(keys.disabled, "gone", json.dumps({"reason": 5}))
    listed = CliRunner().invoke(alerts_group, ["hooks"], env={"EA_KEY_PREFIX": s.key_prefix})
    assert listed.exit_code == 0 and "gone  DISABLED" in listed.output, listed.output


def test_a_garbage_incident_state_starts_the_key_afresh_and_garbage_open_incidents_are_skipped(own, caplog) -> None:
    s, c, keys = own
    policy = IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0)
    [firing] = observe("m", "cpu", [1.0], [0.9], 0.5, policy=policy, settings=s, client=c)
    for garbage in (b"\xff{", b"[1]", json.dumps({"last": "x"}), json.dumps({"open": {"id": "i"}})):
        c.set(keys.state("series", "m", "cpu"), garbage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alerts.incidents"):
            notes = observe("m", "cpu", [2.0], [0.9], 0.5, policy=policy, settings=s, client=c)
        assert [n.state for n in notes] == ["firing"]  # the key starts afresh: a new incident
        assert [r.levelname for r in caplog.records] == ["ERROR"] and keys.state("series", "m", "cpu") in caplog.text
    c.hset(keys.open, "inc_garbage", b"\xff{junk")
    c.hset(keys.open, "inc_wrong", json.dumps({"id": "x", "state": "firing"}))
    assert firing.incident.id in {i.id for i in open_incidents(settings=s, client=c)}
    forget("m", "cpu", settings=s, client=c)
    assert open_incidents(settings=s, client=c) == []
    assert c.hlen(keys.open) == 2  # the garbage ones are left for someone to look at


def test_garbage_hook_records_are_skipped_in_listing_and_delivery(own, caplog) -> None:
    s, c, keys = own
    add_hook("good", "http://127.0.0.1:9/hook", settings=s, client=c)
    c.hset(keys.hooks, "bad", b"\xff{junk")
    c.hset(keys.hooks, "wrong", json.dumps({"url": 5, "secret": "junk"}))
    c.hset(keys.hooks, "late", json.dumps({"url": "http://127.0.0.1:9/x", "added_at": "junk"}))
    c.incr(keys.hooks_version)
    with caplog.at_level(logging.WARNING, logger="alerts.shared"):
        result = CliRunner().invoke(alerts_group, ["hooks"], env={"EA_KEY_PREFIX": s.key_prefix})
        assert result.exit_code == 0, result.output
        assert result.output.startswith("good") and "bad" not in result.output
        assert {h.name for h in Deliverer(settings=s, client=c, shared=True, hooks=[]).hooks} == {"good"}
    assert all(name in caplog.text for name in ("bad", "wrong", "late")) and "junk" not in caplog.text


# --- workers: job records ----------------------------------------------------------------------------------


def test_garbage_job_records_and_progress_reports_are_skipped(own, caplog) -> None:
    from workers._job_records import JobKeys
    from workers.cli import main
    from workers.jobs import JobHandle, get_job, list_jobs

    s, c, _ = own
    jobs_key = JobKeys(s.key_prefix).jobs
    c.zadd(jobs_key, {json.dumps({"id": "job-ok-1", "task": "ea.score_series"}): 3.0, b"\xff{junk": 2.0,
                      json.dumps({"id": 5}): 1.0, "[1]": 0.5})
    log_key = JobKeys(s.key_prefix).progress("job-ok-1")
    c.rpush(log_key, json.dumps({"stage": "read", "done": 0, "total": 1, "at": 1.0}), b"\xff{junk",
            json.dumps({"stage": "fit", "done": "junk", "at": 2.0}), "[]",
            json.dumps({"stage": "publish", "done": 1, "total": 1, "at": 3.0}))
    with caplog.at_level(logging.WARNING, logger="workers.jobs"):
        assert [j.id for j in list_jobs(settings=s)] == ["job-ok-1"]
        assert get_job("job-ok", settings=s).id == "job-ok-1"
        reports = JobHandle("job-ok-1").progress_log(settings=s)
    assert [r["stage"] for r in reports] == ["read", "publish"]
    assert "junk" not in caplog.text
    env = {"EA_KEY_PREFIX": s.key_prefix}
    listed = CliRunner().invoke(main, ["jobs"], env=env)
    assert listed.exit_code == 0 and "job-ok-1" in listed.output and "junk" not in listed.output, listed.output
    shown = CliRunner().invoke(main, ["jobs", "job-ok-1"], env=env)
    assert shown.exit_code == 0 and "stages: ['read', 'publish']" in shown.output, shown.output
