"""CIFAR-10's binary version, from an archive and a folder the tests write record by record, and its bad files."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli
from optrun.config import load_config
from optrun.data.cifar import FOLDER, RECORD, TEST, TRAIN, cifar10

PER_BATCH = 6


def batches(seed: int = 0) -> dict[str, bytes]:
    """Each batch file: PER_BATCH records of a label byte and 3,072 pixel bytes, labels 0..9 in turn."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(TRAIN + TEST):
        labels = (np.arange(PER_BATCH) + i) % 10
        pixels = rng.integers(0, 256, (PER_BATCH, RECORD - 1), dtype=np.uint8)
        out[name] = np.column_stack([labels.astype(np.uint8), pixels]).tobytes()
    return out


def write_archive(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def config(folder: Path, path: str) -> Path:
    out = folder / "c.yaml"
    out.write_text(yaml.safe_dump({"dataset": {"name": "cifar10", "path": path}, "optimizer": {"name": "sgd"}}))
    return out


@pytest.mark.parametrize("form", ["archive", "folder"])
def test_the_records_give_back_the_labels_and_pixels_written(tmp_path, form: str) -> None:
    files = batches()
    if form == "archive":
        write_archive(tmp_path / "cifar-10-binary.tar.gz", files)
    else:
        (tmp_path / FOLDER).mkdir()
        for name, data in files.items():
            (tmp_path / FOLDER / name).write_bytes(data)
    spec = load_config(config(tmp_path, ".")).dataset
    x_train, y_train, x_test, y_test = cifar10(spec, np.random.default_rng(0), np.dtype(np.float32))
    records = {name: np.frombuffer(data, np.uint8).reshape(-1, RECORD) for name, data in files.items()}
    assert x_train.shape == (5 * PER_BATCH, 3, 32, 32) and y_train.dtype == np.int64  # red, green, blue planes
    assert np.array_equal(x_train.reshape(-1, 3072), np.concatenate([records[n][:, 1:] for n in TRAIN]))
    assert np.array_equal(y_train, np.concatenate([records[n][:, 0] for n in TRAIN]))
    assert np.array_equal(x_test.reshape(-1, 3072), records[TEST[0]][:, 1:])
    assert np.array_equal(y_test, records[TEST[0]][:, 0])


def _cut(files: dict[str, bytes]) -> dict[str, bytes]:
    return {**files, TRAIN[2]: files[TRAIN[2]][:-7]}


def _label_12(files: dict[str, bytes]) -> dict[str, bytes]:
    data = bytearray(files[TEST[0]])
    data[0] = 12
    return {**files, TEST[0]: bytes(data)}


def _no_test_batch(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name != TEST[0]}


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_cut, f"data_batch_3.bin: {PER_BATCH * RECORD - 7} bytes is not a whole number of 3073-byte records"),
        (_label_12, "test_batch.bin: a label is 12; CIFAR-10's are 0 to 9"),
        (_no_test_batch, "has no test_batch.bin; it is not CIFAR-10's binary archive"),
        (None, "cannot be read as a .tar.gz archive ("),
    ],
)
def test_a_bad_archive_is_one_line_and_exit_2(tmp_path, spoil, message: str) -> None:
    archive = tmp_path / "cifar-10-binary.tar.gz"
    if spoil is None:
        archive.write_bytes(b"\x1f\x8b not really gzip")
    else:
        write_archive(archive, spoil(batches()))
    result = CliRunner().invoke(cli, ["train", str(config(tmp_path, ".")), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line and message in line, line
    assert not (tmp_path / "runs").exists()


def test_without_the_archive_one_line_says_where_to_place_it(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["validate", str(config(tmp_path, "nothing-here"))])
    assert result.exit_code == 2
    assert f"dataset cifar10: place cifar-10-binary.tar.gz (or the folder {FOLDER} it unpacks to) in " in result.output
