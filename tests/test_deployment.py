"""docker-compose.yml invariants (and `docker compose config -q` where a compose tool exists)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


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
    for name in ("train-worker", "score-worker", "alert-consumer", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["environment"]["EA_REDIS_URL"].startswith("redis://redis:")
    train = services["train-worker"]["command"]
    assert train[train.index("--queues") + 1] == "train" and train[train.index("--pool") + 1] == "solo"
    score = services["score-worker"]["command"]
    assert set(score[score.index("--queues") + 1].split(",")) == {"score", "alerts"}
    assert "flower" in services["flower"]["command"]
    assert services["alert-consumer"]["command"][:3] == ["ea", "alerts", "run"]


def test_compose_tool_accepts_the_file():
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]):
            probe = subprocess.run([*tool, "version"], capture_output=True)
            if probe.returncode == 0:
                subprocess.run([*tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], check=True)
                return
    pytest.skip("no docker compose tool on this machine")
