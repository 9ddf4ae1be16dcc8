"""Outbox delivery to a real local webhook: retries, dead letters, 410, re-claiming after a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from alerts import (
    CallableHook,
    DeadLetterNotFound,
    Deliverer,
    IncidentPolicy,
    WebhookHook,
    backoff_delay,
    dead_letters,
    disabled_hooks,
    enable_hook,
    observe,
    outbox_status,
    requeue,
)

FAST = {"backoff": 0.01, "backoff_max": 0.05, "min_idle": 0.3}
ONE_POINT = IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0)


def fire(s, c, n: int, prefix: str = "k") -> list:
    """``n`` incidents (firing + resolved each): 2n notifications in the outbox."""
    return [note for i in range(n)
            for note in observe("m", f"{prefix}{i}", [1, 2], [5.0, 0.0], 1.0, policy=ONE_POINT, settings=s, client=c)]


def deliverer(s, c, hooks, **kw):
    return Deliverer(hooks, settings=s, client=c, seed=1, **{**FAST, **kw})


def test_flaky_server_gets_every_alert_exactly_once(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 503 if n < 5 or n % 3 == 0 else 200
    notes = fire(alert_settings, alert_client, 10)
    d = deliverer(alert_settings, alert_client, [WebhookHook(receiver.url, "s3cret")])
    d.drain(timeout=20)
    assert receiver.ok_keys() == Counter({n.idempotency_key: 1 for n in notes})
    assert len(receiver.requests) > len(notes)  # the 503s were retried
    # The idempotency key of an alert is the same on every attempt.
    assert {r.key for r in receiver.requests} == {n.idempotency_key for n in notes}
    status = outbox_status(settings=alert_settings, client=alert_client)
    assert status | {"consumers": None, "outcomes": None} == {
        "undelivered": 0, "oldest_age_s": 0.0, "pending": 0, "retrying": 0, "dead": 0, "consumers": None,
        "outcomes": None}
    # The delivery counters (what the metrics read): every alert delivered once, each 503 a retry.
    assert status["outcomes"] == {"delivered": len(notes), "retried": len(receiver.requests) - len(notes), "dead": 0}


def test_client_errors_are_dead_lettered_at_once_and_requeued(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 400 if n == 0 else 200
    notes = fire(alert_settings, alert_client, 1)
    d = deliverer(alert_settings, alert_client, [WebhookHook(receiver.url)])
    d.drain(timeout=10)
    assert len(receiver.requests) == 2  # the 400 was not retried
    dead = dead_letters(settings=alert_settings, client=alert_client)
    assert len(dead) == 1 and "HTTP 400" in dead[0].error and dead[0].attempts == 1
    assert dead[0].notification == notes[0]
    with pytest.raises(DeadLetterNotFound):
        requeue(["1-1"], settings=alert_settings, client=alert_client)
    assert requeue([dead[0].id], settings=alert_settings, client=alert_client) == 1
    d.drain(timeout=10)
    assert receiver.ok_keys() == Counter({n.idempotency_key: 1 for n in notes})
    assert dead_letters(settings=alert_settings, client=alert_client) == []


def test_repeated_failures_end_in_dead_letters(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 502
    fire(alert_settings, alert_client, 1)
    d = deliverer(alert_settings, alert_client, [WebhookHook(receiver.url)], max_attempts=3)
    d.drain(timeout=10)
    assert len(receiver.requests) == 6  # 2 notifications x 3 attempts
    dead = dead_letters(settings=alert_settings, client=alert_client)
    assert [x.attempts for x in dead] == [3, 3] and all("HTTP 502" in x.error for x in dead)
    receiver.answer = lambda n, key: 200
    assert requeue(all=True, settings=alert_settings, client=alert_client) == 2
    d.drain(timeout=10)
    assert len(receiver.ok_keys()) == 2


def test_gone_endpoint_disables_the_hook(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 410
    hook = WebhookHook(receiver.url)
    fire(alert_settings, alert_client, 2)
    deliverer(alert_settings, alert_client, [hook]).drain(timeout=10)
    assert len(receiver.requests) == 1  # disabled after the 410: nothing else is sent
    gone = disabled_hooks(settings=alert_settings, client=alert_client)
    assert list(gone) == [hook.name] and gone[hook.name]["status"] == 410
    assert len(dead_letters(settings=alert_settings, client=alert_client)) == 4
    receiver.answer = lambda n, key: 200
    assert enable_hook(hook.name, settings=alert_settings, client=alert_client)
    requeue(all=True, settings=alert_settings, client=alert_client)
    deliverer(alert_settings, alert_client, [hook]).drain(timeout=10)
    assert len(receiver.ok_keys()) == 4


def test_a_hook_that_succeeded_is_not_called_again_when_another_is_retried(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 503 if n < 4 else 200
    calls = Counter()
    notes = fire(alert_settings, alert_client, 2)
    hooks = [CallableHook(lambda note: calls.update([note.id]), name="counter"), WebhookHook(receiver.url)]
    deliverer(alert_settings, alert_client, hooks).drain(timeout=10)
    assert calls == Counter({n.id: 1 for n in notes})
    assert len(receiver.ok_keys()) == 4


def test_entries_of_a_consumer_that_stopped_without_ack_are_reclaimed(alert_settings, alert_client, receiver):
    notes = fire(alert_settings, alert_client, 3)
    hook = WebhookHook(receiver.url)
    doomed = deliverer(alert_settings, alert_client, [hook], consumer="doomed")
    # It reads everything and dies before delivering or acknowledging anything.
    doomed.client.xreadgroup("delivery", "doomed", {doomed.keys.outbox: ">"}, count=100)
    rescuer = deliverer(alert_settings, alert_client, [hook], consumer="rescuer")
    assert rescuer.step() == 0  # not idle long enough yet: the doomed consumer might still be working
    time.sleep(0.35)
    rescuer.drain(timeout=10)
    assert rescuer.stats.reclaimed == 6
    assert receiver.ok_keys() == Counter({n.idempotency_key: 1 for n in notes})


def test_a_consumer_killed_mid_delivery_loses_nothing(alert_settings, alert_client, receiver, tmp_path: Path):
    def answer(n, key):
        if n == 0:
            time.sleep(3)  # the subprocess is killed while waiting for this answer
            return 503
        return 200

    receiver.answer = answer
    notes = fire(alert_settings, alert_client, 2)
    script = textwrap.dedent(f"""
        from alerts import Deliverer, WebhookHook
        from vectorstore import get_settings
        s = get_settings().with_(key_prefix={alert_settings.key_prefix!r})
        Deliverer([WebhookHook({receiver.url!r})], settings=s, min_idle=0.3, consumer="victim").run()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[3])
    try:
        deadline = time.monotonic() + 20
        while not receiver.arrived and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.arrived, "the consumer never called the webhook"
    finally:
        proc.kill()
        proc.wait()
    deliverer(alert_settings, alert_client, [WebhookHook(receiver.url)]).drain(timeout=15)
    assert receiver.ok_keys() == Counter({n.idempotency_key: 1 for n in notes})


