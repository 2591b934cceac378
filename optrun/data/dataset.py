"""Train and test arrays: a stratified split, then standardization with train statistics only.

Every sample is a row. A sample that has a shape keeps it in ``Dataset.sample_shape``, as the set gives it: a
row of features or a signal (length,), an image (height, width), an image of channels (channels, height, width).
Its row holds it channel after channel within each position (``grid``: height, width, channels), the layout the
convolution layers compute in: an image of several channels is transposed into it once, when it is loaded.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optrun.data import synthetic
from optrun.data.cifar import Cifar10Spec, cifar10
from optrun.data.digits import DigitsSpec, digits
from optrun.data.files import Split
from optrun.data.idx import FashionMnistSpec, MnistSpec, idx_set
from optrun.data.mnist1d import Mnist1dSpec, mnist1d
from optrun.data.user import CsvSpec, NpzSpec, csv_set, npz_set
from optrun.schema import ConfigError, tagged_union


def grid(sample_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) of a sample's row: a row of features or a signal is one channel of height 1."""
    if len(sample_shape) == 1:
        return 1, sample_shape[0], 1
    if len(sample_shape) == 2:
        return sample_shape[0], sample_shape[1], 1
    channels, height, width = sample_shape
    return height, width, channels


GENERATORS: dict[str, tuple[type, Callable[..., tuple[np.ndarray, np.ndarray] | Split]]] = {
    "digits": (DigitsSpec, digits),
    "fashion-mnist": (FashionMnistSpec, idx_set),
    "mnist": (MnistSpec, idx_set),
    "mnist1d": (Mnist1dSpec, mnist1d),
    "cifar10": (Cifar10Spec, cifar10),
    "csv": (CsvSpec, csv_set),
    "npz": (NpzSpec, npz_set),
    "spirals": (synthetic.SpiralsSpec, synthetic.spirals),
    "moons": (synthetic.MoonsSpec, synthetic.moons),
    "circles": (synthetic.CirclesSpec, synthetic.circles),
    "xor": (synthetic.XorSpec, synthetic.xor),
    "blobs": (synthetic.BlobsSpec, synthetic.blobs),
}
DatasetSpec = tagged_union((spec for spec, _ in GENERATORS.values()), "name")


