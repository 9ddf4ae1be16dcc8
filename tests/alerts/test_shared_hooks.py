"""Hooks registered in Redis and shared by every consumer (DESIGN contract 4), through the command line:
`ea alerts hooks add/remove`, two `ea alerts run` consumer processes and an `alerts` Celery worker process,
two real HTTP receivers, a real Redis.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from _processes import started
from celery import Celery
from click.testing import CliRunner

from alerts import send_test, shared_hooks, verify_signature
from workers.app import celery_config
from workers.commands.alerts import alerts_group

ROOT = Path(__file__).resolve().parents[3]
CLI = [sys.executable, "-c", "from workers.cli import main; main(prog_name='ea')"]


def ea_alerts(settings, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(alerts_group, list(args), env={"EA_KEY_PREFIX": settings.key_prefix})
    assert result.exit_code == code, result.output
    return result.output


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def processes(settings, tmp_path: Path, *argvs: list[str]):
    """``ea`` processes with the test's key prefix (logs ``process-N.log``), stopped at the end of the block."""
    env = {**os.environ, "EA_KEY_PREFIX": settings.key_prefix, "EA_ALERT_MIN_IDLE": "2", "PYTHONUNBUFFERED": "1"}
    return started([([*CLI, *argv], tmp_path / f"process-{i}.log") for i, argv in enumerate(argvs)], env=env, cwd=ROOT)


def test_two_consumers_deliver_every_alert_to_every_shared_hook(alert_settings, alert_client, receiver,
                                                                 second_receiver, third_receiver,
                                                                 tmp_path: Path) -> None:
    s = alert_settings
    assert "no hooks" in ea_alerts(s, "hooks")
    assert "signed" in ea_alerts(s, "hooks", "add", "pager", "--webhook", receiver.url, "--secret", "s3cret")
    ea_alerts(s, "hooks", "add", "chat", "--webhook", second_receiver.url, "--format", "alertmanager")
    listing = ea_alerts(s, "hooks")
    assert "s3cret" not in listing and "secret=set" in listing and "secret=none" in listing
    assert {json.loads(line)["name"] for line in ea_alerts(s, "hooks", "--json").splitlines()} == {"pager", "chat"}

    with processes(s, tmp_path, ["alerts", "run", "--consumer", "one"],
                   ["alerts", "run", "--consumer", "two", "--file", str(tmp_path / "two.jsonl")]) as consumers:
        logs = [tmp_path / f"process-{i}.log" for i in range(2)]
        wait_for(lambda: all("delivering to:" in log.read_text() for log in logs), 60, "both consumers to start")
        ids = [send_test(f"cpu-{i}", settings=s, client=alert_client).idempotency_key for i in range(19)]
        ids.append(re.match(r"queued (\S+):", ea_alerts(s, "test", "--key", "cpu-cli")).group(1))
        wait_for(lambda: set(ids) <= set(receiver.ok_keys()) and set(ids) <= set(second_receiver.ok_keys()), 60,
                 "every alert at both hooks")
        assert all(verify_signature(r.body, r.headers, "s3cret") for r in receiver.requests)
        assert {b["receiver"] for b in second_receiver.bodies()} == {"ea"}  # the Alertmanager body

        # A hook removed while the consumers run gets nothing more; one added gets the next alert.
        ea_alerts(s, "hooks", "remove", "chat")
        ea_alerts(s, "hooks", "add", "audit", "--webhook", third_receiver.url)
        later = send_test("cpu-later", settings=s, client=alert_client).idempotency_key
        wait_for(lambda: later in receiver.ok_keys() and later in third_receiver.ok_keys(), 30, "the later alert")
        assert later not in second_receiver.ok_keys() and list(third_receiver.ok_keys()) == [later]
        assert [c.poll() for c in consumers] == [None, None]
    one, two = [log.read_text().splitlines()[0] for log in logs]
    assert set(one.split(": ")[1].split(", ")) == {"pager", "chat"}
    assert set(two.split(": ")[1].split(", ")) == {"pager", "chat", f"file:{tmp_path / 'two.jsonl'}"}
    assert [h.name for h in shared_hooks(settings=s, client=alert_client)] == ["audit", "pager"]


def test_an_alerts_worker_delivers_to_the_shared_hooks(alert_settings, alert_client, receiver,
                                                       tmp_path: Path) -> None:
    s = alert_settings
    ea_alerts(s, "hooks", "add", "pager", "--webhook", receiver.url)
    note = send_test("disk", settings=s, client=alert_client)
    app = Celery("alerts-test", set_as_current=False)
    app.conf.update(celery_config(s))
    with processes(s, tmp_path, ["worker", "-Q", "alerts", "-n", f"alerts-{os.getpid()}@test"]):
        result = app.send_task("ea.alerts_deliver", kwargs={"max_seconds": 5})
        assert result.get(timeout=90)["delivered"] == 1
    assert list(receiver.ok_keys()) == [note.idempotency_key]


def test_hook_names_urls_and_unknown_hooks_are_one_line_errors(alert_settings) -> None:
    from workers.cli import main

    env = {"EA_KEY_PREFIX": alert_settings.key_prefix}
    for args, needle in ((["hooks", "add", "bad name", "--webhook", "http://x/y"], "hook name"),
                         (["hooks", "add", "ok", "--webhook", "ftp://x/y"], "http(s)"),
                         (["hooks", "remove", "nobody"], "HookNotFound")):
        result = CliRunner().invoke(main, ["alerts", *args], env=env)
        assert result.exit_code == 2 and needle in result.output and "Traceback" not in result.output, result.output


@pytest.fixture(autouse=True)
def _no_env_hooks(monkeypatch):
    for name in ("EA_ALERT_WEBHOOK_URL", "EA_ALERT_FILE"):
        monkeypatch.delenv(name, raising=False)
