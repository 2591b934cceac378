"""MNIST and Fashion-MNIST from IDX files: files the tests write byte by byte, the real Fashion-MNIST files where
Debian's package is installed, and every way a file can be bad, each one line and exit 2."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli
from optrun.config import load_config, parse_config
from optrun.data.files import SYSTEM_FOLDER
from optrun.data.idx import FILES, idx_set
from optrun.train import prepare

NAMES = dict(zip(("x_train", "y_train", "x_test", "y_test"), FILES, strict=True))


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written out by hand: 0, 0, type 0x08, rank, big-endian dimensions."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_set(folder: Path, n_train: int = 30, n_test: int = 12, zipped: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 4, 3), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 3).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 4, 3), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 3).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, array in arrays.items():
        data = idx_bytes(array)
        if zipped and key.startswith("x"):  # a folder may mix gzipped and plain files
            (folder / f"{NAMES[key]}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / NAMES[key]).write_bytes(data)
    return arrays


def spec_of(folder: Path, name: str = "mnist"):
    return parse_config({"dataset": {"name": name, "path": str(folder)}, "optimizer": {"name": "sgd"}}).dataset


def test_the_files_give_back_the_pixels_and_labels_written_and_keep_their_split(tmp_path) -> None:
    written = write_set(tmp_path / "set")
    x_train, y_train, x_test, y_test = idx_set(spec_of(tmp_path / "set"), np.random.default_rng(0), np.float32)
    assert np.array_equal(x_train, written["x_train"]) and x_train.dtype == np.uint8
    assert np.array_equal(x_test, written["x_test"])
    assert np.array_equal(y_train, written["y_train"]) and y_train.dtype == np.int64
    assert np.array_equal(y_test, written["y_test"])
    assert spec_of(tmp_path / "set").size == (42, (4, 3), 3)
    data = prepare(parse_config({"dataset": {"name": "mnist", "path": str(tmp_path / "set")},
                                 "optimizer": {"name": "sgd"}})).data  # fmt: skip
    assert (len(data.y_train), len(data.y_test), data.n_features, data.n_classes) == (30, 12, 12, 3)
    assert data.sample_shape == (4, 3)
    # an image is standardized over all its pixels, with the train split's statistics
    pixels = written["x_train"].astype(np.float64)
    expected = (written["x_test"].reshape(12, 12) - pixels.mean()) / pixels.std()
    assert np.allclose(
        data.x_test[np.argsort(data.y_test, kind="stable")],
        expected[np.argsort(written["y_test"], kind="stable")],
        atol=1e-5,
    )
    assert sorted(data.y_train.tolist()) == sorted(written["y_train"].tolist())  # the set's own train split


def test_a_relative_path_is_the_configs_and_the_data_folder_is_looked_up(tmp_path, monkeypatch) -> None:
    write_set(tmp_path / "cfg" / "digitsets" / "mine")
    (tmp_path / "cfg" / "c.yaml").write_text(
        yaml.safe_dump({"dataset": {"name": "mnist", "path": "digitsets/mine"}, "optimizer": {"name": "sgd"}})
    )
    monkeypatch.chdir("/")
    assert load_config(tmp_path / "cfg" / "c.yaml").dataset.path == str(tmp_path / "cfg" / "digitsets" / "mine")
    write_set(tmp_path / "data" / "mnist")
    monkeypatch.setenv("OPTRUN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    spec = parse_config({"dataset": {"name": "mnist"}, "optimizer": {"name": "sgd"}}).dataset
    assert spec.size == (42, (4, 3), 3)


def test_without_files_one_line_names_them_and_where_to_place_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTRUN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "c.yaml").write_text("dataset: {name: mnist}\noptimizer: {name: sgd}\n")
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.yaml"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"dataset mnist: place {', '.join(FILES)} (each may end in .gz) in {tmp_path / 'data' / 'mnist'} or " in line
    assert not (tmp_path / "runs").exists()


def test_a_path_to_a_file_or_to_a_folder_missing_some_files_says_which(tmp_path) -> None:
    write_set(tmp_path / "set")
    (tmp_path / "set" / FILES[1]).unlink()
    (tmp_path / "set" / FILES[3]).unlink()
    for path, message in [
        (tmp_path / "set", f"dataset mnist: place {FILES[1]}, {FILES[3]} (each may end in .gz) in {tmp_path / 'set'}"),
        (
            tmp_path / "set" / f"{FILES[0]}.gz",
            f"dataset.path: {tmp_path / 'set' / FILES[0]}.gz is a file; give the folder",
        ),
    ]:
        result = CliRunner().invoke(cli, ["validate", str(config_at(tmp_path, path))])
        line = result.output.strip()
        assert result.exit_code == 2 and "\n" not in line and message in line, result.output


def config_at(folder: Path, path: Path) -> Path:
    out = folder / "c.yaml"
    out.write_text(yaml.safe_dump({"dataset": {"name": "mnist", "path": str(path)}, "optimizer": {"name": "sgd"}}))
    return out


def _truncated_gzip(folder: Path) -> None:
    path = folder / f"{FILES[0]}.gz"
    path.write_bytes(path.read_bytes()[:-20])


def _wrong_magic(folder: Path) -> None:
    path = folder / f"{FILES[0]}.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x10\x03" + gzip.decompress(path.read_bytes())[4:]))


def _cut_short(folder: Path) -> None:
    path = folder / f"{FILES[0]}.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-5]))


def _fewer_labels(folder: Path) -> None:
    (folder / FILES[1]).write_bytes(idx_bytes(np.zeros(29, np.uint8)))


def _labels_as_images(folder: Path) -> None:
    (folder / FILES[3]).write_bytes(idx_bytes(np.zeros((12, 1), np.uint8)))


def _not_gzip(folder: Path) -> None:
    (folder / f"{FILES[2]}.gz").write_bytes(b"plain text, not gzip")


BAD = [
    ("truncated gzip", _truncated_gzip, "train-images-idx3-ubyte.gz: cannot be read ("),
    ("wrong magic number", _wrong_magic, "train-images-idx3-ubyte.gz: not an IDX file (it begins 00001003; expected"),
    ("values missing", _cut_short, "train-images-idx3-ubyte.gz: its header says 360 values (30 × 4 × 3), it holds 355"),
    ("counts differ", _fewer_labels, "train-images-idx3-ubyte holds 30 images but train-labels-idx1-ubyte 29 labels"),
    ("labels of two dimensions", _labels_as_images, "t10k-labels-idx1-ubyte labels (n)"),
    ("not gzip", _not_gzip, "t10k-images-idx3-ubyte.gz: cannot be read ("),
]


@pytest.mark.parametrize("command", ["train", "validate"])
@pytest.mark.parametrize("spoil, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_a_bad_file_is_one_line_and_exit_2_with_nothing_written(tmp_path, spoil, message: str, command: str) -> None:
    write_set(tmp_path / "set")
    spoil(tmp_path / "set")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "mnist", "path": "set"}, "optimizer": {"name": "sgd"}}))
    result = CliRunner().invoke(
        cli, [command, str(config), *(["--runs-dir", str(tmp_path / "runs")] * (command == "train"))]
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert message in line, line
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(not (SYSTEM_FOLDER / "fashion-mnist").is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_the_real_fashion_mnist_files() -> None:
    """The published set: 60,000 train and 10,000 test images of 28 × 28 pixels, 6,000 and 1,000 of each class."""
    spec = parse_config({"dataset": {"name": "fashion-mnist"}, "optimizer": {"name": "sgd"}}).dataset
    x_train, y_train, x_test, y_test = idx_set(spec, np.random.default_rng(0), np.float32)
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28) and x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.min() == 0 and x_train.max() == 255


@pytest.fixture
def server(tmp_path):
    """An HTTP server on the loopback address, serving the folder ``served``: the published address, here."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # not on the command's stderr
            pass

    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_data_fetch_downloads_checks_and_runs_find_the_files(tmp_path, monkeypatch, server) -> None:
    import hashlib

    from optrun.data import fetch

    served, url = server
    write_set(served, zipped=False)
    for name in FILES:  # served gzipped, as the sets publish them
        (served / f"{name}.gz").write_bytes(gzip.compress((served / name).read_bytes()))
        (served / name).unlink()
    published = {f"{name}.gz": hashlib.md5((served / f"{name}.gz").read_bytes()).hexdigest() for name in FILES}
    monkeypatch.setitem(fetch.SOURCES, "mnist", (url, published))
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPTRUN_DATA", str(tmp_path / "nowhere"))
    runner = CliRunner()
    result = runner.invoke(cli, ["data", "fetch", "mnist"])
    assert result.exit_code == 0, result.output
    assert result.output.count("fetched: ") == 4 and "runs find them there" in result.output
    assert sorted(p.name for p in (tmp_path / "cache" / "data" / "mnist").iterdir()) == sorted(published)
    again = runner.invoke(cli, ["data", "fetch", "mnist"])
    assert again.output.count("already there: ") == 4, again.output
    (tmp_path / "c.yaml").write_text("dataset: {name: mnist}\noptimizer: {name: sgd}\ntrain: {epochs: 1}\n")
    trained = runner.invoke(cli, ["train", str(tmp_path / "c.yaml"), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert trained.exit_code == 0, trained.output
    local = runner.invoke(cli, ["data", "fetch", "mnist", "--from", str(served), "--to", str(tmp_path / "copy")])
    assert local.exit_code == 0 and local.output.count("fetched: ") == 4, local.output  # a folder as the mirror


def test_data_fetch_keeps_nothing_it_cannot_check(tmp_path, monkeypatch, server) -> None:
    from optrun.data import fetch

    (tmp_path / "c.yaml").write_text("a file in the way")
    served, url = server
    (served / "train-images-idx3-ubyte.gz").write_bytes(b"not what was published")
    files = {"train-images-idx3-ubyte.gz": "0" * 32, "train-labels-idx1-ubyte.gz": "1" * 32}
    monkeypatch.setitem(fetch.SOURCES, "mnist", (url, files))
    monkeypatch.setenv("OPTRUN_CACHE", str(tmp_path / "cache"))
    for args, message in [
        ([], f"{url}train-images-idx3-ubyte.gz: its MD5 is "),
        (["--from", "http://127.0.0.1:9/"], "http://127.0.0.1:9/train-images-idx3-ubyte.gz: cannot be downloaded ("),
        (["--from", "nowhere"], "nowhere/train-images-idx3-ubyte.gz: cannot be downloaded ("),
        (["--to", str(tmp_path / "c.yaml")], f"{tmp_path / 'c.yaml'}: is a file, not a folder for the files"),
        (["--to", ""], "--to is empty; give a folder, or leave it out"),
        (["--from", " "], "--from is empty; give a URL, or leave it out"),
    ]:
        result = CliRunner().invoke(cli, ["data", "fetch", "mnist", *args])
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert "\n" not in line and "Traceback" not in line and message in line, line
        assert not (tmp_path / "cache" / "data" / "mnist").exists()
    unknown = CliRunner().invoke(cli, ["data", "fetch", "imagenet"])
    assert (
        unknown.exit_code == 2
        and "no set named 'imagenet' to fetch; choose from: fashion-mnist, mnist, cifar10" in unknown.output
    )
