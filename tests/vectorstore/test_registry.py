"""ModelRegistry against a real Redis: round trips, chunking, atomic activation, integrity, GC, rollback."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vectorstore import (
    ChecksumError,
    InvalidModelData,
    ModelNotFound,
    ModelRegistry,
    SignatureError,
    VersionNotFound,
)


@pytest.fixture
def registry(settings):
    return ModelRegistry(settings.with_(chunk_bytes=4096))


def test_round_trip_of_arrays_blobs_tables_and_meta(registry, model_name):
    vectors = np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32)
    ids = np.arange(300, dtype=np.int64)
    version = registry.publish(model_name, arrays={"vectors": vectors, "ids": ids}, blobs={"raw": b"\x00\x01" * 10},
                               tables={"users": {"u1": b"a", "u2": b"bb"}}, meta={"dim": 16, "note": "x"})
    loaded = registry.load(model_name)
    assert loaded.version == version == registry.active_version(model_name)
    np.testing.assert_array_equal(loaded.arrays["vectors"], vectors)
    assert loaded.arrays["vectors"].dtype == np.float32 and loaded.arrays["ids"].dtype == np.int64
    assert loaded.blobs["raw"] == b"\x00\x01" * 10
    assert loaded.meta == {"dim": 16, "note": "x"}
    assert registry.table_get(model_name, version, "users", ["u2", "nobody", "u1"]) == [b"bb", None, b"a"]
    registry.verify_table(model_name, version, "users")
    partial = registry.load(model_name, parts=["ids"])
    assert set(partial.arrays) == {"ids"} and not partial.blobs


def test_blob_larger_than_a_chunk_is_stored_in_chunks(registry, model_name, redis_client):
    blob = np.random.default_rng(1).bytes(4096 * 3 + 17)
    version = registry.publish(model_name, blobs={"big": blob})
    manifest = registry.manifest(model_name, version)
    assert manifest["parts"]["big"]["chunks"] == 4
    data_key = registry.keys.data(model_name, version)
    assert max(len(v) for v in redis_client.hvals(data_key)) <= 4096
    assert registry.load(model_name).blobs["big"] == blob


def test_active_version_collected_while_being_read_is_read_again(registry, model_name):
    registry.publish(model_name, arrays={"a": np.zeros(3, np.float32)})
    tight = ModelRegistry(registry.settings.with_(keep_versions=1))

    class Racing(ModelRegistry):
        """Between reading v1's manifest and its data, v2 is published and v1 collected."""

        raced = False

        def manifest(self, model, version=None):
            found = super().manifest(model, version)
            if not Racing.raced:
                Racing.raced = True
                tight.publish(model_name, arrays={"a": np.ones(3, np.float32)})
                tight.collect_garbage(model_name)  # drops the version whose manifest was just read
            return found

    loaded = Racing(registry.settings).load(model_name)
    assert loaded.version == 2 and loaded.arrays["a"][0] == 1.0
    with pytest.raises(VersionNotFound):
        registry.manifest(model_name, 1)
    Racing.raced = False
    with pytest.raises(VersionNotFound):  # a version asked for by number is gone, not corrupt
        Racing(registry.settings).load(model_name, 2)


def test_concurrent_readers_see_old_or_new_never_a_mix(registry, model_name):
    def payload(v: float) -> dict:
        return {"a": np.full((2000, 8), v, np.float32), "b": np.full((2000, 8), v, np.float32)}

    registry.publish(model_name, arrays=payload(0.0))
    mixes, errors, stop = [], [], threading.Event()

    def read():
        reader = ModelRegistry(registry.settings)
        while not stop.is_set():
            try:
                m = reader.load(model_name)
            except Exception as exc:  # noqa: BLE001 - any error is a failure of the test
                errors.append(exc)
                return
            if m.arrays["a"][0, 0] != m.arrays["b"][-1, -1] or m.arrays["a"][0, 0] != m.version - 1:
                mixes.append(m.version)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for v in range(1, 8):
        registry.publish(model_name, arrays=payload(float(v)))
    stop.set()
    for t in threads:
        t.join()
    assert not errors and not mixes


def test_corrupt_chunk_is_refused_and_active_version_still_serves(registry, model_name, redis_client):
    good = registry.publish(model_name, blobs={"x": b"good" * 3000})
    bad = registry.publish(model_name, blobs={"x": b"new!" * 3000}, activate=False)
    data_key = registry.keys.data(model_name, bad)
    redis_client.hset(data_key, "x:1", b"tampered")
    with pytest.raises(ChecksumError, match="sha256"):
        registry.load(model_name, bad)
    with pytest.raises(VersionNotFound):
        registry.activate(model_name, 999)
    assert registry.load(model_name).version == good
    redis_client.hdel(data_key, "x:0")
    with pytest.raises(ChecksumError, match="missing"):
        registry.load(model_name, bad)


