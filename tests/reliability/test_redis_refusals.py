"""Redis full, hung or wrong (issue 18, item 6).

* a publish at ``maxmemory`` (``noeviction``) is a typed :class:`RedisFull` without binary bytes in its
  message, and leaves no partial data that blocks the next publish;
* wrong credentials are :class:`RedisAuthFailed` and a full Redis :class:`RedisFull`, never "did not answer";
* a hung Redis (SIGSTOP) does not hang requests for cached users: a short request timeout and a circuit
  breaker answer them from memory;
* a manifest of ``{}`` (or other garbage) is a one-line typed error in ``ea models``, ``ea recommend`` and
  ``ea rollback``;
* an index blob with a corrupt graph (its sha256 recomputed: a deployment without signing) is a typed error
  before hnswlib reads it, never a segfault.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from _reliability import ROOT, copy_version, wait_for
from click.testing import CliRunner

from recsys import RecommendationClient
from recsys.exceptions import ModelUnavailable
from vectorstore import (
    ModelRegistry,
    RedisAuthFailed,
    RedisFull,
    RedisUnavailable,
    Settings,
    get_settings,
    start_redis_server,
)
from vectorstore.platform.embedded import RedisProcess
from workers.cli import main as cli


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test with 12 MB of memory and no eviction."""
    server = start_redis_server(tmp_path / "small", extra_args=["--maxmemory", "12mb"])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test only (to be stopped with SIGSTOP)."""
    server = start_redis_server(tmp_path / "own")
    try:
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGCONT)
        server.stop()


def _settings(url: str, tmp_path: Path, **changes) -> Settings:
    return get_settings().with_(redis_url=url, key_prefix="full:", data_dir=tmp_path, signing_key=None, **changes)


def test_publish_at_maxmemory_is_typed_and_leaves_nothing_behind(small_redis: RedisProcess, tmp_path: Path) -> None:
    registry = ModelRegistry(_settings(small_redis.url, tmp_path, chunk_bytes=256 * 1024))
    big = np.random.default_rng(0).bytes(40 * 1024 * 1024)
    rows = {f"u{i}": bytes(64) for i in range(2000)}
    with pytest.raises(RedisFull) as err:
        registry.publish("m", blobs={"big": big}, tables={"users": rows})
    message = str(err.value)
    assert message.isprintable() and len(message) < 300, message
    assert "did not answer" not in message and "\\x" not in message
    leftover = [k for k in registry.client.scan_iter("full:model:*") if b":v:" in k]
    assert leftover == [], f"partial data left behind: {leftover[:5]}"
    # The next publication (one that fits) proceeds at once, and gets the next number.
    version = registry.publish("m", blobs={"small": b"x" * 100_000}, tables={"users": {"u1": b"a"}})
    assert registry.active_version("m") == version
    assert registry.load("m").blobs["small"] == b"x" * 100_000


def test_wrong_credentials_are_told_apart_from_no_answer(tmp_path: Path) -> None:
    server = start_redis_server(tmp_path / "auth", extra_args=["--requirepass", "right-one"])
    try:
        wrong = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
        with pytest.raises(RedisAuthFailed) as err:
            ModelRegistry(_settings(wrong, tmp_path)).publish("m", blobs={"x": b"1"})
        assert "did not answer" not in str(err.value) and "wrong-one" not in str(err.value)
        with pytest.raises(RedisAuthFailed):
            ModelRegistry(_settings(wrong, tmp_path)).active_version("m")
        with pytest.raises(ModelUnavailable, match="refused the credentials"):
            RecommendationClient(settings=_settings(wrong, tmp_path), model="m", listen=False, refresh_interval=0)
    finally:
        server.stop()


def test_hung_redis_does_not_hang_requests_for_cached_users(own_redis: RedisProcess, trained_model: str,
                                                            tmp_path: Path) -> None:
    settings = _settings(own_redis.url, tmp_path, socket_timeout=5.0, request_timeout=0.5)
    copy_version(ModelRegistry(settings), trained_model, "shop", reader=ModelRegistry())
    with RecommendationClient(settings=settings, model="shop", listen=False, refresh_interval=0) as client:
        cached = {u: client.recommend(u, k=5).items for u in ("u1", "u2", "u3")}
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            for _ in range(4):
                for user, items in cached.items():
                    assert client.recommend(user, k=5).items == items
            cached_s = time.monotonic() - started
            started = time.monotonic()
            with pytest.raises(RedisUnavailable):
                client.recommend("u7", k=5)  # not cached: refused, at once while the breaker is open
            refused_s = time.monotonic() - started
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        # 12 requests: with the 5 s socket timeout per request this took a minute; now one request timeout.
        assert cached_s < 3.0, f"cached users took {cached_s:.1f} s while Redis hung"
        assert refused_s < 1.0, f"an uncached user took {refused_s:.1f} s to be refused"

        def answered() -> bool:
            try:
                return client.recommend("u7", k=5).source == "index"
            except RedisUnavailable:
                return False

        wait_for(answered, 30, interval=0.3, what="the client to read Redis again after it came back")


def test_hung_redis_costs_similar_users_one_request_timeout(own_redis: RedisProcess, trained_model: str,
                                                           tmp_path: Path) -> None:
    """Issue 28, item 18: similar_users patches users rewritten by deltas through the per-request reads and
    the breaker: while Redis hangs it answers from memory, not after the 5 s socket timeout on every call."""
    from recsys import CatalogueWriter

    settings = _settings(own_redis.url, tmp_path, socket_timeout=5.0, request_timeout=0.5)
    copy_version(ModelRegistry(settings), trained_model, "shop", reader=ModelRegistry())
    with RecommendationClient(settings=settings, model="shop", listen=False, refresh_interval=30) as client:
        before = client.similar_users("u1", k=5).users
        item = str(client._model.item_ids[0])
        CatalogueWriter("shop", settings=settings).update_users({"u2": [item]})
        client._watcher.catch_up()
        assert client._model.live.users_updated
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            answers = [client.similar_users("u1", k=5).users for _ in range(4)]
            hung_s = time.monotonic() - started
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        assert hung_s < 3.0, f"4 similar_users calls took {hung_s:.1f} s while Redis hung"
        assert all(len(a) == len(before) for a in answers)
        wait_for(lambda: client._similarity._users[1].revision == client._model.live.users_revision
                 or client.similar_users("u1", k=5) is None, 30, interval=0.3,
                 what="the rewritten user to be patched in once Redis answers")


GARBAGE = ["{}", "[]", "null", "\"x\"", "{\"model\": \"shop\", \"version\": 2}", "\udcff not json",
           json.dumps({"model": "shop", "version": 2, "created_at": 1.0,
                       "parts": {"x": {"kind": "blob", "nbytes": 10, "chunks": 10**12, "sha256": "0" * 64}}})]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_manifest_is_a_one_line_error_in_the_cli(garbage: str, trained_model: str, tmp_path: Path) -> None:
    settings = get_settings()
    prefix = f"{settings.key_prefix}g{os.getpid()}{time.monotonic_ns() % 10**8}:"
    registry = ModelRegistry(settings.with_(key_prefix=prefix, signing_key=None))
    source = ModelRegistry(settings.with_(signing_key=None))
    good = copy_version(registry, trained_model, "shop", reader=source)
    bad = copy_version(registry, trained_model, "shop", reader=source)
    registry.client.set(registry.keys.manifest("shop", bad), garbage.encode("utf-8", "surrogateescape"))
    env = {"EA_KEY_PREFIX": prefix, "EA_SIGNING_KEY": ""}
    runner = CliRunner()

    def one_line(args: list[str], code: int = 2) -> str:
        out = runner.invoke(cli, args, env=env)
        assert out.exit_code == code, (args, out.output, out.exception)
        assert "Traceback" not in out.output
        errors = [line for line in out.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, out.output
        return errors[0]

    assert "v2" in one_line(["recommend", "--user", "u1", "--model", "shop"])
    assert f"[{bad}]" in one_line(["models", "shop"])
    assert "v2" in one_line(["rollback", "shop", "--version", str(bad)])
    out = runner.invoke(cli, ["rollback", "shop"], env=env)  # past the corrupt version, to the good one
    assert out.exit_code == 0 and f"v{good} is active" in out.output, out.output


CORRUPTIONS = """
import struct, sys
import numpy as np
from vectorstore import IntegrityError, ItemIndex

