"""The optrun command as a user meets it: exit codes, one-line errors, run directories."""

from __future__ import annotations

import csv
import json
import logging
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from csv_rows import metrics_without_timing

from optrun.cli import cli
from optrun.config import is_compare
from optrun.problems import NETWORK
from optrun.problems.network import COMPILING

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
GOOD = "seed: 0\ndataset: {name: digits}\ntrain: {epochs: 2}\noptimizer: {name: adam}\n"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


BAD_INPUTS = [
    ("missing file", None, [], "Error: {path}: no such file"),
    (
        "yaml syntax",
        "dataset: {name: digits\noptimizer: x\n",
        [],
        "Error: {path}: line 2, column 10: YAML syntax error",
    ),
    ("empty file", "", [], "Error: {path}: the config is empty; it needs at least 'dataset' and 'optimizer'"),
    ("comments only", "# nothing\n", [], "Error: {path}: the config is empty"),
    ("not a mapping", "- 1\n- 2\n", [], "Error: {path}: the top level must be a mapping of keys to values, got a list"),
    ("wrong type", GOOD, ["train.epochs=two"], "Error: {path}: train.epochs: must be an integer, got 'two' (str)"),
    ("float for int", GOOD, ["train.batch_size=3.5"], "Error: {path}: train.batch_size: must be an integer, got 3.5"),
    (
        "out of range",
        GOOD.replace("adam}", "momentum, mu: 1.5}"),
        [],
        "Error: {path}: optimizer.mu: must be in [0, 1), got 1.5",
    ),
    (
        "negative lr",
        GOOD,
        ["optimizer.learning_rate=-0.1"],
        "Error: {path}: optimizer.learning_rate: must be > 0, got -0.1",
    ),
    (
        "unknown optimizer",
        GOOD,
        ["optimizer.name=adamax"],
        "Error: {path}: optimizer: unknown name 'adamax'; choose from: sgd, momentum, nesterov, adagrad, rmsprop, adam",
    ),
    (
        "unknown dataset",
        GOOD,
        ["dataset.name=cifar"],
        "Error: {path}: dataset: unknown name 'cifar'; choose from: digits, fashion-mnist, mnist, mnist1d, cifar10, "
        "csv, npz, spirals, moons, circles, xor, blobs",
    ),
    (
        "a key of another model type",
        GOOD,
        ["model.conv=[{channels: 4, kernel: 3}]"],
        "Error: {path}: model.conv: only for type cnn; this one is type mlp",
    ),
    (
        "a key's beginning",
        GOOD,
        ["model.hid=[3]"],
        "Error: {path}: model.hid: unknown key (did you mean 'hidden'?)",
    ),
    (
        "unknown model",
        GOOD,
        ["model.type=rnn"],
        "Error: {path}: model: unknown type 'rnn'; choose from: logistic, mlp, cnn",
    ),
    (
        "unknown activation",
        GOOD,
        ["model.activation=gelu"],
        "Error: {path}: model.activation: must be one of relu, tanh, sigmoid or leaky_relu, got 'gelu' (str)",
    ),
    (
        "typo in a key",
        GOOD.replace("adam}", "adam, learning_rte: 0.1}"),
        [],
        "Error: {path}: optimizer.learning_rte: unknown key (did you mean 'learning_rate'?); allowed keys: name,",
    ),
    ("key of another optimizer", GOOD, ["optimizer.mu=0.9"], "Error: {path}: optimizer.mu: unknown key; allowed keys:"),
    ("unknown top-level key", GOOD + "epochs: 3\n", [], "Error: {path}: epochs: unknown key; allowed keys: name, seed"),
    ("missing optimizer", "dataset: {name: digits}\n", [], "Error: {path}: optimizer: is required"),
    (
        "missing dataset name",
        "dataset: {test_fraction: 0.3}\noptimizer: {name: sgd}\n",
        [],
        "Error: {path}: dataset: needs a 'name' key",
    ),
    ("bad list item", GOOD, ["model.hidden=[64, 0]"], "Error: {path}: model.hidden[1]: must be >= 1, got 0"),
    (
        "bad fraction",
        GOOD,
        ["dataset.test_fraction=1"],
        "Error: {path}: dataset.test_fraction: must be in (0, 1), got 1",
    ),
    (
        "duplicate key",
        GOOD + "seed: 1\n",
        [],
        "Error: {path}: line 5, column 1: YAML syntax error: duplicate key 'seed'",
    ),
    (
        "a class left out of training",
        GOOD,
        ["dataset.test_fraction=0.999"],
        "Error: {path}: dataset.test_fraction: 0.999 of 1797 samples leaves class 0 with 0 training and 178 test",
    ),
    (
        "too few samples for the classes",
        GOOD,
        ["train.max_samples=5"],
        "Error: {path}: train.max_samples: 5 leaves class ",
    ),
    (
        "one class",
        GOOD.replace("{name: digits}", "{name: blobs, n_classes: 1}"),
        [],
        "Error: {path}: dataset.n_classes: must be >= 2, got 1",
    ),
    ("set without =", GOOD, ["optimizer.mu"], "Error: --set optimizer.mu: expected KEY=VALUE with a dotted KEY"),
    ("set through a scalar", GOOD, ["seed.x=1"], "Error: --set seed.x=1: seed is not a mapping, so it has no key 'x'"),
]


