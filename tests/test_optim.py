"""The update rules against values derived independently of the implementation.

Two independent derivations:
- a prescribed gradient sequence g_1..g_T (a linear objective, so g does not
  depend on θ): every buffer is then an explicit weighted sum of past
  gradients, e.g. m_t = (1 − β1) Σ_k β1^(t−k) g_k, computed here with a
  lower-triangular decay matrix rather than by recurrence;
- a diagonal quadratic ½ Σ h_i x_i², on which momentum and Nesterov are linear
  recurrences in (x, v), whose T-th iterate is a 2×2 matrix power.
"""

from __future__ import annotations

import numpy as np
import pytest

from optrun.optim import OPTIMIZERS, build_optimizer, flat_buffer, update_rule
from optrun.schema import ConfigError

T = 300
SHAPES = [(3, 4), (5,), (2, 1, 3)]


def decay_matrix(beta: float, steps: int) -> np.ndarray:
    """W[t, k] = beta^(t−k) for k <= t, else 0."""
    t = np.arange(steps)
    expo = t[:, None] - t[None, :]
    return np.where(expo >= 0, beta ** np.maximum(expo, 0).astype(float), 0.0)


def gradient_sequence(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.logspace(-3, 2, n)  # tiny to large gradients, so eps and scaling both matter
    return rng.standard_normal((T, n)) * scales + 0.3 * scales


def expected_steps(spec: dict, G: np.ndarray) -> np.ndarray:
    """Row t − 1 is the change θ_{t−1} − θ_t, derived in closed form."""
    lr = spec["learning_rate"]
    t = np.arange(1, len(G) + 1)[:, None]
    name = spec["name"]
    if name == "sgd":
        return lr * G
    if name in ("momentum", "nesterov"):
        V = lr * decay_matrix(spec["mu"], len(G)) @ G
        nesterov = name == "nesterov" or spec.get("nesterov", False)
        return spec["mu"] * V + lr * G if nesterov else V
    if name == "adagrad":
        return lr * G / (np.sqrt(np.cumsum(G**2, axis=0)) + spec["eps"])
    if name == "rmsprop":
        rho = spec["decay_rate"]
        C = (1 - rho) * decay_matrix(rho, len(G)) @ G**2
        return lr * G / (np.sqrt(C) + spec["eps"])
    if name == "adam":
        b1, b2 = spec["beta1"], spec["beta2"]
        M = (1 - b1) * decay_matrix(b1, len(G)) @ G
        S = (1 - b2) * decay_matrix(b2, len(G)) @ G**2
        return lr * (M / (1 - b1**t)) / (np.sqrt(S / (1 - b2**t)) + spec["eps"])
    raise AssertionError(name)


SPECS = [
    {"name": "sgd", "learning_rate": 0.05},
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.9},
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.5, "nesterov": True},
    {"name": "nesterov", "learning_rate": 0.01, "mu": 0.95},
    {"name": "adagrad", "learning_rate": 0.1, "eps": 1e-8},
    {"name": "rmsprop", "learning_rate": 0.01, "decay_rate": 0.9, "eps": 1e-8},
    {"name": "rmsprop", "learning_rate": 0.003, "decay_rate": 0.99, "eps": 1e-3},
    {"name": "adam", "learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    {"name": "adam", "learning_rate": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4},
]


def make_params(layout: str, rng: np.random.Generator) -> list[np.ndarray]:
    sizes = [int(np.prod(s)) for s in SHAPES]
    values = rng.standard_normal(sum(sizes))
    if layout == "flat":
        buf, out, start = values.copy(), [], 0
        for shape, size in zip(SHAPES, sizes, strict=True):
            out.append(buf[start : start + size].reshape(shape))
            start += size
        assert flat_buffer(out) is buf
        return out
    return [a.reshape(s).copy() for a, s in zip(np.split(values, np.cumsum(sizes)[:-1]), SHAPES, strict=True)]


def split(vector: np.ndarray) -> list[np.ndarray]:
    sizes = [int(np.prod(s)) for s in SHAPES]
    return [a.reshape(s) for a, s in zip(np.split(vector, np.cumsum(sizes)[:-1]), SHAPES, strict=True)]


