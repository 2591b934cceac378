"""Nothing lost: interrupted runs keep their rows, and resuming gives the metrics of a run never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from csv_rows import comparison_without_timing, metrics_without_timing

import optrun.compare
from optrun import checkpoints
from optrun.checkpoints import CheckpointError
from optrun.cli import cli
from optrun.compare import compare
from optrun.config import CompareConfig, parse_config
from optrun.problems import network
from optrun.runs import RunDirError, RunInterrupted, resume, run

SPECS = [
    {"name": "adam", "amsgrad": True},  # t, m, s and s_max must all come back
    {
        "name": "momentum",
        "mu_schedule": {"name": "linear", "start": 0.5, "end": 0.9, "steps": 60},
        "restart": {"when": "loss"},
        "schedule": {"name": "cosine", "steps": 200, "warmup": 10},
    },
]


def config(optimizer: dict, epochs: int = 6):
    data = {"name": "r", "dataset": {"name": "digits"}, "train": {"epochs": epochs, "max_samples": 400}}
    return parse_config({**data, "optimizer": optimizer})


def interrupt_at(epoch: int):
    def on_epoch(row) -> None:
        if row.epoch == epoch:
            raise KeyboardInterrupt

    return on_epoch


def test_a_run_stopped_right_after_epoch_0_resumes_without_a_second_row_0(tmp_path) -> None:
    """Its checkpoint is at epoch 0, as a new run's would be: resume used to evaluate and write row 0 again."""
    c = config({"name": "adam"}, epochs=3)
    whole = run(c, tmp_path / "whole").path
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path / "cut", interrupt_at(0))
    assert (stopped.value.path / checkpoints.NAME).is_file()
    resume(stopped.value.path)
    assert metrics_without_timing(stopped.value.path) == metrics_without_timing(whole)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s["name"])
def test_interrupt_then_resume_equals_an_uninterrupted_run(tmp_path, spec: dict) -> None:
    c = config(spec)
    whole = run(c, tmp_path / "whole").path
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path / "cut", interrupt_at(3))
    cut = stopped.value.path
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs"] == 3
    assert summary["reason"] == "interrupted by SIGINT after epoch 3"
    assert len(metrics_without_timing(cut)) == 1 + 4 and (cut / checkpoints.NAME).is_file()
    resumed = resume(cut)
    assert resumed.summary["status"] == "completed" and resumed.summary["epochs"] == 6
    assert metrics_without_timing(cut) == metrics_without_timing(whole)
    assert not (cut / checkpoints.NAME).exists()  # a finished run keeps no checkpoint


def test_rows_written_after_the_last_checkpoint_are_trained_again(tmp_path, monkeypatch) -> None:
    c = config({"name": "rmsprop"})
    whole = run(c, tmp_path / "whole").path
    real_save = checkpoints.save

    def save(exp, path):
        if exp.epoch == 4:  # row 4 is written, its checkpoint never is
            raise KeyboardInterrupt
        return real_save(exp, path)

    monkeypatch.setattr(checkpoints, "save", save)
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path / "cut")
    monkeypatch.setattr(checkpoints, "save", real_save)
    cut = stopped.value.path
    assert [r[0] for r in metrics_without_timing(cut)[1:]] == ["0", "1", "2", "3", "4"]
    resume(cut)
    assert metrics_without_timing(cut) == metrics_without_timing(whole)


