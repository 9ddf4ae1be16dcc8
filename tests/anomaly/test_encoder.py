import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anomaly import InvalidParameter, NotFitted, WindowEncoder  # noqa: E402
from anomaly.encoder import disturb  # noqa: E402
from anomaly.series import sliding_windows  # noqa: E402


@pytest.fixture(scope="module")
def windows():
    t = np.arange(400)
    v = np.sin(2 * np.pi * t / 20) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return sliding_windows(v, 16)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trains_and_embeds(cell, windows):
    enc = WindowEncoder(cell=cell, hidden=8, epochs=5, seed=1).fit(windows)
    assert enc.loss_history[-1] < enc.loss_history[0]
    emb = enc.embed(windows)
    # GRU: the hidden state; LSTM: [h, c].
    assert enc.dim == (16 if cell == "lstm" else 8)
    assert emb.shape == (windows.shape[0], enc.dim) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_same_seed_same_embeddings_other_seed_differs(windows):
    a = WindowEncoder(hidden=8, epochs=3, seed=7).fit(windows).embed(windows)
    b = WindowEncoder(hidden=8, epochs=3, seed=7).fit(windows).embed(windows)
    c = WindowEncoder(hidden=8, epochs=3, seed=8).fit(windows).embed(windows)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_state_bytes_round_trip(windows):
    enc = WindowEncoder(cell="lstm", hidden=8, epochs=2).fit(windows)
    again = WindowEncoder.from_state(enc.state_bytes(), enc.config_dict())
    np.testing.assert_array_equal(enc.embed(windows), again.embed(windows))
    with pytest.raises(InvalidParameter):
        WindowEncoder.from_state(enc.state_bytes(), {**enc.config_dict(), "hidden": 4})


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_fast_inference_matches_torch_kernels(cell, windows):
    enc = WindowEncoder(cell=cell, hidden=8, layers=2, epochs=1).fit(windows)
    x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(-1)
    with torch.inference_mode():
        np.testing.assert_allclose(enc._model.fast_encode(x).numpy(), enc._model.encode(x).numpy(), atol=1e-5)


def test_errors(windows):
    with pytest.raises(NotFitted):
        WindowEncoder().embed(windows)
    with pytest.raises(InvalidParameter, match="cell"):
        WindowEncoder(cell="rnn")
    enc = WindowEncoder(hidden=4, epochs=1).fit(windows)
    with pytest.raises(InvalidParameter, match="length 8"):
        enc.embed(np.zeros((3, 8)))
    with pytest.raises(InvalidParameter, match="augment=1.5"):
        WindowEncoder(augment=1.5)
    with pytest.raises(InvalidParameter, match="augment_scale=0"):
        WindowEncoder(augment_scale=0)


def test_disturbed_copies(windows):
    batch = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(-1)
    out = disturb(batch, torch.Generator().manual_seed(0), 0.5, 8.0)
    again = disturb(batch, torch.Generator().manual_seed(0), 0.5, 8.0)
    assert out.shape == batch.shape and torch.equal(out, again)
    assert torch.equal(batch, torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).unsqueeze(-1))
    changed = (out != batch).any(dim=(1, 2)).float().mean().item()
    assert 0.3 < changed < 0.6  # about half the windows (a flat line from a window's last point is a no-op)
    assert torch.equal(disturb(batch, torch.Generator().manual_seed(1), 0.0, 8.0), batch)
    # A disturbance runs from a random position to the window's end: what precedes it is untouched.
    diff = (out != batch)[..., 0]
    first = diff.float().argmax(dim=1)
    rows = diff.any(dim=1)
    assert all(not diff[r, : first[r]].any() for r in torch.nonzero(rows).flatten().tolist())


def test_disturbances_make_the_state_respond_to_a_spike(windows):
    # The encoder trained with disturbed copies moves a window with a spike further from the clean one.
    spiked = windows.copy()
    spiked[:, -1] += 5.0
    moved = {}
    for augment in (0.0, 0.5):
        enc = WindowEncoder(cell="gru", hidden=8, epochs=15, seed=0, augment=augment).fit(windows)
        clean, spike = enc.embed(windows), enc.embed(spiked)
        spread = np.linalg.norm(clean - clean.mean(axis=0), axis=1).mean()
        moved[augment] = np.linalg.norm(spike - clean, axis=1).mean() / spread
    assert moved[0.5] > moved[0.0]