@pytest.mark.parametrize("layout", ["separate", "flat"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_trajectory_matches_closed_form(spec: dict, layout: str) -> None:
    params = make_params(layout, np.random.default_rng(1))
    theta0 = np.concatenate([p.ravel() for p in params])
    G = gradient_sequence(theta0.size)
    opt = build_optimizer(spec, params)
    got = np.empty((T, theta0.size))
    for t in range(T):
        opt.step(split(G[t].copy()))
        got[t] = np.concatenate([p.ravel() for p in params])
    want = theta0 - np.cumsum(expected_steps(spec, G), axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert opt.t == T


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_on_quadratic_matches_matrix_power(nesterov: bool) -> None:
    h = np.array([1.0, 10.0, 100.0])
    lr, mu, steps = 0.009, 0.8, 250
    x0 = np.array([1.0, -2.0, 0.5])
    x = [x0.copy()]
    opt = build_optimizer({"name": "momentum", "learning_rate": lr, "mu": mu, "nesterov": nesterov}, x)
    for _ in range(steps):
        opt.step([h * x[0]])
    for i, hi in enumerate(h):
        # state (x, v):  v' = mu v + lr h x;  x' = x - v'   (nesterov: x' = x - mu v' - lr h x)
        if nesterov:
            A = np.array([[1 - lr * hi * (1 + mu), -(mu**2)], [lr * hi, mu]])
        else:
            A = np.array([[1 - lr * hi, -mu], [lr * hi, mu]])
        xt, vt = np.linalg.matrix_power(A, steps) @ np.array([x0[i], 0.0])
        assert x[0][i] == pytest.approx(xt, rel=1e-10, abs=1e-14)
        assert opt.state_dict()["state"]["velocity"][0][i] == pytest.approx(vt, rel=1e-10, abs=1e-14)


def test_nesterov_reformulation_evaluates_the_same_gradient_points() -> None:
    """The literal look-ahead rule and the stored-look-ahead form see the same points."""
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    H = Q @ np.diag([1.0, 3.0, 10.0, 30.0]) @ Q.T
    lr, mu, steps = 0.02, 0.9, 200
    x0 = rng.standard_normal(4)

    # Reference texts: gradient at the look-ahead point phi - mu v; then v <- mu v + lr g, phi <- phi - v.
    phi, v, literal_points = x0.copy(), np.zeros(4), []
    for _ in range(steps):
        point = phi - mu * v
        literal_points.append(point)
        v = mu * v + lr * (H @ point)
        phi = phi - v

    theta = [x0.copy()]  # v = 0, so the first look-ahead point is x0
    opt = build_optimizer({"name": "nesterov", "learning_rate": lr, "mu": mu}, theta)
    stored_points = []
    for _ in range(steps):
        stored_points.append(theta[0].copy())
        opt.step([H @ theta[0]])

    np.testing.assert_allclose(stored_points, literal_points, rtol=1e-12, atol=1e-14)
    velocity = opt.state_dict()["state"]["velocity"][0]
    np.testing.assert_allclose(theta[0] + mu * velocity, phi, rtol=1e-12, atol=1e-14)


def test_momentum_with_nesterov_flag_is_nesterov() -> None:
    G = gradient_sequence(6)
    a, b = [np.ones(6)], [np.ones(6)]
    oa = build_optimizer({"name": "momentum", "nesterov": True, "mu": 0.7}, a)
    ob = build_optimizer({"name": "nesterov", "mu": 0.7}, b)
    for g in G[:50]:
        oa.step([g])
        ob.step([g])
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e4])
def test_adam_first_step_is_learning_rate_whatever_the_gradient_scale(scale: float) -> None:
    """Bias correction makes m̂ = g and ŝ = g² at t = 1, so |Δθ| = lr·|g|/(|g| + eps)."""
    g = np.array([scale, -scale])
    p = [np.zeros(2)]
    build_optimizer({"name": "adam", "learning_rate": 0.1}, p).step([g])
    np.testing.assert_allclose(p[0], -0.1 * np.sign(g) * scale / (scale + 1e-8), rtol=1e-14)


def test_sgd_two_steps_by_hand() -> None:
    p = [np.array([1.0, 2.0])]
    opt = build_optimizer({"name": "sgd", "learning_rate": 0.5}, p)
    opt.step([np.array([0.2, -0.4])])  # [0.9, 2.2]
    opt.step([np.array([1.0, 1.0])])  # [0.4, 1.7]
    np.testing.assert_allclose(p[0], [0.4, 1.7], rtol=1e-15)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_state_persists_and_round_trips(name: str) -> None:
    G = gradient_sequence(sum(int(np.prod(s)) for s in SHAPES), seed=5)
    whole = make_params("flat", np.random.default_rng(2))
    opt = build_optimizer({"name": name}, whole)
    for g in G[:100]:
        opt.step(split(g.copy()))

    resumed = make_params("separate", np.random.default_rng(2))
    first = build_optimizer({"name": name}, resumed)
    for g in G[:50]:
        first.step(split(g.copy()))
    saved = first.state_dict()
    for k, arrays in saved["state"].items():
        assert [a.shape for a in arrays] == SHAPES, k
    second = build_optimizer({"name": name}, resumed)
    second.load_state_dict(saved)
    for g in G[50:100]:
        second.step(split(g.copy()))
    for a, b in zip(whole, resumed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_float32_parameters_stay_float32() -> None:
    p = [np.ones(4, dtype=np.float32)]
    opt = build_optimizer({"name": "adam"}, p)
    opt.step([np.full(4, 0.5, dtype=np.float32)])
    assert p[0].dtype == np.float32
    assert all(a.dtype == np.float32 for arrays in opt.state_dict()["state"].values() for a in arrays)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "momentum", "mu": 1.5}, "optimizer.mu: must be in [0, 1), got 1.5"),
        ({"name": "adam", "beta2": 1.0}, "optimizer.beta2: must be in [0, 1), got 1.0"),
        ({"name": "sgd", "learning_rate": 0}, "optimizer.learning_rate: must be > 0, got 0"),
        ({"name": "adam", "learning_rte": 0.1}, "optimizer.learning_rte: unknown key (did you mean 'learning_rate'?)"),
        ({"name": "sgd", "mu": 0.9}, "optimizer.mu: unknown key"),
        ({"name": "adamax"}, "optimizer: unknown name 'adamax'; choose from: sgd, momentum, nesterov"),
        ({"learning_rate": 0.1}, "optimizer: needs a 'name' key"),
        ({"name": "momentum", "nesterov": "yes"}, "optimizer.nesterov: must be true or false, got 'yes' (str)"),
        ({"name": "rmsprop", "decay_rate": "0.9"}, "optimizer.decay_rate: must be a number, got '0.9' (str)"),
    ],
)
def test_bad_specs_are_rejected_with_the_key_and_the_rule(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_optimizer(spec, [np.zeros(2)])
    assert str(err.value).startswith(message)


def test_every_optimizer_documents_its_update_rule() -> None:
    for cls in OPTIMIZERS.values():
        rule = update_rule(cls)
        assert "θ ←" in rule, cls.name


def test_gradient_shape_mismatch_is_an_error() -> None:
    opt = build_optimizer({"name": "sgd"}, [np.zeros((2, 3))])
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros((3, 2))])
