"""Image sets stored as IDX files, the format MNIST and Fashion-MNIST ship in: four files (gzipped or not) in
one folder, read with numpy, the sets' own train and test split kept.

The folder is the spec's ``path`` (relative to the config); else ``$OPTRUN_DATA/<name>``; else optrun's data
cache, ``$OPTRUN_CACHE/data/<name>`` or ``~/.cache/optrun/data/<name>``; else ``/usr/share/datasets/<name>``,
where Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST. An IDX file is a magic number (two
zero bytes, a type code, the number of dimensions), each dimension as a big-endian 32-bit count, then the
values in row-major order.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, Literal

import numpy as np

from optrun.data.files import Split, ValidationFraction, candidates, not_found
from optrun.schema import ConfigError, Section

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four files of a set, each also found with ``.gz`` after its name."""

TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
"""IDX's type codes and the big-endian numpy types they mean."""


class IdxSpec(Section):
    """What the IDX sets share: the folder their files are in (None: looked up, see the module docstring)."""

    path: str | None = None
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, an image's shape, classes) of the set, from its files' headers (and its train labels)."""
        folder = find_folder(self.name, self.path)
        train, _, test, _ = (_header(_file(folder, base)) for base in FILES)  # type: ignore[arg-type]
        classes = int(read_idx(_file(folder, FILES[1])).max()) + 1  # type: ignore[arg-type]  # 60,000 bytes
        return train[0] + test[0], train[1:], classes


class FashionMnistSpec(IdxSpec):
    """Zalando's Fashion-MNIST: 28×28 greyscale images of clothing, 10 classes, 60,000 train and 10,000 test."""

    name: Literal["fashion-mnist"]


class MnistSpec(IdxSpec):
    """LeCun's MNIST: 28×28 greyscale images of handwritten digits, 10 classes, 60,000 train and 10,000 test."""

    name: Literal["mnist"]


def find_folder(name: str, path: str | None = None) -> Path:
    """The first of ``candidates`` that holds all four files; ConfigError naming the files (those the folder given
    lacks) and the places."""
    folders = candidates(name, path)
    for folder in folders:
        if all(_file(folder, base, must=False) is not None for base in FILES):
            return folder
    if path is not None and folders[0].is_file():
        raise ConfigError(f"dataset.path: {folders[0]} is a file; give the folder that holds the set's four files")
    missing = FILES  # in every folder looked in; in the one given, those it lacks
    if path is not None:
        missing = tuple(base for base in FILES if _file(folders[0], base, must=False) is None)
    raise not_found(name, path, f"{', '.join(missing)} (each may end in .gz)")


def _file(folder: Path, base: str, must: bool = True) -> Path | None:
    for candidate in (folder / base, folder / f"{base}.gz"):
        if candidate.is_file():
            return candidate
    if must:
        raise ConfigError(f"{folder}: no {base} (nor {base}.gz)")
    return None


def _opened(path: Path) -> Any:
    """The file, to read as bytes: decompressed where it is gzipped."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _header(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file's header gives (its first bytes alone are read)."""
    try:
        with _opened(path) as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] not in TYPES or magic[3] == 0:
                found = magic.hex() or "nothing"
                raise ConfigError(f"{path}: not an IDX file (it begins {found}; expected 0000, a type, a rank)")
            dims = f.read(4 * magic[3])
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    if len(dims) < 4 * magic[3]:
        raise ConfigError(f"{path}: truncated in its header")
    return tuple(int(d) for d in np.frombuffer(dims, ">u4"))


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds, in its own type (native byte order); ConfigError, in one line, for a file
    that is not one, is cut short, or does not decompress."""
    dims = _header(path)
    try:
        with _opened(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    dtype = np.dtype(TYPES[data[2]])
    start, count = 4 + 4 * len(dims), int(np.prod(dims))
    if len(data) - start != count * dtype.itemsize:
        held = (len(data) - start) // dtype.itemsize
        raise ConfigError(f"{path}: its header says {count} values ({' × '.join(map(str, dims))}), it holds {held}")
    return np.frombuffer(data, dtype, count, start).reshape(dims).astype(dtype.newbyteorder("="))


def _images_and_labels(folder: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(_file(folder, images)), read_idx(_file(folder, labels))  # type: ignore[arg-type]
    if x.ndim != 3 or y.ndim != 1:
        raise ConfigError(f"{folder}: {images} must hold images (n × height × width) and {labels} labels (n)")
    if len(x) != len(y):
        raise ConfigError(f"{folder}: {images} holds {len(x)} images but {labels} {len(y)} labels")
    if len(x) == 0 or x[0].size == 0:
        raise ConfigError(f"{folder}: {images} holds no images, or images of no pixels")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ConfigError(f"{folder}: {images} holds NaN or infinite pixels")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ConfigError(f"{folder}: {labels} must hold class numbers 0, 1, 2, ...")
    return x, y.astype(np.int64)


def idx_set(spec: IdxSpec, rng: np.random.Generator, dtype: np.dtype) -> Split:
    """The set's train and test images (n × height × width pixels, as stored: uint8 for MNIST's) and labels."""
    folder = find_folder(spec.name, spec.path)
    x_train, y_train = _images_and_labels(folder, FILES[0], FILES[1])
    x_test, y_test = _images_and_labels(folder, FILES[2], FILES[3])
    if x_train.shape[1:] != x_test.shape[1:]:
        train, test = (" × ".join(map(str, x.shape[1:])) for x in (x_train, x_test))
        raise ConfigError(f"{folder}: its train images have {train} pixels, its test images {test}")
    return Split(x_train, y_train, x_test, y_test)
