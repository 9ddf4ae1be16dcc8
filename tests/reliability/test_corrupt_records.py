"""Records in Redis that hold garbage: read back with a typed error or recovered from, never a raw error.

Garbage is planted with plain Redis writes (HSET, XADD), as anyone with write access to Redis could.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from anomaly import CorruptState, StreamScorer
from anomaly.service import score_points, train_detector
from vectorstore import ModelRegistry

TRAIN = 600
STEP = 100


def _frame(n: int = 1200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    values = np.sin(2 * np.pi * np.arange(n) / 40) + 0.05 * rng.standard_normal(n)
    return pd.DataFrame({"timestamp": pd.date_range("2026-01-01", periods=n, freq="5min"), "value": values})


@pytest.fixture(scope="module")
def detector_model() -> tuple[str, pd.DataFrame]:
    """A detector trained on the first rows of a sine series (its training series id: ``train``)."""
    import uuid

    name = f"m{uuid.uuid4().hex[:10]}"
    frame = _frame()
    train_detector(frame, name=name, train_until=TRAIN, series_id="train")
    return name, frame


def _batch(name: str, series: str, frame: pd.DataFrame, a: int) -> dict:
    chunk = frame.iloc[a : a + STEP]
    return score_points(name, series, chunk.timestamp.astype(str).tolist(), chunk.value.tolist(),
                        registry=ModelRegistry())


def _state_key(settings, name: str, series: str) -> str:
    return f"{settings.key_prefix}series:{{{name}:{series}}}:state"


def _meta(redis_client, key: str) -> dict:
    return json.loads(redis_client.hget(key, "meta"))


GARBAGE = {
    "truncated values": lambda meta: {"values": b"\x00" * 7},
    "truncated calibration readings": lambda meta: {"cal0_readings": b"\x01\x02\x03"},
    "meta not JSON": lambda meta: {"meta": b"\xff\xfe{garbage"},
    "meta a JSON list": lambda meta: {"meta": b"[1, 2]"},
    "meta empty object": lambda meta: {"meta": b"{}"},
    "non-numeric position": lambda meta: {"meta": json.dumps({**meta, "position": "abc"})},
    "non-numeric last alert": lambda meta: {"meta": json.dumps({**meta, "rule": {**meta["rule"], "last_alert": "x"}})},
    "calibrations not objects": lambda meta: {"meta": json.dumps({**meta,
                                                                  "calibrators": [1] * len(meta["calibrators"])})},
    "version not a number": lambda meta: {"meta": json.dumps({**meta, "version": "v1"})},
    "times of another length": lambda meta: {"times": np.arange(400, 0, -1, dtype="<i8").tobytes()[-8 * 80:]},
}


@pytest.mark.parametrize("case", sorted(GARBAGE))
@pytest.mark.parametrize("series", ["train", "other"])
def test_a_corrupt_stream_state_restarts_the_series_loudly(detector_model, settings, redis_client, caplog,
                                                            case: str, series: str) -> None:
    name, frame = detector_model
    series = f"{series}" if series == "train" else f"{series}-{case.replace(' ', '-')}"
    key = _state_key(settings, name, series)
    redis_client.delete(key)
    first = _batch(name, series, frame, TRAIN)
    planted = GARBAGE[case](_meta(redis_client, key))
    redis_client.hset(key, mapping={**planted, "token": "planted-by-someone-else"})
    with caplog.at_level(logging.WARNING, logger="anomaly.service"):
        out = _batch(name, series, frame, TRAIN + STEP)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and repr(series) in errors[0].getMessage() and key in errors[0].getMessage()
    assert "garbage" not in caplog.text and "abc" not in caplog.text
    assert len(out["scores"]) == STEP and out["version"] == first["version"]
    if series == "train":  # the training series continues right after its prefix: scored from the first row
        assert out["position"] == TRAIN + STEP and not out["warming_up"]
    # The state was rewritten whole: the next batch reads it back without complaint.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="anomaly.service"):
        _batch(name, series, frame, TRAIN + 2 * STEP)
    assert not caplog.records


def test_a_token_that_is_not_text_does_not_break_scoring(detector_model, settings, redis_client) -> None:
    name, frame = detector_model
    key = _state_key(settings, name, "token")
    _batch(name, "token", frame, TRAIN)
    redis_client.hset(key, "token", b"\xff\xfe\x00")
    out = _batch(name, "token", frame, TRAIN + STEP)
    assert len(out["scores"]) == STEP


def test_load_state_names_the_part_never_its_content(detector_model) -> None:
    name, frame = detector_model
    from anomaly.service import load_detector

    _, detector = load_detector(ModelRegistry(), name)
    scorer: StreamScorer = detector.new_stream()
    scorer.update(frame.value.to_numpy()[:300], frame.timestamp.to_numpy().astype("datetime64[ns]").astype("i8")[:300])
    meta, arrays = scorer.to_state()
    with pytest.raises(CorruptState, match="meta.position") as err:
        detector.new_stream().load_state({**meta, "position": "secret-text"}, arrays)
    assert "secret-text" not in str(err.value)
    with pytest.raises(CorruptState, match="'times'"):
        detector.new_stream().load_state(meta, {**arrays, "times": b"\x00" * 9})
    assert isinstance(err.value, ValueError)
