"""KnnDetector: planted anomalies found, learning (a lasting change becomes normal), calibrated scores,
batch and streaming alike, new series warming up, explanations, persistence and errors. What alerts is
decided by the alerting layer's incident machine (workers.detection.IncidentDecider, what `ea detect` runs)."""

import json

import numpy as np
import pytest
from anomaly_synth import PERIOD, PLANTED, TRAIN, clean_series, planted_series

from alerts import IncidentMachine, IncidentPolicy
from alerts._key_state import decode_state, encode_state
from anomaly import (
    EMBEDDINGS,
    THRESHOLD,
    InvalidParameter,
    KnnDetector,
    NotFitted,
    PaaContext,
    RawWindow,
    SeriesTooShort,
)
from workers.detection import IncidentDecider

FAST_ENCODER = dict(hidden=8, epochs=3, max_windows=200)
POLICY = IncidentPolicy()  # the defaults, whatever EA_ALERT_* the environment holds


def alerts(det: KnnDetector, values: np.ndarray, train: int = TRAIN) -> np.ndarray:
    scored = det.fit_detect(values, train, decide=IncidentDecider(POLICY))
    assert scored.score.shape == values.shape
    ok = ~np.isnan(values)
    assert np.isfinite(scored.score[ok]).all() and (scored.score[ok] >= 0).all() and (scored.score[ok] <= 1).all()
    return np.flatnonzero(scored.is_anomaly)


@pytest.mark.parametrize("embedding", ["raw+paa", "raw"])
def test_planted_anomalies_flagged_where_planted_only(embedding):
    rows = alerts(KnnDetector(embedding), planted_series())
    allowed = np.zeros(planted_series().size, dtype=bool)
    for kind, (a, b) in PLANTED.items():
        hits = rows[(rows >= a) & (rows <= b + 16)]
        assert hits.size >= 1, f"{embedding}: {kind} at {a}..{b} not flagged; alerts at {rows.tolist()}"
        assert hits[0] <= a + 16, f"{embedding}: {kind} flagged late, at {hits[0]}"
        allowed[a : b + 400] = True  # the return to normal may look new too, within the incident
    assert allowed[rows].all(), f"{embedding}: alerts outside planted anomalies at {rows[~allowed[rows]].tolist()}"


@pytest.mark.parametrize("embedding", ["raw+gru", "lstm"])
def test_learned_embeddings_find_the_spike_and_the_shift(embedding):
    rows = alerts(KnnDetector(embedding, **FAST_ENCODER), planted_series())
    for kind in ("spike", "level_shift"):
        a, b = PLANTED[kind]
        assert ((rows >= a) & (rows <= b + 16)).any(), f"{embedding}: {kind} missed; alerts at {rows.tolist()}"


def test_a_learned_context_on_a_short_prefix_starts_from_its_pretrained_weights():
    det = KnnDetector("raw+lstm").fit(planted_series()[:200])  # 200 rows: no 256-row context window yet
    assert det.channels[1].embedder.encoder.loss_history == []  # used as shipped, not trained
    with pytest.raises(SeriesTooShort, match="no pretrained weights"):
        KnnDetector("raw+gru", **FAST_ENCODER).fit(planted_series()[:200])


def test_every_incident_starts_with_its_alert():
    decide = IncidentDecider(POLICY)
    scored = KnnDetector().fit_detect(planted_series(), TRAIN, decide=decide)
    inside = decide.in_incident(scored.score.size).astype(np.int8)
    starts = np.flatnonzero(np.diff(np.concatenate([[0], inside])) == 1).tolist()
    assert starts == np.flatnonzero(scored.is_anomaly).tolist() != []


def test_clean_twin_raises_nothing():
    assert alerts(KnnDetector(), clean_series()).size == 0


