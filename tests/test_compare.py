"""optrun compare, report and show: fairness, identical results however the runs are executed, failures as results."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from csv_rows import comparison_without_timing, metrics_without_timing
from matplotlib.figure import Figure

from optrun.cli import cli
from optrun.compare import compare, plan
from optrun.config import CompareConfig, parse_config
from optrun.optim import OPTIMIZERS, REFERENCE_OPTIMIZERS
from optrun.parallel import WorkersLost, executor
from optrun.plots import curves_figure
from optrun.report import build, collect, write
from optrun.runs import read_run
from optrun.train import prepare

ROOT = Path(__file__).parent.parent
SMALL = {
    "name": "cmp",
    "dataset": {"name": "digits"},
    "train": {"epochs": 2, "max_samples": 300},
    "seeds": 2,
    "optimizers": {"sgd": None, "slow-adam": {"name": "adam", "learning_rate": 0.001}},
}


def compare_config(**changes) -> CompareConfig:
    return parse_config({**SMALL, **changes}, schema=CompareConfig)


def write_config(tmp_path: Path, data: dict, name: str = "cmp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


def run_dirs(compare_dir: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(compare_dir)): p.parent for p in sorted(compare_dir.glob("*/seed-*/metrics.csv"))}


# --- the config ------------------------------------------------------------------------------------------------------


def test_without_optimizers_the_six_reference_optimizers_at_their_defaults() -> None:
    config = parse_config({"dataset": {"name": "digits"}}, schema=CompareConfig)
    assert tuple(config.optimizers) == REFERENCE_OPTIMIZERS
    for name, spec in config.optimizers.items():
        assert spec == OPTIMIZERS[name].Spec(name=name)
    assert config.seed_list == [0]


def test_labels_name_their_optimizer_and_seeds_count_from_seed() -> None:
    config = compare_config(
        seed=5,
        seeds=3,
        optimizers={"adam": {"learning_rate": 1e-3}, "sgd": None, "heavy": {"name": "momentum", "mu": 0.99}},
    )
    assert config.seed_list == [5, 6, 7]
    assert config.optimizers["adam"].name == "adam" and config.optimizers["adam"].learning_rate == 1e-3
    assert config.optimizers["heavy"].name == "momentum" and config.optimizers["heavy"].mu == 0.99
    run = config.run_config("heavy", 6)
    assert (run.name, run.seed, run.optimizer, run.dataset) == ("heavy", 6, config.optimizers["heavy"], config.dataset)
    assert compare_config(seeds=[3, 1]).seed_list == [3, 1]
    assert [(r.label, r.seed) for r in plan(compare_config())] == [
        ("sgd", 0),
        ("slow-adam", 0),
        ("sgd", 1),
        ("slow-adam", 1),
    ]


BAD = [
    ("no optimizers", {"optimizers": {}}, [], "optimizers: must have at least 1 item, got an empty mapping"),
    ("label needs a name", {"optimizers": {"fast": {"learning_rate": 0.1}}}, [], "optimizers.fast: needs a 'name' key"),
    ("bad label", {"optimizers": {"a/b": {"name": "sgd"}}}, [], "optimizers.a/b: must start with a letter or digit"),
    (
        "bad hyperparameter",
        {"optimizers": {"adam": {"beta1": 1.0}}},
        [],
        "optimizers.adam.beta1: must be in [0, 1), got 1.0",
    ),
    (
        "unknown hyperparameter",
        {"optimizers": {"momentum": {"momentum": 0.9}}},
        [],
        "optimizers.momentum.momentum: unknown key",
    ),
    (
        "a label's spec is a number",
        {"optimizers": {"sgd": 0.1}},
        [],
        "optimizers.sgd: must be a mapping of keys to values, got 0.1",
    ),
    ("repeated seed", {"seeds": [1, 1]}, [], "seeds: must be a number of seeds (>= 1) or a list of distinct seeds"),
    (
        "zero seeds",
        {"seeds": 0},
        [],
        "seeds: must be a number of seeds (>= 1) or a list of distinct seeds (>= 0), got 0",
    ),
    ("target", {"target_accuracy": 1.5}, [], "target_accuracy: must be in (0, 1], got 1.5"),
    (
        "both optimizer keys",
        {"optimizer": {"name": "sgd"}},
        [],
        "optimizer: give either 'optimizer' (one) or 'optimizers' (labels), not both",
    ),
    ("unknown --only", {}, ["--only", "adam"], "--only adam: no such label; the labels are: sgd, slow-adam"),
    ("empty --only", {}, ["--only", " , "], "--only ' , ': names no label; give one or more labels"),
    (
        "jobs and dask",
        {},
        ["--jobs", "2", "--dask-scheduler", "tcp://127.0.0.1:8786"],
        "--jobs and --dask-scheduler exclude each other",
    ),
    ("dask address", {}, ["--dask-scheduler", "nowhere"], "nowhere: not a Dask scheduler address"),
    ("bad --seeds", {}, ["--seeds", "0"], "Invalid value for '--seeds'"),
]


@pytest.mark.parametrize("changes, args, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_compare_input_is_one_line_exit_2_and_writes_nothing(tmp_path, changes, args, expected) -> None:
    path = write_config(tmp_path, {**SMALL, **changes})
    result = invoke("compare", path, "--runs-dir", tmp_path / "runs", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and expected in lines[-1], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_train_on_a_compare_config_says_to_use_compare(tmp_path) -> None:
    path = write_config(tmp_path, SMALL)
    result = invoke("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"Error: {path}: optimizers: this is a compare config; run it with 'optrun compare {path}'"
    )


def test_validate_knows_compare_configs(tmp_path) -> None:
    result = invoke("validate", write_config(tmp_path, SMALL))
    assert result.exit_code == 0
    assert "(compare 2 optimizers x 2 seeds on digits, mlp, 2 epochs; about " in result.output


# --- fairness and the compare directory ------------------------------------------------------------------------------


def test_for_a_seed_every_optimizer_gets_the_same_start_batches_and_epoch_0(tmp_path) -> None:
    config = compare_config(optimizers={name: None for name in REFERENCE_OPTIMIZERS})
    for seed in config.seed_list:
        experiments = [prepare(r.config) for r in plan(config) if r.seed == seed]
        assert len(experiments) == 6
        first = experiments[0]
        orders = [exp.batch_order.permutation(300) for exp in experiments]
        for exp, order in zip(experiments[1:], orders[1:], strict=True):
            np.testing.assert_array_equal(exp.model.flat_params, first.model.flat_params)
            np.testing.assert_array_equal(exp.data.x_train, first.data.x_train)
            np.testing.assert_array_equal(order, orders[0])
    out = compare(config, tmp_path)
    dirs = run_dirs(out.path)
    for seed in (0, 1):
        rows0 = {tuple(metrics_without_timing(dirs[f"{label}/seed-{seed}"])[1][:5]) for label in config.optimizers}
        assert len(rows0) == 1  # epoch-0 losses and accuracies identical across the six optimizers
    assert metrics_without_timing(dirs["sgd/seed-0"])[1][:5] != metrics_without_timing(dirs["sgd/seed-1"])[1][:5]


def test_compare_directory_holds_ordinary_runs_and_the_comparison(tmp_path) -> None:
    result = invoke("compare", write_config(tmp_path, SMALL), "--runs-dir", tmp_path / "runs", "--jobs", "1")
    assert result.exit_code == 0, result.output
    (compare_dir,) = (tmp_path / "runs").iterdir()
    assert compare_dir.name.startswith("cmp-")
    assert set(run_dirs(compare_dir)) == {"sgd/seed-0", "sgd/seed-1", "slow-adam/seed-0", "slow-adam/seed-1"}
    for name in ("config.yaml", "comparison.csv", "summary.json", "curves.png", "curves.svg"):
        assert (compare_dir / name).is_file(), name
    assert (compare_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (compare_dir / "curves.svg").read_text().lstrip().startswith("<?xml")
    resolved = yaml.safe_load((compare_dir / "config.yaml").read_text())
    assert resolved["seeds"] == [0, 1] and resolved["optimizers"]["slow-adam"]["beta2"] == 0.999

    # every run directory is an ordinary train run: its config.yaml retrains it to the same metrics
    adam = compare_dir / "slow-adam" / "seed-1"
    assert read_run(adam).summary["status"] == "completed"
    retrain = invoke("train", adam / "config.yaml", "--runs-dir", tmp_path / "again", "-q")
    assert metrics_without_timing(Path(retrain.output.strip())) == metrics_without_timing(adam)

    with (compare_dir / "comparison.csv").open() as fh:
        rows = {r["label"]: r for r in csv.DictReader(fh)}
    finals = [float(metrics_without_timing(adam.parent / f"seed-{k}")[-1][4]) for k in (0, 1)]
    assert float(rows["slow-adam"]["final_test_accuracy_mean"]) == pytest.approx(np.mean(finals), abs=1e-15)
    assert rows["slow-adam"]["optimizer"] == "adam" and rows["slow-adam"]["diverged"] == "0"
    summary = json.loads((compare_dir / "summary.json").read_text())
    assert summary["kind"] == "comparison" and summary["executor"] == "this process"
    assert {label["label"] for label in summary["labels"]} == {"sgd", "slow-adam"}
    assert {r["path"] for label in summary["labels"] for r in label["runs"]} == set(run_dirs(compare_dir))
    assert "slow-adam" in result.output and f"comparison directory: {compare_dir}" in result.output


def _records_without_timing(outcome) -> dict[str, list]:
    return {
        str(r.path.relative_to(outcome.path)): [dataclasses.replace(row, seconds=0.0) for row in r.result.records]
        for r in outcome.runs
    }


def test_two_worker_processes_give_exactly_the_metrics_of_one(tmp_path) -> None:
    config = compare_config(optimizers={"sgd": None, "adam": None, "rmsprop": None})
    one, two = compare(config, tmp_path, jobs=1), compare(config, tmp_path, jobs=2)
    assert json.loads((two.path / "summary.json").read_text())["executor"] == "2 processes"
    assert _records_without_timing(one) == _records_without_timing(two)
    assert comparison_without_timing(one.path) == comparison_without_timing(two.path)


def test_workers_start_from_a_folder_that_holds_a_folder_named_optrun(tmp_path) -> None:
    """As the ``optrun`` command runs from the folder above a clone of the repository: the script's folder
    first on the path, then the package, and in the current folder an optrun/ whose runs/ (a run folder)
    could stand in for optrun.runs in a worker."""
    work, script = tmp_path / "above-the-clone", tmp_path / "bin" / "optrun"
    (work / "optrun" / "runs").mkdir(parents=True)
    script.parent.mkdir()
    script.write_text("from optrun.cli import main\nif __name__ == '__main__':\n    main()\n")  # as pip writes it
    config = write_config(tmp_path, {**SMALL, "seeds": 1})
    command = [sys.executable, str(script), "compare", str(config), "--runs-dir", str(tmp_path / "runs"), "-j", "2"]
    done = subprocess.run([*command, "-q"], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = [read_run(path) for path in Path(done.stdout.strip()).glob("*/seed-*")]
    assert len(runs) == 2 and {run.summary["status"] for run in runs} == {"completed"}


def test_a_dask_cluster_gives_exactly_the_local_metrics(tmp_path, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    config = compare_config()
    local = compare(config, tmp_path, jobs=1)
    # A LocalCluster leaves OMP_NUM_THREADS=1 and its like in this process's environment: keep them from
    # the processes later tests start.
    monkeypatch.setattr(os, "environ", os.environ.copy())
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = compare(config, tmp_path, scheduler=cluster.scheduler_address)
    assert _records_without_timing(remote) == _records_without_timing(local)
    assert comparison_without_timing(remote.path) == comparison_without_timing(local.path)
    assert json.loads((remote.path / "summary.json").read_text())["executor"].startswith("Dask cluster at tcp://")


# --- failure is a result ---------------------------------------------------------------------------------------------


def test_a_diverged_optimizer_is_a_row_not_an_error(tmp_path) -> None:
    data = {**SMALL, "optimizers": {"sgd": None, "wild": {"name": "sgd", "learning_rate": 1.0e6}}}
    result = invoke("compare", write_config(tmp_path, data), "--runs-dir", tmp_path / "runs", "-j", "1")
    assert result.exit_code == 0, result.output
    compare_dir = next((tmp_path / "runs").iterdir())
    with (compare_dir / "comparison.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == ["sgd", "wild"]  # diverged last
    assert rows[1]["diverged"] == "2" and rows[1]["final_test_accuracy_mean"] == ""
    assert "2/2" in result.output and "diverged" in result.output
    summary = json.loads((compare_dir / "wild" / "seed-0" / "summary.json").read_text())
    assert summary["status"] == "diverged" and "non-finite" in summary["reason"]
    groups = collect([compare_dir]).groups
    legend = [t.get_text() for t in curves_figure(groups).legends[0].get_texts()]
    assert "wild (2 seeds, 2 diverged)" in legend and "diverged run (last point)" in legend


def test_every_run_diverged_exits_3(tmp_path) -> None:
    data = {**SMALL, "optimizers": {"wild": {"name": "sgd", "learning_rate": 1.0e6}}}
    result = invoke("compare", write_config(tmp_path, data), "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 3
    assert (Path(result.output.strip()) / "comparison.csv").is_file()


def test_an_exception_in_one_run_fails_that_run_only(tmp_path, monkeypatch) -> None:
    import optrun.compare

    real_fit = optrun.compare.fit

    def fit(exp, on_epoch=None):
        if exp.config.optimizer.name == "adam":
            raise RuntimeError("boom")
        return real_fit(exp, on_epoch)

    monkeypatch.setattr(optrun.compare, "fit", fit)
    out = compare(compare_config(), tmp_path, jobs=1)
    statuses = {str(r.path.relative_to(out.path)): r.result.status for r in out.runs}
    assert statuses == {"sgd/seed-0": "completed", "sgd/seed-1": "completed", "slow-adam/seed-0": "failed",
                        "slow-adam/seed-1": "failed"}  # fmt: skip
    failed = out.path / "slow-adam" / "seed-0"
    assert json.loads((failed / "summary.json").read_text())["reason"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (failed / "traceback.txt").read_text()
    assert out.comparison.rows[1].failed == 2 and not out.all_failed


def test_executors_report_task_errors_through_on_error_and_a_dead_worker_as_workers_lost() -> None:
    for jobs in (1, 2):
        with executor(jobs) as map_unordered:
            results = dict(map_unordered(math.sqrt, [4.0, -1.0, 9.0], on_error=lambda exc: type(exc).__name__))
        assert results == {0: 2.0, 1: "ValueError", 2: 3.0}
    with pytest.raises(WorkersLost, match="a worker process ended abruptly"), executor(2) as map_unordered:
        dict(map_unordered(os._exit, [3, 3], on_error=lambda exc: type(exc).__name__))


def test_executors_run_the_tasks_appended_while_their_results_are_read(tmp_path, monkeypatch) -> None:
    def squares_then_roots(map_unordered) -> list[tuple[float, float]]:
        """(item, its result) of each task, in order of the items (those appended in the order results came)."""
        items, results = [4.0, 9.0], {}
        for i, result in map_unordered(math.sqrt, items):
            results[i] = result
            if i < 2:  # each of the first two results asks for one more task: the fourth power of its root
                items.append(result**4)
        return sorted((items[i], r) for i, r in results.items())

    expected = [(4.0, 2.0), (9.0, 3.0), (16.0, 4.0), (81.0, 9.0)]
    for jobs in (1, 2):
        with executor(jobs) as map_unordered:
            assert squares_then_roots(map_unordered) == expected
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(os, "environ", os.environ.copy())
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as cluster,
        executor(scheduler=cluster.scheduler_address) as map_unordered,
    ):
        assert squares_then_roots(map_unordered) == expected


README_API = re.search(r"## Python API\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readmes_python_api_runs_as_a_script_without_a_main_guard(tmp_path) -> None:
    """Saved as a script and run with python: its compare(..., jobs=2) starts workers that must not run the
    script again (they would start processes while bootstrapping, break the pool, and train stray runs)."""
    assert README_API is not None
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "script.py").write_text(README_API.group(1) + "print(done.path)\n")
    done = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "bootstrapping" not in done.stderr, done.stderr
    compare_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    written = sorted(p.name.split("-")[0] for p in (tmp_path / "runs").iterdir())
    assert written == ["digits", "quickstart", "suite", "tune"]  # a run, comparison, suite, tuning; none from a worker
    for made in ("tune-*", "suite-*"):
        folder = next((tmp_path / "runs").glob(made))
        assert json.loads((folder / "summary.json").read_text())["status"] == "completed"
    assert json.loads((compare_dir / "summary.json").read_text())["status"] == "completed"
    runs = [read_run(path) for path in compare_dir.glob("*/seed-*")]
    assert len(runs) == 12 and {run.status for run in runs} == {"completed"}


# --- options ---------------------------------------------------------------------------------------------------------


def test_only_seeds_and_smoke(tmp_path) -> None:
    path = write_config(tmp_path, {**SMALL, "optimizers": {"sgd": None, "adam": None, "rmsprop": None}})
    result = invoke("compare", path, "--runs-dir", tmp_path / "a", "--only", "adam,sgd", "--seeds", "1", "-q")
    assert result.exit_code == 0, result.output
    compare_dir = Path(result.output.strip())
    assert set(run_dirs(compare_dir)) == {"adam/seed-0", "sgd/seed-0"}
    assert list(yaml.safe_load((compare_dir / "config.yaml").read_text())["optimizers"]) == ["adam", "sgd"]
    result = invoke("compare", path, "--runs-dir", tmp_path / "b", "--smoke", "-q")
    compare_dir = Path(result.output.strip())
    assert set(run_dirs(compare_dir)) == {"sgd/seed-0", "adam/seed-0", "rmsprop/seed-0"}
    assert len(metrics_without_timing(compare_dir / "adam" / "seed-0")) == 3  # header, epochs 0 and 1


def test_a_train_config_compares_the_reference_optimizers_with_a_note(tmp_path) -> None:
    path = write_config(tmp_path, {"dataset": {"name": "digits"}, "optimizer": {"name": "adam"}}, "train.yaml")
    result = invoke("compare", path, "--runs-dir", tmp_path / "runs", "--smoke")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"note: {path} has one 'optimizer:'; compare ignores it")
    assert set(run_dirs(next((tmp_path / "runs").iterdir()))) == {f"{n}/seed-0" for n in REFERENCE_OPTIMIZERS}


# --- reading results back --------------------------------------------------------------------------------------------


def _table(output: str) -> list[str]:
    """The comparison table of a command's output: from its title to its caption."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("cmp: "))
    end = next(i for i, line in enumerate(lines) if line.startswith("diverged: "))
    return lines[start : end + 1]


