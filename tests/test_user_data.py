"""A user's own data, from CSV and NPZ files the tests write: what is read back, and every way a file can be bad,
each one line and exit 2 with nothing written."""

from __future__ import annotations

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
    assert spec.size == (30, 2, 2)
    data = prepare(load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label"}))).data
    assert (data.n_features, data.n_classes, len(data.y_train) + len(data.y_test)) == (2, 2, 30)
    only_a = load_config(config(tmp_path, {"name": "csv", "path": "t.csv", "target": "label", "features": ["a"]}))
    assert csv_set(only_a.dataset, np.random.default_rng(0), np.dtype(np.float32))[0].shape == (30, 1)


def test_an_npz_file_whole_or_split_and_samples_with_a_shape(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 2, 3)), np.arange(40) % 4
    np.savez(tmp_path / "whole.npz", x=x, y=y)
    whole = prepare(load_config(config(tmp_path, {"name": "npz", "path": "whole.npz", "test_fraction": 0.2}))).data
    assert (whole.n_features, whole.n_classes, len(whole.y_train), len(whole.y_test)) == (6, 4, 32, 8)
    np.savez(tmp_path / "split.npz", x_train=x[:30], y_train=y[:30] + 5, x_test=x[30:], y_test=y[30:] + 5)
    split = prepare(load_config(config(tmp_path, {"name": "npz", "path": "split.npz"}))).data
    assert np.array_equal(split.y_train, y[:30]) and np.array_equal(split.y_test, y[30:])  # 5..8 become 0..3
    mean, std = x[:30].reshape(30, 6).mean(axis=0), x[:30].reshape(30, 6).std(axis=0)
    np.testing.assert_allclose(split.x_test, (x[30:].reshape(10, 6) - mean) / std, rtol=1e-5, atol=1e-5)


def _npz(folder: Path, **arrays) -> None:
    np.savez(folder / "d.npz", **arrays)


X, Y = np.zeros((8, 2)), np.arange(8) % 2
BAD = [
    ("csv", "a,b,label\n1,2,x\n3,oops,y\n", "d.csv: line 3, column 'b': 'oops' is not a number"),
    ("csv", "a,b,kind\n1,2,x\n3,4,y\n", "d.csv: no column 'label' (target); the columns are: a, b, kind"),
    ("csv", "a,b,label\n1,nan,x\n3,4,y\n", "d.csv: line 2, column 'b': nan is not finite"),
    ("csv", "a,b,label\n1,2,x\n3,4,x\n", "d.csv: column 'label': every label is 'x'; a classifier needs at least two"),
    ("csv", "a,b,label\n1,2,x\n3,4\n", "d.csv: "),
    ("csv", "a,b,label\n", "d.csv: no rows under its header"),
    ("csv", b"\xff\xfe\x00binary", "d.csv: not a text file (UTF-8)"),
    ("npz", {"x": X}, "d.npz: no array 'y' (it holds x); give x and y, or x_train, y_train, x_test, y_test"),
    ("npz", {"x_train": X, "y_train": Y, "x_test": X}, "d.npz: no array 'y_test' (it holds x_train, y_train, x_test)"),
    ("npz", {"x": X, "y": Y[:5]}, "d.npz: x and y: 8 samples but 5 labels"),
    ("npz", {"x": np.full((8, 2), np.inf), "y": Y}, "d.npz: x and y: NaN or infinite values, the first in sample 0"),
    ("npz", {"x": np.array([{"code": 1}] * 8, dtype=object), "y": Y}, "d.npz: not a readable .npz file (Object"),
    ("npz", b"PK not really a zip", "d.npz: not a readable .npz file"),
    ("npz", None, "dataset: no such file: "),
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
    args = [command, str(config(tmp_path, spec))] + (
        ["--runs-dir", str(tmp_path / "runs")] if command == "train" else []
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line, line
    assert message in line, line
    assert not (tmp_path / "runs").exists()