def test_keeps_the_last_n_versions(settings, model_name):
    registry = ModelRegistry(settings.with_(keep_versions=2))
    versions = [registry.publish(model_name, blobs={"x": bytes([i])}) for i in range(4)]
    assert [v.version for v in registry.versions(model_name)] == versions[:-3:-1]
    with pytest.raises(VersionNotFound):
        registry.load(model_name, versions[0])


def test_rollback(registry, model_name):
    v1 = registry.publish(model_name, blobs={"x": b"1"})
    v2 = registry.publish(model_name, blobs={"x": b"2"})
    assert registry.rollback(model_name) == v1
    assert registry.load(model_name).blobs["x"] == b"1"
    with pytest.raises(VersionNotFound, match="older"):
        registry.rollback(model_name)
    assert registry.rollback(model_name, v2) == v2
    assert registry.load(model_name).blobs["x"] == b"2"


def test_older_commit_never_overrides_newer_active(registry, model_name):
    registry.publish(model_name, blobs={"x": b"1"})
    # The other order: version 2 is handed out first but its writes stall until version 3 has committed.
    writing, release = threading.Event(), threading.Event()

    class Straggler(ModelRegistry):
        def _write_hash(self, key, mapping, ttl):
            writing.set()
            release.wait(30)
            super()._write_hash(key, mapping, ttl)

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "v2", Straggler(registry.settings).publish(model_name, blobs={"x": b"2"})))
    thread.start()
    assert writing.wait(30)
    v3 = registry.publish(model_name, blobs={"x": b"3"})
    release.set()
    thread.join(30)
    assert (result["v2"], v3) == (2, 3)
    assert registry.active_version(model_name) == 3


def test_publication_token_commits_once(registry, model_name):
    first = registry.publish(model_name, blobs={"x": b"a"}, token="job-1")
    again = registry.publish(model_name, blobs={"x": b"b"}, token="job-1")
    assert again == first
    assert [v.version for v in registry.versions(model_name)] == [first]
    assert registry.version_for_token(model_name, "job-1") == first


def test_notice_is_published_on_activation(registry, model_name):
    pubsub = registry.client.pubsub()
    pubsub.subscribe(registry.channel(model_name))
    pubsub.get_message(timeout=1)
    version = registry.publish(model_name, blobs={"x": b"1"})
    message = pubsub.get_message(timeout=2)
    pubsub.close()
    assert message and b'"version": %d' % version in message["data"]


def test_signed_versions(settings, model_name):
    signer = ModelRegistry(settings.with_(signing_key=b"k1"))
    unsigned = ModelRegistry(settings)
    v_signed = signer.publish(model_name, blobs={"x": b"1"})
    assert signer.load(model_name).version == v_signed
    v_unsigned = unsigned.publish(model_name, blobs={"x": b"2"})
    with pytest.raises(SignatureError, match="unsigned"):
        signer.load(model_name, v_unsigned)
    with pytest.raises(SignatureError, match="does not verify"):
        ModelRegistry(settings.with_(signing_key=b"other")).load(model_name, v_signed)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrays": {"v": np.array([[1.0, np.nan]], np.float32)}}, "NaN"),
        ({"arrays": {"v": np.array(["a"])}}, "dtype"),
        ({"arrays": {"v": [[1.0]]}}, "numpy array"),
        ({"blobs": {"b": "text"}}, "bytes"),
        ({"blobs": {"bad name": b""}}, "bad name"),
        ({"meta": {"x": object()}}, "JSON"),
        ({"tables": {"t": {"k": "not bytes"}}}, "str to bytes"),
    ],
)
def test_bad_input_is_rejected_before_anything_is_written(registry, model_name, kwargs, message):
    with pytest.raises(InvalidModelData, match=message):
        registry.publish(model_name, **kwargs)
    with pytest.raises(ModelNotFound):
        registry.versions(model_name)


def test_unknown_model_and_version(registry, model_name):
    with pytest.raises(ModelNotFound):
        registry.load(model_name)
    registry.publish(model_name, blobs={"x": b"1"})
    with pytest.raises(VersionNotFound):
        registry.load(model_name, 42)
    with pytest.raises(InvalidModelData):
        registry.load("no spaces allowed")
