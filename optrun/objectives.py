"""Deterministic test functions with known minima: landscapes on which to watch optimizers move.

Every objective evaluates f and ∇f at points of shape (..., dim), so one call
covers a single point or a whole contour grid. Each has a classic start point
(``start:`` overrides it) and, where it has one, a known minimum.

    quadratic   f(x) = ½ xᵀHx, H = Q·diag(λ)·Qᵀ, λ evenly spaced in [1, condition_number],
                Q a random rotation drawn from the seed (rotate: false: Q = I);
                minimum 0; start (1, 1, ..., 1); L = condition_number, μ = 1
    rosenbrock  f = (1 − x)² + 100·(y − x²)²                           minimum (1, 1); start (−1.2, 1)
    beale       f = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²
                                                                       minimum (3, 0.5); start (1, 1)
    rastrigin   f = 20 + Σ (xᵢ² − 10·cos(2π·xᵢ))                       minimum (0, 0); start (2.2, 1.7)
    saddle      f = x² − y²                                           no minimum; start (1, 0.001)
    booth       f = (x + 2y − 7)² + (2x + y − 5)²                      minimum (1, 3); start (0, 0)

``noise: σ`` adds σ·ξ, ξ ~ N(0, I) drawn from the run's seed, to every
gradient the optimizer sees, to imitate minibatch gradients; the recorded
loss and gradient norm stay exact.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from optrun.schema import NonNegativeFloat, PositiveInt, Section, interval, tagged_union


class _ObjectiveSpec(Section):
    name: str
    start: list[float] | None = None  # the classic start point when not given
    noise: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _start_has_dim_coordinates(self) -> _ObjectiveSpec:
        dim = getattr(self, "dim", 2)  # the quadratic has a dim; the others are 2-D
        if self.start is not None and len(self.start) != dim:
            raise PydanticCustomError(
                "start", "must have {dim} coordinates, got {got}", {"dim": dim, "got": len(self.start), "key": "start"}
            )
        return self


class QuadraticSpec(_ObjectiveSpec):
    name: Literal["quadratic"]
    dim: PositiveInt = 2
    condition_number: Annotated[float, interval(1)] = 10.0
    rotate: bool = True


class RosenbrockSpec(_ObjectiveSpec):
    name: Literal["rosenbrock"]


class BealeSpec(_ObjectiveSpec):
    name: Literal["beale"]


class RastriginSpec(_ObjectiveSpec):
    name: Literal["rastrigin"]


class SaddleSpec(_ObjectiveSpec):
    name: Literal["saddle"]


class BoothSpec(_ObjectiveSpec):
    name: Literal["booth"]


ObjectiveSpec = tagged_union((QuadraticSpec, RosenbrockSpec, BealeSpec, RastriginSpec, SaddleSpec, BoothSpec), "name")


class Objective:
    """f and ∇f of one test function, its start point and its minimum (None for the saddle)."""

    name: str
    start: np.ndarray
    minimum: np.ndarray | None

    def value(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gradient(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return len(self.start)


class Quadratic(Objective):
    """f(x) = ½ xᵀHx with Hessian eigenvalues evenly spaced in [1, κ]: L = κ, μ = 1."""

    name = "quadratic"

    def __init__(self, dim: int, condition_number: float, rotation: np.ndarray | None) -> None:
        self.eigenvalues = np.linspace(1.0, condition_number, dim) if dim > 1 else np.array([1.0])
        q = np.eye(dim) if rotation is None else rotation
        self.hessian = (q * self.eigenvalues) @ q.T
        self.start = np.ones(dim)
        self.minimum = np.zeros(dim)

    @property
    def smoothness(self) -> float:
        """L, the largest Hessian eigenvalue."""
        return float(self.eigenvalues[-1])

    @property
    def strong_convexity(self) -> float:
        """μ, the smallest Hessian eigenvalue."""
        return float(self.eigenvalues[0])

    def value(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * np.einsum("...i,ij,...j->...", x, self.hessian, x)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return x @ self.hessian  # H is symmetric


class Rosenbrock(Objective):
    name = "rosenbrock"
    start = np.array([-1.2, 1.0])
    minimum = np.array([1.0, 1.0])

    def value(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        return (1 - a) ** 2 + 100 * (b - a**2) ** 2

    def gradient(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        return np.stack([-2 * (1 - a) - 400 * a * (b - a**2), 200 * (b - a**2)], axis=-1)


class Beale(Objective):
    name = "beale"
    start = np.array([1.0, 1.0])
    minimum = np.array([3.0, 0.5])
    _C = (1.5, 2.25, 2.625)

    def value(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        return sum((c - a + a * b ** (k + 1)) ** 2 for k, c in enumerate(self._C))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        ga = gb = 0.0
        for k, c in enumerate(self._C):
            r = c - a + a * b ** (k + 1)
            ga = ga + 2 * r * (b ** (k + 1) - 1)
            gb = gb + 2 * r * a * (k + 1) * b**k
        return np.stack([ga, gb], axis=-1)


class Rastrigin(Objective):
    name = "rastrigin"
    start = np.array([2.2, 1.7])
    minimum = np.array([0.0, 0.0])

    def value(self, x: np.ndarray) -> np.ndarray:
        return 10 * x.shape[-1] + np.sum(x**2 - 10 * np.cos(2 * np.pi * x), axis=-1)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return 2 * x + 20 * np.pi * np.sin(2 * np.pi * x)


class Saddle(Objective):
    name = "saddle"
    start = np.array([1.0, 0.001])
    minimum = None

    def value(self, x: np.ndarray) -> np.ndarray:
        return x[..., 0] ** 2 - x[..., 1] ** 2

    def gradient(self, x: np.ndarray) -> np.ndarray:
        return np.stack([2 * x[..., 0], -2 * x[..., 1]], axis=-1)


class Booth(Objective):
    name = "booth"
    start = np.array([0.0, 0.0])
    minimum = np.array([1.0, 3.0])

    def value(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        return (a + 2 * b - 7) ** 2 + (2 * a + b - 5) ** 2

    def gradient(self, x: np.ndarray) -> np.ndarray:
        a, b = x[..., 0], x[..., 1]
        r1, r2 = a + 2 * b - 7, 2 * a + b - 5
        return np.stack([2 * r1 + 4 * r2, 4 * r1 + 2 * r2], axis=-1)


_FIXED = {cls.name: cls for cls in (Rosenbrock, Beale, Rastrigin, Saddle, Booth)}


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random orthogonal matrix (QR of a Gaussian matrix, signs fixed by R's diagonal)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def build_objective(spec: _ObjectiveSpec, rng: np.random.Generator) -> Objective:
    """The objective ``spec`` describes; ``rng`` draws the quadratic's rotation."""
    if isinstance(spec, QuadraticSpec):
        rotation = random_rotation(spec.dim, rng) if spec.rotate else None
        objective: Objective = Quadratic(spec.dim, spec.condition_number, rotation)
    else:
        objective = _FIXED[spec.name]()
    objective.start = np.array(objective.start if spec.start is None else spec.start, dtype=np.float64)  # a copy
    return objective


