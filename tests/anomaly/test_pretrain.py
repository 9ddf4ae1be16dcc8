"""Pretrained starting weights: made reproducibly from synthetic series, shipped, used on request."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anomaly import InvalidParameter, WindowEncoder  # noqa: E402
from anomaly.encoder import EncoderConfig  # noqa: E402
from anomaly.pretrain import pretrain, pretrained_state, synthetic_windows, weights_path  # noqa: E402
from anomaly.windows import sliding_windows  # noqa: E402


@pytest.fixture(scope="module")
def windows():
    t = np.arange(300)
    return sliding_windows(np.sin(2 * np.pi * t / 25) + 0.05 * np.random.default_rng(1).standard_normal(t.size), 20)


def test_synthetic_windows_are_scaled_finite_and_seeded():
    a = synthetic_windows(np.random.default_rng(3), 200, 32)
    b = synthetic_windows(np.random.default_rng(3), 200, 32)
    assert a.shape == (200, 32) and a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    # Robust-scaled series: windows sit around 0 on the scale of their series' IQR.
    assert abs(float(np.median(a))) < 1.0 and 0.2 < float(np.median(np.abs(a))) < 5.0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_pretraining_is_reproducible_and_loads_as_weights_only(cell):
    a = pretrain(cell, hidden=4, steps=3, batch_size=8, seed=5)
    assert a == pretrain(cell, hidden=4, steps=3, batch_size=8, seed=5)
    assert a != pretrain(cell, hidden=4, steps=3, batch_size=8, seed=6)
    state = torch.load(io.BytesIO(a), weights_only=True)
    enc = WindowEncoder.from_state(a, {"cell": cell, "hidden": 4, "window": 16})
    assert set(state) == set(enc._model.state_dict())
    with pytest.raises(InvalidParameter, match="cell='rnn'"):
        pretrain("rnn", steps=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_shipped_weights_start_a_pretrained_encoder(cell, windows):
    default = EncoderConfig(cell=cell)
    assert weights_path(cell, 16, normalize=default.normalize).exists(), "run python -m anomaly.pretrain"
    # By default both cells start from their shipped weights, when some ship for the shape.
    assert (default.init, default.epochs) == ("pretrained", 10)
    assert EncoderConfig(cell=cell, init=None).init == "pretrained"
    assert EncoderConfig(cell=cell, hidden=5).init == "random"  # no weights ship for this shape
    assert EncoderConfig(cell=cell, normalize=not default.normalize).init == "random"  # nor for this one
    # A negligible learning rate leaves the encoder on the shipped weights.
    enc = WindowEncoder(cell=cell, epochs=1, lr=1e-12, init="pretrained").fit(windows)
    shipped = pretrained_state(cell, 16, normalize=default.normalize)
    for name, tensor in enc._model.state_dict().items():
        torch.testing.assert_close(tensor, shipped[name], atol=1e-6, rtol=0)
    scratch = WindowEncoder(cell=cell, epochs=1, lr=1e-12, init="random").fit(windows)
    assert not np.allclose(enc.embed(windows), scratch.embed(windows))


def test_init_errors_name_the_problem():
    with pytest.raises(InvalidParameter, match="init='imagenet'"):
        WindowEncoder(init="imagenet")
    with pytest.raises(InvalidParameter, match="no pretrained weights ship for a gru with hidden=5"):
        WindowEncoder(cell="gru", hidden=5, init="pretrained").fit(np.zeros((40, 10)))


def test_encoders_saved_before_pretraining_existed_load_as_random(windows):
    enc = WindowEncoder(cell="lstm", hidden=8, epochs=1, init="random").fit(windows)
    old = {k: v for k, v in enc.config_dict().items() if k != "init"}
    again = WindowEncoder.from_state(enc.state_bytes(), old)
    assert again.config.init == "random"
    np.testing.assert_array_equal(enc.embed(windows), again.embed(windows))
