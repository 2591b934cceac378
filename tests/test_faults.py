"""Bad input tried broadly, and faults of the machine: one clear line, exit 2, nothing half-written, nothing lost."""

from __future__ import annotations

import errno
import hashlib
import threading
from datetime import datetime
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optrun.data.digits
from optrun.cli import cli
from optrun.runs import MetricsWriter, create_run_dir

GOOD = {
    "seed": 0,
    "dataset": {"name": "digits", "test_fraction": 0.2},
    "model": {"type": "mlp", "hidden": [8], "activation": "relu"},
    "train": {"epochs": 1, "batch_size": 32, "max_samples": 64},
    "optimizer": {"name": "momentum", "learning_rate": 0.01, "mu": 0.9},
}
# Where a value goes, and values that are wrong there whatever else the config says.
BAD_VALUES = {
    ("seed",): [-1, 1.5, "zero", None, [0], True],
    ("dataset", "name"): ["mnist", 3, None, ""],
    ("dataset", "test_fraction"): [0, 1, -0.2, 1.5, "0.2", None, float("inf")],
    ("model", "type"): ["cnn", 1, None],
    ("model", "hidden"): [[], [0], [-3], [1.5], "64", 64, [[8]]],
    ("model", "activation"): ["gelu", 0, None],
    ("train", "epochs"): [0, -1, 2.5, "ten", None, float("inf")],
    ("train", "batch_size"): [0, -32, "32", 12.5],
    ("optimizer", "name"): ["adamax", 1, None],
    ("optimizer", "learning_rate"): [0, -0.1, "fast", None, float("nan"), float("inf")],
    ("optimizer", "mu"): [1.0, -0.5, 2, "0.9"],
    ("optimizer", "restart"): [{}, {"every": 0}, {"when": "often"}, {"every": 5, "when": "loss"}, 3],
    ("optimizer", "schedule"): [{"name": "cosine"}, {"name": "step", "every": 0}, "cosine", {"name": "x"}],
}
SECTIONS = ["dataset", "model", "train", "optimizer"]


def _set(data: dict, path: tuple[str, ...], value) -> dict:
    out = yaml.safe_load(yaml.safe_dump(data))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@st.composite
def malformed_configs(draw) -> dict:
    """A valid config with one or more mistakes a user could make."""
    data = dict(GOOD)
    kind = draw(st.sampled_from(["bad value", "unknown key", "section not a mapping", "missing section"]))
    if kind == "bad value":
        path = draw(st.sampled_from(sorted(BAD_VALUES)))
        data = _set(data, path, draw(st.sampled_from(BAD_VALUES[path])))
    elif kind == "unknown key":
        section = draw(st.sampled_from([None, *SECTIONS]))
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
        if section is None:
            data = {**data, f"x_{key}": 1}
        else:
            data = _set(data, (section, f"x_{key}"), draw(st.integers(-5, 5)))
    elif kind == "section not a mapping":
        data = _set(data, (draw(st.sampled_from(SECTIONS)),), draw(st.sampled_from([1, "text", [1, 2], None, True])))
    else:
        missing = draw(st.sampled_from(["dataset", "optimizer"]))
        data = {k: v for k, v in data.items() if k != missing}
    if draw(st.booleans()):  # and sometimes a second, independent mistake
        path = draw(st.sampled_from(sorted(BAD_VALUES)))
        if all(isinstance(data.get(p), dict) for p in path[:-1]):
            data = _set(data, path, draw(st.sampled_from(BAD_VALUES[path])))
    return data


def _one_line_exit_2(result, runs: Path) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert not runs.exists() or not any(runs.iterdir())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=malformed_configs())
def test_any_malformed_config_is_one_line_exit_2_and_writes_nothing(tmp_path, data: dict) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    _one_line_exit_2(CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs)]), runs)


BAD_SETS = {  # a dotted key and values (as typed after '=') that are wrong for it
    "seed": ["-1", "abc", "1.5", "[", "null", "[0]", "{a: 1"],
    "dataset.name": ["-1", "abc", "[", "null", "''"],
    "dataset.test_fraction": ["0", "1", "-1", "abc", "1e999"],
    "model.hidden": ["[]", "[0]", "[1, -2]", "abc", "64"],
    "train.epochs": ["0", "-1", "abc", "1.5", "1e999"],
    "train.batch_size": ["0", "abc", "[", "null"],
    "optimizer.name": ["abc", "-1", "null", "''"],
    "optimizer.learning_rate": ["0", "-1", "abc", "1e999", "null"],
    "optimizer.mu": ["1", "-1", "abc", "[1, -2]"],
    "optimizer.nonsense": ["0", "abc", "null"],
    "seed.deeper": ["0", "abc"],
    "noequals": [""],
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pair=st.sampled_from([(k, v) for k, values in BAD_SETS.items() for v in values]))
def test_any_bad_set_value_is_one_line_exit_2_and_writes_nothing(tmp_path, pair: tuple[str, str]) -> None:
    key, value = pair
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    runs = tmp_path / "runs"
    setting = key if key == "noequals" else f"{key}={value}"
    result = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs), "--set", setting])
    _one_line_exit_2(result, runs)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_a_full_disk_is_one_clear_line_and_earlier_runs_stay_untouched(tmp_path, monkeypatch) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    runs = tmp_path / "runs"
    assert CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs), "-q"]).exit_code == 0
    before = _fingerprint(runs)
    real_write = MetricsWriter.write

    def write(self, row):
        if getattr(row, "epoch", 0) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, row)

    monkeypatch.setattr(MetricsWriter, "write", write)
    result = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .endswith("cannot write the run (No space left on device); it is incomplete")
    )
    assert {k: v for k, v in _fingerprint(runs).items() if k in before} == before


def test_a_corrupt_dataset_file_is_one_clear_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "digits.csv.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    monkeypatch.setattr(optrun.data.digits, "files", lambda package: tmp_path)
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs)])
    _one_line_exit_2(result, runs)
    assert "cannot read the bundled digits" in result.output and "reinstall optrun" in result.output
    (tmp_path / "digits.csv.gz").unlink()  # missing altogether
    result = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(runs)])
    _one_line_exit_2(result, runs)


def test_runs_started_at_the_same_second_never_share_a_directory(tmp_path) -> None:
    now, made, barrier = datetime(2026, 11, 21, 12, 0, 0), [], threading.Barrier(16)

    def start() -> None:
        barrier.wait()
        made.append(create_run_dir(tmp_path, "same", now))

    threads = [threading.Thread(target=start) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16 and all(p.parent == tmp_path and p.is_dir() for p in made)
    assert sorted(p.name for p in made)[:2] == ["same-20261121-120000", "same-20261121-120000-1"]
