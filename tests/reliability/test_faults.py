"""Faults against real processes: Redis stopped and restarted, a corrupted chunk, an interrupted publication,
two publications of one model racing.

* Redis restart: a dedicated redis-server (AOF on) is stopped under a serving ``RecommendationClient``; the
  client answers from memory what it can, raises the typed ``RedisUnavailable`` for the rest, and recovers
  by itself when a new server comes up on the same port and directory (including a version published
  after the restart). A job submitted while Redis is down fails with a clear one-line error.
* Corruption: one chunk of a published version is altered; readers refuse it (``ChecksumError``), a client
  keeps serving the previous version, and ``ea recommend`` / ``ea models NAME --verify`` exit 2 saying so.
* Interrupted publication: the publisher *process* is SIGKILLed after writing data but before the commit;
  the active version is untouched and the partial keys carry the publication TTL, then expire.
* Racing publications: the higher version wins whatever order the commits arrive in; both are complete.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_py
from _reliability import FAST_NODE2VEC, ROOT, copy_version, redis_answers, wait_for
from click.testing import CliRunner

from recsys import RecommendationClient
from recsys.training import train_and_publish
from vectorstore import ChecksumError, ModelRegistry, RedisUnavailable, Settings, start_redis_server
from vectorstore.platform.embedded import RedisProcess
from workers.cli import main as cli
from workers.jobs import submit


def _corrupt(registry: ModelRegistry, model: str, version: int, field: str = "item_vectors:0") -> None:
    key = registry.keys.data(model, version)
    value = registry.client.hget(key, field)
    assert value, f"{key} has no field {field}"
    registry.client.hset(key, field, bytes([value[0] ^ 0xFF]) + value[1:])


# -- Redis stopped and restarted --------------------------------------------------------------------------
def test_client_serves_from_memory_while_redis_is_down_and_recovers(
    dedicated_redis: RedisProcess, interactions_csv: str, tmp_path: Path
) -> None:
    settings = Settings(redis_url=dedicated_redis.url, key_prefix="eafault:", data_dir=tmp_path, socket_timeout=2.0)
    registry = ModelRegistry(settings)
    first = train_and_publish(interactions_csv, name="shop", algorithm="node2vec", params=FAST_NODE2VEC,
                              registry=registry)
    restarted: RedisProcess | None = None
    client = RecommendationClient(settings=settings, model="shop", refresh_interval=0.5)
    try:
        cached = client.recommend("u0", k=5)
        similar = client.similar_items("i0", k=5)
        assert cached.source == "index" and len(cached) == 5

        dedicated_redis.stop()
        wait_for(lambda: not redis_answers(dedicated_redis.url), 15, what="Redis to stop")
        # From memory: item-based requests, history fold-in, and users the client has cached.
        assert client.similar_items("i0", k=5).items == similar.items
        assert len(client.recommend_for_history(["i0", "i3"], k=5)) == 5
        again = client.recommend("u0", k=5)
        assert again.items == cached.items and again.model_version == first.version
        # The rest: the typed error, quickly, not a hang or a raw redis-py exception.
        t = time.monotonic()
        with pytest.raises(RedisUnavailable, match="Redis did not answer"):
            client.recommend("u1", k=5)
        assert time.monotonic() - t < 30
        with pytest.raises(RedisUnavailable):
            registry.active_version("shop")

        # A job submitted while the broker is down fails with a clear message (not silently dropped).
        env = {**os.environ, "EA_REDIS_URL": dedicated_redis.url, "EA_KEY_PREFIX": "eafault:"}
        argv = [sys.executable, "-c", "from workers.cli import main; main()", "train", "graph",
                "--interactions", interactions_csv, "--name", "shop"]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "RedisUnavailable" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]

        restarted = start_redis_server(dedicated_redis.directory, port=dedicated_redis.port, appendonly=True)
        # Reconnects by itself: the uncached user is served again, from the data kept by the AOF.
        fresh = wait_for(lambda: _try(lambda: client.recommend("u1", k=5)), 30, interval=0.2,
                         what="the client to reconnect")
        assert fresh.source == "index" and fresh.model_version == first.version
        # And a version published after the restart is picked up without a restart of the client.
        second = copy_version(ModelRegistry(settings), "shop", "shop")
        wait_for(lambda: client.model_version == second, 30, what=f"the client to switch to v{second}")
        assert client.recommend("u2", k=5).model_version == second
    finally:
        client.close()
        if restarted is not None:
            restarted.stop()


def _try(fn):
    try:
        return fn()
    except RedisUnavailable:
        return None


# -- a corrupted chunk --------------------------------------------------------------------------------------
def test_corrupted_version_is_refused_and_the_previous_one_keeps_serving(
    trained_model: str, model_name: str, settings: Settings
) -> None:
    registry = ModelRegistry(settings)
    good = copy_version(registry, trained_model, model_name)
    client = RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0)
    try:
        before = client.recommend("u0", k=5)
        bad = copy_version(registry, trained_model, model_name)
        _corrupt(registry, model_name, bad)
        assert registry.active_version(model_name) == bad
        with pytest.raises(ChecksumError, match="item_vectors"):
            registry.load(model_name, bad)
        assert client.refresh() is False, "the client switched to a corrupt version"
        assert client.model_version == good
        assert client.recommend("u0", k=5).items == before.items

        runner = CliRunner()
        out = runner.invoke(cli, ["recommend", "--user", "u0", "--model", model_name])
        assert out.exit_code == 2, out.output
        assert "sha256" in out.output and "Traceback" not in out.output
        out = runner.invoke(cli, ["models", model_name, "--verify"])
        assert out.exit_code == 2, out.output
        assert f"v{bad}" in out.output and "CORRUPT" in out.output and "ChecksumError" in out.output
        # A rollback to the good version serves again.
        assert runner.invoke(cli, ["rollback", model_name, "--version", str(good)]).exit_code == 0
        out = runner.invoke(cli, ["recommend", "--user", "u0", "--model", model_name, "--json"])
        assert out.exit_code == 0 and f'"version": {good}' in out.output
    finally:
        client.close()


def test_truncated_table_row_is_found_by_verify(trained_model: str, model_name: str, settings: Settings) -> None:
    registry = ModelRegistry(settings)
    version = copy_version(registry, trained_model, model_name)
    key = registry.keys.table(model_name, version, "user_vectors")
    registry.client.hset(key, "u0", registry.client.hget(key, "u0")[:-4])
    with pytest.raises(ChecksumError, match="user_vectors"):
        registry.verify_table(model_name, version, "user_vectors")
    out = CliRunner().invoke(cli, ["models", model_name, "--verify"])
    assert out.exit_code == 2 and "user_vectors" in out.output


# -- a publication interrupted between writes --------------------------------------------------------------
_PUBLISHER = """
import sys, numpy as np
from vectorstore import ModelRegistry, Settings
url, prefix, name, ttl, mb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
settings = Settings(redis_url=url, key_prefix=prefix, chunk_bytes=1 << 20, publish_ttl=ttl)
blob = np.random.default_rng(0).bytes(mb << 20)
print("version", ModelRegistry(settings).publish(name, blobs={"big": blob}, meta={"by": "publisher"}), flush=True)
"""


def _start_publisher(url: str, prefix: str, name: str, ttl: int, mb: int = 96) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _PUBLISHER, url, prefix, name, str(ttl), str(mb)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for_data(registry: ModelRegistry, key: str, proc: subprocess.Popen) -> None:
    def started() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"publisher ended before it was caught mid-way: {proc.communicate()}")
        return registry.client.exists(key) == 1

    wait_for(started, 120, interval=0.002, what=f"{key} to be written")


def test_publisher_killed_before_commit_leaves_active_version_and_expiring_debris(
    dedicated_redis: RedisProcess, tmp_path: Path
) -> None:
    ttl = 4
    settings = Settings(redis_url=dedicated_redis.url, key_prefix="eapub:", data_dir=tmp_path, publish_ttl=ttl)
    registry = ModelRegistry(settings)
    v1 = registry.publish("m", blobs={"small": b"x" * 1000}, meta={"by": "test"})
    data_key = registry.keys.data("m", 2)
    proc = _start_publisher(dedicated_redis.url, "eapub:", "m", ttl)
    try:
        _wait_for_data(registry, data_key, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert registry.active_version("m") == v1
    assert registry.client.exists(registry.keys.manifest("m", 2)) == 0
    assert [v.version for v in registry.versions("m")] == [v1]
    partial = [k.decode() for k in registry.client.scan_iter("eapub:model:{m}:v:2:*")]
    assert partial == [data_key]
    remaining = registry.client.ttl(data_key)
    assert 0 < remaining <= ttl, f"partial data key has TTL {remaining}: it would never be collected"
    wait_for(lambda: registry.client.exists(data_key) == 0, ttl + 10, what="the partial keys to expire")
    assert registry.load("m").blobs["small"] == b"x" * 1000
    # The next publication is unaffected.
    assert registry.publish("m", blobs={"small": b"y"}) == 3 and registry.active_version("m") == 3


def test_redis_dying_mid_publish_raises_typed_error_and_keeps_active(
    dedicated_redis: RedisProcess, tmp_path: Path
) -> None:
    """The Redis server is SIGKILLed between the data writes and the commit of an in-process publish, then
    restarted from its AOF: the publisher got ``RedisUnavailable``, v1 is still active, v2 has no manifest
    and its partial data carries the publication TTL (it survived the restart with it)."""

    settings = Settings(redis_url=dedicated_redis.url, key_prefix="eadrop:", data_dir=tmp_path,
                        chunk_bytes=1 << 20, socket_timeout=5.0)
    registry = ModelRegistry(settings)
    v1 = registry.publish("m", blobs={"small": b"x" * 1000})
    data_key = registry.keys.data("m", 2)
    commit = registry._commit

    def die_before_commit(*args, **kwargs):
        # Deterministic "between the writes and the commit": the data is written, the server dies now.
        os.kill(dedicated_redis.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(dedicated_redis.pid, 0)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(dedicated_redis.pid, os.WNOHANG)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        return commit(*args, **kwargs)

    registry._commit = die_before_commit
    with pytest.raises(RedisUnavailable, match="did not answer"):
        registry.publish("m", blobs={"big": os.urandom(8 << 20)})
    restarted = start_redis_server(dedicated_redis.directory, port=dedicated_redis.port, appendonly=True)
    try:
        fresh = ModelRegistry(settings)
        assert fresh.active_version("m") == v1
        assert fresh.client.exists(fresh.keys.manifest("m", 2)) == 0
        assert [v.version for v in fresh.versions("m")] == [v1]
        # The AOF may or may not hold the last second of writes; what it holds must be expiring debris.
        ttl = fresh.client.ttl(data_key)
        assert ttl == -2 or 0 < ttl <= settings.publish_ttl, f"partial data without a TTL after restart ({ttl})"
        assert fresh.load("m").blobs["small"] == b"x" * 1000
    finally:
        restarted.stop()


def test_one_dropped_connection_mid_publish_is_retried_or_refused_never_half_done(
    dedicated_redis: RedisProcess, tmp_path: Path
) -> None:
    """CLIENT KILL drops the publisher's connection once mid-publish. redis-py reconnects and retries the
    command, so the publication usually completes; either way the outcome is whole: v2 active, complete and
    persistent, or ``RedisUnavailable`` with v1 active and v2's partial data expiring."""
    import threading

    settings = Settings(redis_url=dedicated_redis.url, key_prefix="eakill:", data_dir=tmp_path,
                        chunk_bytes=1 << 20, socket_timeout=5.0)
    registry = ModelRegistry(settings)
    v1 = registry.publish("m", blobs={"small": b"x" * 1000})
    data_key = registry.keys.data("m", 2)
    admin = redis_py.Redis.from_url(dedicated_redis.url)
    killed: list[int] = []

    def drop_connections_once_data_lands() -> None:
        deadline = time.monotonic() + 60
        while admin.exists(data_key) == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        killed.append(admin.client_kill_filter(_type="normal", skipme=True))

    thread = threading.Thread(target=drop_connections_once_data_lands)
    thread.start()
    blob = os.urandom(96 << 20)
    try:
        version = registry.publish("m", blobs={"big": blob})
    except RedisUnavailable:
        version = None
    thread.join(timeout=60)
    assert killed and killed[0] >= 1, "no connection was dropped: the test did not interrupt the publication"
    outcome = f"completed as v{version}" if version else "refused (RedisUnavailable)"
    print(f"\ndropped {killed[0]} connection(s) mid-publish: the publication {outcome}")
    if version is None:
        assert registry.active_version("m") == v1
        assert admin.exists(registry.keys.manifest("m", 2)) == 0
        assert 0 < admin.ttl(data_key) <= settings.publish_ttl
    else:
        assert version == 2 and registry.active_version("m") == 2
        assert registry.load("m").blobs["big"] == blob
        assert all(admin.ttl(k) == -1 for k in admin.scan_iter("eakill:model:{m}:v:2:*"))


