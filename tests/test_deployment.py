"""The image and docker-compose.yml: invariants read from the files (PyYAML, merge keys resolved), the parts
that can run without a Docker engine run for real (the Redis service's command, Node2Vec as `nobody` with the
image's numba cache setting), and `docker compose config -q` where a compose tool exists.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_py
import yaml

ROOT = Path(__file__).resolve().parents[1]
EA_SERVICES = ("train-worker", "score-worker", "alert-consumer", "flower")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_redis_has_healthcheck_and_noeviction(compose):
    redis = compose["services"]["redis"]
    assert "healthcheck" in redis and "ping" in " ".join(redis["healthcheck"]["test"])
    command = " ".join(redis["command"])
    assert "--maxmemory-policy noeviction" in command and "--appendonly yes" in command


def test_workers_wait_for_healthy_redis_and_use_the_right_pools(compose):
    services = compose["services"]
    for name in EA_SERVICES:
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert re.fullmatch(r"redis://:\$\{EA_REDIS_PASSWORD:\?[^}]*\}@redis:6379/0",
                            services[name]["environment"]["EA_REDIS_URL"])
    train = services["train-worker"]["command"]
    assert train[train.index("--queues") + 1] == "train" and train[train.index("--pool") + 1] == "solo"
    score = services["score-worker"]["command"]
    assert set(score[score.index("--queues") + 1].split(",")) == {"score", "alerts"}
    assert "flower" in services["flower"]["command"]
    assert services["alert-consumer"]["command"][:3] == ["ea", "alerts", "run"]


def test_every_ea_service_has_the_whole_shared_environment(compose):
    shared = compose["x-ea-env"]
    assert {"EA_REDIS_URL", "EA_KEY_PREFIX", "EA_SIGNING_KEY", "EA_VISIBILITY_TIMEOUT", "EA_DATA_DIR"} <= set(shared)
    for name in EA_SERVICES:
        env = compose["services"][name]["environment"]
        assert {k: env[k] for k in shared} == shared, f"{name} lost part of the shared environment"
    assert "EA_ALERT_WEBHOOK_URL" in compose["services"]["alert-consumer"]["environment"]


def test_workers_mount_the_inputs_and_the_data_volume(compose):
    for name in ("train-worker", "score-worker", "alert-consumer"):
        mounts = {re.search(r":(/\w+)(?::ro)?$", v).group(1): v for v in compose["services"][name]["volumes"]}
        assert mounts["/shared"].endswith(":ro") and mounts["/data"] == "ea-data:/data"
    assert "ea-data" in compose["volumes"]


def test_redis_needs_a_password_and_flower_basic_auth_and_both_listen_locally_by_default(compose):
    redis_service, flower = compose["services"]["redis"], compose["services"]["flower"]
    assert "requirepass" in " ".join(redis_service["command"]) and "$$REDISCLI_AUTH" in redis_service["command"][-1]
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${EA_REDIS_PASSWORD:?")
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${EA_FLOWER_USER:-admin}:${EA_FLOWER_PASSWORD:?")
    assert redis_service["ports"] == ["${EA_REDIS_BIND:-127.0.0.1}:6379:6379"]
    assert flower["ports"] == ["${EA_FLOWER_BIND:-127.0.0.1}:5555:5555"]


def test_env_example_names_every_variable_of_the_compose_file():
    used = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert used <= set(example), used - set(example)
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_redis_service_command_requires_its_password(compose, tmp_path):
    """The service's own command line (compose's $$ -> $), run by sh with a local redis-server."""
    script = compose["services"]["redis"]["command"][-1].replace("$$", "$")
    conf, port = tmp_path / "auth.conf", _free_port()
    script = script.replace("/tmp/auth.conf", str(conf)) + f" --port {port} --dir {tmp_path} --bind 127.0.0.1"
    proc = subprocess.Popen(["sh", "-c", script], env={**os.environ, "REDISCLI_AUTH": "pw-123"})
    try:
        good = redis_py.Redis(port=port, password="pw-123", socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert good.ping()
                break
            except redis_py.ConnectionError:
                assert time.monotonic() < deadline, "the Redis service command did not start a server"
                time.sleep(0.1)
        with pytest.raises(redis_py.AuthenticationError):
            redis_py.Redis(port=port, socket_timeout=1).ping()
        config = {**good.config_get("maxmemory-policy"), **good.config_get("appendonly")}
        assert {str(k): str(v) for k, v in config.items()} == {"maxmemory-policy": "noeviction", "appendonly": "yes"}
        assert conf.stat().st_mode & 0o777 == 0o600
        assert b"pw-123" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_rabbitmq_profile_waits_longer_than_a_training_job_and_requires_its_password(compose, tmp_path):
    """The `rabbitmq` profile: off by default, on 127.0.0.1, consumer_timeout above the longest training job
    (the service's default EA_TRAIN_TIME_LIMIT), and its command (run by sh with a stand-in entrypoint) refuses
    to start without EA_RABBITMQ_PASSWORD."""
    from vectorstore import Settings

    service = compose["services"]["rabbitmq"]
    assert service["profiles"] == ["rabbitmq"]
    assert all(port.startswith("${EA_RABBITMQ_BIND:-127.0.0.1}:") for port in service["ports"])
    erl_args = service["environment"]["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    timeout_ms = int(re.search(r"consumer_timeout (\d+)", erl_args)[1])
    assert timeout_ms / 1000 > Settings().train_time_limit
    assert compose["x-ea-env"]["EA_BROKER_URL"] == "${EA_BROKER_URL:-}"
    entrypoint = tmp_path / "docker-entrypoint.sh"
    entrypoint.write_text("#!/bin/sh\necho started \"$@\"\n")
    entrypoint.chmod(0o755)
    script = service["command"][-1].replace("$$", "$")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    refused = subprocess.run(["sh", "-c", script], env={**env, "RABBITMQ_DEFAULT_PASS": ""}, capture_output=True,
                             text=True)
    assert refused.returncode == 1 and "EA_RABBITMQ_PASSWORD" in refused.stderr
    started = subprocess.run(["sh", "-c", script], env={**env, "RABBITMQ_DEFAULT_PASS": "pw"}, capture_output=True,
                             text=True)
    assert started.returncode == 0 and started.stdout.strip() == "started rabbitmq-server"


def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in line[4:].split()))
    return env


def test_the_image_gives_nobody_a_numba_cache_and_a_data_folder():
    text = (ROOT / "Dockerfile").read_text()
    env = _dockerfile_env()
    assert env["NUMBA_CACHE_DIR"] and env["EA_DATA_DIR"] == "/data"
    chown = re.search(r"chown -R nobody:nogroup ([^\n]+)", text).group(1).split()
    assert any(env["NUMBA_CACHE_DIR"].startswith(d) for d in chown) and "/data" in chown
    assert text.index("chown") < text.index("USER nobody")


FIT = ("import pandas as pd; from recsys import Interactions, Node2Vec; "
       "frame = pd.DataFrame({'user': [f'u{i % 9}' for i in range(60)], 'item': [f'i{i % 7}' for i in range(60)]}); "
       "Node2Vec(dim=4, walk_length=5, walks_per_node=2, window=2, workers=1)"
       ".fit(Interactions.from_frame(frame)); print('ok')")


def _image_env(cache: Path) -> dict[str, str]:
    """This environment, with the image's ENV (its cache folder here at ``cache``) and no writable home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA")}
    image = {**_dockerfile_env(), "NUMBA_CACHE_DIR": str(cache / "numba"), "MPLCONFIGDIR": str(cache / "mpl")}
    image.pop("EA_DATA_DIR")
    return {**env, **image, "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}


def test_node2vec_compiles_into_the_images_numba_cache(tmp_path):
    run = subprocess.run([sys.executable, "-c", FIT], cwd=ROOT, env=_image_env(tmp_path), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
    assert any((tmp_path / "numba").rglob("*.nbi")), "numba did not cache into NUMBA_CACHE_DIR"


def _nobody_can_run_python() -> bool:
    path = Path(sys.executable).resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [*path.parents, path])


@pytest.mark.skipif(os.geteuid() != 0 or not _nobody_can_run_python(),
                    reason="needs root, and an interpreter that user nobody may run")
def test_node2vec_compiles_as_nobody_only_with_the_images_numba_cache(tmp_path):
    """As in the image: user nobody, no writable home, a source tree it cannot write (no __pycache__ cache)."""

    def as_nobody() -> None:
        os.setgid(65534)
        os.setuid(65534)

    env = _image_env(tmp_path)
    without = {k: v for k, v in env.items() if k != "NUMBA_CACHE_DIR"}
    failed = subprocess.run([sys.executable, "-c", FIT], cwd=ROOT, env=without, preexec_fn=as_nobody,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "cannot cache" in failed.stderr, "the test no longer reproduces the bug"
    (tmp_path / "numba").mkdir()
    os.chown(tmp_path / "numba", 65534, 65534)
    run = subprocess.run([sys.executable, "-c", FIT], cwd=ROOT, env=env, preexec_fn=as_nobody, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_compose_tool_accepts_the_file(tmp_path):
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]):
            probe = subprocess.run([*tool, "version"], capture_output=True)
            if probe.returncode == 0:
                env_file = tmp_path / ".env"
                env_file.write_text("EA_REDIS_PASSWORD=pw\nEA_FLOWER_PASSWORD=pw\n")
                subprocess.run([*tool, "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(env_file), "config",
                                "-q"], check=True)
                return
    pytest.skip("no docker compose tool on this machine")