def test_lasting_level_shift_alerts_once_then_becomes_normal_and_a_later_anomaly_still_alerts():
    v = clean_series(n=4000)
    v[1500:] += 3.0  # for good
    det = KnnDetector()
    scored = det.fit_detect(v, TRAIN, decide=IncidentDecider(POLICY))
    assert np.flatnonzero(scored.is_anomaly).tolist() == [1500]
    # Normal again within 2 * context + delay rows (the long context's windows must join the references).
    settle = 2 * det.settings["context"] + det.settings["delay"]
    assert (scored.score[1500 + settle :] < THRESHOLD).all()
    # A flat line long after the shift (a change of shape, not of level) is not excused by it.
    v[3000:3100] = v[2999]
    rows = alerts(KnnDetector(), v)
    assert rows.tolist()[0] == 1500 and ((rows >= 3000) & (rows <= 3016)).any(), rows.tolist()


def test_a_later_anomaly_soon_after_a_transient_is_still_seen():
    # A 100-row excursion leaves a trail of large distances; the calibration must not learn them as normal.
    v = clean_series(n=3000)
    v[1400:1500] += 3.0
    t = np.arange(1700, 1800)
    v[1700:1800] = np.sin(2 * np.pi * t / (PERIOD / 3))
    rows = alerts(KnnDetector(), v)
    assert ((rows >= 1400) & (rows <= 1416)).any() and ((rows >= 1700) & (rows <= 1716)).any(), rows.tolist()


def test_noise_free_periodic_series_has_bounded_scores_and_still_alerts():
    t = np.arange(3000)
    v = np.sin(2 * np.pi * t / 50)
    det = KnnDetector()
    scored = det.fit_detect(v, TRAIN, decide=IncidentDecider(POLICY))
    assert not scored.is_anomaly.any() and scored.score.max() <= 1.0
    v[2000] += 0.5
    assert alerts(KnnDetector(), v).tolist() in ([2000], [2001], [2002])


def test_scores_are_causal():
    det = KnnDetector()
    v = planted_series()
    base = det.fit_detect(v, TRAIN).score
    changed = v.copy()
    changed[3000:] = 100.0 * np.random.default_rng(3).standard_normal(changed.size - 3000)
    after = KnnDetector().fit_detect(changed, TRAIN).score
    np.testing.assert_array_equal(base[:3000], after[:3000])
    assert not np.array_equal(base[3000:], after[3000:])


def test_streaming_with_saved_state_decides_exactly_as_batch():
    v = planted_series()
    v[1000:1003] = np.nan  # missing values on the way
    det = KnnDetector()
    batch = det.fit_detect(v, TRAIN, decide=IncidentDecider(POLICY))
    rng = np.random.default_rng(0)
    scorer, pos, scores, flags = det.continuation(), TRAIN, [], []
    state = None
    while pos < v.size:
        m = int(rng.integers(1, 400))
        decide = IncidentDecider(POLICY)
        decide.machine = IncidentMachine(POLICY, threshold=THRESHOLD, model="detect", key="series", state=state)
        out = scorer.update(v[pos : pos + m], decide=decide)
        scores.append(out.score)
        flags.append(out.is_anomaly)
        pos += m
        meta, arrays = scorer.to_state()
        scorer = det.resume(json.loads(json.dumps(meta)), arrays, continuation=True)  # as through Redis
        # ... and the incident machine's state too
        state = decode_state(encode_state(decide.machine.state)[0].encode(), "test")
    np.testing.assert_array_equal(np.concatenate(scores), batch.score[TRAIN:])
    np.testing.assert_array_equal(np.concatenate(flags), batch.is_anomaly[TRAIN:])


def test_missing_values_never_alert_and_get_no_score():
    v = clean_series(n=3000)
    v[1200:1210] = np.nan  # a gap longer than max_missing
    v[1500] = np.nan
    scored = KnnDetector().fit_detect(v, TRAIN, decide=IncidentDecider(POLICY))
    assert np.isnan(scored.score[1200:1210]).all() and np.isnan(scored.score[1500])
    assert not scored.is_anomaly.any()


