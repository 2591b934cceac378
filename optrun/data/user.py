"""A user's own data: a CSV table with a header row, or a NumPy ``.npz`` file of arrays.

- ``csv``: ``path``, the ``target`` column (class labels: numbers or names), and the ``features`` columns (all
  the others unless listed), every feature cell a number;
- ``npz``: arrays ``x`` and ``y`` (split by ``test_fraction``), or ``x_train``, ``y_train``, ``x_test``,
  ``y_test`` (a split of its own, kept). A sample of ``x`` may have a shape: a row of features or a signal (n ×
  length), an image (n × height × width), an image of channels (n × channels × height × width). Read without
  pickles, so that a file cannot run code.

Labels become 0, 1, 2, ... in their sorted order (numbers by value, names alphabetically). A file that is not
what it should be gets one line naming it, the row or array at fault, and what is allowed.
"""

from __future__ import annotations

import csv
import functools
import itertools
import logging
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from optrun.data.files import Split, ValidationFraction
from optrun.schema import ConfigError, Fraction, Section

SPLIT_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
log = logging.getLogger("optrun")


class CsvSpec(Section):
    """A CSV table with a header row: ``target`` names the label column, ``features`` the input columns (all the
    others where not given)."""

    name: Literal["csv"]
    path: str
    target: str
    features: Annotated[list[str], Field(min_length=1)] | None = None
    test_fraction: Fraction = 0.2
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the table (read once per process and file)."""
        x, y = _read_csv(*_key(self.path), self.target, tuple(self.features or ()))
        return len(y), x.shape[1:], int(y.max()) + 1


class NpzSpec(Section):
    """A NumPy ``.npz`` file: arrays ``x`` and ``y``, or ``x_train``, ``y_train``, ``x_test``, ``y_test``."""

    name: Literal["npz"]
    path: str
    test_fraction: Fraction = 0.2
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the arrays (read once per process and file)."""
        made = _read_npz(*_key(self.path))
        x, y = (made[0], made[1]) if isinstance(made, tuple) else (made.x_train, made.y_train)
        n = len(y) + (0 if isinstance(made, tuple) else len(made.y_test))
        classes = y if isinstance(made, tuple) else np.concatenate([made.y_train, made.y_test])
        return n, x.shape[1:], int(classes.max()) + 1


