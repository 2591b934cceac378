"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): made by the ``mnist1d`` package's own generator
with its default arguments, never downloaded, and cached once it is made.

The generator seeds numpy's and Python's global random generators (with its own seed, 42): optrun puts both
back as they were, so that nothing else that draws from them changes; optrun's own streams never use them.
"""

from __future__ import annotations

import os
import random
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np

from optrun.data.files import Split, ValidationFraction, cache_folder
from optrun.schema import ConfigError, Section

SIZE = (5000, 40, 10)
"""(samples, features, classes) of the set the default arguments make: 4,000 train and 1,000 test signals."""


class Mnist1dSpec(Section):
    """MNIST-1D: 5,000 signals of 40 points, each one of ten digit-like templates shifted, scaled, sheared and
    noised, 10 classes; 4,000 train and 1,000 test (the package's own split)."""

    name: Literal["mnist1d"]
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the set, known before it is made."""
        return SIZE[0], (SIZE[1],), SIZE[2]


def cache_file() -> Path:
    """Where the made set is kept: one file per version of the ``mnist1d`` package."""
    return cache_folder() / "mnist1d" / f"mnist1d-{version('mnist1d')}-defaults.npz"


def mnist1d(spec: Mnist1dSpec, rng: np.random.Generator, dtype: np.dtype) -> Split:
    """The set, from the cache, else made (a few seconds, once) and cached."""
    path = cache_file()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                kept = Split(f["x_train"], f["y_train"], f["x_test"], f["y_test"])
            if _whole(kept):
                return kept
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            pass  # a damaged cache is made again
    split = _made()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.npz")
        np.savez(partial, **split._asdict())
        os.replace(partial, path)
    except OSError:
        pass  # no cache: the set is made again next time
    return split


def _whole(split: Split) -> bool:
    """Whether a cached set is the one the default arguments make: its shapes, finite signals, labels 0..9."""
    n_train, n_test = 4 * SIZE[0] // 5, SIZE[0] // 5
    shapes = (split.x_train.shape, split.y_train.shape, split.x_test.shape, split.y_test.shape)
    if shapes != ((n_train, SIZE[1]), (n_train,), (n_test, SIZE[1]), (n_test,)):
        return False
    labels = np.concatenate([split.y_train, split.y_test])
    finite = np.isfinite(split.x_train).all() and np.isfinite(split.x_test).all()
    return bool(finite and labels.min() == 0 and labels.max() == SIZE[2] - 1)


def _made() -> Split:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ConfigError(f"dataset mnist1d needs the mnist1d package ({exc}); pip install mnist1d") from None
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        made = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return Split(made["x"], made["y"].astype(np.int64), made["x_test"], made["y_test"].astype(np.int64))