def test_report_reproduces_the_compare_table_and_files(tmp_path) -> None:
    compared = invoke("compare", write_config(tmp_path, SMALL), "--runs-dir", tmp_path / "runs", "-j", "1")
    compare_dir = next((tmp_path / "runs").iterdir())
    reported = invoke("report", compare_dir, "--out", tmp_path / "report")
    assert reported.exit_code == 0, reported.output
    assert _table(reported.output) == _table(compared.output)
    assert (tmp_path / "report" / "comparison.csv").read_bytes() == (compare_dir / "comparison.csv").read_bytes()
    assert (tmp_path / "report" / "curves.svg").read_bytes() == (compare_dir / "curves.svg").read_bytes()
    mine, theirs = (json.loads((d / "summary.json").read_text()) for d in (compare_dir, tmp_path / "report"))
    assert [label["final_test_accuracy_mean"] for label in mine["labels"]] == [
        label["final_test_accuracy_mean"] for label in theirs["labels"]
    ]


def test_report_mixes_compare_directories_and_train_runs(tmp_path) -> None:
    first = compare(compare_config(), tmp_path / "runs").path
    second = compare(compare_config(optimizers={"sgd": {"learning_rate": 0.01}}), tmp_path / "runs").path
    train_config = {**{k: v for k, v in SMALL.items() if k not in ("seeds", "optimizers")}, "name": "single"}
    single = write_config(
        tmp_path, {**train_config, "optimizer": {"name": "nesterov"}, "train": {"epochs": 3}}, "t.yaml"
    )
    single_dir = Path(invoke("train", single, "--runs-dir", tmp_path / "runs", "-q").output.strip())
    result = CliRunner().invoke(
        cli, ["report", str(first), str(second), str(single_dir), "-q", "--runs-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    assert "warning: the runs differ in train.epochs, train.max_samples" in result.stderr
    out_dir = Path(result.stdout.strip())
    assert out_dir.parent == tmp_path / "r" and out_dir.name.startswith("report-")
    with (out_dir / "comparison.csv").open() as fh:
        labels = {r["label"]: r for r in csv.DictReader(fh)}
    assert set(labels) == {f"{first.name}/sgd", f"{second.name}/sgd", "slow-adam", "single"}
    assert labels["single"]["seeds"] == "1" and labels[f"{second.name}/sgd"]["learning_rate"] == "0.01"


@pytest.mark.parametrize("label", ["summary.json", "curves.png", "config.yaml", "Comparison.CSV", "x.html"])
def test_a_label_named_like_a_compare_directorys_file_is_refused(tmp_path, label: str) -> None:
    """Its folder would take the file's place (an IsADirectoryError, or a half-written compare directory)."""
    path = write_config(tmp_path, {**SMALL, "optimizers": {label: {"name": "sgd"}, "adam": None}})
    for command in ("validate", "compare"):
        result = invoke(command, path, *(["--runs-dir", tmp_path / "runs"] if command == "compare" else []))
        assert result.exit_code == 2 and f"optimizers.{label}: must not end in .yaml, .json" in result.output
    assert not (tmp_path / "runs").exists()


def test_report_writes_only_into_a_new_or_empty_folder_or_an_earlier_reports(tmp_path) -> None:
    """--out never overwrites a run or a comparison (it replaced their summary.json and plots)."""
    compared = invoke("compare", write_config(tmp_path, SMALL), "--runs-dir", tmp_path / "c", "-q")
    compare_dir = Path(compared.output.strip())
    before = {p: p.read_bytes() for p in compare_dir.rglob("*") if p.is_file()}
    (tmp_path / "a-file").write_text("x")
    for out, problem in [
        (compare_dir, "holds files that are not an earlier report's"),
        (compare_dir / "sgd" / "seed-0", "holds files that are not an earlier report's"),
        (tmp_path / "a-file", "is a file, not a folder for the report"),
        (tmp_path / "a-file" / "sub", f"cannot be made: {tmp_path / 'a-file'} is a file"),
        (Path("/proc/optrun-report"), "/proc/optrun-report: cannot write the report (No such file or directory)"),
    ]:
        result = invoke("report", compare_dir, "--out", out)
        assert (result.exit_code == 2 and result.output.strip().endswith(problem)) or problem in result.output, out
        assert result.output.count("Error: ") == 1 and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in compare_dir.rglob("*") if p.is_file()} == before
    for _ in range(2):  # a new folder, then the same report's folder again
        assert invoke("report", compare_dir, "--out", tmp_path / "rep", "-q").exit_code == 0
    assert (tmp_path / "rep" / "comparison.csv").is_file()
    (tmp_path / "rep" / "trajectories.png").write_bytes(b"an earlier report's picture")
    assert invoke("report", compare_dir, "--out", tmp_path / "rep", "-q").exit_code == 0
    assert not (tmp_path / "rep" / "trajectories.png").exists()  # the folder is the new report's alone
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".rep")] == []