@pytest.mark.parametrize(
    ("when", "kept"),
    [("evaluating", 2), ("writing", 3), ("before", None)],
    ids=["while epoch 3 is evaluated", "after row 3, before its checkpoint", "before epoch 0"],
)
def test_the_interrupt_message_and_summary_name_the_last_row_kept(tmp_path, monkeypatch, when: str, kept) -> None:
    """Whenever the signal comes, the message, summary.json and metrics.csv agree on the last epoch kept."""
    real_evaluate, real_save = network._evaluate, checkpoints.save

    def evaluate(exp, epoch, seconds):
        if (when, epoch) in (("evaluating", 3), ("before", 0)):
            raise KeyboardInterrupt  # epoch 3 is trained (exp.epoch == 3), its row never written
        return real_evaluate(exp, epoch, seconds)

    def save(exp, path):
        if when == "writing" and exp.epoch == 3:
            raise KeyboardInterrupt
        return real_save(exp, path)

    monkeypatch.setattr(network, "_evaluate", evaluate)
    monkeypatch.setattr(checkpoints, "save", save)
    with pytest.raises(RunInterrupted) as stopped:
        run(config({"name": "sgd"}), tmp_path)
    cut = stopped.value.path
    summary = json.loads((cut / "summary.json").read_text())
    rows = metrics_without_timing(cut)[1:]
    progress = "before the first evaluation" if kept is None else f"after epoch {kept}"
    assert str(stopped.value) == f"{cut}: interrupted by SIGINT {progress}"
    assert summary["reason"] == f"interrupted by SIGINT {progress}"
    assert summary["epochs"] == (kept or 0) and len(rows) == (0 if kept is None else kept + 1)


@pytest.mark.parametrize("when", ["making the directory", "writing config.yaml"])
def test_a_ctrl_c_while_the_run_directory_is_made_leaves_it_whole_and_resumable(tmp_path, monkeypatch, when) -> None:
    """The signal waits until the directory holds its config, then stops the run as one during epoch 0 would:
    never an empty folder, never a traceback from the middle of writing config.yaml."""
    import optrun.runs

    real = optrun.runs.create_run_dir if when == "making the directory" else optrun.runs.dump_yaml

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # a Python handler would raise KeyboardInterrupt right here
        return real(*args, **kwargs)

    target = "create_run_dir" if when == "making the directory" else "dump_yaml"
    monkeypatch.setattr(optrun.runs, target, interrupted)
    with pytest.raises(RunInterrupted) as stopped:
        run(config({"name": "sgd"}, epochs=2), tmp_path)
    monkeypatch.undo()
    cut = stopped.value.path
    assert str(stopped.value) == f"{cut}: interrupted by SIGINT before the first evaluation"
    assert yaml.safe_load((cut / "config.yaml").read_text())["optimizer"]["name"] == "sgd"
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    assert resume(cut).result.status == "completed"


