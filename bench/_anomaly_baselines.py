"""Baselines of the anomaly benchmark's in-sample comparison (``bench/anomaly.py --compare``): each returns
``(scores, alerts)`` for a series' values, trained on its first ``n_train`` rows, scoring causally.

* ``knn-frozen``: raw-window kNN frozen on the prefix, this project's previous rule (distance to the
  training windows, threshold = the largest training distance, one alert per 200 rows);
* ``zscore``: causal rolling z-score (200 rows, 5 sigma, one alert per 100 rows);
* ``stumpy``: stumpy's left matrix profile, thresholded like ``knn-frozen``;
* ``knncad``: KNN-CAD (Burnaev and Ishimtsev 2016; NAB's 58.0 entry): 19-value windows, Mahalanobis
  distance summed over 27 neighbours, conformal p-value against the recent scores, alert above 0.9965
  then quiet for a fifth of the probation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from anomaly import choose_window


# -- baselines ------------------------------------------------------------------------------------------
def one_per(flags_at: np.ndarray, n: int, refractory: int) -> np.ndarray:
    """Alerts at the given rows, at most one per ``refractory`` rows."""
    out = np.zeros(n, bool)
    last = -(10**9)
    for i in flags_at:
        if i - last > refractory:
            out[i], last = True, i
    return out


def zscore(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    s = pd.Series(values).ffill()
    prev = s.shift(1).rolling(200, min_periods=20)
    z = ((s - prev.mean()) / prev.std()).abs().to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    return z, one_per(np.flatnonzero((z > 5.0) & (np.arange(z.size) >= n_train)), z.size, 100)


def _frozen_threshold(train_scores: np.ndarray) -> float:
    med = float(np.median(train_scores))
    return max(med + 3 * 1.4826 * float(np.median(np.abs(train_scores - med))), float(train_scores.max()), 1e-9)


def knn_frozen(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous product rule: mean distance of each raw window to its 3 nearest training windows
    (overlapping ones excluded), over the largest such distance among the training windows."""
    v = pd.Series(values).ffill().bfill().to_numpy()
    train = v[:n_train]
    q1, med, q3 = np.percentile(train, [25, 50, 75])
    scale = (q3 - q1) or train.std() or 1.0
    x = (v - med) / scale
    w = choose_window(x[:n_train], max_window=max(8, min(64, (n_train - 11) // 3)))
    win = np.lib.stride_tricks.sliding_window_view(x, w)
    ref = win[: n_train - w + 1]
    starts = np.arange(win.shape[0])
    d = np.empty(win.shape[0])
    for a in range(0, win.shape[0], 512):
        block = win[a : a + 512]
        dist = np.sqrt(np.maximum((block**2).sum(1)[:, None] - 2 * block @ ref.T + (ref**2).sum(1)[None, :], 0))
        dist[np.abs(starts[a : a + 512, None] - np.arange(ref.shape[0])[None, :]) < w] = np.inf
        d[a : a + 512] = np.sort(dist, axis=1)[:, :3].mean(axis=1)
    scores = np.zeros(v.size)
    scores[w - 1 :] = d / _frozen_threshold(d[: n_train - w + 1])
    return scores, one_per(np.flatnonzero((scores > 1.0) & (np.arange(v.size) >= n_train)), v.size, 200)


def stumpy_left_mp(values: np.ndarray, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    import stumpy

    v = pd.Series(values).ffill().bfill().to_numpy(dtype=np.float64)
    m = choose_window(v[:n_train], max_window=max(8, min(64, n_train // 4)))
    mp = stumpy.stump(v, m)
    left = mp[:, 2].astype(np.int64)
    subs = np.lib.stride_tricks.sliding_window_view(v, m)
    mu, sd = subs.mean(axis=1), subs.std(axis=1)
    zn = (subs - mu[:, None]) / np.where(sd < 1e-8, 1.0, sd)[:, None]
    d = np.zeros(subs.shape[0])
    ok = left >= 0
    d[ok] = np.linalg.norm(zn[ok] - zn[left[ok]], axis=1)
    scores = np.zeros(v.size)
    scores[m - 1 :] = d
    # The prefix's first rows have little history to match: calibrate on its second half.
    scores /= _frozen_threshold(scores[max(m - 1, n_train // 2) : n_train])
    return scores, one_per(np.flatnonzero((scores > 1.0) & (np.arange(v.size) >= n_train)), v.size, 200)


def knncad(values: np.ndarray, n_train: int, k: int = 27, dim: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """KNN-CAD as NAB runs it (nab/detectors/knncad), record by record."""
    v = pd.Series(values).ffill().bfill().to_numpy(dtype=np.float64)
    p = n_train
    scores_out, flags = np.zeros(v.size), np.zeros(v.size, bool)
    training: list[np.ndarray] = []
    calibration: list[np.ndarray] = []
    cal_scores: list[float] = []
    sigma = np.eye(dim)
    pred = -1

    def ncm(item: np.ndarray, items: np.ndarray, extra: int = 0) -> float:
        diff = items - item
        dist = np.einsum("ij,jk,ik->i", diff, sigma, diff)
        return float(np.sum(np.partition(dist, k + extra)[: k + extra]))

    for i in range(v.size):
        count = i + 1
        if count < dim:
            continue
        item = v[count - dim : count]
        if count < p:
            training.append(item)
            continue
        ost = count % p
        if ost == 0 or ost == p // 2:
            try:
                arr = np.array(training)
                sigma = np.linalg.inv(arr.T @ arr)
            except np.linalg.LinAlgError:
                pass
        arr = np.array(training)
        if not cal_scores:
            cal_scores = [ncm(t, arr, 1) for t in training]
        new = ncm(item, arr)
        result = float(np.mean(np.array(cal_scores) < new))
        if count >= 2 * p:
            training.pop(0)
            training.append(calibration.pop(0))
        cal_scores.pop(0)
        calibration.append(item)
        cal_scores.append(new)
        if pred > 0:
            pred -= 1
            scores_out[i] = 0.5
            continue
        if result >= 0.9965:
            pred = int(p / 5)
            flags[i] = True
        scores_out[i] = result
    return scores_out, flags


BASELINE_FUNCS = {"knn-frozen": knn_frozen, "zscore": zscore, "stumpy": stumpy_left_mp, "knncad": knncad}