x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
refused = served = 0
for mips in ("native", "augmented"):
    blob = ItemIndex.build(x, space="ip", M=8, mips=mips).to_bytes()
    (hlen,) = struct.unpack_from("<I", blob, 7)
    body = 11 + hlen
    per = struct.unpack_from("<Q", blob, body + 24)[0]
    def corrupt(kind, rng):
        b = bytearray(blob)
        if kind == "neighbour":
            for e in range(0, 300, 7):
                struct.pack_into("<I", b, body + 96 + e * per + 4, 50_000_000)
        elif kind == "count":
            for e in range(0, 300, 7):
                struct.pack_into("<I", b, body + 96 + e * per, 60_000)
        elif kind == "entry":
            struct.pack_into("<I", b, body + 52, 10_000_000)
        elif kind == "truncated":
            b = b[: body + int(rng.integers(0, len(b) - body))]
        elif kind == "header":
            b[11:body] = b'{"dim": "8", "space": "ip"}'.ljust(hlen)
        else:
            for _ in range(4):
                b[int(rng.integers(body, len(b)))] = int(rng.integers(0, 256))
        return bytes(b)
    rng = np.random.default_rng(int(sys.argv[1]))
    for kind in ["neighbour", "count", "entry", "truncated", "header"] + ["random"] * 60:
        try:
            index = ItemIndex.from_bytes(corrupt(kind, rng))
        except IntegrityError:
            refused += 1
            continue
        index.query(x[:20], k=10, num_threads=1)
        index.query(x[0], k=5, exact=False)
        served += 1