@pytest.mark.parametrize("text, overrides, expected", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(runner, tmp_path, text, overrides, expected) -> None:
    path = tmp_path / "my.yaml" if text is None else write(tmp_path, text)
    runs = tmp_path / "runs"
    args = ["train", path, "--runs-dir", runs] + [a for o in overrides for a in ("--set", o)]
    result = invoke(runner, *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(expected.format(path=path)), lines[0]
    assert "Traceback" not in result.output
    assert not runs.exists() or not any(runs.iterdir())


def test_a_whole_number_written_as_a_float_is_an_integer(runner, tmp_path) -> None:
    """YAML reads 1e3 as 1000.0: an integer key takes it as 1000 (and 12.5 is still refused, above)."""
    config = write(tmp_path, GOOD.replace("train: {epochs: 2}", "train: {epochs: 2.0}"))
    args = ("--set", "train.batch_size=1e3", "--set", "train.max_samples=3.0e2", "--set", "model.hidden=[1.6e1]")
    result = invoke(runner, "train", config, "--runs-dir", tmp_path / "runs", "-q", *args)
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((Path(result.output.strip()) / "config.yaml").read_text())
    assert resolved["train"] == {**resolved["train"], "epochs": 2, "batch_size": 1000, "max_samples": 300}
    assert resolved["model"]["hidden"] == [16]
    assert all(type(v) is int for v in (*resolved["train"].values(), *resolved["model"]["hidden"]) if v is not None)
    compare = write(tmp_path, "dataset: {name: digits}\nseeds: [1.0, 2.0]\n", "cmp.yaml")
    assert invoke(runner, "validate", compare).output.startswith(f"ok: {compare} (compare 6 optimizers x 2 seeds")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["report"], "Error: Missing argument 'RUN_DIR...'; see 'optrun report --help'"),
        (["show"], "Error: Missing argument 'RUN_DIR'; see 'optrun show --help'"),
        (["train", "--foo"], "Error: No such option '--foo'; see 'optrun train --help'"),
        (["compare", "x", "--jobs", "0"], "Error: Invalid value for '--jobs' / '-j': 0 is not in the range x>=1; "),
        (["nosuch"], "Error: No such command 'nosuch'; see 'optrun --help'"),
    ],
)
def test_a_usage_error_is_one_line_exit_2(runner, args: list[str], expected: str) -> None:
    result = runner.invoke(cli, args, prog_name="optrun")
    assert result.exit_code == 2 and result.output.startswith(expected), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_train_writes_a_complete_run_directory(runner, tmp_path) -> None:
    result = invoke(runner, "train", write(tmp_path, GOOD), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("my-") and f"run directory: {run_dir}" in result.output
    with (run_dir / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == NETWORK.columns
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[0]["seconds"]) == 0 and all(float(r["seconds"]) > 0 for r in rows[1:])
    assert all(0 <= float(r[c]) <= 1 for r in rows for c in ("train_accuracy", "test_accuracy"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["seed"] == 0
    assert summary["final"]["test_accuracy"] == float(rows[-1]["test_accuracy"])
    assert set(summary["versions"]) == {"optrun", "numpy", "python"}
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["optimizer"] == {
        "name": "adam",
        "learning_rate": 0.01,
        "schedule": None,
        "clip_norm": None,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "amsgrad": False,
    }
    assert resolved["model"]["init"] == "he" and resolved["name"] == "my"


def test_resolved_config_reproduces_the_run_and_directories_never_collide(runner, tmp_path) -> None:
    runs = tmp_path / "runs"
    assert invoke(runner, "train", write(tmp_path, GOOD), "--runs-dir", runs, "-q").exit_code == 0
    (first,) = runs.iterdir()
    result = invoke(runner, "train", first / "config.yaml", "--runs-dir", runs, "-q")
    assert result.exit_code == 0
    second = Path(result.output.strip())
    assert second != first and second.parent == runs and len(list(runs.iterdir())) == 2
    assert metrics_without_timing(first) == metrics_without_timing(second)


def test_quiet_prints_only_the_path(runner, tmp_path) -> None:
    result = invoke(runner, "train", write(tmp_path, GOOD), "--runs-dir", tmp_path / "r", "--quiet")
    assert result.exit_code == 0
    assert result.output.strip() == str(next((tmp_path / "r").iterdir()))


def test_plain_lines_when_not_a_terminal(runner, tmp_path) -> None:
    result = invoke(runner, "train", write(tmp_path, GOOD), "--runs-dir", tmp_path / "r")
    lines = result.output.splitlines()
    assert lines[0].startswith("epoch 0/2  loss ") and lines[2].startswith("epoch 2/2  loss ")
    assert "\x1b[" not in result.output  # no terminal escapes in logs


def test_a_compile_before_the_first_epoch_is_told_unless_quiet_or_cached(runner, tmp_path, monkeypatch) -> None:
    from optrun import compiled_epoch

    big = GOOD.replace("{name: digits}", "{name: blobs, n_samples: 100, n_features: 400, n_classes: 5}")
    config = write(tmp_path, big + "model: {hidden: [256], activation: relu}\n")  # 104k parameters: compiled
    monkeypatch.setattr(compiled_epoch, "cached", lambda: False)  # as on a machine where it never ran
    lines = invoke(runner, "train", config, "--runs-dir", tmp_path / "r").output.splitlines()
    assert lines[0] == COMPILING and lines[1].startswith("epoch 0/2  loss ")
    assert COMPILING not in invoke(runner, "train", config, "--runs-dir", tmp_path / "r", "--quiet").output
    monkeypatch.undo()
    assert compiled_epoch.cached()  # numba's index is beside the module now
    assert COMPILING not in invoke(runner, "train", config, "--runs-dir", tmp_path / "r").output
    assert logging.getLogger("optrun").level == logging.NOTSET  # a notebook's logging is left as it was


def test_set_overrides_and_smoke(runner, tmp_path) -> None:
    config = write(tmp_path, GOOD)
    result = invoke(
        runner,
        "train",
        config,
        "--runs-dir",
        tmp_path / "r",
        "-q",
        "--smoke",
        "--set",
        "optimizer.name=momentum",
        "--set",
        "optimizer.mu=0.5",
        "--set",
        "train.epochs=9",
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip())
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["optimizer"]["mu"] == 0.5 and resolved["optimizer"]["name"] == "momentum"
    assert resolved["train"]["epochs"] == 1 and resolved["train"]["max_samples"] == 256
    assert len(metrics_without_timing(run_dir)) == 3  # header, epoch 0, epoch 1


def test_divergence_exits_3_and_keeps_the_rows_before_it(runner, tmp_path) -> None:
    config = write(tmp_path, GOOD.replace("{name: adam}", "{name: sgd, learning_rate: 1.0e+6}").replace("2}", "5}"))
    result = invoke(runner, "train", config, "--runs-dir", tmp_path / "r")
    assert result.exit_code == 3, result.output
    assert "diverged" in result.output and "Traceback" not in result.output and "Warning" not in result.output
    run_dir = next((tmp_path / "r").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["reason"]
    rows = metrics_without_timing(run_dir)[1:]
    assert rows[0][0] == "0" and len(rows) == summary["epochs"] + 1


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_smoke_runs(runner, tmp_path, config: Path) -> None:
    result = invoke(runner, "validate", config)
    assert result.exit_code == 0 and result.output.startswith(f"ok: {config}")
    data = yaml.safe_load(config.read_text())
    command = (
        "suite" if "problems" in data else "tune" if "tune" in data else "compare" if is_compare(data) else "train"
    )
    result = invoke(runner, command, config, "--smoke", "--runs-dir", tmp_path, "-q")
    assert result.exit_code == 0, result.output


def test_validate_reports_every_bad_file(runner, tmp_path) -> None:
    good, bad = write(tmp_path, GOOD, "good.yaml"), write(tmp_path, "seed: -1\n", "bad.yaml")
    split = write(tmp_path, GOOD.replace("{name: digits}", "{name: spirals, test_fraction: 0.999}"), "split.yaml")
    cut = write(tmp_path, "dataset: {name: digits}\ntrain: {max_samples: 1}\noptimizers: {adam: null}\n", "cut.yaml")
    result = runner.invoke(cli, ["validate", str(good), str(bad), str(tmp_path / "none.yaml"), str(split), str(cut)])
    assert result.exit_code == 2
    assert f"ok: {good} (adam on digits, mlp, 2 epochs; about " in result.output
    assert f"error: {bad}: seed: must be >= 0, got -1" in result.output
    assert f"error: {tmp_path / 'none.yaml'}: no such file" in result.output
    # what train would refuse once it made the data, validate refuses too (it makes small data sets)
    assert f"error: {split}: dataset.test_fraction: 0.999 of 600 samples leaves class 0 with 0 " in result.output
    assert f"error: {cut}: train.max_samples: 1 leaves class 1 with 0 training and 0 test samples" in result.output
    one = write(tmp_path, "dataset: {name: digits}\noptimizers: {adam: null}\n", "one.yaml")
    assert "(compare 1 optimizer x 1 seed on digits" in runner.invoke(cli, ["validate", str(one)]).output


def test_optimizers_lists_every_rule_and_default(runner) -> None:
    result = invoke(runner, "optimizers")
    assert result.exit_code == 0
    for text in (
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "decay_rate = 0.9",
        "beta2 = 0.999",
        "nesterov = false",
        "c ← c + g²",
        "θ ← θ − (mu·v + lr·g)",
    ):
        assert text in result.output, text


def test_every_command_has_help(runner) -> None:
    for name, command in cli.commands.items():
        assert command.help, name
        assert invoke(runner, name, "--help").exit_code == 0


def test_runs_dir_that_cannot_be_created_is_a_clear_error(runner, tmp_path) -> None:
    blocker = write(tmp_path, "x", "blocker")
    config = write(tmp_path, GOOD)
    for runs_dir, problem in [
        (blocker, "is a file"),
        (blocker / "runs", f"cannot be made: {blocker} is a file"),
    ]:
        result = invoke(runner, "train", config, "--runs-dir", runs_dir)
        assert result.exit_code == 2
        assert result.output == f"Error: {runs_dir}: {problem}, not a folder in which to create run directories\n"
    assert np.all([p.name in ("blocker", "my.yaml") for p in tmp_path.iterdir()])


def test_scheduled_and_restarted_momentum_adds_mu_and_restarts_columns(runner, tmp_path) -> None:
    text = GOOD.replace(
        "optimizer: {name: adam}",
        "optimizer: {name: momentum, learning_rate: 0.05, restart: {every: 10},\n"
        "            mu_schedule: {name: linear, start: 0.5, end: 0.9, steps: 40},\n"
        "            schedule: {name: step, every: 45, factor: 0.5}}",
    )
    result = invoke(
        runner, "train", write(tmp_path, text), "--runs-dir", tmp_path / "r", "-q", "--set", "train.max_samples=400"
    )
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip())
    with (run_dir / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [*NETWORK.columns, "mu", "restarts"]
    # 13 steps per epoch on the 400 train samples; after epoch 1 (step 13) and 2 (step 26):
    # mu = 0.5 + 0.4·min((t − 1)/40, 1), and restarts happened before steps 11 and 21
    assert [float(r["mu"]) for r in rows] == pytest.approx([0.5, 0.5 + 0.4 * 12 / 40, 0.5 + 0.4 * 25 / 40], rel=1e-15)
    assert [int(r["restarts"]) for r in rows] == [0, 1, 2]
    assert [float(r["learning_rate"]) for r in rows] == [0.05, 0.05, 0.05]  # the step schedule halves at step 46
    shown = invoke(runner, "show", run_dir).output
    assert "mu" in shown and "restarts" in shown
    again = invoke(runner, "train", run_dir / "config.yaml", "--runs-dir", tmp_path / "r", "-q")
    assert metrics_without_timing(Path(again.output.strip())) == metrics_without_timing(run_dir)


def test_a_reader_that_goes_away_leaves_the_run_to_finish(tmp_path) -> None:
    """``optrun train ... | head -1``: the pipe closes after the first line; the run used to die of it (exit 1,
    a checkpoint and no summary.json), and now finishes with its results on disk."""
    config = write(tmp_path, GOOD.replace("epochs: 2", "epochs: 30"))
    process = subprocess.Popen(
        [sys.executable, "-m", "optrun", "train", str(config), "--runs-dir", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().startswith("epoch  0/30")
    process.stdout.close()  # as head does once it has its line
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert len(metrics_without_timing(run_dir)) == 1 + 31


def test_smoke_keeps_a_sample_of_every_class_where_there_are_more_classes_than_256(runner, tmp_path) -> None:
    """--smoke's 256 samples cannot hold one of each of 300 classes: it takes one of each instead of refusing a
    config that trains (the user never set max_samples)."""
    config = write(tmp_path, "dataset: {name: blobs, n_samples: 3000, n_classes: 300, n_features: 5}\n"
                   "optimizer: {name: sgd}\n")  # fmt: skip
    result = invoke(runner, "train", config, "--smoke", "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load((Path(result.output.strip()) / "config.yaml").read_text())
    assert resolved["train"]["max_samples"] == 300 and resolved["train"]["epochs"] == 1


def test_show_thins_a_long_table_and_says_so(runner, tmp_path) -> None:
    config = write(
        tmp_path, "objective: {name: rosenbrock}\ntrain: {steps: 3000}\noptimizer: {name: sgd, learning_rate: 1.0e-4}\n"
    )
    run_dir = invoke(runner, "train", config, "--runs-dir", tmp_path / "runs", "-q").output.strip()
    shown = invoke(runner, "show", run_dir).output
    assert "per-step metrics: every 4th step (metrics.csv has all 3001 rows)" in shown  # ceil(3001 / 999)
    assert len(shown.splitlines()) < 1100


@pytest.mark.parametrize("seconds", [0.2, 0.35])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, seconds: float) -> None:
    """Within its first half second the command is still importing numpy, pydantic and matplotlib's friends:
    a Ctrl-C there printed a traceback from the middle of an import."""
    config = write(tmp_path, GOOD.replace("epochs: 2", "epochs: 500"))  # still training, if imported by then
    command = [sys.executable, "-m", "optrun", "train", str(config), "--runs-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "interrupted by SIGINT" in err.splitlines()[0], err  # while importing; or a run stopped as it began


def test_a_program_that_imports_optrun_keeps_pythons_ctrl_c() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # optrun is imported by now


def test_a_ctrl_c_after_the_run_is_recorded_leaves_its_status_and_exit_code(runner, tmp_path, monkeypatch) -> None:
    """A stop signal that lands while the finished run is being told (its table, its result line) cuts the
    telling short, not the run: the exit code is the run's (0 for completed), as summary.json says."""

    def interrupted(self, summary):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(NETWORK), "result", interrupted)
    result = runner.invoke(cli, ["train", str(write(tmp_path, GOOD)), "--runs-dir", str(tmp_path / "r")])
    [path] = (tmp_path / "r").iterdir()
    assert result.exit_code == 0, result.output
    assert json.loads((path / "summary.json").read_text())["status"] == "completed"
    assert result.output.strip().endswith(f"{path}: completed; interrupted while telling it")


CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.mark.parametrize(
    "command",
    [
        ["train", CONFIGS / "quickstart.yaml"],
        ["compare", CONFIGS / "compare-digits.yaml", "--seeds", "1", "--only", "sgd,adam"],
        ["tune", CONFIGS / "tune-defaults.yaml", "--smoke"],
    ],
    ids=["train", "compare", "tune"],
)
def test_in_a_terminal_the_live_progress_shows_and_the_command_ends(tmp_path, command) -> None:
    """On a (pseudo-)terminal the progress is a live bar, and rich stands in for stdout meanwhile: optrun's stdout,
    written through that stand-in, once wrote to itself forever (the command hung before its first epoch)."""
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.execv(sys.executable, [sys.executable, "-m", "optrun", *map(str, command), "--runs-dir", str(tmp_path)])
    output, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 1)[0]:
            try:
                chunk = os.read(terminal, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            output += chunk
    else:
        os.kill(pid, signal.SIGKILL)
    status = os.waitpid(pid, 0)[1]
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, output[-3000:].decode(errors="replace")
    assert b"directory: " in output and b"\x1b[" in output  # it ended, and drew on the terminal