@dataclass(frozen=True)
class Dataset:
    """Standardized float inputs, a row per sample, and integer labels 0..n_classes−1; a validation split where
    the spec asks. ``sample_shape``: a sample's shape as the set gives it (see the module docstring)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    sample_shape: tuple[int, ...] = ()  # () : (n_features,)

    def __post_init__(self) -> None:
        if not self.sample_shape:
            object.__setattr__(self, "sample_shape", (self.x_train.shape[1],))

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @functools.cached_property
    def fingerprint(self) -> str:
        """A digest of the splits' shapes and labels and of 256 rows spread over each split's inputs: what a
        resumed run checks, so that it never continues on data whose files changed since it began."""
        digest = hashlib.sha256(repr([self.sample_shape, self.n_classes]).encode())
        for x, y in ((self.x_train, self.y_train), (self.x_test, self.y_test), (self.x_val, self.y_val)):
            if x is not None and y is not None:
                digest.update(repr(x.shape).encode())
                digest.update(np.ascontiguousarray(y).tobytes())
                digest.update(np.ascontiguousarray(x[:: max(1, len(x) // 256)]).tobytes())
        return digest.hexdigest()

    def for_tuning(self) -> Dataset:
        """The training split, with the validation split held out in the test split's place and no test split:
        what a trial of a tuning trains and is scored on, so that no figure of the test split is ever computed."""
        if self.x_val is None or self.y_val is None:
            raise ValueError("no validation split to tune on (dataset.validation_fraction)")
        held = (self.x_val, self.y_val)
        return Dataset(self.name, self.x_train, self.y_train, *held, self.n_classes, sample_shape=self.sample_shape)

    def subsample(self, n: int) -> Dataset:
        """At most ``n`` samples of the train and test splits, and of the validation split its share of the
        training samples kept (it was carved from them); each class in proportion to its share of the split and
        at least one of each where the count allows (``first_of_each_class``), in the split's (random) order."""

        def cut(x: np.ndarray | None, y: np.ndarray | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
            if x is None or y is None:
                return x, y
            keep = first_of_each_class(y, n, self.n_classes)
            return x[keep], y[keep]

        (x_train, y_train), (x_test, y_test) = cut(self.x_train, self.y_train, n), cut(self.x_test, self.y_test, n)
        x_val, y_val = self.x_val, self.y_val
        if y_val is not None and y_train is not None:
            x_val, y_val = cut(x_val, y_val, math.ceil(len(y_val) * len(y_train) / len(self.y_train)))
        return Dataset(self.name, x_train, y_train, x_test, y_test, self.n_classes, x_val, y_val, self.sample_shape)


def _rank_in_class(y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each sample, how many samples of its class come before it in ``y``."""
    by_class = np.argsort(y, kind="stable")
    rank = np.empty(len(y), np.int64)
    rank[by_class] = np.arange(len(y)) - (np.cumsum(counts) - counts)[y[by_class]]
    return rank


def first_of_each_class(y: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """The indices, in order, of the first q_c samples of each class c in ``y``, where the quotas q_c share
    ``n`` in all: one for every class present (while ``n`` lasts), and the rest in proportion to the other
    samples of each class, by largest remainders. All of ``y`` when it has at most ``n`` samples."""
    if len(y) <= n:
        return np.arange(len(y))
    counts = np.bincount(y, minlength=n_classes)
    present = np.flatnonzero(counts)
    quota = np.zeros(n_classes, np.int64)
    quota[present[:n]] = 1
    extra = counts - quota  # what proportion shares out after the one each
    exact = extra * (n - quota.sum()) / extra.sum()
    quota += np.floor(exact).astype(np.int64)
    behind = np.argsort(-(exact - np.floor(exact)), kind="stable")
    quota[behind[: n - quota.sum()]] += 1
    return np.flatnonzero(_rank_in_class(y, counts) < quota[y])


def stratified_split(y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices in random order; each class puts round(test_fraction·count) in test."""
    counts = np.bincount(y)
    n_test = np.rint(counts * test_fraction).astype(np.int64)
    perm = rng.permutation(len(y))
    shuffled = y[perm]
    is_test = _rank_in_class(shuffled, counts) < n_test[shuffled]  # the first n_test of each class, in random order
    return perm[~is_test], perm[is_test]


def standardize(x_train: np.ndarray, *others: np.ndarray, chunk: int = 8192) -> None:
    """In place, on the train split and the ``others``: x ← (x − mean) / std with the train split's per-column
    mean and std (std 0 → 1).

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
    for x in (x_train, *others):
        x -= mean.astype(x.dtype)
        x /= std.astype(x.dtype)


def check_every_class(y_train: np.ndarray, y_test: np.ndarray, n_classes: int, cut: str, held: str = "test") -> None:
    """ConfigError unless every class has a training and a ``held`` (test, validation) sample: a class the network
    never sees, or one the test never asks about, makes the accuracies say nothing of it. ``cut``: what made the
    splits."""
    train, test = np.bincount(y_train, minlength=n_classes), np.bincount(y_test, minlength=n_classes)
    short = np.flatnonzero((train == 0) | (test == 0))
    if short.size:
        c = short[0]
        others = short.size - 1
        also = f" ({others} other class{'es' if others > 1 else ''} too)" if others else ""
        raise ConfigError(
            f"{cut} leaves class {c} with {train[c]} training and {test[c]} {held} samples{also}; "
            f"every class needs at least one training and one {held} sample"
        )


def _as_rows(x: np.ndarray) -> np.ndarray:
    """Each sample of ``x`` as a row, in the layout of ``grid``: an image of channels is transposed (a copy)."""
    if x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    return x.reshape(len(x), -1)


def load_dataset(spec: Any, rng: np.random.Generator, dtype: str | np.dtype = "float32") -> Dataset:
    """Generate or load the dataset a validated spec names, split (a set that comes split keeps its own) and
    standardized, deterministic in ``rng``; ConfigError where the split leaves a class without a training or a
    test sample.

    Rows of features and signals are standardized feature by feature, images channel by channel (over every
    pixel of a channel, as image networks expect: a pixel's own statistics would blow up the rare strokes at an
    image's edges, and differ from place to place where a convolution's weights are shared)."""
    made = GENERATORS[spec.name][1](spec, rng, np.dtype(dtype))
    sample_shape = made[0].shape[1:]  # x, or a Split's x_train
    if isinstance(made, Split):  # copied: standardized in place below, and the loader may keep its arrays
        x_train, y_train, x_test, y_test = made
        x_train, x_test = _as_rows(x_train).astype(dtype), _as_rows(x_test).astype(dtype)
        cut = f"dataset {spec.name}'s own split"
    else:
        x, y = _as_rows(made[0]), made[1]
        del made  # the whole set is freed once it is split: at most twice its size is held
        train, test = stratified_split(y, spec.test_fraction, rng)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
        cut = f"dataset.test_fraction: {spec.test_fraction:g} of {len(y)} samples"
        del x
    n_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    if n_classes < 2:
        raise ConfigError(f"dataset {spec.name}: every label is 0; a classifier needs at least two classes")
    check_every_class(y_train, y_test, n_classes, cut)
    x_val = y_val = None
    if (fraction := spec.validation_fraction) is not None:  # from the training split alone
        keep, held = stratified_split(y_train, fraction, rng)
        x_val, y_val, x_train, y_train = x_train[held], y_train[held], x_train[keep], y_train[keep]
        cut = f"dataset.validation_fraction: {fraction:g} of {len(y_train) + len(y_val)} training samples"
        check_every_class(y_train, y_val, n_classes, cut, "validation")
        x_val = x_val.astype(dtype, copy=False)
    x_train, x_test = x_train.astype(dtype, copy=False), x_test.astype(dtype, copy=False)  # pixels: from uint8
    columns = grid(sample_shape)[2] if len(sample_shape) > 1 else x_train.shape[1]  # channels, or features
    splits = (x_train, x_test, *([] if x_val is None else [x_val]))
    standardize(*(x.reshape(-1, columns) for x in splits))  # views: the splits are fresh, contiguous arrays
    return Dataset(spec.name, x_train, y_train, x_test, y_test, n_classes, x_val, y_val, sample_shape)