print(refused, served)
"""


def test_corrupt_index_blob_is_a_typed_error_never_a_crash() -> None:
    out = subprocess.run([sys.executable, "-c", CORRUPTIONS, "7"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"exit {out.returncode} (a negative one is a signal):\n{out.stderr[-3000:]}"
    refused, served = map(int, out.stdout.split())
    assert refused >= 10  # the targeted corruptions and more are refused; corrupt vector bytes load and answer


def _replace_part(registry: ModelRegistry, model: str, version: int, part: str, blob: bytes) -> None:
    """Store ``blob`` as ``part`` with a recomputed sha256: what anyone who can write to Redis can do when
    versions are not signed."""
    key = registry.keys.manifest(model, version)
    manifest = json.loads(registry.client.get(key))
    spec = manifest["parts"][part]
    data = registry.keys.data(model, version)
    registry.client.hdel(data, *[f"{part}:{i}" for i in range(spec["chunks"])])
    registry.client.hset(data, f"{part}:0", blob)
    spec.update(chunks=1, nbytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    registry.client.set(key, json.dumps(manifest))


@pytest.mark.parametrize("part", ["index", "item_ids"])
def test_parts_that_pass_a_recomputed_checksum_but_do_not_decode_are_refused(part: str, trained_model: str,
                                                                             model_name: str) -> None:
    settings = get_settings().with_(signing_key=None)
    registry = ModelRegistry(settings)
    good = copy_version(registry, trained_model, model_name)
    with RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0) as client:
        bad = copy_version(registry, trained_model, model_name)
        blob = bytearray(registry.load(model_name, bad).blobs[part])
        if part == "index":  # every neighbour id of layer 0 out of range: hnswlib would read past its buffers
            (hlen,) = struct.unpack_from("<I", blob, 7)
            body = 11 + hlen
            per, n = struct.unpack_from("<Q", blob, body + 24)[0], struct.unpack_from("<Q", blob, body + 16)[0]
            for e in range(n):
                struct.pack_into("<HH", blob, body + 96 + e * per, 1, 0)
                struct.pack_into("<I", blob, body + 96 + e * per + 4, 2**31)
        else:
            blob[:] = b'{"not": "a list"'
        _replace_part(registry, model_name, bad, part, bytes(blob))
        assert client.refresh() is False and client.model_version == good  # refused; the good one serves
        assert client.recommend("u1", k=3).source == "index"
    with pytest.raises(ModelUnavailable, match=f"v{bad}"):
        RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0)


def test_a_garbage_active_pointer_does_not_stop_the_client_following_versions(trained_model: str,
                                                                              model_name: str, caplog) -> None:
    settings = get_settings().with_(signing_key=None)
    registry = ModelRegistry(settings)
    first = copy_version(registry, trained_model, model_name)
    with RecommendationClient(settings=settings, model=model_name, listen=False, refresh_interval=0.1) as client:
        registry.client.set(registry.keys.active(model_name), "not a version")
        time.sleep(0.6)  # several checks meet the garbage
        assert client.recommend("u1", k=3).model_version == first
        second = copy_version(registry, trained_model, model_name)  # the pointer is a version again
        wait_for(lambda: client.model_version == second, 15, what="the client to follow the next version")
    warnings = [r for r in caplog.records if "cannot check for new versions" in r.getMessage()]
    assert len(warnings) == 1, "the same problem is logged at WARNING once, not at every check"


def test_a_precompute_at_maxmemory_is_typed_and_leaves_no_partial_list(small_redis: RedisProcess, trained_model: str,
                                                                       tmp_path: Path) -> None:
    from recsys import precompute_top_n

    registry = ModelRegistry(_settings(small_redis.url, tmp_path))
    source = ModelRegistry(get_settings().with_(signing_key=None))
    version = copy_version(registry, trained_model, "shop", reader=source)
    filler = 0
    for size in (256 * 1024, 32 * 1024):  # fill Redis to its maxmemory, then leave 32 KB: the lists need ~50 KB
        with contextlib.suppress(redis.exceptions.OutOfMemoryError):
            while True:
                registry.client.set(f"full:filler:{filler}", b"x" * size)
                filler += 1
        filler -= 1
        registry.client.delete(f"full:filler:{filler}")
    with pytest.raises(RedisFull) as err:
        precompute_top_n(registry, "shop", n=50, batch=16)
    assert str(err.value).isprintable() and "\\x" not in str(err.value), str(err.value)
    assert "precompute of" in str(err.value)  # refused while writing the lists, not before
    assert [k for k in registry.client.scan_iter("full:model:*x:topn*")] == []
    registry.client.delete(*[f"full:filler:{i}" for i in range(filler)])
    assert precompute_top_n(registry, "shop", n=20)["version"] == version
