"""Backward passes against central finite differences in float64 (relative error < 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

from optrun.models import ACTIVATIONS, Dense, LogisticSpec, MLPSpec, build_model, log_softmax, softmax_cross_entropy

H = 1e-6


def numeric_gradient(f, x: np.ndarray) -> np.ndarray:
    """Central differences (f(x + h e_i) − f(x − h e_i)) / 2h, one coordinate at a time (test-only loop)."""
    grad = np.zeros_like(x)
    flat, g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        up = f()
        flat[i] = old - H
        down = f()
        flat[i] = old
        g[i] = (up - down) / (2 * H)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))


def bound_dense(rng: np.random.Generator, fan_in: int, fan_out: int) -> Dense:
    layer = Dense(fan_in, fan_out)
    params = [rng.standard_normal(s) for s in layer.shapes]
    layer.bind(params, [np.zeros(s) for s in layer.shapes])
    return layer


def test_dense_backward_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    layer = bound_dense(rng, 5, 4)
    x, r = rng.standard_normal((7, 5)), rng.standard_normal((7, 4))
    f = lambda: float(np.sum(layer.forward(x) * r))  # noqa: E731  (L = Σ y∘r, so dL/dy = r)
    layer.forward(x)
    dx = layer.backward(r)
    assert relative_error(dx, numeric_gradient(f, x)) < 1e-6
    assert relative_error(layer.dW, numeric_gradient(f, layer.W)) < 1e-6
    assert relative_error(layer.db, numeric_gradient(f, layer.b)) < 1e-6


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_finite_differences(name: str) -> None:
    rng = np.random.default_rng(1)
    layer = ACTIVATIONS[name]()
    x = rng.standard_normal((6, 5)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink of relu-like functions
    r = rng.standard_normal((6, 5))
    f = lambda: float(np.sum(layer.forward(x) * r))  # noqa: E731
    layer.forward(x)
    assert relative_error(layer.backward(r), numeric_gradient(f, x)) < 1e-6


def test_activation_values() -> None:
    x = np.array([[-2.0, 0.5, 3.0]])
    np.testing.assert_allclose(ACTIVATIONS["relu"]().forward(x), [[0, 0.5, 3.0]])
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"]().forward(x), [[-0.02, 0.5, 3.0]])
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"]().forward(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    np.testing.assert_allclose(ACTIVATIONS["tanh"]().forward(x), np.tanh(x))
    assert np.all(np.isfinite(ACTIVATIONS["sigmoid"]().forward(np.array([[-1e4, 1e4]]))))


def test_softmax_cross_entropy_gradient_and_stability() -> None:
    rng = np.random.default_rng(2)
    z, y = rng.standard_normal((8, 4)), rng.integers(0, 4, 8)
    _, grad = softmax_cross_entropy(z, y)
    assert relative_error(grad, numeric_gradient(lambda: softmax_cross_entropy(z, y)[0], z)) < 1e-6
    # Direct definition on moderate values.
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert softmax_cross_entropy(z, y)[0] == pytest.approx(-np.mean(np.log(p[np.arange(8), y])), rel=1e-13)
    # Logits that overflow exp() stay finite and exact: log-softmax is shift-invariant.
    big = z + 1000.0
    assert softmax_cross_entropy(big, y)[0] == pytest.approx(softmax_cross_entropy(z, y)[0], rel=1e-12)
    np.testing.assert_allclose(np.exp(log_softmax(np.array([[1e4, 0.0]]))), [[1.0, 0.0]])


@pytest.mark.parametrize(
    "spec",
    [
        LogisticSpec(type="logistic", dtype="float64", weight_decay=0.1),
        *(MLPSpec(type="mlp", hidden=[6, 5], activation=a, dtype="float64") for a in sorted(ACTIVATIONS)),
        MLPSpec(type="mlp", hidden=[4], activation="tanh", weight_decay=0.3, dtype="float64"),
    ],
    ids=lambda s: f"{s.type}-{getattr(s, 'activation', '')}-wd{s.weight_decay}",
)
def test_network_gradient_matches_finite_differences(spec) -> None:
    rng = np.random.default_rng(3)
    net = build_model(spec, 4, 3, rng)
    net.flat_params += 0.1 * rng.standard_normal(net.n_params)  # nonzero biases too
    x, y = rng.standard_normal((9, 4)), rng.integers(0, 3, 9)
    net.loss_and_grad(x, y)
    analytic = net.flat_grads.copy()
    numeric = numeric_gradient(lambda: net.evaluate(x, y)[0], net.flat_params)
    assert relative_error(analytic, numeric) < 1e-6


def test_weight_decay_adds_half_lambda_squared_norm_of_weights_only() -> None:
    rng = np.random.default_rng(4)
    plain = build_model(MLPSpec(type="mlp", hidden=[3], dtype="float64"), 2, 2, np.random.default_rng(0))
    decayed = build_model(
        MLPSpec(type="mlp", hidden=[3], dtype="float64", weight_decay=0.5), 2, 2, np.random.default_rng(0)
    )
    plain.flat_params[:] = decayed.flat_params[:] = rng.standard_normal(plain.n_params)
    x, y = rng.standard_normal((5, 2)), rng.integers(0, 2, 5)
    weights = np.concatenate([d.W.ravel() for d in decayed.dense])
    assert decayed.loss_and_grad(x, y) == pytest.approx(plain.loss_and_grad(x, y) + 0.25 * weights @ weights)


def test_init_defaults_follow_activation_and_scale() -> None:
    assert MLPSpec(type="mlp", activation="relu").init == "he"
    assert MLPSpec(type="mlp", activation="tanh").init == "xavier"
    net = build_model(MLPSpec(type="mlp", hidden=[2000]), 500, 10, np.random.default_rng(0))
    assert net.dense[0].W.std() == pytest.approx(np.sqrt(2 / 500), rel=0.01)  # he
    assert net.dense[1].W.std() == pytest.approx(np.sqrt(2 / 2000), rel=0.02)  # the same scheme for every layer
    xavier = build_model(MLPSpec(type="mlp", hidden=[2000], activation="tanh"), 500, 10, np.random.default_rng(0))
    assert xavier.dense[0].W.std() == pytest.approx(np.sqrt(2 / 2500), rel=0.01)
    assert np.all(net.dense[0].b == 0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_a_networks_in_place_activations_give_the_numbers_of_plain_ones(name: str) -> None:
    """A network's activations multiply dy in place (it is the next layer's fresh gradient): the same loss,
    gradients and evaluation as with activations that leave dy alone."""
    spec = MLPSpec(type="mlp", hidden=[32, 16], activation=name, dtype="float64")
    fast, plain = (build_model(spec, 10, 4, np.random.default_rng(1)) for _ in "ab")
    plain.layers = [ACTIVATIONS[name]() if layer.__class__ is ACTIVATIONS[name] else layer for layer in plain.layers]
    assert all(layer.in_place for layer in fast.layers[1::2]) and not any(
        layer.in_place for layer in plain.layers[1::2]
    )
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50, 10)), rng.integers(0, 4, 50)
    assert fast.loss_and_grad(x, y) == plain.loss_and_grad(x, y)
    np.testing.assert_array_equal(fast.flat_grads, plain.flat_grads)
    assert fast.evaluate(x, y) == plain.evaluate(x, y)