def test_new_series_warms_up_then_alerts():
    det = KnnDetector().fit(clean_series()[:TRAIN])
    other = clean_series(seed=7, n=2000) * 3 + 50  # another host: another level and scale
    other[1200] += 30
    scorer = det.new_stream()
    out = scorer.update(other, decide=IncidentDecider(POLICY))
    rows = np.flatnonzero(out.is_anomaly)
    assert rows.tolist() == [1200], rows.tolist()
    # During its warm-up the new series reads large distances (another level) but does not alert.
    warmup = POLICY.warmup_points
    assert not out.is_anomaly[:warmup].any() and (out.score[:warmup] >= THRESHOLD).any()


def test_alert_explains_itself():
    v = planted_series()
    ts = (np.datetime64("2026-01-01") + np.arange(v.size) * np.timedelta64(5, "m")).astype("datetime64[ns]")
    scored = KnnDetector().fit_detect(v, TRAIN, ts.astype(np.int64), decide=IncidentDecider(POLICY))
    by_row = {e["row"]: e for e in scored.explanations if e["alert"]}
    spike = by_row[PLANTED["spike"][0]]
    assert spike["reason"] == "value range" and "outside every value seen before" in spike["summary"]
    shift = next(e for r, e in by_row.items() if PLANTED["level_shift"][0] <= r <= PLANTED["level_shift"][0] + 16)
    assert shift["reason"] in ("window", "context") and shift["score"] >= THRESHOLD
    assert len(shift["window"]["values"]) in (16, 256) and shift["window"]["to"].startswith("2026-01-")
    near = shift["nearest"][0]
    assert near["source"] in ("training", "recent") and near["timestamp"] and near["distance"] > 0
    assert shift["distance"] >= 2 * shift["typical_distance"] and "farther" in shift["summary"]
    json.dumps(scored.explanations)


@pytest.mark.parametrize("embedding", ["raw+paa", "raw+gru"])
def test_parts_round_trip_continues_identically(embedding):
    v = planted_series()
    params = FAST_ENCODER if "gru" in embedding else {}
    det = KnnDetector(embedding, **params).fit(v[:TRAIN])
    arrays, blobs, meta = det.to_parts()
    json.dumps(meta)  # the registry stores meta as JSON
    assert all(isinstance(b, bytes) for b in blobs.values())
    again = KnnDetector.from_parts(arrays, blobs, meta)
    np.testing.assert_array_equal(det.continuation().update(v[TRAIN:]).score,
                                  again.continuation().update(v[TRAIN:]).score)
    meta["format"] = 1
    with pytest.raises(NotFitted, match="older version"):
        KnnDetector.from_parts(arrays, blobs, meta)


def test_large_training_prefix_uses_the_hnswlib_index():
    v = clean_series(n=9000)
    det = KnnDetector("raw").fit(v[:6000])
    assert det.references[0].static_index is not None and len(det.references[0].static_index) == 6000 - 15
    v[7000] += 5
    out = det.continuation().update(v[6000:], decide=IncidentDecider(POLICY))
    assert np.flatnonzero(out.is_anomaly).tolist() == [1000]


def test_embedders_can_be_given_directly():
    v = planted_series()
    mine = KnnDetector((RawWindow(12), PaaContext(128, 8))).fit_detect(v, TRAIN)
    named = KnnDetector("raw+paa", window=12, context=128, segments=8).fit_detect(v, TRAIN)
    np.testing.assert_array_equal(mine.score, named.score)
    with pytest.raises(InvalidParameter, match="embedding must be"):
        KnnDetector((RawWindow(12), "paa"))


def test_settings_are_checked_by_name():
    with pytest.raises(InvalidParameter, match="unknown detector parameter.*'kk'.*accepted"):
        KnnDetector(kk=3)
    with pytest.raises(InvalidParameter, match="embedding='cnn'"):
        KnnDetector("cnn")
    with pytest.raises(InvalidParameter, match="segments=7"):
        KnnDetector(segments=7)
    with pytest.raises(InvalidParameter, match="alpha"):
        KnnDetector(alpha=0.9)
    with pytest.raises(SeriesTooShort, match="at least 41"):
        KnnDetector().fit(np.zeros(30))
    with pytest.raises(NotFitted):
        KnnDetector().continuation()
    assert set(EMBEDDINGS) >= {"raw+paa", "raw", "raw+lstm", "raw+gru", "lstm", "gru"}
