"""Window maths: scaling by the training prefix, sliding windows, a window length from a period.

What every detector channel does to a series before embedding it; :mod:`anomaly.series` reads series in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .exceptions import InvalidParameter, InvalidSeries, SeriesTooShort

__all__ = ["RobustScaler", "sliding_windows", "choose_window", "MIN_WINDOW", "MAX_WINDOW", "DEFAULT_WINDOW",
           "SCALED_LIMIT"]

MIN_WINDOW = 8
MAX_WINDOW = 64
DEFAULT_WINDOW = 16
#: Largest scaled value (in spreads from the median) that windows carry.
SCALED_LIMIT = 1e6


# -- scaling ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RobustScaler:
    """``(x - median) / scale`` with the median and IQR of the training prefix only.

    ``scale`` is the IQR, or the standard deviation when the IQR is 0 (mostly constant prefixes), or 1
    when both are 0, so that a flat training prefix still gives finite scaled values. "0" is relative to
    the values' own magnitude, not absolute: a series of values around 1e-300 has a real spread.
    Scaled values are clipped to +-:data:`SCALED_LIMIT` (a million spreads from the median): beyond it
    every window is as far as can be, and float32 embeddings of a value such as 1e39 stay finite.
    """

    center: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> RobustScaler:
        """Statistics of ``values`` (the training prefix).

        Raises:
            InvalidSeries: empty or non-finite values.
        """
        v = np.asarray(values, dtype=np.float64)
        if v.size == 0 or not np.isfinite(v).all():
            raise InvalidSeries("the scaler needs a non-empty finite training prefix")
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        scale = float(q3 - q1)
        if not scale > 1e-12 * abs(med):
            scale = float(v.std())
        if not scale > 1e-12 * abs(med) or not np.isfinite(scale):
            scale = 1.0
        return cls(float(med), scale)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Scaled float64 copy of ``values``, clipped to +-:data:`SCALED_LIMIT` (NaN stays NaN)."""
        with np.errstate(over="ignore", invalid="ignore"):
            out = (np.asarray(values, dtype=np.float64) - self.center) / self.scale
        return np.clip(out, -SCALED_LIMIT, SCALED_LIMIT)


# -- windows ----------------------------------------------------------------------------------------------
def sliding_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Read-only view of the windows of ``values``: row ``i`` is ``values[i*stride : i*stride + window]``.

    No copy is made (numpy stride tricks); copy before writing.

    Raises:
        InvalidParameter: ``window`` or ``stride`` < 1.
        SeriesTooShort: fewer than ``window`` values.
    """
    if window < 1 or stride < 1:
        raise InvalidParameter(f"window={window} and stride={stride} must be >= 1")
    v = np.asarray(values)
    if v.shape[0] < window:
        raise SeriesTooShort(f"{v.shape[0]} values give no window of length {window}; at least {window} needed")
    return np.lib.stride_tricks.sliding_window_view(v, window)[::stride]


def choose_window(
    values_train: np.ndarray, *, min_window: int = MIN_WINDOW, max_window: int = MAX_WINDOW
) -> int:
    """Window length from the training prefix alone, without labels.

    The dominant period is the lag of the highest autocorrelation peak (computed by FFT on the
    detrended prefix) between ``min_window`` and half the prefix, provided that peak is clear
    (autocorrelation > 0.3). A period above ``max_window`` is halved until it fits, so the window spans
    a whole fraction of the cycle; no clear period gives :data:`DEFAULT_WINDOW`. Short windows keep
    detection early, which is what matters most when alerting.

    Raises:
        InvalidParameter: ``min_window`` < 2 or ``max_window`` < ``min_window``.
    """
    if min_window < 2 or max_window < min_window:
        raise InvalidParameter(f"need 2 <= min_window <= max_window, got {min_window}, {max_window}")
    v = np.asarray(values_train, dtype=np.float64)
    n = v.size
    if n < 4 * min_window:
        return int(np.clip(DEFAULT_WINDOW, min_window, max(min_window, n // 4)))
    x = v - np.polyval(np.polyfit(np.arange(n), v, 1), np.arange(n))
    if not np.any(np.abs(x) > 1e-12):
        return DEFAULT_WINDOW
    size = 1 << math.ceil(math.log2(2 * n))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[:n]
    acf = acf / acf[0]
    hi = n // 2
    lags = np.arange(min_window, hi)
    if lags.size < 3:
        return DEFAULT_WINDOW
    seg = acf[min_window:hi]
    peaks = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if peaks.size == 0 or seg[peaks].max() < 0.3:
        return DEFAULT_WINDOW
    period = int(lags[peaks[np.argmax(seg[peaks])]])
    while period > max_window:
        period //= 2
    return int(max(min_window, period))