def contraction_rate(distances: np.ndarray, floor: float = 1e-10) -> float | None:
    """The measured per-step contraction of the distance to the minimum: exp of the least-squares slope of
    log(distance) against step, over the steps after the first tenth whose distance is still above
    ``floor`` times the starting one (below it, rounding takes over). None with fewer than 5 such steps."""
    d = np.asarray(distances, dtype=np.float64)
    steps = np.arange(len(d))
    keep = np.isfinite(d) & (d > floor * d[0]) & (steps >= len(d) // 10)
    if d[0] <= 0 or keep.sum() < 5:
        return None
    slope = np.polyfit(steps[keep], np.log(d[keep]), 1)[0]
    return float(np.exp(slope))


def theory(optimizer: str, smoothness: float, strong_convexity: float, nesterov: bool = False) -> dict[str, float]:
    """The classic tuned settings on a quadratic with Hessian eigenvalues in [μ, L], κ = L/μ, and their rates:

    gradient descent  lr = 2/(L + μ)                               rate (κ − 1)/(κ + 1)
    heavy ball        lr = 4/(√L + √μ)², mu = ((√κ − 1)/(√κ + 1))²  rate (√κ − 1)/(√κ + 1)
    Nesterov          lr = 1/L, mu = (√κ − 1)/(√κ + 1)             rate 1 − 1/√κ
    """
    L, mu_ = smoothness, strong_convexity
    kappa = L / mu_
    root = (np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)
    if optimizer == "sgd":
        return {"learning_rate": 2 / (L + mu_), "rate": (kappa - 1) / (kappa + 1)}
    if optimizer == "nesterov" or (optimizer == "momentum" and nesterov):
        return {"learning_rate": 1 / L, "mu": float(root), "rate": float(1 - 1 / np.sqrt(kappa))}
    if optimizer == "momentum":
        return {"learning_rate": float(4 / (np.sqrt(L) + np.sqrt(mu_)) ** 2), "mu": float(root**2), "rate": float(root)}
    raise ValueError(f"no theory for {optimizer}; it exists for sgd, momentum and nesterov")
