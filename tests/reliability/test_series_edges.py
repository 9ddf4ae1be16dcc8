"""Series at the edges of floating point: a huge spike is flagged, a tiny-valued series is not flat."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly import KnnDetector
from workers.detection import IncidentDecider


def _series(n: int = 2500) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.sin(2 * np.pi * np.arange(n) / 40) + 0.05 * rng.standard_normal(n)


@pytest.mark.parametrize("embedding", ["raw", "raw+paa"])
def test_a_spike_of_1e39_is_flagged_and_scoring_goes_on(embedding: str) -> None:
    v = _series()
    v[1500] = 1e39  # beyond float32: embeddings must stay finite
    v[2000] += 5.0
    scored = KnnDetector(embedding).fit_detect(v, 600, decide=IncidentDecider())
    assert np.isfinite(scored.score).all()
    rows = np.flatnonzero(scored.is_anomaly).tolist()
    assert rows[0] == 1500 and any(2000 <= r <= 2016 for r in rows), rows


@pytest.mark.parametrize("factor", [1e-300, 1e-150, 1e150])
def test_scale_of_the_values_does_not_matter(factor: float) -> None:
    v = _series()
    v[1500] += 3.0
    base = KnnDetector().fit_detect(v, 600, decide=IncidentDecider())
    scaled = KnnDetector().fit_detect(v * factor, 600, decide=IncidentDecider())
    assert np.flatnonzero(scaled.is_anomaly).tolist() == np.flatnonzero(base.is_anomaly).tolist() != []
    np.testing.assert_allclose(scaled.score, base.score, atol=1e-6)
