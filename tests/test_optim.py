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
from optrun.optim.base import NUMPY_PIECE
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


def product_matrix(factors: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
    """P[t, k] = Π_{j=k+1..t} factors[j] for k <= t (and t, k in the same block), else 0; factors > 0."""
    logs = np.cumsum(np.log(factors))
    P = np.exp(logs[:, None] - logs[None, :])
    keep = np.tri(len(factors), dtype=bool)
    if blocks is not None:
        keep &= blocks[:, None] == blocks[None, :]
    return np.where(keep, P, 0.0)


def lr_sequence(spec: dict, steps: int) -> np.ndarray:
    """lr_t for t = 1..steps, from the schedule definitions in optrun.optim.schedules."""
    lr, sched = spec["learning_rate"], spec.get("schedule")
    t = np.arange(1, steps + 1)
    if sched is None:
        return np.full(steps, lr)
    warmup = sched.get("warmup", 0)
    s = t - warmup
    rates = {
        "constant": lambda: np.full(steps, lr),
        "step": lambda: lr * sched.get("factor", 0.1) ** ((s - 1) // sched["every"]),
        "exponential": lambda: lr * sched["decay"] ** (s - 1.0),
        "cosine": lambda: (
            sched.get("min", 0.0)
            + (lr - sched.get("min", 0.0)) * (1 + np.cos(np.pi * np.minimum((s - 1) / sched["steps"], 1))) / 2
        ),
    }[sched["name"]]()
    return np.where(t <= warmup, lr * t / max(warmup, 1), rates)


def mu_sequence(spec: dict, steps: int) -> np.ndarray:
    sched = spec.get("mu_schedule")
    if sched is None:
        return np.full(steps, spec["mu"])
    t = np.arange(1, steps + 1)
    return sched["start"] + (sched["end"] - sched["start"]) * np.minimum((t - 1) / sched["steps"], 1)


def clipped(spec: dict, G: np.ndarray) -> np.ndarray:
    clip = spec.get("clip_norm")
    if clip is None:
        return G
    norms = np.linalg.norm(G, axis=1, keepdims=True)
    return G * np.minimum(1.0, clip / norms)


def expected_steps(spec: dict, G: np.ndarray) -> np.ndarray:
    """Row t − 1 is the change θ_{t−1} − θ_t, derived in closed form (adamw: its Adam part)."""
    G = clipped(spec, G)
    lr = lr_sequence(spec, len(G))[:, None]
    t = np.arange(1, len(G) + 1)[:, None]
    name = spec["name"]
    if name == "sgd":
        return lr * G
    if name in ("momentum", "nesterov"):
        mu = mu_sequence(spec, len(G))
        every = (spec.get("restart") or {}).get("every")
        blocks = (np.arange(len(G)) // every) if every else None
        V = product_matrix(mu, blocks) @ ((1 - spec.get("dampening", 0.0)) * lr * G)
        nesterov = name == "nesterov" or spec.get("nesterov", False)
        return mu[:, None] * V + lr * G if nesterov else V
    if name == "adagrad":
        return lr * G / (np.sqrt(spec.get("initial_accumulator", 0.0) + np.cumsum(G**2, axis=0)) + spec["eps"])
    if name == "rmsprop":
        rho = spec["decay_rate"]
        C = (1 - rho) * decay_matrix(rho, len(G)) @ G**2
        if spec.get("centered"):
            C = C - ((1 - rho) * decay_matrix(rho, len(G)) @ G) ** 2
        scaled = G / (np.sqrt(C) + spec["eps"])
        if spec.get("momentum"):
            return lr * (decay_matrix(spec["momentum"], len(G)) @ scaled)
        return lr * scaled
    if name in ("adam", "adamw", "nadam"):
        b1, b2 = spec["beta1"], spec["beta2"]
        M = (1 - b1) * decay_matrix(b1, len(G)) @ G
        S = (1 - b2) * decay_matrix(b2, len(G)) @ G**2
        if spec.get("amsgrad"):
            S = np.maximum.accumulate(S, axis=0)
        M_hat = M / (1 - b1**t)
        if name == "nadam":
            M_hat = b1 * M / (1 - b1 ** (t + 1)) + (1 - b1) * G / (1 - b1**t)
        return lr * M_hat / (np.sqrt(S / (1 - b2**t)) + spec["eps"])
    if name == "lion":  # its sign part: c_t = β1·m_{t−1} + (1 − β1)·g_t, m_{t−1} = (1 − β2) Σ_{k<t} β2^(t−1−k)·g_k
        b1, b2 = spec["beta1"], spec["beta2"]
        M = (1 - b2) * decay_matrix(b2, len(G)) @ G
        previous = np.vstack([np.zeros_like(G[:1]), M[:-1]])
        return lr * np.sign(b1 * previous + (1 - b1) * G)
    raise AssertionError(name)


def expected_trajectory(spec: dict, G: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """Row t − 1 is θ_t."""
    steps = expected_steps(spec, G)
    if spec["name"] not in ("adamw", "lion"):
        return theta0 - np.cumsum(steps, axis=0)
    # θ_t = a_t·θ_{t−1} − step_t with a_t = 1 − lr_t·wd: θ_t = (Π_{j≤t} a_j)·θ0 − Σ_{k≤t} (Π_{k<j≤t} a_j)·step_k
    a = 1 - lr_sequence(spec, len(G)) * spec["weight_decay"]
    return np.cumprod(a)[:, None] * theta0 - product_matrix(a) @ steps


COSINE = {"name": "cosine", "steps": 250, "warmup": 30}
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
    # the options of issue 4
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.8, "dampening": 0.8},
    {
        "name": "momentum",
        "learning_rate": 0.02,
        "mu_schedule": {"name": "linear", "start": 0.5, "end": 0.95, "steps": 120},
    },
    {
        "name": "nesterov",
        "learning_rate": 0.01,
        "mu_schedule": {"name": "linear", "start": 0.2, "end": 0.9, "steps": 50},
    },
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.9, "restart": {"every": 37}},
    {"name": "nesterov", "learning_rate": 0.02, "mu": 0.9, "restart": {"every": 10}},
    {"name": "sgd", "learning_rate": 0.05, "schedule": {"name": "step", "every": 40, "factor": 0.5}},
    {"name": "sgd", "learning_rate": 0.05, "schedule": {"name": "exponential", "decay": 0.99, "warmup": 25}},
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.9, "schedule": {"name": "cosine", "steps": 200, "min": 0.001}},
    {
        "name": "adam",
        "learning_rate": 0.01,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "schedule": {"name": "cosine", "steps": 250, "warmup": 30},
    },
    {"name": "sgd", "learning_rate": 0.05, "schedule": {"name": "constant", "warmup": 10}, "clip_norm": 20.0},
    {"name": "momentum", "learning_rate": 0.02, "mu": 0.9, "clip_norm": 5.0},
    {"name": "adagrad", "learning_rate": 0.1, "eps": 1e-8, "initial_accumulator": 0.1},
    {"name": "rmsprop", "learning_rate": 0.01, "decay_rate": 0.9, "eps": 1e-8, "centered": True},
    {"name": "rmsprop", "learning_rate": 0.001, "decay_rate": 0.9, "eps": 1e-8, "momentum": 0.9},
    {"name": "rmsprop", "learning_rate": 0.001, "decay_rate": 0.95, "eps": 1e-6, "centered": True, "momentum": 0.5},
    {"name": "adam", "learning_rate": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "amsgrad": True},
    {"name": "adamw", "learning_rate": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1},
    {
        "name": "adamw",
        "learning_rate": 0.01,
        "beta1": 0.9,
        "beta2": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.05,
        "amsgrad": True,
        "schedule": {"name": "step", "every": 100, "factor": 0.3},
    },
    {"name": "nadam", "learning_rate": 0.003, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    {"name": "nadam", "learning_rate": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-4},
    {"name": "lion", "learning_rate": 0.001, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
    {"name": "lion", "learning_rate": 0.003, "beta1": 0.5, "beta2": 0.9, "weight_decay": 0.1, "schedule": COSINE},
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


def test_empty_views_do_not_break_a_flat_buffer() -> None:
    # numpy keeps no address for an empty view (it reports its base's start), so a trailing empty parameter
    # used to make the optimizer update each array on its own, with a thread hand-over for each
    buf = np.arange(10.0)
    params = [buf[0:6].reshape(2, 3), buf[6:6], buf[6:10], buf[10:10]]
    assert flat_buffer(params) is buf
    assert flat_buffer([buf[0:6], buf[8:8], buf[7:10]]) is None  # element 6 is not covered
    assert flat_buffer([buf[0:6], np.empty(0), buf[6:10]]) is None  # an empty array from elsewhere
    opt = build_optimizer({"name": "sgd", "learning_rate": 0.5}, params)
    opt.step([np.ones_like(p) for p in params])
    np.testing.assert_array_equal(buf, np.arange(10.0) - 0.5)


def split(vector: np.ndarray) -> list[np.ndarray]:
    sizes = [int(np.prod(s)) for s in SHAPES]
    return [a.reshape(s) for a, s in zip(np.split(vector, np.cumsum(sizes)[:-1]), SHAPES, strict=True)]


@pytest.mark.parametrize("layout", ["separate", "flat"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{k}={v}" if k != "name" else v for k, v in s.items()))
def test_trajectory_matches_closed_form(spec: dict, layout: str) -> None:
    params = make_params(layout, np.random.default_rng(1))
    theta0 = np.concatenate([p.ravel() for p in params])
    G = gradient_sequence(theta0.size)
    opt = build_optimizer(spec, params)
    got = np.empty((T, theta0.size))
    for t in range(T):
        opt.step(split(G[t].copy()))
        got[t] = np.concatenate([p.ravel() for p in params])
    want = expected_trajectory(spec, G, theta0)
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


ROUND_TRIP = [{"name": name} for name in OPTIMIZERS] + [
    {
        "name": "momentum",
        "mu_schedule": {"name": "linear", "start": 0.3, "end": 0.9, "steps": 70},
        "restart": {"when": "gradient"},
    },
    {"name": "nesterov", "restart": {"every": 7}, "schedule": {"name": "cosine", "steps": 80, "warmup": 5}},
    {"name": "rmsprop", "centered": True, "momentum": 0.9},
    {"name": "adam", "amsgrad": True},
    {"name": "adagrad", "initial_accumulator": 0.1},
]


@pytest.mark.parametrize("spec", ROUND_TRIP, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_state_persists_and_round_trips(spec: dict) -> None:
    G = gradient_sequence(sum(int(np.prod(s)) for s in SHAPES), seed=5)
    whole = make_params("flat", np.random.default_rng(2))
    opt = build_optimizer(spec, whole)
    for g in G[:100]:
        opt.step(split(g.copy()))

    resumed = make_params("separate", np.random.default_rng(2))
    first = build_optimizer(spec, resumed)
    for g in G[:50]:
        first.step(split(g.copy()))
    saved = first.state_dict()
    for k, arrays in saved["state"].items():
        assert [a.shape for a in arrays] == SHAPES, k
    second = build_optimizer(spec, resumed)
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


def test_gradient_shape_mismatch_is_an_error_that_changes_nothing() -> None:
    """A refused step is not counted: Adam's next step is still its first, of size lr whatever g (m̂/√ŝ = ±1)."""
    params = [np.zeros((2, 3)), np.zeros(2)]
    opt = build_optimizer({"name": "adam", "learning_rate": 0.003}, params)
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.ones((3, 2)), np.ones(2)])
    assert opt.state_dict()["step"] == 0 and not params[0].any()
    opt.step([np.ones((2, 3)), np.ones(2)])
    np.testing.assert_allclose(params[0], -0.003, rtol=1e-6)


# --- schedules, clipping and restart by hand -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, rates",
    [
        ({"name": "constant"}, [1, 1, 1, 1, 1]),
        ({"name": "step", "every": 2, "factor": 0.5}, [1, 1, 0.5, 0.5, 0.25]),
        ({"name": "exponential", "decay": 0.5}, [1, 0.5, 0.25, 0.125, 0.0625]),
        # cos(π/4) = √2/2: (1 + √2/2)/2 = 0.8535..., then 1/2, (1 − √2/2)/2, 0, and 0 after the end
        ({"name": "cosine", "steps": 4}, [1, 0.8535533905932737, 0.5, 0.14644660940672627, 0.0]),
        ({"name": "cosine", "steps": 2, "min": 0.2}, [1, 0.6, 0.2, 0.2, 0.2]),
        ({"name": "constant", "warmup": 4}, [0.25, 0.5, 0.75, 1, 1]),
        ({"name": "step", "every": 1, "factor": 0.5, "warmup": 2}, [0.5, 1, 1, 0.5, 0.25]),
    ],
)
def test_learning_rate_schedules_by_hand(schedule: dict, rates: list[float]) -> None:
    p = [np.zeros(1)]
    opt = build_optimizer({"name": "sgd", "learning_rate": 1.0, "schedule": schedule}, p)
    assert opt.learning_rate == rates[0]  # before any step: the rate of the first
    used = []
    for _ in rates:
        opt.step([np.ones(1)])  # a unit gradient: each step moves θ by exactly lr_t
        used.append(opt.learning_rate)
    np.testing.assert_allclose(used, rates, rtol=1e-15, atol=1e-16)
    assert p[0][0] == pytest.approx(-sum(rates), rel=1e-15)


def test_clip_norm_scales_all_gradients_together() -> None:
    p = [np.zeros(1), np.zeros(1)]
    opt = build_optimizer({"name": "sgd", "learning_rate": 1.0, "clip_norm": 1.0}, p)
    opt.step([np.array([3.0]), np.array([4.0])])  # global norm 5: scaled by 1/5
    np.testing.assert_allclose(np.concatenate(p), [-0.6, -0.8], rtol=1e-15)
    opt.step([np.array([0.3]), np.array([0.4])])  # norm 0.5 <= 1: unchanged
    np.testing.assert_allclose(np.concatenate(p), [-0.9, -1.2], rtol=1e-15)


def test_dampening_equal_to_mu_is_the_weighted_form_of_the_reference_texts() -> None:
    """v = α·v + (1 − α)·g; θ −= β·v (reference text 002) is momentum with mu = dampening = α, lr = β."""
    alpha, beta = 0.8, 0.05
    G = gradient_sequence(5)[:100]
    theta, v = np.ones(5), np.zeros(5)
    p = [np.ones(5)]
    opt = build_optimizer({"name": "momentum", "learning_rate": beta, "mu": alpha, "dampening": alpha}, p)
    for g in G:
        v = alpha * v + (1 - alpha) * g
        theta = theta - beta * v
        opt.step([g])
    np.testing.assert_allclose(p[0], theta, rtol=1e-12)


def test_linear_momentum_schedule_by_hand() -> None:
    p = [np.zeros(1)]
    spec = {
        "name": "momentum",
        "learning_rate": 1.0,
        "mu_schedule": {"name": "linear", "start": 0.5, "end": 0.9, "steps": 4},
    }
    opt = build_optimizer(spec, p)
    mus = []
    for _ in range(6):
        opt.step([np.ones(1)])
        mus.append(opt.extras()["mu"])
    np.testing.assert_allclose(mus, [0.5, 0.6, 0.7, 0.8, 0.9, 0.9], rtol=1e-15)
    # v: 1, 0.6·1 + 1 = 1.6, 0.7·1.6 + 1 = 2.12; θ after three steps = −(1 + 1.6 + 2.12)
    p2 = [np.zeros(1)]
    opt2 = build_optimizer(spec, p2)
    for _ in range(3):
        opt2.step([np.ones(1)])
    assert p2[0][0] == pytest.approx(-4.72, rel=1e-15)


def test_restart_every_k_steps_by_hand() -> None:
    p = [np.zeros(1)]
    opt = build_optimizer({"name": "momentum", "learning_rate": 1.0, "mu": 0.5, "restart": {"every": 2}}, p)
    velocities = []
    for _ in range(5):
        opt.step([np.ones(1)])
        velocities.append(opt.state_dict()["state"]["velocity"][0][0])
    assert velocities == [1.0, 1.5, 1.0, 1.5, 1.0]  # zeroed before steps 3 and 5
    assert opt.extras() == {"mu": 0.5, "restarts": 2}


def test_gradient_restart_on_an_overshooting_quadratic_by_hand() -> None:
    """f(x) = x²/2 from x = 1 with lr 1.5, mu 0.5: every step overshoots, so the velocity keeps pointing uphill.

    step 1: g = 1, v = 1.5, x = −0.5
    step 2: g = −0.5, g·v = −0.75 < 0: restart, v = 1.5·(−0.5) = −0.75, x = 0.25
    step 3: g = 0.25, g·v < 0: restart, v = 0.375, x = −0.125
    """
    x = [np.array([1.0])]
    opt = build_optimizer({"name": "momentum", "learning_rate": 1.5, "mu": 0.5, "restart": {"when": "gradient"}}, x)
    path = []
    for _ in range(3):
        opt.step([x[0].copy()])
        path.append(x[0][0])
    assert path == [-0.5, 0.25, -0.125]
    assert opt.restarts == 2
    plain = [np.array([1.0])]
    no_restart = build_optimizer({"name": "momentum", "learning_rate": 1.5, "mu": 0.5}, plain)
    no_restart.step([plain[0].copy()])
    no_restart.step([plain[0].copy()])  # v = 0.75 − 0.75 = 0: x stays at −0.5
    assert plain[0][0] == -0.5


def test_loss_restart_resets_when_the_minibatch_loss_rose() -> None:
    p = [np.zeros(1)]
    opt = build_optimizer({"name": "momentum", "learning_rate": 1.0, "mu": 0.5, "restart": {"when": "loss"}}, p)
    velocities = []
    for loss in [3.0, 2.0, 2.5, 1.0, 1.0]:
        opt.step([np.ones(1)], loss=loss)
        velocities.append(opt.state_dict()["state"]["velocity"][0][0])
    assert velocities == [1.0, 1.5, 1.0, 1.5, 1.75]  # reset only at step 3, where 2.5 > 2.0
    assert opt.restarts == 1
    with pytest.raises(ValueError, match="needs the minibatch loss"):
        opt.step([np.ones(1)])


def test_adamw_decays_parameters_without_gradient() -> None:
    """With g = 0, m and s stay 0, the Adam step is 0/(0 + eps) = 0, and θ_t = (1 − lr·wd)^t·θ0."""
    p = [np.array([2.0, -1.0])]
    opt = build_optimizer({"name": "adamw", "learning_rate": 0.1, "weight_decay": 0.5}, p)
    for _ in range(10):
        opt.step([np.zeros(2)])
    np.testing.assert_allclose(p[0], np.array([2.0, -1.0]) * 0.95**10, rtol=1e-14)


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"name": "momentum", "mu_schedule": {"name": "linear", "start": 0.5, "end": 1.0, "steps": 10}},
            "optimizer.mu_schedule.end: must be in [0, 1), got 1.0",
        ),
        (
            {"name": "momentum", "mu": 0.9, "mu_schedule": {"name": "linear", "start": 0.5, "end": 0.9, "steps": 9}},
            "optimizer.mu_schedule: give either 'mu' or 'mu_schedule', not both",
        ),
        ({"name": "momentum", "restart": {}}, "optimizer.restart: give exactly one of 'every' (steps) or 'when'"),
        ({"name": "momentum", "restart": {"when": "often"}}, "optimizer.restart.when: must be one of gradient or loss"),
        ({"name": "momentum", "nesterov": True, "dampening": 0.5}, "optimizer.dampening: must be 0 with nesterov"),
        ({"name": "sgd", "schedule": {"name": "cosine"}}, "optimizer.schedule.steps: is required"),
        ({"name": "sgd", "schedule": {"name": "linear"}}, "optimizer.schedule: unknown name 'linear'"),
        (
            {"name": "sgd", "schedule": {"name": "step", "every": 5, "factor": 1.5}},
            "optimizer.schedule.factor: must be in (0, 1)",
        ),
        ({"name": "adam", "clip_norm": 0}, "optimizer.clip_norm: must be > 0, got 0"),
        ({"name": "sgd", "amsgrad": True}, "optimizer.amsgrad: unknown key"),
    ],
)
def test_bad_options_are_rejected_with_the_key_and_the_rule(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_optimizer(spec, [np.zeros(2)])
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    "spec",
    [*ROUND_TRIP, {"name": "adam", "clip_norm": 1.0}],  # the gradient's norm is about 140: every step clips
    ids=lambda s: "-".join(str(v) for v in s.values()),
)
def test_a_numpy_steps_memory_stays_within_a_few_pieces_at_any_size(spec: dict) -> None:
    """numpy runs a rule on pieces of NUMPY_PIECE elements: a step of 2 million parameters (16 MB per float64
    array) on the numpy path allocates at most a few pieces' temporaries, never one whole-array temporary."""
    import tracemalloc

    n = 2_000_000
    flat = np.random.default_rng(0).standard_normal(n)
    params = [flat[:1_200_000].reshape(1000, 1200), flat[1_200_000:]]
    g = np.random.default_rng(1).standard_normal(n)
    grads = [g[:1_200_000].reshape(1000, 1200), g[1_200_000:]]
    opt = build_optimizer(spec, params)
    opt.fused = False
    opt.step(grads, loss=1.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for loss in (2.0, 0.5, 0.7):
            opt.step(grads, loss=loss)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * NUMPY_PIECE * 8, grown  # one whole-array temporary would be 16,000,000 bytes
