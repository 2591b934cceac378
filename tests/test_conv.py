"""Convolutional networks: the convolution and max pooling against their definitions written out, every
gradient against central differences in float64, a step cut in pieces against the whole, the spec's errors,
and a CNN trained through the command line on images and on signals."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from test_models import numeric_gradient, relative_error

import optrun.models.network as network_module
from optrun import threads
from optrun.cli import cli
from optrun.config import parse_config
from optrun.models import ACTIVATIONS, CNNSpec, Conv, MaxPool, build_model
from optrun.train import prepare


def bound(layer, rng: np.random.Generator):
    """The layer with random float64 parameters and gradient buffers of its own."""
    params = [rng.standard_normal(shape) for shape in layer.shapes]
    layer.bind(params, [np.zeros(shape) for shape in layer.shapes])
    return layer


def convolution_by_definition(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, padding) -> np.ndarray:
    """y[n, i, j, o] = b[o] + Σ_{a, b, c} x̃[n, s·i + a, s·j + b, c] W[a, b, c, o], position by position."""
    (sh, sw), (ph, pw) = stride, padding
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    kh, kw = w.shape[:2]
    h_out, w_out = (padded.shape[1] - kh) // sh + 1, (padded.shape[2] - kw) // sw + 1
    y = np.empty((len(x), h_out, w_out, w.shape[3]))
    for i, j in itertools.product(range(h_out), range(w_out)):
        patch = padded[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
        y[:, i, j] = np.einsum("nabc,abco->no", patch, w) + b
    return y


CONVS = [  # grid (height, width, channels), channels out, kernel, stride, padding
    ((7, 6, 3), 4, (3, 3), (1, 1), (1, 1)),
    ((9, 8, 2), 3, (3, 2), (2, 3), (0, 2)),
    ((1, 40, 1), 5, (1, 5), (1, 2), (0, 1)),  # a signal: the MNIST-1D CNN's first layer
    ((1, 19, 5), 5, (1, 3), (1, 2), (0, 1)),
]


@pytest.mark.parametrize("grid, channels, kernel, stride, padding", CONVS)
def test_a_convolution_is_its_definition_and_its_gradients_central_differences(grid, channels, kernel, stride, padding):
    rng = np.random.default_rng(0)
    conv = bound(Conv(grid, channels, kernel, stride, padding), rng)
    x = rng.standard_normal((3, int(np.prod(grid))))
    w = conv.W.reshape(*kernel, grid[2], channels)
    expected = convolution_by_definition(x.reshape(3, *grid), w, conv.b, stride, padding)
    assert conv.out_grid == expected.shape[1:]
    np.testing.assert_allclose(conv.forward(x), expected.reshape(3, -1), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(conv.apply(x), conv.forward(x))

    r = rng.standard_normal(expected.size).reshape(3, -1)  # L = Σ r·y: dL/dy = r
    dx = conv.backward(r.copy())
    loss = lambda: float(np.vdot(r, conv.apply(x)))  # noqa: E731
    assert relative_error(dx, numeric_gradient(loss, x)) < 1e-8
    assert relative_error(conv.dW, numeric_gradient(loss, conv.W)) < 1e-8
    assert relative_error(conv.db, numeric_gradient(loss, conv.b)) < 1e-8


def test_max_pooling_takes_each_windows_largest_and_gives_its_gradient_to_the_first_of_equals():
    rng = np.random.default_rng(1)
    pool = MaxPool((5, 4, 2), (2, 2))  # the fifth row is past the last whole window: dropped
    x = rng.integers(0, 3, (6, 5, 4, 2)).astype(np.float64)  # values 0, 1, 2: many windows hold equal largest
    y = pool.forward(x.reshape(6, -1)).reshape(6, 2, 2, 2)
    windows = x[:, :4].reshape(6, 2, 2, 2, 2, 2)  # n, i, a, j, b, c
    np.testing.assert_array_equal(y, windows.max(axis=(2, 4)))
    dy = rng.standard_normal(y.shape)
    dx = pool.backward(dy.reshape(6, -1).copy()).reshape(x.shape)
    expected = np.zeros_like(x)
    for n, i, j, c in itertools.product(range(6), range(2), range(2), range(2)):
        taps = [(a, b) for a in range(2) for b in range(2)]  # row-major, as PyTorch's
        a, b = next((a, b) for a, b in taps if x[n, 2 * i + a, 2 * j + b, c] == y[n, i, j, c])
        expected[n, 2 * i + a, 2 * j + b, c] = dy[n, i, j, c]
    np.testing.assert_array_equal(dx, expected)
    assert (x == 2).sum() > len(np.flatnonzero(dx))  # ties were there, and went to one tap each


def test_max_pooling_propagates_nan():
    pool = MaxPool((2, 2, 1), (2, 2))
    assert np.isnan(pool.apply(np.array([[1.0, np.nan, 3.0, 2.0]]))).all()


def cnn(activation: str = "tanh", **extra) -> CNNSpec:
    conv = [
        {"channels": 3, "kernel": 3, "stride": 1, "padding": 1, "pool": 2},
        {"channels": 4, "kernel": 2, "stride": 2},
    ]
    return CNNSpec(type="cnn", conv=conv, activation=activation, dtype="float64", **extra)


@pytest.mark.parametrize("grid", [(8, 9, 2), (1, 30, 1)], ids=["image", "signal"])
@pytest.mark.parametrize("spec", [cnn("tanh", hidden=[5], weight_decay=0.1), *(cnn(a) for a in sorted(ACTIVATIONS))])
def test_a_cnns_gradient_matches_central_differences(grid, spec):
    rng = np.random.default_rng(2)
    net = build_model(spec, grid, 3, rng)
    net.flat_params += 0.1 * rng.standard_normal(net.n_params)  # nonzero biases too
    x, y = rng.standard_normal((7, int(np.prod(grid)))), rng.integers(0, 3, 7)
    net.loss_and_grad(x, y)
    analytic = net.flat_grads.copy()
    assert relative_error(analytic, numeric_gradient(lambda: net.evaluate(x, y)[0], net.flat_params)) < 1e-6


def test_a_step_in_pieces_is_the_whole_steps_up_to_rounding_and_the_same_on_any_number_of_threads(monkeypatch):
    rng = np.random.default_rng(3)
    net = build_model(cnn(hidden=[5], weight_decay=0.01), (8, 8, 2), 3, rng)
    x, y = rng.standard_normal((37, 128)), rng.integers(0, 3, 37)
    whole = net.loss_and_grad(x, y), net.flat_grads.copy()
    monkeypatch.setattr(network_module, "PIECE_FLOATS", 100)  # every network is cut: here in 8 pieces
    assert net.pieces(37) == network_module.MAX_PIECES
    pieces = {}
    for n in (1, 2, 3):
        threads.use(n)
        try:
            pieces[n] = net.loss_and_grad(x, y), net.flat_grads.copy()
        finally:
            threads.use(threads.default_count())
    assert pieces[1][0] == pytest.approx(whole[0], rel=1e-13)
    np.testing.assert_allclose(pieces[1][1], whole[1], rtol=1e-12, atol=1e-15)
    for n in (2, 3):
        assert pieces[n][0] == pieces[1][0] and np.array_equal(pieces[n][1], pieces[1][1])


def test_he_initialisation_counts_a_kernels_taps_and_channels():
    net = build_model(
        CNNSpec(type="cnn", conv=[{"channels": 400, "kernel": 5}]), (12, 12, 3), 10, np.random.default_rng(0)
    )
    conv = net.layers[0]
    assert conv.fan_in == 75 and conv.W.std() == pytest.approx(np.sqrt(2 / 75), rel=0.02) and not conv.b.any()


def write_images(folder, shape=(1, 10, 10), n=120, classes=3) -> None:
    """Images whose class is where a bright square sits: a convolutional network's kind of problem."""
    rng = np.random.default_rng(4)
    y = np.arange(n) % classes
    x = rng.normal(0, 0.3, (n, *shape))
    for k in range(classes):
        x[y == k, :, 2 * k : 2 * k + 3, 2 * k : 2 * k + 3] += 2.0
    np.savez(folder / "images.npz", x=x.astype(np.float32), y=y)


