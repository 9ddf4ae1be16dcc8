"""Batch and streaming decide alike on the paths that scoring speed touches: scattered missing values,
a training set large enough for the hnswlib index, every batch size, state round trips as through Redis."""

import json

import numpy as np
import pytest
from anomaly_synth import TRAIN, clean_series, planted_series

from anomaly import KnnDetector

FIELDS = ("score", "is_anomaly", "distance", "p_value", "channel", "in_incident")


def streamed(det: KnnDetector, values: np.ndarray, start: int, sizes: list[int], *, round_trip: bool) -> dict:
    """Score ``values[start:]`` in batches of the given sizes (cycled), optionally restoring the scorer from
    its saved state after every batch."""
    scorer, pos, parts, i = det.continuation(), start, [], 0
    while pos < values.size:
        m = sizes[i % len(sizes)]
        parts.append(scorer.update(values[pos : pos + m]))
        pos, i = pos + m, i + 1
        if round_trip:
            meta, arrays = scorer.to_state()
            scorer = det.resume(json.loads(json.dumps(meta)), arrays, continuation=True)
    return {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}


def assert_same(stream: dict, batch, start: int) -> None:
    for f in FIELDS:
        np.testing.assert_array_equal(stream[f], getattr(batch, f)[start:], err_msg=f)


def test_scattered_missing_values_are_scored_alike_in_batch_and_stream():
    v = planted_series()
    rng = np.random.default_rng(4)
    v[rng.choice(np.arange(TRAIN, v.size), v.size // 20, replace=False)] = np.nan  # one row in 20 missing
    v[3000:3010] = np.nan  # and a gap longer than max_missing
    det = KnnDetector()
    batch = det.fit_detect(v, TRAIN)  # query rows skip the missing ones: their bands jump
    assert np.isnan(batch.score[np.isnan(v)]).all() and not batch.is_anomaly[np.isnan(v)].any()
    assert_same(streamed(det, v, TRAIN, [1, 7, 100, 333], round_trip=True), batch, TRAIN)


@pytest.mark.parametrize("sizes", [[1000], [100], [1, 2048, 13, 2049]])
def test_a_training_set_in_the_hnswlib_index_is_searched_alike_in_batch_and_stream(sizes):
    v = clean_series(n=7000)
    v[6500] += 4
    v[6000:6100] += 0.5
    det = KnnDetector()
    batch = det.fit_detect(v, 5000)
    assert det.references[0].static_index is not None  # more training windows than are searched exactly
    assert_same(streamed(det, v, 5000, sizes, round_trip=sizes == [100]), batch, 5000)
