"""The compiled kernels give the same numbers, to the last bit, as the numpy reference rules."""

from __future__ import annotations

import numpy as np
import pytest
from test_optim import SPECS, make_params, split

from optrun.optim import build_optimizer
from optrun.optim.base import FUSED_MIN_SIZE

STEPS = 60


def run(spec: dict, fused: bool, dtype: str, layout: str, gradients: list[np.ndarray]) -> tuple[list, dict]:
    params = [p.astype(dtype) for p in make_params("separate", np.random.default_rng(4))]
    if layout == "flat":  # views into one buffer, as a network's parameters are
        flat = np.concatenate([p.ravel() for p in params])
        params = split(flat)
    opt = build_optimizer(spec, params)
    opt.fused = fused
    for t, g in enumerate(gradients):
        opt.step(split(g.astype(dtype)), loss=float(np.sin(t)))  # a loss that rises and falls, for restart
    return params, opt.state_dict()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{k}={v}" if k != "name" else v for k, v in s.items()))
def test_fused_update_is_bit_identical_to_the_reference(spec: dict, dtype: str) -> None:
    rng = np.random.default_rng(5)
    n = sum(p.size for p in make_params("separate", rng))
    gradients = [rng.standard_normal(n) * 10.0 ** rng.integers(-6, 3) for _ in range(STEPS)]
    gradients[7][:4] = 0.0  # zero gradients: AdaGrad's and Adam's denominators rest on eps alone
    for layout in ("flat", "separate"):
        want_params, want_state = run(spec, False, dtype, layout, gradients)
        got_params, got_state = run(spec, True, dtype, layout, gradients)
        for got, want in zip(got_params, want_params, strict=True):
            assert got.dtype == want.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want, strict=True)
        for name, arrays in want_state["state"].items():
            for got, want in zip(got_state["state"][name], arrays, strict=True):
                np.testing.assert_array_equal(got, want, strict=True)
        assert {k: v for k, v in got_state.items() if k != "state"} == {
            k: v for k, v in want_state.items() if k != "state"
        }


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
def test_fused_update_keeps_numpys_inf_and_nan(name: str) -> None:
    """Overflow and 0/0 follow numpy's semantics in the kernel (inf and nan, no exception)."""
    g = np.array([np.inf, -np.inf, np.nan, 0.0, 3e38, -1.0], dtype=np.float32)
    results = []
    for fused in (False, True):
        p = [np.zeros(6, dtype=np.float32)]
        opt = build_optimizer({"name": name, "eps": 1e-30}, p)
        opt.fused = fused
        with np.errstate(all="ignore"):
            opt.step([g.copy()])
            opt.step([g[::-1].copy()])
        results.append(p[0])
    np.testing.assert_array_equal(results[1], results[0], strict=True)
    assert not np.isfinite(results[1][:3]).any()


def test_non_contiguous_parameters_take_the_reference_path() -> None:
    """A strided view cannot be flattened without a copy: its update must still land in place."""
    base = np.arange(20, dtype=np.float64).reshape(4, 5)
    view = base[:, ::2]
    opt = build_optimizer({"name": "sgd", "learning_rate": 0.5}, [view])
    opt.step([np.ones_like(view)])
    np.testing.assert_array_equal(base[:, ::2], np.arange(20).reshape(4, 5)[:, ::2] - 0.5)
    np.testing.assert_array_equal(base[:, 1::2], np.arange(20).reshape(4, 5)[:, 1::2])


def test_kernels_are_used_from_fused_min_size_parameters() -> None:
    """Small problems keep the numpy path (no compiler start-up); large contiguous ones use the kernels."""
    assert not build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE - 1)]).fused
    assert build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE)]).fused
    assert build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE // 2), np.zeros(FUSED_MIN_SIZE // 2)]).fused
