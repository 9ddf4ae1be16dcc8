import json

import numpy as np
import pytest
from anomaly_synth import PLANTED, TRAIN, clean_series, planted_series

from anomaly import InvalidParameter, KnnDetector, NotFitted, SeriesTooShort, StreamScorer

NEURAL = dict(hidden=8, epochs=12, max_windows=300)
# A margin above the noise of the training prefix: no chance exceedances in tests. Encoders trained with
# disturbed copies have heavy-tailed training distances (max/median 4-6), hence a large multiple.
STRICT = dict(c=16.0)


@pytest.fixture(scope="module")
def fitted():
    """One fitted detector per embedding, on the clean training prefix shared by both series."""
    train = planted_series()[:TRAIN]
    return {
        "raw": KnnDetector("raw", window=25, **STRICT).fit(train),
        "gru": KnnDetector("gru", window=25, **STRICT, **NEURAL).fit(train),
    }


def flagged_rows(det, values):
    scores = det.score(values)
    assert np.isfinite(scores).all() and scores.shape == values.shape
    return np.flatnonzero(det.alerts(scores))


@pytest.mark.parametrize("embedding", ["raw", "gru"])
def test_planted_anomalies_flagged_where_planted_only(fitted, embedding):
    det = fitted[embedding]
    rows = flagged_rows(det, planted_series())
    for kind, (a, b) in PLANTED.items():
        hits = rows[(rows >= a) & (rows <= b + det.window)]
        assert hits.size >= 1, f"{embedding}: {kind} at {a}..{b} not flagged; flags at {rows.tolist()}"
    allowed = np.zeros(planted_series().size, dtype=bool)
    for a, b in PLANTED.values():
        allowed[a : b + det.window + 1] = True
    assert allowed[rows].all(), f"{embedding}: flags outside planted anomalies at {rows[~allowed[rows]].tolist()}"


@pytest.mark.parametrize("embedding", ["raw", "gru"])
def test_clean_twin_raises_nothing(fitted, embedding):
    assert flagged_rows(fitted[embedding], clean_series()).size == 0


@pytest.mark.parametrize("embedding", ["raw", "gru"])
def test_scores_are_causal(fitted, embedding):
    det = fitted[embedding]
    v = planted_series()
    base = det.score(v)
    changed = v.copy()
    changed[1500:] = 100.0 * np.random.default_rng(3).standard_normal(changed.size - 1500)
    after = det.score(changed)
    np.testing.assert_array_equal(base[:1500], after[:1500])
    assert not np.array_equal(base[1500:], after[1500:])
    assert (base[: det.window - 1] == 0).all()


def test_trivial_matches_excluded():
    # A random walk never repeats: with overlapping windows excluded no training window is at distance 0.
    walk = np.cumsum(np.random.default_rng(0).standard_normal(400))
    det = KnnDetector("raw", window=10, k=2).fit(walk)
    assert det.train_scores.min() > 0
    assert det.train_scores.max() <= det.threshold


@pytest.mark.parametrize("embedding", ["raw", "gru"])
def test_parts_round_trip_gives_identical_scores(fitted, embedding):
    det = fitted[embedding]
    arrays, blobs, meta = det.to_parts()
    json.dumps(meta)  # the registry stores meta as JSON
    assert all(isinstance(b, bytes) for b in blobs.values())
    again = KnnDetector.from_parts(arrays, blobs, meta)
    v = planted_series()
    np.testing.assert_array_equal(det.score(v), again.score(v))
    assert again.window == det.window and again.threshold_distance == det.threshold_distance


def test_streaming_equals_batch(fitted):
    det = fitted["raw"]
    v = planted_series()
    batch = det.score(v)[TRAIN:]
    batch_flags = det.alerts(batch)
    stream = det.stream()
    parts = [stream.update(v[i : i + 1]) for i in range(TRAIN, TRAIN + 50)]  # point by point
    parts.append(stream.update(v[TRAIN + 50 : TRAIN + 333]))  # then in chunks
    parts.append(stream.update(v[TRAIN + 333 :]))
    np.testing.assert_allclose(np.concatenate([p[0] for p in parts]), batch, rtol=1e-12)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), batch_flags)
    assert stream.position == v.size
    # A scorer rebuilt from a saved position and tail carries on identically.
    resumed = StreamScorer(det, position=2000, tail=v[2000 - det.window + 1 : 2000])
    np.testing.assert_allclose(resumed.update(v[2000:2100])[0], det.score(v)[2000:2100], rtol=1e-12)


def test_refractory_limits_alerts(fitted):
    det = fitted["raw"]
    v = clean_series()
    v[1000:1300] += 5.0  # a long incident
    rows = flagged_rows(det, v)
    assert 1 <= rows.size <= 300 // det.refractory_rows + 2
    assert np.diff(rows).min() > det.refractory_rows


def test_window_chosen_and_errors():
    det = KnnDetector("raw").fit(clean_series()[:TRAIN])
    assert det.window == 25  # the period of the synthetic sine
    with pytest.raises(SeriesTooShort, match="at least"):
        KnnDetector("raw", window=20).fit(np.zeros(30))
    with pytest.raises(InvalidParameter, match="embedding"):
        KnnDetector("cnn")
    with pytest.raises(NotFitted):
        KnnDetector("raw").score(np.zeros(100))
    with pytest.raises(InvalidParameter, match="finite"):
        det.score(np.array([1.0, np.nan]))


def test_holdout_calibration_and_older_published_detectors():
    train = planted_series()[:TRAIN]
    det = KnnDetector("gru", window=25, holdout=0.25, **NEURAL).fit(train)
    # The threshold covers the training windows and the held-out ones the encoder never saw.
    assert det.score(train).max() <= 1.0
    arrays, blobs, meta = det.to_parts()
    assert meta["holdout"] == 0.25
    del meta["holdout"]  # a detector published before the setting existed was fitted without hold-out
    again = KnnDetector.from_parts(arrays, blobs, meta)
    assert again.holdout == 0.0
    np.testing.assert_array_equal(again.score(train), det.score(train))
    with pytest.raises(InvalidParameter, match="holdout=1.0"):
        KnnDetector("gru", holdout=1.0)
