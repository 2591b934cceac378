"""The UCI optical recognition of handwritten digits test set, shipped with optrun (see DIGITS.md)."""

from __future__ import annotations

import gzip
from importlib.resources import files
from typing import Literal

import numpy as np

from optrun.schema import Fraction, Section


class DigitsSpec(Section):
    """1,797 8×8 images of handwritten digits (64 features, pixel counts 0..16), 10 classes."""

    name: Literal["digits"]
    test_fraction: Fraction = 0.2


def digits(spec: DigitsSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    with files("optrun.data").joinpath("digits.csv.gz").open("rb") as raw, gzip.open(raw) as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(dtype), table[:, -1].astype(np.int64)