# -- two publications of one model at once --------------------------------------------------------------
def test_higher_version_wins_whatever_order_the_commits_arrive_in(
    dedicated_redis: RedisProcess, tmp_path: Path
) -> None:
    settings = Settings(redis_url=dedicated_redis.url, key_prefix="earace:", data_dir=tmp_path)
    registry = ModelRegistry(settings)
    registry.publish("m", blobs={"small": b"v1"})
    slow = _start_publisher(dedicated_redis.url, "earace:", "m", 3600, mb=64)  # gets v2
    try:
        _wait_for_data(registry, registry.keys.data("m", 2), slow)
        os.killpg(slow.pid, signal.SIGSTOP)  # v2 is half-written...
        v3 = registry.publish("m", blobs={"small": b"v3"})  # ...while v3 is written and committed
        assert v3 == 3 and registry.active_version("m") == 3
        os.killpg(slow.pid, signal.SIGCONT)
        out, err = slow.communicate(timeout=120)
    finally:
        if slow.poll() is None:
            os.killpg(slow.pid, signal.SIGKILL)
    assert slow.returncode == 0, err[-2000:]
    assert "version 2" in out
    assert registry.active_version("m") == 3, "an older version's late commit took over the active pointer"
    assert [v.version for v in registry.versions("m")] == [3, 2]
    assert len(registry.load("m", 2).blobs["big"]) == 64 << 20  # complete, checksum-valid
    assert registry.load("m").blobs["small"] == b"v3"


def test_two_training_jobs_for_one_model_both_complete(celery_worker, model_name: str, settings: Settings) -> None:
    first = submit("ea.train_selfcheck", model=model_name, items=400, dim=8, steps=6)
    second = submit("ea.train_selfcheck", model=model_name, items=400, dim=8, steps=3)
    results = [first.wait(timeout=120), second.wait(timeout=120)]
    versions = sorted(r["version"] for r in results)
    assert versions == [1, 2]
    registry = ModelRegistry(settings)
    assert registry.active_version(model_name) == 2
    assert sorted(v.version for v in registry.versions(model_name)) == [1, 2]
    for version in versions:
        registry.load(model_name, version)
