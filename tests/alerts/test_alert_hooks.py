"""Hooks: webhook signatures and bodies, the JSON-lines file, a Celery task through a real worker."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from alerts import (
    AlertSettings,
    CallableHook,
    CeleryTaskHook,
    Deliverer,
    IncidentPolicy,
    JsonLinesHook,
    Notification,
    WebhookHook,
    observe,
    register,
    registered_hooks,
    unregister,
    verify_signature,
)
from alerts.hooks import Hook
from workers.app import app

ONE_POINT = IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0, group_by=("service",))


def fire(s, c, key="cpu") -> list[Notification]:
    return observe("m", key, [1, 2], [5.0, 0.0], 1.0, policy=ONE_POINT, labels={"service": "checkout"},
                   model_version="3", evidence=[{"peer": "x", "d": 0.1}], settings=s, client=c)


def test_webhook_signatures_verify_and_tampering_does_not(alert_settings, alert_client, receiver):
    notes = fire(alert_settings, alert_client)
    Deliverer([WebhookHook(receiver.url, "s3cret")], settings=alert_settings, client=alert_client).drain(10)
    assert len(receiver.requests) == 2
    for r in receiver.requests:
        assert r.headers["X-Signature-256"].startswith("sha256=")
        assert verify_signature(r.body, r.headers, "s3cret")
        assert not verify_signature(r.body.replace(b"checkout", b"checkoux"), r.headers, "s3cret")
        assert not verify_signature(r.body, r.headers, "wrong")
        # A replay long after the timestamp is refused; without a tolerance only the body is checked.
        assert not verify_signature(r.body, r.headers, "s3cret", now=time.time() + 3600)
        assert verify_signature(r.body, r.headers, "s3cret", tolerance_s=None, now=time.time() + 3600)
        forged = {**r.headers, "X-EA-Timestamp": str(int(time.time()) + 10)}
        assert not verify_signature(r.body, forged, "s3cret")
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["state"] for b in bodies] == ["firing", "resolved"]
    assert [r.key for r in receiver.requests] == [n.idempotency_key for n in notes]
    assert bodies[0]["incident"]["evidence"] == [{"peer": "x", "d": 0.1}]
    assert verify_signature(b"{}", {}, "s3cret") is False


def test_alertmanager_body(alert_settings, alert_client, receiver):
    fire(alert_settings, alert_client)
    hook = WebhookHook(receiver.url, format="alertmanager", receiver="oncall")
    Deliverer([hook], settings=alert_settings, client=alert_client).drain(10)
    firing, resolved = receiver.bodies()
    assert firing["version"] == "4" and firing["receiver"] == "oncall" and firing["status"] == "firing"
    assert firing["groupKey"] == '{}:{service="checkout"}' and firing["groupLabels"] == {"service": "checkout"}
    alert = firing["alerts"][0]
    assert set(alert) >= {"status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"}
    assert alert["labels"] == {"alertname": "EmbeddingAnomaly", "series": "cpu", "service": "checkout", "model": "m"}
    assert alert["startsAt"] == "1970-01-01T00:00:01Z" and alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert resolved["alerts"][0]["endsAt"] == "1970-01-01T00:00:02Z"
    assert alert["fingerprint"] == resolved["alerts"][0]["fingerprint"]
    assert "X-Signature-256" not in receiver.requests[0].headers  # no secret, no signature


def test_webhook_url_credentials_become_basic_auth_and_stay_out_of_names(receiver):
    url = receiver.url.replace("http://", "http://bob:hunter2@")
    hook = WebhookHook(url)
    assert "hunter2" not in hook.name and "hunter2" not in repr(hook)
    note = Notification("inc_x:firing", "firing", _incident(), time.time())
    hook.deliver(note)
    assert receiver.requests[0].headers["Authorization"] == "Basic Ym9iOmh1bnRlcjI="


def test_json_lines_hook(alert_settings, alert_client, tmp_path):
    path = tmp_path / "audit" / "alerts.jsonl"
    notes = fire(alert_settings, alert_client)
    Deliverer([JsonLinesHook(path)], settings=alert_settings, client=alert_client).drain(10)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [Notification.from_dict(x) for x in lines] == notes


def test_hooks_from_code_and_settings(alert_settings, tmp_path):
    s = AlertSettings(webhook_url="http://127.0.0.1:9/x", webhook_secret="k", file=tmp_path / "a.jsonl")
    hook = register(lambda note: None)
    try:
        kinds = sorted(type(h).__name__ for h in registered_hooks(s))
        assert kinds == ["CallableHook", "JsonLinesHook", "WebhookHook"]
    finally:
        unregister(hook)
    assert registered_hooks(AlertSettings()) == []


_received: list[dict] = []
_got = threading.Event()


@app.task(name="tests.alert_sink")
def alert_sink(notification: dict) -> None:
    _received.append(notification)
    _got.set()


def test_celery_task_hook_through_a_real_worker(alert_settings, alert_client, celery_worker):
    # Sent through the hook's own producer app (the library does not import workers), onto `alerts`.
    notes = fire(alert_settings, alert_client, key=f"celery-{uuid.uuid4().hex[:6]}")
    hook = CeleryTaskHook("tests.alert_sink", queue="alerts")
    Deliverer([hook], settings=alert_settings, client=alert_client).drain(10)
    deadline = time.monotonic() + 20
    while len(_received) < 2 and time.monotonic() < deadline:
        _got.wait(0.1)
    assert sorted(n["id"] for n in _received) == sorted(n.id for n in notes)


def test_hook_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Hook().deliver(None)


def _incident():
    from alerts import Incident

    return Incident("inc_x", "f" * 16, "series", "cpu", "1970-01-01T00:00:01Z", None, 2.0,
                    "1970-01-01T00:00:01Z", 1.0)


def test_delivery_task_on_the_alerts_queue(settings, redis_client, celery_worker):
    # The worker runs in this process (threads pool), so a hook registered here is the worker's too.
    # Alerts that tests run before on this session fired (any of them, in any order, under xdist) wait in its
    # outbox for a hook: delivered first, to a hook of their own, so that the run below delivers ours alone.
    drain = register(CallableHook(lambda note: None, name="task-test-drain"))
    try:
        app.send_task("ea.alerts_deliver", kwargs={"max_seconds": 5}).get(timeout=30)
    finally:
        unregister(drain)
    got: list[str] = []
    hook = register(CallableHook(lambda note: got.append(note.id), name="task-test"))
    try:
        notes = fire(settings, redis_client, key=f"task-{uuid.uuid4().hex[:6]}")
        result = app.send_task("ea.alerts_deliver", kwargs={"max_seconds": 5}).get(timeout=30)
    finally:
        unregister(hook)
    assert got == [n.id for n in notes]
    assert result["delivered"] == 2 and result["dead"] == 0
