"""Batch and streaming decide alike on the paths that scoring speed touches: scattered missing values,
a training set large enough for the hnswlib index, every batch size, state round trips as through Redis."""

import json

import numpy as np
import pandas as pd
import pytest
from anomaly_synth import TRAIN, clean_series, planted_series

from alerts import IncidentMachine, IncidentPolicy
from alerts._key_state import decode_state, encode_state
from anomaly import THRESHOLD, KnnDetector
from workers.detection import IncidentDecider

FIELDS = ("score", "is_anomaly", "distance", "p_value", "channel", "in_incident")
POLICY = IncidentPolicy()


def batch_of(det: KnnDetector, values: np.ndarray, train: int) -> dict:
    """Every field of a batch detection, with the rows in incidents."""
    decide = IncidentDecider(POLICY)
    scored = det.fit_detect(values, train, decide=decide)
    return {**{f: getattr(scored, f) for f in FIELDS if f != "in_incident"},
            "in_incident": decide.in_incident(values.size)}


def streamed(det: KnnDetector, values: np.ndarray, start: int, sizes: list[int], *, round_trip: bool) -> dict:
    """Score ``values[start:]`` in batches of the given sizes (cycled), optionally restoring the scorer and
    the incident machine from their saved states after every batch."""
    scorer, pos, parts, incident, i = det.continuation(), start, [], [], 0
    decide = IncidentDecider(POLICY)
    while pos < values.size:
        m = min(sizes[i % len(sizes)], values.size - pos)
        parts.append(scorer.update(values[pos : pos + m], decide=decide))
        incident.append(decide.in_incident(pos + m)[pos:])
        pos, i = pos + m, i + 1
        if round_trip:
            meta, arrays = scorer.to_state()
            scorer = det.resume(json.loads(json.dumps(meta)), arrays, continuation=True)
            state = decode_state(encode_state(decide.machine.state)[0].encode(), "test")
            decide = IncidentDecider(POLICY)
            decide.machine = IncidentMachine(POLICY, threshold=THRESHOLD, model="detect", key="series", state=state)
    return {**{f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS if f != "in_incident"},
            "in_incident": np.concatenate(incident)}


def assert_same(stream: dict, batch: dict, start: int) -> None:
    assert batch["is_anomaly"].any()  # something to decide alike
    for f in FIELDS:
        np.testing.assert_array_equal(stream[f], batch[f][start:], err_msg=f)


