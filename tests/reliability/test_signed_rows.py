"""Signing beyond the manifest (issue 18, item 2).

With ``EA_SIGNING_KEY`` a version's per-user rows (vectors, seen items) and its precomputed top-N lists are
signed row by row, bound to model, version, table and user: a planted, changed or copied row is refused
(logged and not served; ``strict``: the typed error), and a planted top-N list is never served. A signed
manifest copied under another model's (or version's) key is refused. Malformed rows are a typed
``CorruptRow``, never a raw ``ValueError``/``IndexError``.
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import pytest
from _reliability import copy_version

from recsys import RecommendationClient, precompute_top_n
from recsys.exceptions import ModelUnavailable
from recsys.publish.wire import decode_ids, decode_top, decode_vector, encode_top, encode_vector
from vectorstore import CorruptRow, IntegrityError, ModelRegistry, Settings, SignatureError


def _client(settings: Settings, name: str, **kwargs) -> RecommendationClient:
    return RecommendationClient(settings=settings, model=name, listen=False, refresh_interval=0, **kwargs)


@pytest.fixture
def signed(trained_model: str, model_name: str, settings: Settings):
    """``(registry with a key, its settings, version)``: a signed copy of the trained model as ``model_name``."""
    keyed = settings.with_(signing_key=("k3y-" + uuid.uuid4().hex).encode())
    registry = ModelRegistry(keyed)
    version = copy_version(registry, trained_model, model_name, reader=ModelRegistry(settings.with_(signing_key=None)))
    return registry, keyed, version


def test_changed_copied_or_planted_user_rows_are_not_served(signed, model_name: str, caplog) -> None:
    registry, keyed, version = signed
    vectors = registry.table_key(model_name, version, "user_vectors")
    seen = registry.table_key(model_name, version, "seen")
    with _client(keyed, model_name, user_cache=0) as client:
        assert client.recommend("u1", k=5).source == "index"
        stored = registry.client.hget(vectors, "u2")
        # u2's genuine, signed row copied onto u1, and onto a user the model does not know
        registry.client.hset(vectors, mapping={"u1": stored, "intruder": stored})
        registry.client.hset(seen, "intruder", registry.client.hget(seen, "u2"))
        # u3's vector changed in one byte, u4's seen items emptied
        changed = bytearray(registry.client.hget(vectors, "u3"))
        changed[0] ^= 1
        registry.client.hset(vectors, "u3", bytes(changed))
        registry.client.hset(seen, "u4", b"")
        caplog.set_level(logging.ERROR, logger="recsys.serving._user_rows")
        for user in ("u1", "intruder", "u3", "u4"):
            with pytest.raises(SignatureError):
                client.recommend(user, k=5, strict=True)
            assert client.recommend(user, k=5).source == "popularity"  # not served from the planted row
            assert any(user in r.getMessage() for r in caplog.records), f"no log of {user}'s row"
        assert client.recommend("u5", k=5).source == "index"  # the others are served as before
        many = client.recommend_many(["u1", "u5", "intruder"], k=5)
        assert [r.source for r in many] == ["popularity", "index", "popularity"]


def test_rows_of_another_version_or_model_do_not_verify(signed, trained_model: str, model_name: str,
                                                        settings: Settings) -> None:
    registry, keyed, v1 = signed
    plain = ModelRegistry(settings.with_(signing_key=None))
    v2 = copy_version(registry, trained_model, model_name, reader=plain)
    other = f"{model_name}-b"
    copy_version(registry, trained_model, other, reader=plain)
    rows = registry.table_key(model_name, v2, "user_vectors")
    with _client(keyed, model_name) as client:
        assert client.model_version == v2
        registry.client.hset(rows, "u1", registry.client.hget(registry.table_key(model_name, v1, "user_vectors"), "u1"))
        registry.client.hset(rows, "u2", registry.client.hget(registry.table_key(other, 1, "user_vectors"), "u2"))
        for user in ("u1", "u2"):
            with pytest.raises(SignatureError):
                client.recommend(user, k=5, strict=True)
    with pytest.raises(SignatureError):
        registry.table_get(model_name, v2, "user_vectors", ["u1"])


def test_a_planted_top_n_list_is_never_served(signed, model_name: str) -> None:
    registry, keyed, version = signed
    precompute_top_n(registry, model_name, n=20)
    topn = registry.derived_key(model_name, version, "topn", register=False)
    with _client(keyed, model_name) as client:
        genuine = client.recommend("u1", k=5)
        assert genuine.source == "precomputed"
        # The attacker's list (items u1 would never get), unsigned; and u2's signed list copied onto u1.
        planted = encode_top(np.arange(5, dtype=np.int32), np.full(5, 99.0, np.float32))
        for row in (planted, registry.client.hget(topn, "u2")):
            registry.client.hset(topn, "u1", row)
            got = client.recommend("u1", k=5)
            assert got.source == "index" and got.items == genuine.items
    # A precompute reads only rows that verify: it will not sign a planted vector into a list.
    registry.client.hset(registry.table_key(model_name, version, "user_vectors"), "u9",
                         encode_vector(np.ones(16, np.float32)))
    with pytest.raises(SignatureError):
        precompute_top_n(registry, model_name, n=20)


def test_a_signed_manifest_copied_under_another_model_is_refused(signed, model_name: str) -> None:
    registry, keyed, version = signed
    victim = f"{model_name}-victim"
    client = registry.client
    for suffix in ("manifest", "data", "t:user_vectors", "t:seen"):
        client.copy(registry.keys.version(model_name, version, suffix), registry.keys.version(victim, version, suffix))
    client.set(registry.keys.seq(victim), version)
    client.zadd(registry.keys.versions(victim), {str(version): version})
    client.set(registry.keys.active(victim), version)
    with pytest.raises(IntegrityError, match="manifest of"):
        registry.load(victim)
    with pytest.raises(ModelUnavailable):
        _client(keyed, victim)
    # ... or under another version number of the same model
    client.copy(registry.keys.manifest(model_name, version), registry.keys.manifest(model_name, 99))
    with pytest.raises(IntegrityError):
        registry.manifest(model_name, 99)


MALFORMED = {
    "vector truncated": ("user_vectors", b"abc"), "vector of the wrong dim": ("user_vectors", bytes(12)),
    "vector not whole": ("user_vectors", b"\x00" * 3), "vector empty": ("user_vectors", b""),
    "vector of NaN": ("user_vectors", np.full(16, np.nan, np.float32).tobytes()),
    "seen not whole": ("seen", b"\x01\x02\x03"), "seen negative": ("seen", np.array([-4], "<i4").tobytes()),
    "seen past the catalogue": ("seen", np.array([10**6], "<i4").tobytes()),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_rows_are_typed_errors(case: str, trained_model: str, model_name: str, settings: Settings) -> None:
    table, row = MALFORMED[case]
    plain = settings.with_(signing_key=None)
    registry = ModelRegistry(plain)
    version = copy_version(registry, trained_model, model_name)
    registry.client.hset(registry.table_key(model_name, version, table), "u1", row)
    with _client(plain, model_name, user_cache=0) as client:
        with pytest.raises(CorruptRow):
            client.recommend("u1", k=5, strict=True)
        assert client.recommend("u1", k=5).source == "popularity"
        assert [r.source for r in client.recommend_many(["u1", "u2"], k=5)] == ["popularity", "index"]


def test_malformed_rows_are_typed_errors_when_decoded() -> None:
    for bad in (b"\x00" * 7, encode_top(np.array([10**6], np.int32), np.ones(1, np.float32)),
                encode_top(np.array([1], np.int32), np.array([np.inf], np.float32))):
        with pytest.raises(CorruptRow):
            decode_top(bad, 60)
    with pytest.raises(CorruptRow):
        decode_ids(np.array([60], "<i4").tobytes(), 60)
    with pytest.raises(CorruptRow):
        decode_vector(b"abc", 16)
