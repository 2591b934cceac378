"""The test functions: gradients against central differences, minima, the quadratic's spectrum."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import TypeAdapter

from optrun.objectives import ObjectiveSpec, build_objective
from optrun.schema import ConfigError, validate

SPEC = TypeAdapter(ObjectiveSpec)
NAMES = ["quadratic", "rosenbrock", "beale", "rastrigin", "saddle", "booth"]


def objective(name: str, **extra):
    return build_objective(validate(SPEC, {"name": name, **extra}, prefix="objective"), np.random.default_rng(0))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name: str) -> None:
    f = objective(name, **({"dim": 5, "condition_number": 30.0} if name == "quadratic" else {}))
    rng = np.random.default_rng(1)
    h = 1e-6
    for x in rng.uniform(-2, 2, size=(5, f.dim)):
        numeric = np.array([(f.value(x + h * e) - f.value(x - h * e)) / (2 * h) for e in np.eye(f.dim)])
        np.testing.assert_allclose(f.gradient(x), numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "saddle"])
def test_minimum_has_value_zero_and_no_slope(name: str) -> None:
    f = objective(name)
    assert f.value(f.minimum) == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_allclose(f.gradient(f.minimum), 0.0, atol=1e-12)
    assert f.value(f.start) > 0


@pytest.mark.parametrize("name", NAMES)
def test_a_grid_of_points_evaluates_like_each_point(name: str) -> None:
    f = objective(name)
    grid = np.stack(np.meshgrid(np.linspace(-2, 2, 4), np.linspace(-1, 3, 3)), axis=-1)  # (3, 4, 2)
    values, grads = f.value(grid), f.gradient(grid)
    assert values.shape == (3, 4) and grads.shape == (3, 4, 2)
    for i in range(3):
        for j in range(4):
            np.testing.assert_allclose(values[i, j], f.value(grid[i, j]), rtol=1e-14)  # summation order may differ
            np.testing.assert_allclose(grads[i, j], f.gradient(grid[i, j]), rtol=1e-14)


def test_quadratic_spectrum_rotation_and_seed() -> None:
    f = objective("quadratic", dim=6, condition_number=100.0)
    np.testing.assert_allclose(np.linalg.eigvalsh(f.hessian), np.linspace(1, 100, 6), rtol=1e-12)
    assert (f.smoothness, f.strong_convexity) == (100.0, 1.0)
    assert not np.allclose(f.hessian, np.diag(np.diag(f.hessian)))  # rotated: not diagonal
    again = objective("quadratic", dim=6, condition_number=100.0)
    np.testing.assert_array_equal(again.hessian, f.hessian)  # the rotation comes from the seed
    plain = objective("quadratic", dim=3, condition_number=9.0, rotate=False)
    np.testing.assert_array_equal(plain.hessian, np.diag([1.0, 5.0, 9.0]))
    np.testing.assert_array_equal(plain.start, np.ones(3))


def test_start_override_and_its_length() -> None:
    assert objective("rosenbrock", start=[0.5, -0.5]).start.tolist() == [0.5, -0.5]
    with pytest.raises(ConfigError, match=r"objective.start: must have 2 coordinates, got 3"):
        objective("booth", start=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=r"objective.condition_number: must be >= 1, got 0.5"):
        objective("quadratic", condition_number=0.5)
