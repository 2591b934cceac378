"""What the datasets share: the validation split every one can carve, where the files of those read from files
are looked for, and a set that comes split."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from optrun.schema import ConfigError, Fraction

DATA_ENV = "OPTRUN_DATA"
"""The environment variable naming a folder that holds each set's files in a folder of the set's name."""

SYSTEM_FOLDER = Path("/usr/share/datasets")
"""Where Debian's dataset packages install their files (``apt-get install dataset-fashion-mnist``)."""


ValidationFraction = Fraction | None
"""Every dataset's ``validation_fraction``: that share of each class of the training split is held out for
validation (never taken from the test split), what a tuning protocol selects on; None: no validation split."""


class Split(NamedTuple):
    """A set that comes split: its train and test arrays, x with one row per sample (``load_dataset`` keeps
    the split, where it splits a set that comes whole)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def cache_folder() -> Path:
    """optrun's data cache: ``$OPTRUN_CACHE/data``, else ``$XDG_CACHE_HOME/optrun/data``, else
    ``~/.cache/optrun/data``."""
    if root := os.environ.get("OPTRUN_CACHE"):
        return Path(root) / "data"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optrun" / "data"


def candidates(name: str, path: str | None = None) -> list[Path]:
    """The folders where set ``name``'s files are looked for, in order: ``path`` alone where given; else
    ``$OPTRUN_DATA/<name>``, optrun's data cache, and the system's dataset folder."""
    if path is not None:
        return [Path(path)]
    folders = [Path(os.environ[DATA_ENV]) / name] if os.environ.get(DATA_ENV) else []
    return list(dict.fromkeys([*folders, cache_folder() / name, SYSTEM_FOLDER / name]))


def not_found(name: str, path: str | None, files: str) -> ConfigError:
    """The error for set ``name`` whose ``files`` are in none of its ``candidates``: what to place where, and
    how to get them."""
    folders = candidates(name, path)
    where = folders[0] if path is not None else " or ".join(str(f) for f in folders)
    how = "" if path is not None else f", or run: optrun data fetch {name}"
    if name == "fashion-mnist" and path is None:
        how += " (or: apt-get install dataset-fashion-mnist)"
    return ConfigError(f"dataset {name}: place {files} in {where}{how}")