def test_a_report_interrupted_leaves_no_folder_behind(tmp_path, monkeypatch) -> None:
    compare_dir = compare(compare_config(), tmp_path / "c", jobs=1).path
    monkeypatch.setattr(Figure, "savefig", lambda *args, **kwargs: signal.raise_signal(signal.SIGINT))
    result = CliRunner().invoke(cli, ["report", str(compare_dir), "--runs-dir", str(tmp_path / "reports")])
    assert result.exit_code == 130, result.output
    assert list((tmp_path / "reports").iterdir()) == []


def test_a_picture_is_written_whole_or_not_at_all(tmp_path, monkeypatch) -> None:
    """A Ctrl-C while curves.svg was drawn left half an SVG (no closing tag): the old file stays instead."""
    compare_dir = compare(compare_config(), tmp_path, jobs=1).path
    before = (compare_dir / "curves.svg").read_bytes()
    real_savefig = Figure.savefig

    def savefig(self, fname, **kwargs):
        if kwargs.get("format") == "svg":
            Path(fname).write_text("<svg")  # part of it, then the signal
            raise KeyboardInterrupt
        return real_savefig(self, fname, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    with pytest.raises(KeyboardInterrupt):
        write(build(collect([compare_dir]).groups, "cmp"), compare_dir)
    assert (compare_dir / "curves.svg").read_bytes() == before
    assert sorted(p.name for p in compare_dir.iterdir() if p.name.startswith(".")) == []


def test_report_and_show_errors_are_one_line(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "report").mkdir()  # as optrun report writes it: its summary names the folders it was made from
    (tmp_path / "report" / "summary.json").write_text(
        json.dumps({"kind": "comparison", "sources": ["runs/a", "runs/b"]})
    )
    for args, expected in [
        (
            ["show", tmp_path / "report"],
            f"Error: {tmp_path / 'report'}: a report (its table is comparison.csv); give the",
        ),
        (
            ["report", tmp_path / "report"],
            f"Error: {tmp_path / 'report'}: a report (its table is comparison.csv); give",
        ),
        (["report", tmp_path / "none"], f"Error: {tmp_path / 'none'}: no such directory"),
        (["report", tmp_path / "empty"], f"Error: {tmp_path / 'empty'}: neither a run directory"),
        (["show", tmp_path / "empty"], f"Error: {tmp_path / 'empty'}: neither a run directory"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2 and result.output.startswith(expected), result.output
        assert len(result.output.strip().splitlines()) == 1


def test_show_prints_a_run_or_a_comparison(tmp_path) -> None:
    out = compare(compare_config(train={"epochs": 3, "max_samples": 300}), tmp_path)
    run_dir = out.path / "sgd" / "seed-1"
    result = invoke("show", run_dir)
    assert result.exit_code == 0
    text = result.output
    assert f"run        {run_dir}" in text and "optimizer  sgd  learning_rate=0.316" in text
    assert "status     completed after 3 of 3 epochs" in text and "seed=1" in text
    body = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert body == ["0", "1", "2", "3"]  # every epoch's row
    result = invoke("show", out.path)
    assert result.exit_code == 0 and "slow-adam" in result.output and "to target" in result.output


def test_the_plot_draws_the_mean_over_seeds_on_log_loss_axes(tmp_path) -> None:
    out = compare(compare_config(), tmp_path)
    groups = collect([out.path]).groups
    fig = curves_figure(groups, target=0.9, title="t")
    loss_ax, acc_ax, zoom_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    assert zoom_ax.get_xlim() == (1, 2)  # the second half of the 2 epochs
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    assert "loss" in loss_ax.get_ylabel() and "accuracy" in acc_ax.get_ylabel()
    sgd_runs = [read_run(out.path / "sgd" / f"seed-{k}") for k in (0, 1)]
    expected = np.mean([[row.train_loss for row in r.records] for r in sgd_runs], axis=0)
    np.testing.assert_allclose(loss_ax.lines[0].get_ydata(), expected, rtol=1e-15)
    assert len(loss_ax.collections) == 2  # one min..max band per label
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["sgd (2 seeds)", "slow-adam (2 seeds)", "target accuracy 90.0%"]


def test_the_zoomed_panel_shows_only_its_window_and_no_accuracy_above_100_percent(tmp_path) -> None:
    easy = {"name": "easy", "dataset": {"name": "blobs", "n_samples": 400, "noise": 0.1}, "train": {"epochs": 4},
            "optimizers": {"adam": None, "sgd": None}}  # fmt: skip
    out = compare(parse_config(easy, schema=CompareConfig), tmp_path)
    zoom_ax = curves_figure(collect([out.path]).groups).axes[2]
    accuracies = np.concatenate([line.get_ydata() for line in zoom_ax.lines])
    assert accuracies.max() == 1.0  # the data reach 100%: the case where the axis used to pass it
    bottom, top = zoom_ax.get_ylim()
    assert top == 1.0 and bottom < accuracies.min()
    # no segment comes in from before the window (it showed as a vertical stub at the left edge)
    assert zoom_ax.get_xlim() == (2, 4) and [list(line.get_xdata()) for line in zoom_ax.lines] == [[2, 3, 4]] * 2


def test_runs_of_different_lengths_share_one_plot(tmp_path) -> None:
    short = compare(compare_config(train={"epochs": 1, "max_samples": 300}, seeds=1), tmp_path).path
    long = compare(compare_config(train={"epochs": 6, "max_samples": 300}, seeds=1), tmp_path).path
    groups = collect([short, long]).groups
    fig = curves_figure(groups)
    assert fig.axes[2].get_xlim() == (3, 6)  # the zoom covers the second half of the longest run
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [2, 2, 7, 7]


def test_a_failed_run_shows_its_reason_verbatim(tmp_path, monkeypatch) -> None:
    import optrun.compare

    def fit(exp, on_epoch=None):
        raise ValueError("shapes [3, 4] and [5] do not match")

    monkeypatch.setattr(optrun.compare, "fit", fit)
    data = {**SMALL, "optimizers": {"sgd": None}, "seeds": 1}
    result = invoke("compare", write_config(tmp_path, data), "--runs-dir", tmp_path / "runs", "-j", "1")
    assert result.exit_code == 3  # the only run failed
    assert "failed    sgd seed 0  ValueError: shapes [3, 4] and [5] do not match" in result.output
    run_dir = next((tmp_path / "runs").iterdir()) / "sgd" / "seed-0"
    assert "ValueError: shapes [3, 4] and [5] do not match" in invoke("show", run_dir).output


def test_report_counts_a_folder_given_twice_once_and_refuses_nan_and_a_dangling_link(tmp_path) -> None:
    compare_dir = compare(compare_config(), tmp_path, jobs=1).path
    once = invoke("report", compare_dir, "--out", tmp_path / "once", "-q")
    twice = invoke("report", compare_dir, compare_dir / ".." / compare_dir.name, "--out", tmp_path / "twice", "-q")
    assert once.exit_code == twice.exit_code == 0
    assert comparison_without_timing(tmp_path / "twice") == comparison_without_timing(tmp_path / "once")
    nan = invoke("report", compare_dir, "--target-accuracy", "nan")
    assert nan.exit_code == 2 and "nan is not a number in (0, 1]" in nan.output
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    dangling = invoke("report", compare_dir, "--out", tmp_path / "link")
    assert dangling.exit_code == 2 and dangling.output.strip().endswith(
        "a link to nothing, not a folder for the report"
    )


def test_show_recognizes_runs_and_comparisons_stopped_before_their_summaries(tmp_path) -> None:
    """A run killed outright keeps no summary.json; a comparison hung up before its first run keeps only its
    config.yaml: show says what they are and how to continue them."""
    compare_dir = compare(compare_config(), tmp_path, jobs=1).path
    run_dir = compare_dir / "sgd" / "seed-0"
    (run_dir / "summary.json").unlink()
    result = invoke("show", run_dir)
    assert result.exit_code == 2
    hint = f"continue it with optrun compare --resume {compare_dir}"
    assert result.output.strip() == f"Error: {run_dir}: an unfinished run (no summary.json); {hint}"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((compare_dir / "config.yaml").read_text())
    shown = invoke("show", bare)
    assert shown.exit_code == 0, shown.output
    assert "the comparison did not finish: 0 of 4 runs have a result" in shown.output
    assert f"finish it with: optrun compare --resume {bare}" in shown.output
