"""Train and test arrays: a stratified split, then standardization with train statistics only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optrun.data import synthetic
from optrun.data.digits import DigitsSpec, digits
from optrun.schema import tagged_union

GENERATORS: dict[str, tuple[type, Callable[..., tuple[np.ndarray, np.ndarray]]]] = {
    "digits": (DigitsSpec, digits),
    "spirals": (synthetic.SpiralsSpec, synthetic.spirals),
    "moons": (synthetic.MoonsSpec, synthetic.moons),
    "circles": (synthetic.CirclesSpec, synthetic.circles),
    "xor": (synthetic.XorSpec, synthetic.xor),
    "blobs": (synthetic.BlobsSpec, synthetic.blobs),
}
DatasetSpec = tagged_union((spec for spec, _ in GENERATORS.values()), "name")


@dataclass(frozen=True)
class Dataset:
    """Standardized float inputs and integer labels 0..n_classes−1."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def head(self, n: int) -> Dataset:
        """At most ``n`` samples of each split (the splits are already in random order)."""
        return Dataset(self.name, self.x_train[:n], self.y_train[:n], self.x_test[:n], self.y_test[:n], self.n_classes)


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices in random order; each class puts round(test_fraction·count) in test.

    Every class with at least two samples keeps at least one on each side.
    """
    counts = np.bincount(y)
    n_test = np.clip(np.rint(counts * test_fraction).astype(np.int64), counts > 1, np.maximum(counts - 1, 0))
    perm = rng.permutation(len(y))
    shuffled = y[perm]
    by_class = np.argsort(shuffled, kind="stable")  # grouped by class, random order within each class
    labels = shuffled[by_class]
    rank = np.arange(len(y)) - (np.cumsum(counts) - counts)[labels]  # position within its class
    is_test = np.empty(len(y), dtype=bool)
    is_test[by_class] = rank < n_test[labels]
    return perm[~is_test], perm[is_test]


def standardize(x_train: np.ndarray, x_test: np.ndarray, chunk: int = 8192) -> None:
    """In place: x ← (x − mean) / std with the train split's per-feature mean and std (std 0 → 1).

    Both are accumulated in float64, the squared deviations over chunks of rows,
    so no float64 copy of the whole split is ever made.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    squares = np.zeros_like(mean)
    for start in range(0, len(x_train), chunk):
        deviation = x_train[start : start + chunk] - mean
        squares += np.einsum("ij,ij->j", deviation, deviation)
    std = np.sqrt(squares / len(x_train))
    std[std == 0] = 1.0
    for x in (x_train, x_test):
        x -= mean.astype(x.dtype)
        x /= std.astype(x.dtype)


def load_dataset(spec: Any, rng: np.random.Generator, dtype: str | np.dtype = "float32") -> Dataset:
    """Generate or load the dataset a validated spec names, split and standardized, deterministic in ``rng``."""
    x, y = GENERATORS[spec.name][1](spec, rng, np.dtype(dtype))
    train, test = stratified_split(y, spec.test_fraction, rng)
    x_train, x_test = x[train].astype(dtype, copy=False), x[test].astype(dtype, copy=False)  # digits: from uint8
    del x
    standardize(x_train, x_test)
    return Dataset(spec.name, x_train, y[train], x_test, y[test], int(y.max()) + 1)
