import numpy as np
import pytest

from anomaly import InvalidParameter, knn_outliers


@pytest.mark.parametrize("space", ["cosine", "l2"])
def test_finds_planted_outliers(space):
    rng = np.random.default_rng(0)
    # Three tight clusters of ordinary entities, plus three vectors pointing elsewhere.
    centers = rng.standard_normal((3, 16)) * 3
    normal = np.repeat(centers, 100, axis=0) + 0.1 * rng.standard_normal((300, 16))
    odd = rng.standard_normal((3, 16)) * 3
    vectors = np.vstack([normal, odd])
    ids = [f"u{i}" for i in range(300)] + ["odd-a", "odd-b", "odd-c"]
    df = knn_outliers(vectors, ids, k=5, space=space)
    assert list(df.columns) == ["id", "score", "is_outlier"]
    assert set(df["id"].head(3)) == {"odd-a", "odd-b", "odd-c"}
    assert set(df.loc[df["is_outlier"], "id"]) == {"odd-a", "odd-b", "odd-c"}
    assert df["score"].is_monotonic_decreasing and df.attrs["threshold"] > 0


def test_self_is_excluded_and_errors():
    # Duplicated points: excluding only self, each point's nearest peer is its twin at distance 0.
    v = np.repeat(np.eye(4), 2, axis=0)
    df = knn_outliers(v, k=1, space="l2", threshold=0.5)
    assert np.allclose(df["score"], 0) and not df["is_outlier"].any()
    with pytest.raises(InvalidParameter, match="ids"):
        knn_outliers(v, ids=["a"])
    with pytest.raises(InvalidParameter, match="space"):
        knn_outliers(v, space="ip")
    with pytest.raises(InvalidParameter, match="n >= 2"):
        knn_outliers(v[:1])
