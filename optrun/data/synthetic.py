"""Synthetic classification sets, generated from a seed without any dependency but numpy.

Each generator returns (x, y) for ``n_samples`` points with balanced labels
``y = 0..n_classes−1``; ``noise`` is the standard deviation of Gaussian jitter
added to the inputs (for blobs: the spread of each cluster).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from optrun.data.files import ValidationFraction
from optrun.schema import Fraction, Integer, NonNegativeFloat, PositiveInt, Section, interval

Classes = Annotated[Integer, interval(2)]  # one class would make every prediction right


class SyntheticSpec(Section):
    n_samples: PositiveInt = 600
    noise: NonNegativeFloat = 0.1
    test_fraction: Fraction = 0.2
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the set, known before it is made."""
        return self.n_samples, (getattr(self, "n_features", 2),), getattr(self, "n_classes", 2)

    @model_validator(mode="after")
    def _enough_samples(self) -> SyntheticSpec:
        need = 4 * getattr(self, "n_classes", 2)  # moons, circles and xor have two classes
        if self.n_samples < need:
            raise PydanticCustomError(
                "too_few",
                "must be at least {need} (4 per class), got {got}",
                {"key": "n_samples", "need": need, "got": self.n_samples},
            )
        return self


class SpiralsSpec(SyntheticSpec):
    """Interleaved spiral arms in 2-D, one per class."""

    name: Literal["spirals"]
    n_classes: Classes = 3
    noise: NonNegativeFloat = 0.2


class MoonsSpec(SyntheticSpec):
    """Two interleaving half circles in 2-D."""

    name: Literal["moons"]


class CirclesSpec(SyntheticSpec):
    """A circle inside a circle in 2-D; ``factor`` is the inner radius over the outer."""

    name: Literal["circles"]
    noise: NonNegativeFloat = 0.05
    factor: Fraction = 0.5


class XorSpec(SyntheticSpec):
    """Points uniform in [−1, 1]², labelled 1 where x0·x1 > 0 (the XOR of the signs)."""

    name: Literal["xor"]


class BlobsSpec(SyntheticSpec):
    """Gaussian clusters around centres drawn uniformly in [−5, 5]^n_features.

    With ``n_samples: 60000, n_features: 784, n_classes: 10`` it is shaped like MNIST.
    """

    name: Literal["blobs"]
    n_samples: PositiveInt = 1000
    n_features: PositiveInt = 2
    n_classes: Classes = 3
    noise: NonNegativeFloat = 1.0


def _labels(n: int, k: int) -> np.ndarray:
    return np.arange(n) % k


def _jitter(x: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    return x + noise * rng.standard_normal(x.shape)


def spirals(spec: SpiralsSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(spec.n_samples, spec.n_classes)
    t = rng.uniform(0.0, 1.0, spec.n_samples)  # position along the arm: radius and turn
    angle = 2 * np.pi * y / spec.n_classes + 4.0 * t + spec.noise * rng.standard_normal(spec.n_samples)
    return (t[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])).astype(dtype), y


def moons(spec: MoonsSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(spec.n_samples, 2)
    a = rng.uniform(0.0, np.pi, spec.n_samples)
    upper = np.column_stack([np.cos(a), np.sin(a)])
    lower = np.column_stack([1 - np.cos(a), 0.5 - np.sin(a)])
    return _jitter(np.where(y[:, None] == 0, upper, lower), spec.noise, rng).astype(dtype), y


def circles(spec: CirclesSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    y = _labels(spec.n_samples, 2)
    a = rng.uniform(0.0, 2 * np.pi, spec.n_samples)
    radius = np.where(y == 0, 1.0, spec.factor)
    return _jitter(radius[:, None] * np.column_stack([np.cos(a), np.sin(a)]), spec.noise, rng).astype(dtype), y


def xor(spec: XorSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1.0, 1.0, (spec.n_samples, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    return _jitter(x, spec.noise, rng).astype(dtype), y


def blobs(spec: BlobsSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.uniform(-5.0, 5.0, (spec.n_classes, spec.n_features)).astype(dtype)
    y = _labels(spec.n_samples, spec.n_classes)
    x = rng.standard_normal((spec.n_samples, spec.n_features), dtype=dtype)  # generated in dtype: no float64 copy
    x *= dtype.type(spec.noise)
    x += centres[y]
    return x, y