def test_no_hooks_is_an_error_or_leaves_the_outbox_alone(alert_settings, alert_client):
    from alerts import AlertError, outbox_status

    with pytest.raises(AlertError, match="no alert hooks"):
        Deliverer([], shared=False, settings=alert_settings, client=alert_client)
    fire(alert_settings, alert_client, 1)
    idle = Deliverer([], settings=alert_settings, client=alert_client)  # waits for a shared hook
    assert idle.hooks == [] and idle.step() == 0
    assert outbox_status(settings=alert_settings, client=alert_client)["undelivered"] == 2


def test_backoff_grows_with_jitter_and_a_cap():
    import random

    rng = random.Random(0)
    delays = [[backoff_delay(a, 1.0, 10.0, rng) for _ in range(200)] for a in (1, 2, 3, 8)]
    assert all(0.5 <= d <= 1 for d in delays[0]) and all(1 <= d <= 2 for d in delays[1])
    assert all(2 <= d <= 4 for d in delays[2]) and all(5 <= d <= 10 for d in delays[3])
    assert len(set(delays[2])) > 100


def test_a_resolution_does_not_overtake_its_firing_in_backoff(alert_settings, alert_client, receiver):
    receiver.answer = lambda n, key: 503 if key.endswith(":firing") and n < 2 else 200
    notes = fire(alert_settings, alert_client, 1)
    deliverer(alert_settings, alert_client, [WebhookHook(receiver.url)], backoff=0.1, backoff_max=0.1).drain(10)
    assert [(r.key.rsplit(":", 1)[1], r.status) for r in receiver.requests] == [
        ("firing", 503), ("firing", 503), ("firing", 200), ("resolved", 200)]
    assert receiver.ok_keys() == Counter({n.idempotency_key: 1 for n in notes})
