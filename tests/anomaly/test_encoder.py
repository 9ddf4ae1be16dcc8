import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anomaly import InvalidParameter, NotFitted, WindowEncoder  # noqa: E402
from anomaly.objectives import disturb, stress  # noqa: E402
from anomaly.windows import sliding_windows  # noqa: E402


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
    # LSTM: [h, c]; GRU: [level, scale * h / |h|].
    assert enc.dim == (16 if cell == "lstm" else 9)
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
    with pytest.raises(InvalidParameter, match="isometry=-1"):
        WindowEncoder(isometry=-1)
    with pytest.raises(InvalidParameter, match="normalize='yes'"):
        WindowEncoder(normalize="yes")


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
    # A bare autoencoder (no stress term, no normalising: both move a spiked window whatever the training).
    spiked = windows.copy()
    spiked[:, -1] += 5.0
    moved = {}
    for augment in (0.0, 0.5):
        enc = WindowEncoder(cell="gru", hidden=8, epochs=15, seed=0, augment=augment, isometry=0.0,
                            normalize=False).fit(windows)
        clean, spike = enc.embed(windows), enc.embed(spiked)
        spread = np.linalg.norm(clean - clean.mean(axis=0), axis=1).mean()
        moved[augment] = np.linalg.norm(spike - clean, axis=1).mean() / spread
    assert moved[0.5] > moved[0.0]


def test_stress_measures_how_far_embedding_distances_are_from_window_distances():
    x = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    # Any rotation and scale of the windows preserves their geometry: no stress.
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert stress(3.0 * x @ rotation, x).item() < 1e-6
    # Stretching one direction tenfold, or dropping all but two, distorts it.
    stretch = torch.ones(16)
    stretch[0] = 10.0
    assert stress(x * stretch, x).item() > 0.1
    assert stress(x[:, :2], x).item() > 0.1


def test_isometry_keeps_embedding_distances_proportional_to_window_distances(windows):
    batch = torch.from_numpy(np.ascontiguousarray(windows[::3], dtype=np.float32)).unsqueeze(-1)
    # Normal and disturbed windows alike: the kNN distance must rank both faithfully.
    probe = disturb(batch, torch.Generator().manual_seed(5), 0.5, 6.0)[..., 0]
    measured = {}
    for isometry in (0.0, 10.0):
        enc = WindowEncoder(cell="lstm", hidden=8, epochs=10, seed=2, isometry=isometry).fit(windows)
        measured[isometry] = stress(torch.from_numpy(enc.embed(probe.numpy())), probe).item()
    assert measured[10.0] < 0.5 * measured[0.0]


def test_isometry_defaults_per_cell_and_older_configs_load(windows):
    assert WindowEncoder(cell="lstm").config.isometry == 10.0
    assert WindowEncoder(cell="gru").config.isometry == 10.0
    enc = WindowEncoder(cell="lstm", hidden=4, epochs=1).fit(windows)
    # Encoders published before the stress term existed have no isometry in their config.
    older = {k: v for k, v in enc.config_dict().items() if k != "isometry"}
    again = WindowEncoder.from_state(enc.state_bytes(), older)
    np.testing.assert_array_equal(enc.embed(windows), again.embed(windows))


def test_a_normalizing_encoder_carries_level_and_scale_apart(windows):
    enc = WindowEncoder(cell="gru", hidden=8, epochs=3, seed=0).fit(windows)
    assert enc.config.normalize and not WindowEncoder(cell="lstm").config.normalize
    emb = enc.embed(windows)
    np.testing.assert_allclose(emb[:, 0], windows.mean(axis=1), rtol=1e-5, atol=1e-5)
    scale = windows.std(axis=1)
    np.testing.assert_allclose(np.linalg.norm(emb[:, 1:], axis=1), scale, rtol=1e-4, atol=1e-5)
    # Shifting a window moves only the level; scaling it scales the embedding (its shape is unchanged,
    # up to the floor added to the scale).
    shifted = enc.embed(windows + 7.0)
    np.testing.assert_allclose(shifted[:, 0], emb[:, 0] + 7.0, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(shifted[:, 1:], emb[:, 1:], atol=1e-4)
    tenfold = enc.embed(10.0 * windows)
    assert (np.linalg.norm(tenfold - 10.0 * emb, axis=1) < 0.02 * np.linalg.norm(10.0 * emb, axis=1)).all()
    # A flat window embeds at its level with no shape.
    flat = enc.embed(np.full((1, windows.shape[1]), 2.5))
    np.testing.assert_allclose(flat, [[2.5] + [0.0] * 8], atol=1e-6)


def test_normalizing_lets_a_gru_embedding_grow_with_the_anomaly(windows):
    # A GRU's own state is tanh-bounded: distances saturate as a spike grows. Carrying the level and
    # scale apart keeps them growing with it, as the windows' own distances do.
    growth = {}
    for normalize in (False, True):
        enc = WindowEncoder(cell="gru", hidden=8, epochs=10, seed=0, normalize=normalize).fit(windows)
        clean = enc.embed(windows)
        moved = {}
        for size in (5.0, 50.0):
            spiked = windows.copy()
            spiked[:, -1] += size
            moved[size] = np.linalg.norm(enc.embed(spiked) - clean, axis=1).mean()
        growth[normalize] = moved[50.0] / moved[5.0]
    assert growth[True] > 5.0 > growth[False]


def test_encoders_saved_before_normalizing_existed_load_unnormalized(windows):
    enc = WindowEncoder(cell="gru", hidden=4, epochs=1, normalize=False).fit(windows)
    older = {k: v for k, v in enc.config_dict().items() if k != "normalize"}
    again = WindowEncoder.from_state(enc.state_bytes(), older)
    assert again.config.normalize is False and again.dim == 4
    np.testing.assert_array_equal(enc.embed(windows), again.embed(windows))
