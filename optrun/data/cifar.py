"""CIFAR-10 in its binary version: fixed-size records (a label byte, then 3 × 32 × 32 pixel bytes, channel after
channel), read with numpy from ``cifar-10-binary.tar.gz`` or from the folder it unpacks to, never unpickled. The
set's own split is kept: five train batches of 10,000 images, one test batch.

The file or folder is looked for where the IDX sets' files are (``optrun.data.files.candidates``), and
``optrun data fetch cifar10`` downloads the archive there.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from optrun.data.files import Split, ValidationFraction, candidates, not_found
from optrun.schema import ConfigError, Section

ARCHIVE, FOLDER = "cifar-10-binary.tar.gz", "cifar-10-batches-bin"
TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST = ("test_batch.bin",)
SHAPE = (3, 32, 32)
"""An image's shape: its red, green and blue planes of 32 × 32 pixels."""
RECORD = 1 + 3 * 32 * 32
"""Bytes of a record: the label, then the image's planes."""


class Cifar10Spec(Section):
    """CIFAR-10: 32×32 colour images of 10 classes of objects, 50,000 train and 10,000 test."""

    name: Literal["cifar10"]
    path: str | None = None
    validation_fraction: ValidationFraction = None

    @property
    def size(self) -> tuple[int, tuple[int, ...], int]:
        """(samples, a sample's shape, classes) of the published set (a smaller one is estimated as that), once its
        file is found (ConfigError otherwise: ``optrun validate`` does not read a set this large)."""
        find(self.path)
        return 60_000, SHAPE, 10


def find(path: str | None) -> Path:
    """The archive, or the folder it unpacks to, in the first of the places looked in that holds one."""
    folders = candidates("cifar10", path)
    for folder in folders:
        for found in (folder / FOLDER, folder / ARCHIVE, folder):
            if (found.is_dir() and all((found / name).is_file() for name in TRAIN + TEST)) or (
                found.name == ARCHIVE and found.is_file()
            ):
                return found
    raise not_found("cifar10", path, f"{ARCHIVE} (or the folder {FOLDER} it unpacks to)")


def _batches(found: Path) -> dict[str, bytes]:
    """Each batch file's bytes, from the folder or from the archive (read member by member, never unpacked)."""
    if found.is_dir():
        return {name: (found / name).read_bytes() for name in TRAIN + TEST}
    try:
        with tarfile.open(found, "r:gz") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
            missing = [name for name in TRAIN + TEST if name not in members]
            if missing:
                raise ConfigError(f"{found}: has no {missing[0]}; it is not CIFAR-10's binary archive")
            return {name: archive.extractfile(members[name]).read() for name in TRAIN + TEST}  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ConfigError(f"{found}: cannot be read as a .tar.gz archive ({str(exc).splitlines()[0]})") from None


def _records(data: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(data) == 0 or len(data) % RECORD:
        raise ConfigError(f"{where}: {len(data)} bytes is not a whole number of {RECORD}-byte records")
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD)
    if records[:, 0].max() > 9:
        raise ConfigError(f"{where}: a label is {records[:, 0].max()}; CIFAR-10's are 0 to 9")
    return records[:, 1:].reshape(-1, *SHAPE), records[:, 0].astype(np.int64)


def cifar10(spec: Cifar10Spec, rng: np.random.Generator, dtype: np.dtype) -> Split:
    """The train and test images (n × 3 × 32 × 32 pixel values, uint8) and their labels."""
    found = find(spec.path)
    batches = _batches(found)
    train = [_records(batches[name], f"{found}: {name}") for name in TRAIN]
    x_test, y_test = _records(batches[TEST[0]], f"{found}: {TEST[0]}")
    return Split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test)