def config(folder, model: dict, dataset: dict | None = None, **train) -> str:
    path = folder / "cnn.yaml"
    spec = {
        "dataset": dataset or {"name": "npz", "path": "images.npz"},
        "model": model,
        "train": {"epochs": 3, "batch_size": 16, **train},
        "optimizer": {"name": "adam", "learning_rate": 0.01},
    }
    path.write_text(yaml.safe_dump(spec))
    return str(path)


IMAGE_CNN = {"type": "cnn", "conv": [{"channels": 4, "kernel": 3, "padding": 1, "pool": 2}], "hidden": [8]}


@pytest.mark.parametrize("shape", [(1, 10, 10), (3, 10, 10)], ids=["grey", "colour"])
def test_a_cnn_learns_images_through_the_command_line(tmp_path, shape):
    write_images(tmp_path, shape)
    result = CliRunner().invoke(cli, ["train", config(tmp_path, IMAGE_CNN), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final"]["test_accuracy"] == 1.0, summary
    shown = CliRunner().invoke(cli, ["show", str(run)])
    assert "conv=[channels=4 kernel=3 stride=1 padding=1 pool=2] hidden=[8]" in " ".join(shown.output.split())


def test_the_mnist1d_papers_cnn_is_the_shipped_config_and_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    spec = yaml.safe_load(Path("configs/mnist1d-cnn.yaml").read_text())
    exp = prepare(parse_config({**spec, "train": {**spec["train"], "epochs": 1}}))
    grids = [layer.out_grid for layer in exp.model.layers if isinstance(layer, Conv)]
    assert grids == [(1, 19, 25), (1, 10, 25), (1, 5, 25)] and exp.model.dense[0].fan_in == 125
    assert exp.model.n_params == (5 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + (125 * 10 + 10)


BAD = [
    (
        {**IMAGE_CNN, "conv": [{"channels": 4, "kernel": 11}]},
        "model.conv[0]: a kernel of 11 does not fit its input, 10 × 10",
    ),
    (
        {**IMAGE_CNN, "conv": [{"channels": 4, "kernel": 3, "pool": 20}]},
        "model.conv[0]: a pool of 20 does not fit its input, 8 × 8",
    ),
    ({**IMAGE_CNN, "conv": []}, "model.conv: must have at least 1 item, got an empty list"),
    ({**IMAGE_CNN, "conv": [{"channels": 4}]}, "model.conv[0].kernel: is required"),
    (
        {**IMAGE_CNN, "conv": [{"channels": 4, "kernel": 3, "padding": -1}]},
        "model.conv[0].padding: must be >= 0, got -1",
    ),
]


@pytest.mark.parametrize("model, message", BAD, ids=["kernel", "pool", "no conv", "no kernel", "padding"])
def test_a_cnn_that_does_not_fit_its_data_is_one_line_exit_2_and_writes_nothing(tmp_path, model, message):
    write_images(tmp_path)
    result = CliRunner().invoke(cli, ["train", config(tmp_path, model), "--runs-dir", str(tmp_path / "runs")])
    line = result.output.strip()
    assert result.exit_code == 2 and "\n" not in line and "Traceback" not in line, result.output
    assert message in line, line
    assert not (tmp_path / "runs").exists()