def test_resume_refuses_what_it_cannot_continue(tmp_path) -> None:
    c = config({"name": "sgd"}, epochs=3)
    done = run(c, tmp_path).path
    with pytest.raises(RunDirError, match="the run is already completed; there is nothing to resume"):
        resume(done)
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path, interrupt_at(1))
    cut = stopped.value.path
    good = (cut / checkpoints.NAME).read_bytes()
    (cut / checkpoints.NAME).write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    with pytest.raises(CheckpointError, match=r"damaged|corrupt"):
        resume(cut)
    (cut / checkpoints.NAME).unlink()
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        resume(cut)


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "r", "objective": {"name": "rosenbrock"}, "train": {"steps": 60}, "optimizer": {"name": "adam"}},
        {"name": "r", "dataset": {"name": "digits"}, "train": {"epochs": 3}, "optimizer": {"name": "sgd"}},
    ],
    ids=["an objective's run", "a run stopped before its first evaluation"],
)
def test_a_run_with_nothing_to_continue_from_resumes_from_its_start(tmp_path, monkeypatch, spec: dict) -> None:
    """Its interrupt message says 'Resume with: optrun train --resume DIR': that must work though there is no
    checkpoint (an objective's runs keep none; a run stopped before epoch 0's row has none yet)."""
    c = parse_config(spec)
    whole = run(c, tmp_path / "whole").path
    if "objective" in spec:
        stop = _interrupt_at_step(20)
    else:
        stop = None
        monkeypatch.setattr(network, "_evaluate", _interrupt_before_any_row)
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path / "cut", stop)
    monkeypatch.undo()
    cut = stopped.value.path
    assert not (cut / checkpoints.NAME).exists()
    result = CliRunner().invoke(cli, ["train", "--resume", str(cut), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((cut / "summary.json").read_text())["status"] == "completed"
    if "objective" in spec:  # no timing column
        assert (cut / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    else:
        assert metrics_without_timing(cut) == metrics_without_timing(whole)


def _interrupt_before_any_row(exp, epoch, seconds):
    raise KeyboardInterrupt  # while epoch 0 is evaluated


def _interrupt_at_step(step: int):
    def on_step(row) -> None:
        if row.step == step:
            raise KeyboardInterrupt

    return on_step


def test_a_run_whose_metrics_are_gone_is_refused_with_one_line(tmp_path) -> None:
    with pytest.raises(RunInterrupted) as stopped:
        run(config({"name": "sgd"}), tmp_path, interrupt_at(2))
    (stopped.value.path / "metrics.csv").unlink()
    result = CliRunner().invoke(cli, ["train", "--resume", str(stopped.value.path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == (
        f"Error: {stopped.value.path / 'metrics.csv'}: cannot read the run's metrics (No such file or directory)"
    )


def test_missing_rows_are_named_when_resume_refuses(tmp_path) -> None:
    with pytest.raises(RunInterrupted) as stopped:
        run(config({"name": "sgd"}), tmp_path, interrupt_at(4))
    metrics = stopped.value.path / "metrics.csv"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:3]))  # header, epochs 0 and 1
    with pytest.raises(RunDirError, match=r"the rows of epochs 2\.\.4 are missing; cannot resume$"):
        resume(stopped.value.path)


def test_compare_resume_takes_only_an_unfinished_comparison(tmp_path) -> None:
    """A train run's directory used to be filled with a whole comparison, its summary.json replaced."""
    train_dir = run(config({"name": "sgd"}, epochs=1), tmp_path / "t").path
    before = (train_dir / "summary.json").read_bytes()
    path = tmp_path / "cmp.yaml"
    path.write_text(COMPARE.replace("epochs: 3", "epochs: 1"))
    done = CliRunner().invoke(cli, ["compare", str(path), "--runs-dir", str(tmp_path / "c"), "-q", "-j", "1"])
    compare_dir = Path(done.output.strip())
    run_of_comparison = compare_dir / "adam" / "seed-0"
    for command, target, problem in [
        ("compare", train_dir, "a run directory, not a compare directory"),  # finished: no hint to resume it
        ("compare", compare_dir, "the comparison is already completed; there is nothing to resume"),
        ("train", compare_dir, "a compare directory, not a run directory; finish it with optrun compare --resume"),
        (
            "train",
            run_of_comparison,
            f"a run of the comparison {compare_dir}, which keeps no checkpoint; "
            f"finish the comparison with optrun compare --resume {compare_dir}",
        ),
    ]:
        result = CliRunner().invoke(cli, [command, "--resume", str(target)])
        assert result.exit_code == 2 and result.output.strip() == f"Error: {target}: {problem}"
    assert (train_dir / "summary.json").read_bytes() == before and not (train_dir / "sgd").exists()


def test_a_checkpoint_that_fails_its_checksum_is_refused_by_the_cli(tmp_path) -> None:
    c = config({"name": "sgd"}, epochs=3)
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path, interrupt_at(1))
    cut = stopped.value.path
    saved = cut / checkpoints.NAME
    # rewrite one parameter without updating the checksum: the file is a valid npz, the state is not what was saved
    with np.load(saved) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["params"] = arrays["params"] + np.float32(1)
    np.savez(saved, **arrays)
    result = CliRunner().invoke(cli, ["train", "--resume", str(cut)])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {saved}: the checkpoint fails its checksum; it is corrupt"


def test_a_run_whose_data_file_changed_is_not_resumed(tmp_path) -> None:
    """A user's file replaced between the interruption and the resume: resuming would train on other data."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 3)), np.arange(60) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    c = parse_config({"dataset": {"name": "npz", "path": str(tmp_path / "d.npz")}, "optimizer": {"name": "sgd"}})
    with pytest.raises(RunInterrupted) as stopped:
        run(c, tmp_path / "runs", interrupt_at(1))
    x[7, 1] += 1.0  # one value of one sample
    np.savez(tmp_path / "d.npz", x=x, y=y)
    result = CliRunner().invoke(cli, ["train", "--resume", str(stopped.value.path)])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and "dataset npz is not the data the run began with (its files changed since)" in line


SLOW = """name: slow
dataset: {name: blobs, n_samples: 40000, n_features: 300, n_classes: 5}
model: {hidden: [128, 64]}
train: {epochs: 8, batch_size: 64}
optimizer: {name: adam, learning_rate: 0.001}
"""


@pytest.mark.parametrize(
    "sig, code",
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_signal_stops_the_command_cleanly_and_resume_finishes_it(tmp_path, sig, code) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(SLOW)
    command = [sys.executable, "-m", "optrun", "train", str(path), "--runs-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # wait for the second epoch's line, then signal
        if line.startswith("epoch 2/8"):
            break
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    assert "Traceback" not in err and err.startswith(f"interrupted by {sig.name} after epoch ")
    run_dir = next((tmp_path / "runs").iterdir())
    assert f"Resume with: optrun train --resume {run_dir}" in err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    rows = metrics_without_timing(run_dir)
    assert all(len(r) == len(rows[0]) for r in rows)  # no torn row
    result = CliRunner().invoke(cli, ["train", "--resume", str(run_dir), "-q"])
    assert result.exit_code == 0, result.output
    whole = CliRunner().invoke(cli, ["train", str(path), "--runs-dir", str(tmp_path / "whole"), "-q"])
    assert metrics_without_timing(run_dir) == metrics_without_timing(Path(whole.output.strip()))


def test_resume_and_config_exclude_each_other_and_a_bad_resume_dir_is_named(tmp_path) -> None:
    runner = CliRunner()
    (tmp_path / "a-file").write_text("x")
    for args, message in [
        (["train"], "missing CONFIG: give a config file to train, or --resume RUN_DIR to continue"),
        (["compare"], "missing CONFIG: give a config file to compare, or --resume COMPARE_DIR to continue"),
        (["train", "c.yaml", "--resume", str(tmp_path)], "give either a CONFIG or --resume RUN_DIR, not both"),
        (["train", "--resume", str(tmp_path)], f"{tmp_path}: not a run directory (no config.yaml)"),
        (["train", "--resume", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such directory"),
        (["train", "--resume", str(tmp_path / "a-file")], f"{tmp_path / 'a-file'}: is a file, not a run directory"),
        (["compare", "--resume", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such directory"),
    ]:
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and result.output.strip() == f"Error: {message}"


# --- comparisons -----------------------------------------------------------------------------------------------------

COMPARE = """name: cmp
seeds: 2
dataset: {name: digits}
train: {epochs: 3, max_samples: 300}
optimizers: {sgd: null, adam: null, rmsprop: null}
"""


def test_an_interrupted_comparison_keeps_its_runs_and_resume_finishes_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / "cmp.yaml"
    path.write_text(COMPARE)
    whole = CliRunner().invoke(cli, ["compare", str(path), "--runs-dir", str(tmp_path / "whole"), "-q", "-j", "1"])
    real_fit = optrun.compare.fit

    def fit(exp, on_epoch=None):  # Ctrl-C during the second epoch of the fourth run
        if exp.config.optimizer.name == "sgd" and exp.config.seed == 1:

            def stop(row):
                on_epoch(row)
                if row.epoch == 1:
                    raise KeyboardInterrupt

            return real_fit(exp, stop)
        return real_fit(exp, on_epoch)

    monkeypatch.setattr(optrun.compare, "fit", fit)
    config = parse_config(yaml.safe_load(COMPARE), schema=CompareConfig)
    with pytest.raises(RunInterrupted) as stopped:
        compare(config, tmp_path / "cut")
    monkeypatch.setattr(optrun.compare, "fit", real_fit)
    cut = stopped.value.path
    assert stopped.value.progress == "after 3 of 6 runs" and stopped.value.resume_command == f"compare --resume {cut}"
    summary = json.loads((cut / "summary.json").read_text())
    assert (summary["status"], summary["runs_finished"], summary["runs_planned"]) == ("interrupted", 3, 6)
    in_flight = json.loads((cut / "sgd" / "seed-1" / "summary.json").read_text())
    assert in_flight["status"] == "interrupted" and in_flight["epochs"] == 1  # its finished epochs are kept
    assert not (cut / "comparison.csv").exists()

    result = CliRunner().invoke(cli, ["compare", "--resume", str(cut), "-q", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((cut / "summary.json").read_text())["status"] == "completed"
    assert comparison_without_timing(cut) == comparison_without_timing(Path(whole.output.strip()))
    for run_dir in cut.glob("*/seed-*"):
        twin = Path(whole.output.strip()) / run_dir.relative_to(cut)
        assert metrics_without_timing(run_dir) == metrics_without_timing(twin), run_dir


def test_resume_refuses_a_comparison_whose_config_changed_under_its_finished_runs(tmp_path, monkeypatch) -> None:
    """Edited between the interrupt and --resume, config.yaml would have the missing runs trained otherwise than
    the finished ones, averaged in one row."""
    real_fit = optrun.compare.fit

    def fit(exp, on_epoch=None):
        if exp.config.seed == 1:
            raise KeyboardInterrupt  # after the three runs of seed 0
        return real_fit(exp, on_epoch)

    monkeypatch.setattr(optrun.compare, "fit", fit)
    with pytest.raises(RunInterrupted) as stopped:
        compare(parse_config(yaml.safe_load(COMPARE), schema=CompareConfig), tmp_path / "cut")
    monkeypatch.undo()
    cut = stopped.value.path
    settings = yaml.safe_load((cut / "config.yaml").read_text())
    settings["train"]["epochs"] = 5
    (cut / "config.yaml").write_text(yaml.safe_dump(settings))
    before = {p: p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, ["compare", "--resume", str(cut), "-j", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"Error: {cut}: adam/seed-0 was trained with train.epochs: 3, and its config.yaml now says 5; "
        "put config.yaml back, or compare anew"
    )
    assert {p: p.read_bytes() for p in cut.rglob("*") if p.is_file()} == before


def test_ctrl_c_after_the_runs_exits_130_with_one_line_and_resume_writes_the_comparison(tmp_path, monkeypatch):
    """A Ctrl-C while the comparison is written (its plots take a second) ends as one in a run does."""
    path = tmp_path / "cmp.yaml"
    path.write_text(COMPARE)

    def write(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(optrun.compare, "write", write)
    result = CliRunner().invoke(cli, ["compare", str(path), "--runs-dir", str(tmp_path / "runs"), "-q", "-j", "1"])
    compare_dir = next((tmp_path / "runs").iterdir())
    assert result.exit_code == 130, result.output
    assert result.output.splitlines()[-1].startswith(
        "interrupted by SIGINT after 6 of 6 runs, while writing the comparison; what finished is kept in "
    ) and result.output.endswith(f"Resume with: optrun compare --resume {compare_dir}\n")
    assert json.loads((compare_dir / "summary.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    assert not (compare_dir / "comparison.csv").exists()
    resumed = CliRunner().invoke(cli, ["compare", "--resume", str(compare_dir), "-q", "-j", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((compare_dir / "summary.json").read_text())["status"] == "completed"


def session_processes(session: int) -> list[str]:
    return subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize(
    "group, sig, code, when",
    [(True, signal.SIGINT, 130, "training"), (True, signal.SIGINT, 130, "starting"),
     (True, signal.SIGINT, 130, "importing"), (False, signal.SIGTERM, 143, "training")],
    ids=["ctrl-c to the group", "ctrl-c while the workers start", "ctrl-c while importing", "SIGTERM to optrun alone"],
)  # fmt: skip
def test_a_signal_on_parallel_workers_leaves_no_process_behind(tmp_path, group: bool, sig, code, when: str) -> None:
    """Whenever the signal comes once optrun runs (while it and its fork server, started at once, import; once
    the comparison's directory is made and the workers start; or once 2 workers train: 5 processes in its
    session with the resource tracker), optrun ends with one line, no traceback from any process, and no process
    left."""
    path = tmp_path / "cmp.yaml"
    path.write_text(COMPARE.replace("epochs: 3, max_samples: 300", "epochs: 400"))
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "optrun", "compare", str(path), "--runs-dir", str(runs), "-j", "2"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    processes = {"importing": 3, "starting": 3, "training": 5}[when]
    while time.monotonic() < deadline and (
        len(session_processes(process.pid)) < processes or (when == "starting" and not any(runs.glob("*/config.yaml")))
    ):
        time.sleep(0.01)
    assert len(session_processes(process.pid)) >= processes
    if group:
        os.killpg(process.pid, sig)  # as a terminal's Ctrl-C does: the whole process group
    else:
        process.send_signal(sig)  # as `kill` or a batch scheduler does: optrun forwards it to its workers
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert err.startswith(f"interrupted by {sig.name}") and "Traceback" not in err, err
    if any(runs.glob("*/config.yaml")):  # made once the command has imported and read its config
        assert "optrun compare --resume" in err
        compare_dir = next(runs.iterdir())
        assert json.loads((compare_dir / "summary.json").read_text())["status"] == "interrupted"
    else:
        assert when == "importing", err
    deadline = time.monotonic() + 5  # the fork server notices its parent is gone within moments
    while survivors := session_processes(process.pid):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert survivors == [], survivors  # no worker (nor fork server) of that session lingers


LONG_RUNS = """name: long
seeds: 4
dataset: {name: blobs, n_samples: 20000, n_features: 50, n_classes: 5, noise: 6.0}
model: {hidden: [64], activation: tanh}
train: {epochs: 100, batch_size: 8}
optimizers: {sgd: null, adam: null, rmsprop: null}
"""


def start_compare(tmp_path: Path, text: str, *args: str) -> subprocess.Popen:
    path = tmp_path / "cmp.yaml"
    path.write_text(text)
    command = [sys.executable, "-m", "optrun", "compare", str(path), "--runs-dir", str(tmp_path / "runs"), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_workers(process: subprocess.Popen, count: int = 5) -> None:
    """Until optrun, the resource tracker, the fork server and 2 workers are in the session."""
    deadline = time.monotonic() + 60
    while len(session_processes(process.pid)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(session_processes(process.pid)) >= count


@pytest.mark.parametrize(
    "sig, code",
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["ctrl-c", "sigterm", "sighup"],
)
def test_after_a_signal_no_run_starts_and_the_runs_in_flight_keep_their_epochs(tmp_path, sig, code) -> None:
    """12 runs of several seconds each on 2 workers, a signal to the whole group (a terminal's Ctrl-C, a job
    scheduler's SIGTERM, a closed terminal's SIGHUP) while the first two train: the queued runs never start
    (each would take seconds to finish), the command ends at once, and the two in flight are written with the
    epochs they finished."""
    process = start_compare(tmp_path, LONG_RUNS, "-j", "2")
    wait_for_workers(process)
    time.sleep(2.0)  # both workers are training
    os.killpg(process.pid, sig)
    signalled = time.monotonic()
    _, err = process.communicate(timeout=60)
    took = time.monotonic() - signalled
    assert process.returncode == code, err
    assert took < 5.0, f"{took:.1f} s from the signal to exit"  # one run takes about 10 s
    assert err.startswith(f"interrupted by {sig.name} after 0 of 12 runs") and "Traceback" not in err, err
    compare_dir = next((tmp_path / "runs").iterdir())
    assert f"Resume with: optrun compare --resume {compare_dir}" in err
    written = sorted(compare_dir.glob("*/seed-*"))
    assert len(written) == 2, written  # the two in flight, and no other
    for run_dir in written:
        summary = json.loads((run_dir / "summary.json").read_text())
        rows = metrics_without_timing(run_dir)[1:]
        assert summary["status"] == "interrupted" and summary["epochs"] >= 1, summary
        assert len(rows) == summary["epochs"] + 1
        assert summary["reason"] == f"interrupted by {sig.name} after epoch {summary['epochs']}"


def test_a_comparison_that_ignores_ctrl_c_ignores_it_in_its_workers_too(tmp_path) -> None:
    """Started in the background of a script, a command inherits SIGINT ignored: a Ctrl-C to the group must
    then change nothing (it used to stop the workers' runs while the comparison went on to say 'completed')."""
    path = tmp_path / "cmp.yaml"
    path.write_text(COMPARE.replace("epochs: 3, max_samples: 300", "epochs: 60"))
    command = [sys.executable, "-m", "optrun", "compare", str(path), "--runs-dir", str(tmp_path / "runs"), "-j", "2"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as bash does for `command &`
    )
    wait_for_workers(process)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    compare_dir = next((tmp_path / "runs").iterdir())
    assert json.loads((compare_dir / "summary.json").read_text())["status"] == "completed"
    statuses = [json.loads((d / "summary.json").read_text())["status"] for d in compare_dir.glob("*/seed-*")]
    assert statuses == ["completed"] * 6


def test_a_worker_killed_mid_comparison_fails_it_with_one_line_and_resume_finishes_it(tmp_path) -> None:
    """As the kernel's out-of-memory killer would: the comparison is not 'completed' with failed runs; it stops
    with one line and exit 2, keeps what finished, and --resume runs the rest."""
    process = start_compare(tmp_path, COMPARE.replace("epochs: 3, max_samples: 300", "epochs: 300"), "-j", "2")
    wait_for_workers(process)
    server = [int(pid) for pid in session_processes(process.pid) if _is_fork_server(int(pid))]
    workers = subprocess.run(["pgrep", "-P", str(server[0])], capture_output=True, text=True).stdout.split()
    os.kill(int(workers[0]), signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "a worker process ended abruptly" in lines[0], err
    compare_dir = next((tmp_path / "runs").iterdir())
    assert f"Resume with: optrun compare --resume {compare_dir}" in lines[0]
    summary = json.loads((compare_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "ended abruptly" in summary["reason"]
    assert not (compare_dir / "comparison.csv").exists()
    resumed = CliRunner().invoke(cli, ["compare", "--resume", str(compare_dir), "-q", "-j", "1"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((compare_dir / "summary.json").read_text())["status"] == "completed"
    assert len(list(compare_dir.glob("*/seed-*"))) == 6


def _is_fork_server(pid: int) -> bool:
    return b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_no_process_outlives_a_comparison_killed_outright(tmp_path) -> None:
    """SIGKILL (the out-of-memory killer's) to optrun alone: its workers notice and end, and with them the fork
    server and the resource tracker (they used to run on, then wait forever, ignoring SIGTERM)."""
    process = start_compare(tmp_path, LONG_RUNS, "-j", "2")
    wait_for_workers(process)
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while (survivors := session_processes(process.pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert survivors == [], survivors