def _key(path: str) -> tuple[str, int, int]:
    """The file and its modification time and size: what its cached reading is keyed by."""
    try:
        stat = Path(path).stat()
    except FileNotFoundError:
        raise ConfigError(f"dataset: no such file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not Path(path).is_file():
        raise ConfigError(f"{path}: not a file")
    return path, stat.st_mtime_ns, stat.st_size


def labels(values: np.ndarray, where: str) -> np.ndarray:
    """Class labels 0, 1, 2, ... in the sorted order of ``values`` (numbers by value, names alphabetically);
    ConfigError for fewer than two classes."""
    if values.dtype.kind in "US" and (empty := np.flatnonzero(np.char.str_len(values) == 0)).size:
        raise ConfigError(f"{where}: the label of sample {empty[0]} is empty")
    try:
        values = values.astype(np.float64) if values.dtype.kind in "OUS" else values
    except ValueError:
        values = values.astype(str)  # names
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ConfigError(f"{where}: a label is empty, NaN or infinite")
    classes, y = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise ConfigError(f"{where}: every label is {classes[0].item()!r}; a classifier needs at least two classes")
    return y.astype(np.int64)


def _finite(x: np.ndarray, where: str) -> np.ndarray:
    bad = ~np.isfinite(x.reshape(len(x), -1))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        at = (
            f"feature {column}" if x.ndim == 2 else f"position {tuple(map(int, np.unravel_index(column, x.shape[1:])))}"
        )
        raise ConfigError(f"{where}: NaN or infinite values, the first in sample {row}, {at}")
    return x


@functools.lru_cache(maxsize=2)
def _read_csv(path: str, mtime: int, size: int, target: str, features: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not the header's
            header = next(csv.reader(f), [])
            with warnings.catch_warnings():  # a table of no rows is told below, in one line
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(f, delimiter=",", quotechar='"', dtype=str, ndmin=2, comments=None)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8)") from None
    except ValueError as exc:  # rows of different lengths
        raise ConfigError(_ragged(path) or f"{path}: {str(exc).splitlines()[0]}") from None
    header = [h.strip() for h in header]
    if target not in header:
        raise ConfigError(f"{path}: no column {target!r} (target); the columns are: {', '.join(header) or 'none'}")
    if target in features:
        raise ConfigError(
            f"{path}: the target column {target!r} cannot be a feature too (the labels would be an input)"
        )
    unknown = [c for c in features if c not in header]
    if unknown:
        raise ConfigError(f"{path}: no column {unknown[0]!r} (features); the columns are: {', '.join(header)}")
    if table.size == 0:
        raise ConfigError(f"{path}: no rows under its header")
    if table.shape[1] != len(header):
        raise ConfigError(f"{path}: its rows have {table.shape[1]} cells, its header {len(header)} columns")
    columns = [header.index(c) for c in features] if features else [i for i, c in enumerate(header) if c != target]
    if not columns:
        raise ConfigError(f"{path}: no feature columns besides the target {target!r}")
    cells = np.char.strip(table[:, columns])
    try:
        x = cells.astype(np.float64)
    except ValueError:
        numeric = np.vectorize(_parses_as_number, otypes=[bool])(cells)  # the error's cell: only where there is one
        row, column = np.argwhere(~numeric)[0]
        raise ConfigError(
            f"{path}: line {_line(path, row)}, column {header[columns[column]]!r}: "
            f"{str(cells[row, column])!r} is not a number"
        ) from None
    if not (finite := np.isfinite(x)).all():
        row, column = np.argwhere(~finite)[0]
        where = f"line {_line(path, row)}, column {header[columns[column]]!r}"
        raise ConfigError(f"{path}: {where}: {x[row, column]} is not finite")
    return x, labels(np.char.strip(table[:, header.index(target)]), f"{path}: column {target!r}")


def _lines(path: str) -> Iterator[tuple[int, list[str]]]:
    """The file's rows under its header, with the line each ends on (empty lines, which the table skips, skipped)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        for cells in reader:
            if cells:
                yield reader.line_num, cells


def _line(path: str, row: int) -> int:
    """The line of the file that holds the table's row ``row`` (0: the first under the header)."""
    return next(itertools.islice(_lines(path), row, None))[0]


def _ragged(path: str) -> str | None:
    """The message for the first line whose cells are not as many as the header's columns (None: none is)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        columns = len(next(csv.reader(f), []))
    for line, cells in _lines(path):
        if len(cells) != columns:
            return f"{path}: line {line} has {len(cells)} cell{'s' if len(cells) != 1 else ''}, the header {columns}"
    return None


def _parses_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def _read_npz(path: str, mtime: int, size: int) -> tuple[np.ndarray, np.ndarray] | Split:
    try:
        with open(path, "rb") as f:
            start = f.read(6)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if not start.startswith((b"PK", b"\x93NUMPY")):  # neither a zip of arrays nor one array: np.load tries pickle
        raise ConfigError(f"{path}: not a .npz file (a zip of NumPy arrays: it begins {start!r})")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ConfigError(f"{path}: a single array (.npy), not a .npz file of arrays x and y")
        with loaded as f:
            arrays = {name: f[name] for name in f.files}
    except ConfigError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        pickled = "allow_pickle" in str(exc)
        why = "it holds Python objects, which optrun does not load: save arrays of numbers" if pickled else str(exc)
        raise ConfigError(f"{path}: not a readable .npz file ({why.splitlines()[0]})") from None
    if not all(isinstance(a, np.ndarray) for a in arrays.values()):  # a zip whose members are not arrays
        raise ConfigError(f"{path}: not a readable .npz file (a member is not a NumPy array)")
    held = ", ".join(arrays) or "no arrays"
    wanted = ("x", "y") if "x" in arrays or "y" in arrays else SPLIT_ARRAYS
    if wanted == ("x", "y") and (both := [name for name in SPLIT_ARRAYS if name in arrays]):
        raise ConfigError(
            f"{path}: holds x or y and {', '.join(both)} too; give x and y (optrun splits them), or x_train, "
            "y_train, x_test, y_test (a split of your own), not both"
        )
    if missing := [name for name in wanted if name not in arrays]:
        raise ConfigError(
            f"{path}: no array {missing[0]!r} (it holds {held}); give x and y, or x_train, y_train, x_test, y_test"
        )
    if wanted == ("x", "y"):
        return _rows(arrays["x"], arrays["y"], f"{path}: x and y"), labels(arrays["y"], f"{path}: y")
    x_train = _rows(arrays["x_train"], arrays["y_train"], f"{path}: x_train and y_train")
    x_test = _rows(arrays["x_test"], arrays["y_test"], f"{path}: x_test and y_test")
    if x_train.shape[1:] != x_test.shape[1:]:
        shapes = f"shape {x_train.shape[1:]}, x_test's {x_test.shape[1:]}"
        raise ConfigError(f"{path}: x_train's samples have {shapes}; they must be alike")
    y = labels(np.concatenate([arrays["y_train"], arrays["y_test"]]), f"{path}: y_train and y_test")
    return Split(x_train, y[: len(x_train)], x_test, y[len(x_train) :])


def _rows(x: np.ndarray, y: np.ndarray, where: str) -> np.ndarray:
    """x, one sample per label of y, checked: numbers, finite, of a shape optrun reads (see the module docstring)."""
    if y.ndim != 1:
        shape = " × ".join(map(str, y.shape)) or "a single number"
        raise ConfigError(f"{where}: y is {shape}; it must hold one label per sample (n), as y.ravel() would")
    if not 2 <= x.ndim <= 4:
        raise ConfigError(
            f"{where}: x is {x.ndim}-dimensional; it must be n × features, n × height × width or "
            "n × channels × height × width"
        )
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        c, h, w = x.shape[1:]
        log.warning(
            f"{where}: read as {c} channels of {h} × {w} images (channels first, as PyTorch keeps them); "
            f"if they are {w} channels of {c} × {h}, save x.transpose(0, 3, 1, 2)"
        )
    if len(x) != len(y):
        raise ConfigError(f"{where}: {len(x)} samples but {len(y)} labels")
    if x.dtype.kind not in "iuf":
        raise ConfigError(f"{where}: x must hold numbers, not {x.dtype}")
    if len(x) == 0 or x[0].size == 0:
        raise ConfigError(f"{where}: x holds {len(x)} samples of {x[0].size if len(x) else 0} values; it needs both")
    return _finite(x, where)


def csv_set(spec: CsvSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The table's features (float64, cast by ``load_dataset``) and labels."""
    return _read_csv(*_key(spec.path), spec.target, tuple(spec.features or ()))


def npz_set(spec: NpzSpec, rng: np.random.Generator, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray] | Split:
    """The file's samples (in their shape) and labels: whole, or split as the file splits them."""
    return _read_npz(*_key(spec.path))
