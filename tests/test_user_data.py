"""A user's own data, from CSV and NPZ files the tests write: what is read back, and every way a file can be bad,
each one line and exit 2 with nothing written."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli
from optrun.config import load_config
from optrun.data.user import csv_set
from optrun.train import prepare

ROWS = "a,b,label\n" + "".join(f"{i},{i % 7 - 3},{'cat' if i % 3 else 'dog'}\n" for i in range(30))


def config(folder: Path, dataset: dict) -> Path:
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": dataset, "optimizer": {"name": "sgd"}, "train": {"epochs": 1}}))
    return path


def test_a_csv_table_gives_its_numbers_and_labels_by_sorted_name(tmp_path) -> None:
    (tmp_path / "t.csv").write_text(ROWS)
    spec = load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label"})).dataset
    x, y = csv_set(spec, np.random.default_rng(0), np.dtype(np.float32))
    assert np.array_equal(x, [[i, i % 7 - 3] for i in range(30)]) and x.dtype == np.float64
    assert np.array_equal(y, [0 if i % 3 else 1 for i in range(30)])  # cat, then dog: sorted by name
    assert spec.size == (30, (2,), 2)
    data = prepare(load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label"}))).data
    assert (data.n_features, data.n_classes, len(data.y_train) + len(data.y_test)) == (2, 2, 30)
    only_a = load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label", "features": ["a"]}))
    assert csv_set(only_a.dataset, np.random.default_rng(0), np.dtype(np.float32))[0].shape == (30, 1)


def test_a_csv_may_begin_with_a_byte_order_mark_and_quote_its_cells(tmp_path) -> None:
    (tmp_path / "t.csv").write_text('\ufeffa,b,label\n"1.5",2,"cat, black"\n3,"4",dog\n5,6,"cat, black"\n7,8,dog\n')
    spec = load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label"})).dataset
    x, y = csv_set(spec, np.random.default_rng(0), np.dtype(np.float32))
    assert np.array_equal(x, [[1.5, 2], [3, 4], [5, 6], [7, 8]]) and np.array_equal(y, [0, 1, 0, 1])


def test_an_npz_file_whole_or_split_and_samples_with_a_shape(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 2, 3)), np.arange(40) % 4
    np.savez(tmp_path / "whole.npz", x=x, y=y)
    whole = prepare(load_config(config(tmp_path, {"name": "npz", "path": "whole.npz", "test_fraction": 0.2}))).data
    assert (whole.n_features, whole.n_classes, len(whole.y_train), len(whole.y_test)) == (6, 4, 32, 8)
    assert whole.sample_shape == (2, 3)
    np.savez(tmp_path / "split.npz", x_train=x[:30], y_train=y[:30] + 5, x_test=x[30:], y_test=y[30:] + 5)
    split = prepare(load_config(config(tmp_path, {"name": "npz", "path": "split.npz"}))).data
    assert np.array_equal(split.y_train, y[:30]) and np.array_equal(split.y_test, y[30:])  # 5..8 become 0..3
    mean, std = x[:30].mean(), x[:30].std()  # an image: over all its pixels
    np.testing.assert_allclose(split.x_test, (x[30:].reshape(10, 6) - mean) / std, rtol=1e-5, atol=1e-5)


def test_an_image_of_channels_becomes_a_row_channel_after_channel_per_pixel_standardized_per_channel(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = (
        rng.standard_normal((20, 3, 2, 4)) * np.array([1.0, 10.0, 100.0])[:, None, None]
        + np.array([0, 5, -7])[:, None, None]
    )
    y = np.arange(20) % 2
    np.savez(tmp_path / "split.npz", x_train=x[:12], y_train=y[:12], x_test=x[12:], y_test=y[12:])
    data = prepare(load_config(config(tmp_path, {"name": "npz", "path": "split.npz"}))).data
    assert data.sample_shape == (3, 2, 4) and data.x_test.shape == (8, 24)
    mean, std = x[:12].mean(axis=(0, 2, 3)), x[:12].std(axis=(0, 2, 3))
    expected = (x[12:].transpose(0, 2, 3, 1) - mean) / std  # height, width, then channels
    np.testing.assert_allclose(data.x_test, expected.reshape(8, 24), rtol=1e-5, atol=1e-5)


def _npz(folder: Path, **arrays) -> None:
    np.savez(folder / "d.npz", **arrays)


def _npy_bytes() -> bytes:
    out = io.BytesIO()
    np.save(out, np.zeros(3))
    return out.getvalue()


def _zip_of_text() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("x.npy", b"not an array")
        z.writestr("y.npy", b"nor this")
    return out.getvalue()


X, Y = np.zeros((8, 2)), np.arange(8) % 2
BAD = [
    ("csv", "a,b,label\n1,2,x\n3,oops,y\n", "d.csv: line 3, column 'b': 'oops' is not a number"),
    ("csv", "a,b,kind\n1,2,x\n3,4,y\n", "d.csv: no column 'label' (target); the columns are: a, b, kind"),
    ("csv", "a,b,label\n1,nan,x\n3,4,y\n", "d.csv: line 2, column 'b': nan is not finite"),
    ("csv", "a,b,label\n1,2,x\n3,4,x\n", "d.csv: column 'label': every label is 'x'; a classifier needs at least two"),
    ("csv", "a,b,label\n1,2,x\n3,4\n", "d.csv: line 3 has 2 cells, the header 3"),
    ("csv", "a,b,label\n\n1,2,x\n\n3,oops,y\n", "d.csv: line 5, column 'b': 'oops' is not a number"),
    ("csv", 'a,b,label\n1,2,"two\nlines"\n3,inf,y\n', "d.csv: line 4, column 'b': inf is not finite"),
    ("csv", "a,b,label\n", "d.csv: no rows under its header"),
    ("csv", "a,b,label\n1,2,x\n3,4,\n5,6,y\n", "d.csv: column 'label': the label of sample 1 is empty"),
    ("csv", b"\xff\xfe\x00binary", "d.csv: not a text file (UTF-8)"),
    ("npz", {"x": X}, "d.npz: no array 'y' (it holds x); give x and y, or x_train, y_train, x_test, y_test"),
    ("npz", {"x_train": X, "y_train": Y, "x_test": X}, "d.npz: no array 'y_test' (it holds x_train, y_train, x_test)"),
    ("npz", {"x": X, "y": Y[:5]}, "d.npz: x and y: 8 samples but 5 labels"),
    ("npz", {"x": np.full((8, 2), np.inf), "y": Y}, "d.npz: x and y: NaN or infinite values, the first in sample 0"),
    ("npz", {"x": np.array([{}] * 8, dtype=object), "y": Y}, "d.npz: not a readable .npz file (it holds Python"),
    ("npz", b"PK not really a zip", "d.npz: not a readable .npz file"),
    ("npz", None, "dataset: no such file: "),
    ("npz", {"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, "d.npz: x and y: x holds 0 samples of 0 values"),
    ("npz", {"x": np.zeros((8, 0)), "y": Y}, "d.npz: x and y: x holds 8 samples of 0 values; it needs both"),
    ("npz", _npy_bytes(), "d.npz: a single array (.npy), not a .npz file of arrays x and y"),
    ("npz", _zip_of_text(), "d.npz: not a readable .npz file (a member is not a NumPy array)"),
    ("csv", "a,b,label\n1,2,x\n3,4,y\n", "d.csv: the target column 'label' cannot be a feature too"),
    (
        "npz",
        {"x": np.zeros((8, 3, 3)), "y": Y[:, None]},
        "d.npz: x and y: y is 8 × 1; it must hold one label per sample",
    ),
    ("npz", {"x": np.zeros((8, 1, 2, 2, 2)), "y": Y}, "d.npz: x and y: x is 5-dimensional; it must be n × features"),
    ("npz", b"hello", "d.npz: not a .npz file (a zip of NumPy arrays: it begins b'hello')"),
    ("npz", {"x": X, "y": Y, "x_train": X}, "d.npz: holds x or y and x_train too; give x and y (optrun splits them)"),
    ("npz", {"x": np.where(np.arange(8 * 12).reshape(8, 3, 4) == 18, np.nan, 0), "y": Y}, "sample 1, position (1, 2)"),
]


@pytest.mark.parametrize("command", ["train", "validate"])
@pytest.mark.parametrize("kind, content, message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, kind: str, content, message: str, command: str) -> None:
    path = tmp_path / f"d.{kind}"
    if isinstance(content, str):
        path.write_text(content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        _npz(tmp_path, **content)
    spec = {"name": kind, "path": path.name} | ({"target": "label"} if kind == "csv" else {})
    if "cannot be a feature" in message:
        spec["features"] = ["a", "label"]
    args = [command, str(config(tmp_path, spec))] + (
        ["--runs-dir", str(tmp_path / "runs")] if command == "train" else []
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert message in line, line
    assert not (tmp_path / "runs").exists()


def test_the_validation_split_is_carved_from_the_training_split_alone(tmp_path) -> None:
    """Rows numbered 0..99 (the one feature: standardizing keeps them apart): the test split is the one the
    seed gives without validation, the validation split takes round(0.25 · count) of each class from the rest."""
    x, y = np.arange(100, dtype=float)[:, None], np.arange(100) % 4
    np.savez(tmp_path / "rows.npz", x=x, y=y)
    spec = {"name": "npz", "path": "rows.npz", "test_fraction": 0.2}
    plain = prepare(load_config(config(tmp_path, spec))).data
    held = prepare(load_config(config(tmp_path, spec | {"validation_fraction": 0.25}))).data
    assert plain.x_val is None and held.x_val is not None and held.y_val is not None
    assert np.array_equal(held.y_test, plain.y_test)
    # 25 of each class: 5 to test, and of the other 20, 5 to validation
    assert np.bincount(held.y_val).tolist() == [5] * 4 and np.bincount(held.y_train).tolist() == [15] * 4
    splits = [set(a.ravel().tolist()) for a in (held.x_train, held.x_val, held.x_test)]
    assert sum(map(len, splits)) == 100 and len(set.union(*splits)) == 100  # disjoint, and every row is in one
    np.testing.assert_allclose(held.x_train.mean(), 0, atol=1e-6)  # standardized on the train split alone
    # train.max_samples=20: 20 of the 60 training rows, so ⌈20 · 20/60⌉ = 7 of the 20 validation rows, 20 test rows
    few = prepare(load_config(config(tmp_path, spec | {"validation_fraction": 0.25}), ["train.max_samples=20"])).data
    assert (len(few.y_train), len(few.y_val), len(few.y_test)) == (20, 7, 20)


def test_a_run_with_a_validation_split_records_it_after_the_test_columns(tmp_path) -> None:
    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).standard_normal((80, 3)), y=np.arange(80) % 2)
    path = config(tmp_path, {"name": "npz", "path": "rows.npz", "validation_fraction": 0.25})
    result = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip())
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[3:7] == ["test_loss", "test_accuracy", "validation_loss", "validation_accuracy"]
    shown = CliRunner().invoke(cli, ["show", str(run_dir)])
    assert shown.exit_code == 0 and "val acc" in shown.output, shown.output
    tiny = config(tmp_path, {"name": "npz", "path": "rows.npz", "validation_fraction": 0.01})
    refused = CliRunner().invoke(cli, ["validate", str(tiny)])
    assert refused.exit_code == 2
    message = "validation_fraction: 0.01 of 64 training samples leaves class 0 with 32 training and 0 validation"
    assert message in refused.output and "one validation sample" in refused.output, refused.output


def test_images_that_look_channels_last_are_read_channels_first_with_a_warning(tmp_path, caplog) -> None:
    x, y = np.random.default_rng(0).standard_normal((12, 7, 9, 3)), np.arange(12) % 2
    np.savez(tmp_path / "last.npz", x=x, y=y)
    with caplog.at_level("WARNING", logger="optrun"):
        data = prepare(load_config(config(tmp_path, {"name": "npz", "path": "last.npz"}))).data
    assert data.sample_shape == (7, 9, 3)  # as PyTorch would read it: 7 channels of 9 × 3
    assert "read as 7 channels of 9 × 3 images" in caplog.text and "x.transpose(0, 3, 1, 2)" in caplog.text
    caplog.clear()
    np.savez(tmp_path / "first.npz", x=x.transpose(0, 3, 1, 2), y=y)
    with caplog.at_level("WARNING", logger="optrun"):
        prepare(load_config(config(tmp_path, {"name": "npz", "path": "first.npz"})))
    assert "channels" not in caplog.text