def test_scattered_missing_values_are_scored_alike_in_batch_and_stream():
    v = planted_series()
    rng = np.random.default_rng(4)
    v[rng.choice(np.arange(TRAIN, v.size), v.size // 20, replace=False)] = np.nan  # one row in 20 missing
    v[3000:3010] = np.nan  # and a gap longer than max_missing
    det = KnnDetector()
    batch = batch_of(det, v, TRAIN)  # query rows skip the missing ones: their bands jump
    assert np.isnan(batch["score"][np.isnan(v)]).all() and not batch["is_anomaly"][np.isnan(v)].any()
    assert_same(streamed(det, v, TRAIN, [1, 7, 100, 333], round_trip=True), batch, TRAIN)


@pytest.mark.parametrize("sizes", [[1000], [100], [1, 2048, 13, 2049]])
def test_a_training_set_in_the_hnswlib_index_is_searched_alike_in_batch_and_stream(sizes):
    v = clean_series(n=7000)
    v[6500] += 4
    v[6000:6100] += 0.5
    det = KnnDetector()
    batch = batch_of(det, v, 5000)
    assert det.references[0].static_index is not None  # more training windows than are searched exactly
    assert_same(streamed(det, v, 5000, sizes, round_trip=sizes == [100]), batch, 5000)


def test_a_state_saved_with_the_calibration_as_json_lists_still_resumes_identically():
    v = planted_series()
    det = KnnDetector().fit(v[:TRAIN])
    scorer = det.continuation()
    scorer.update(v[TRAIN:2000])
    meta, arrays = scorer.to_state()
    assert all(f"cal{c}_readings" in arrays for c in range(len(det.channels)))
    # The layout before the readings left the JSON part: lists in meta, no calibration arrays.
    old_meta = {**meta, "calibrators": [{"recent": cal.recent.tolist(), "readings": cal.readings.tolist(),
                                         "fit": list(cal.fit) if cal.fit else None, "screened": cal.screened.tolist()}
                                        for cal in scorer.calibrators]}
    old_arrays = {k: b for k, b in arrays.items() if not k.startswith("cal")}
    old = det.resume(json.loads(json.dumps(old_meta)), old_arrays, continuation=True).update(v[2000:])
    new = det.resume(json.loads(json.dumps(meta)), arrays, continuation=True).update(v[2000:])
    for f in ("score", "distance", "p_value", "channel"):
        np.testing.assert_array_equal(getattr(old, f), getattr(new, f), err_msg=f)


@pytest.mark.parametrize("step", [1000, 100])
def test_score_series_through_redis_decides_as_batch_whatever_the_batch_size(settings, model_name, step):
    from anomaly._stream_state import state_key
    from anomaly.service import train_detector
    from vectorstore import ModelRegistry
    from workers.scoring import score_series

    v = planted_series()
    ts = pd.date_range("2026-01-01", periods=v.size, freq="5min", tz="UTC")
    train_detector(pd.DataFrame({"timestamp": ts[:TRAIN], "value": v[:TRAIN]}), name=model_name, series_id="s")
    flags, scores, incident = [], [], []
    for a in range(TRAIN, v.size, step):
        out = score_series(model_name, "s", ts[a : a + step].astype(str).tolist(), v[a : a + step].tolist())
        assert out["timestamps"] == [t.isoformat() for t in ts[a : a + step]]
        flags += out["is_anomaly"]
        scores += out["scores"]
        incident += out["in_incident"]
    batch = batch_of(KnnDetector(), v, TRAIN)
    assert flags == batch["is_anomaly"][TRAIN:].astype(int).tolist() and any(flags)
    assert incident == batch["in_incident"][TRAIN:].astype(int).tolist()
    np.testing.assert_array_equal(np.array(scores, float), batch["score"][TRAIN:])
    state = ModelRegistry(settings).client.hgetall(state_key(settings.key_prefix, model_name, "s"))
    assert b"cal0_readings" in state and b"readings" not in json.loads(state[b"meta"])["calibrators"][0]


def test_a_batch_mixing_whole_and_fractional_seconds_is_read(settings, model_name):
    from anomaly.service import score_points, train_detector

    v = clean_series(n=TRAIN + 3)
    ts = pd.date_range("2026-01-01", periods=v.size, freq="5min")
    train_detector(pd.DataFrame({"timestamp": ts[:TRAIN], "value": v[:TRAIN]}), name=model_name, series_id="s")
    # An export writes fractions only where there are some; pandas' format inference refused the batch.
    times = ["2026-01-03 18:40:00.5", "2026-01-03 18:45:00", "2026-01-03T18:50:00+00:00"]
    out = score_points(model_name, "s", times, v[TRAIN:].tolist())
    assert out["timestamps"] == ["2026-01-03T18:40:00.500000+00:00", "2026-01-03T18:45:00+00:00",
                                 "2026-01-03T18:50:00+00:00"]


def test_score_points_reads_the_fixed_width_forms_exports_write_and_refuses_impossible_dates(settings, model_name):
    from anomaly.exceptions import InvalidSeries
    from anomaly.service import score_points, train_detector

    v = clean_series(n=TRAIN + 6)
    ts = pd.date_range("2026-01-01", periods=v.size, freq="5min")
    train_detector(pd.DataFrame({"timestamp": ts[:TRAIN], "value": v[:TRAIN]}), name=model_name, series_id="s")
    with pytest.raises(InvalidSeries, match=r"positions \[1\] cannot be read"):
        score_points(model_name, "s", ["2026-01-03 18:40:00", "2026-02-29 18:45:00"], v[TRAIN : TRAIN + 2].tolist())
    forms = [["2026-01-03 18:40:00", "2026-01-03 18:45:00"], ["2026-01-03T18:50:00Z", "2026-01-03T18:55:00Z"],
             ["2026-01-04 00:30:00+05:30", "2026-01-03 14:05:00-05:00"]]
    out = [score_points(model_name, "s", times, v[TRAIN + 2 * i : TRAIN + 2 * i + 2].tolist())["timestamps"]
           for i, times in enumerate(forms)]
    assert out == [[f"2026-01-03T{t}+00:00" for t in pair] for pair in
                   (("18:40:00", "18:45:00"), ("18:50:00", "18:55:00"), ("19:00:00", "19:05:00"))]


def test_long_context_summaries_do_not_depend_on_how_many_windows_come_together():
    """The piecewise means are reduced in blocks of rows (a batch's windows no longer copied whole): a window's
    summary is the same alone, in a batch across block edges, and read from a view of the series."""
    from anomaly import PaaContext

    values = np.random.default_rng(3).standard_normal(600) * 1e3
    windows = np.lib.stride_tricks.sliding_window_view(values, 256)  # 345 windows: blocks of 128 and a rest
    paa = PaaContext(256, 16)
    together = paa.embed(windows)
    alone = np.vstack([paa.embed(np.ascontiguousarray(w)[None, :]) for w in windows])
    assert together.dtype == np.float32 and together.shape == (345, 16)
    assert np.array_equal(together, alone)
    assert np.array_equal(paa.embed(np.ascontiguousarray(windows[200])), alone[200:201])
