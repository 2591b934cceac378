"""The UCI optical recognition of handwritten digits test set, shipped with optrun (see DIGITS.md)."""

from __future__ import annotations

import gzip
import zlib
from importlib.resources import files
from typing import Literal

import numpy as np

from optrun.data.files import ValidationFraction
from optrun.schema import ConfigError, Fraction, Section


class DigitsSpec(Section):
    """1,797 8×8 images of handwritten digits (64 features, pixel counts 0..16), 10 classes."""

    name: Literal["digits"]
    test_fraction: Fraction = 0.2
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the set, known before it is read."""
        return SHAPE[0], (SHAPE[1] - 1,), 10


SHAPE = (1797, 65)  # 64 pixel counts and the label


def digits(spec: DigitsSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The pixel counts as uint8 (``load_dataset`` casts them to ``dtype`` after the split, so the whole
    table is never held as floats) and the labels."""
    source = files("optrun.data").joinpath("digits.csv.gz")
    try:
        with source.open("rb") as raw, gzip.open(raw) as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.uint8, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise ConfigError(f"{source}: cannot read the bundled digits ({exc}); reinstall optrun") from None
    if table.shape != SHAPE:
        raise ConfigError(f"{source}: the bundled digits have shape {table.shape}, expected {SHAPE}; reinstall optrun")
    return table[:, :-1], table[:, -1].astype(np.int64)
