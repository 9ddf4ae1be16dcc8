"""``ea alerts ...`` commands against a real Redis (click's runner, the same process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from alerts import IncidentPolicy, observe
from workers.commands.alerts import alerts_group

ONE_POINT = IncidentPolicy(for_points=1, clear_points=1, cooldown_points=0)


def invoke(s, *args, env=None):
    result = CliRunner().invoke(alerts_group, list(args), env={"EA_KEY_PREFIX": s.key_prefix, **(env or {})},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_run_tail_dead_retry_enable(alert_settings, alert_client, receiver, tmp_path: Path):
    s = alert_settings
    observe("m", "cpu", [1, 2], [5.0, 0.0], 1.0, policy=ONE_POINT, settings=s, client=alert_client)
    receiver.answer = lambda n, key: 410
    env = {"EA_KEY_PREFIX": s.key_prefix, "EA_ALERT_WEBHOOK_URL": receiver.url, "EA_ALERT_MIN_IDLE": "1"}
    # `ea alerts run` in a real process, stopped by SIGTERM after the 410 and the dead letters.
    proc = subprocess.Popen([sys.executable, "-c", "from workers.commands.alerts import run; run()"],
                            env={**__import__("os").environ, **env}, stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[3])
    deadline = time.monotonic() + 20
    while len(invoke(s, "dead", "--json").splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert "1 dead" in out or "2 dead" in out, out
    assert "DISABLED" in invoke(s, "hooks", env=env)
    dead = [json.loads(line) for line in invoke(s, "dead", "--json").splitlines()]
    assert len(dead) == 2 and {d["notification"]["state"] for d in dead} == {"firing", "resolved"}
    hook_name = dead[0]["hook"]
    assert "enabled" in invoke(s, "enable", hook_name)
    assert "requeued 1 dead letter" in invoke(s, "retry", dead[0]["id"])
    assert "requeued 1 dead letter" in invoke(s, "retry", "--all")
    assert "no dead letters" in invoke(s, "dead")
    receiver.answer = lambda n, key: 200
    from alerts import Deliverer, WebhookHook

    Deliverer([WebhookHook(receiver.url)], settings=s, client=alert_client).drain(10)
    lines = invoke(s, "tail", "--no-follow").splitlines()
    assert len(lines) == 2 and "firing" in lines[0] and "resolved" in lines[1] and "series cpu" in lines[0]
    assert json.loads(invoke(s, "status"))["undelivered"] == 0


def test_retry_needs_ids_or_all(alert_settings):
    result = CliRunner().invoke(alerts_group, ["retry"], env={"EA_KEY_PREFIX": alert_settings.key_prefix})
    assert result.exit_code == 2 and "--all" in result.output


def test_tail_follows_new_deliveries(alert_settings, alert_client):
    import threading

    from alerts import CallableHook, Deliverer, tail

    s, seen, stop = alert_settings, [], threading.Event()

    def follow():
        for d in tail(last=5, block=0.1, stop=stop, settings=s):
            seen.append((d.notification.state, d.hook))

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.3)  # tail is now waiting on an empty log
    observe("m", "cpu", [1, 2], [5.0, 0.0], 1.0, policy=ONE_POINT, settings=s, client=alert_client)
    Deliverer([CallableHook(lambda n: None, name="noop")], settings=s, client=alert_client).drain(10)
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    assert seen == [("firing", "noop"), ("resolved", "noop")]


def test_test_alert_goes_through_the_hooks(alert_settings, alert_client, tmp_path: Path):
    from alerts import Deliverer, JsonLinesHook

    out = invoke(alert_settings, "test", "--key", "smoke")
    path = tmp_path / "a.jsonl"
    Deliverer([JsonLinesHook(path)], settings=alert_settings, client=alert_client).drain(10)
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["id"] in out and line["incident"]["labels"] == {"test": "true"}
    assert line["incident"]["key"] == "smoke" and line["state"] == "firing"
