"""optrun suite: the suite config (problems by path or inline, the suite's labels, seeds and tuning), its run
into one directory, time to target and performance profiles from the problems' own comparisons, interrupt
and resume, and one-line errors."""

from __future__ import annotations

import csv
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
from csv_rows import comparison_without_timing, metrics_without_timing, rows_without

from optrun.cli import cli
from optrun.config import CompareConfig, SuiteConfig, TuneConfig, load_config, parse_config, smoke
from optrun.schema import ConfigError
from optrun.suite import suite

PROBLEM = {"dataset": {"name": "digits"}, "model": {"hidden": [8]}, "train": {"epochs": 3, "max_samples": 300}}
SUITE = {
    "name": "st",
    "seeds": 2,
    "optimizers": {"sgd": None, "adam": {"learning_rate": 0.01}},
    "problems": {
        "digits": PROBLEM,
        "spirals": {"dataset": {"name": "spirals", "n_samples": 300}, "model": {"hidden": [8]}, "train": {"epochs": 4}},
    },
}


def write(tmp_path: Path, data: dict, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def csv_dicts(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_a_problem_is_a_config_file_or_inline_and_takes_the_suites_labels_seeds_and_tuning(tmp_path) -> None:
    own = {**PROBLEM, "name": "mine", "seeds": [7], "optimizers": {"lion": None}, "target_accuracy": 0.5}
    (tmp_path / "problems").mkdir()
    write(tmp_path / "problems", own, "digits.yaml")
    tuned = {**PROBLEM, "tune": {"budget": 3, "space": {"learning_rate": {"log": [0.001, 0.1]}}}}
    data = {
        **SUITE,
        "tune": {"budget": 4, "space": {"learning_rate": {"log": [0.01, 1.0]}}},
        "problems": {"by-path": "problems/digits.yaml", "inline": PROBLEM, "own-tuning": tuned},
    }
    config = load_config(write(tmp_path, data), schema=SuiteConfig)
    by_path, inline, own_tuning = config.configs.values()
    assert by_path.name == "by-path" and by_path.target_accuracy == 0.5  # the file's problem, read from its folder
    assert list(by_path.optimizers) == ["sgd", "adam"] and by_path.optimizers["adam"].learning_rate == 0.01
    assert by_path.seed_list == inline.seed_list == [0, 1]  # the suite's seeds in place of the file's [7]
    assert isinstance(inline, TuneConfig) and inline.tune.budget == 4  # the suite's tuning, where none of its own
    assert isinstance(own_tuning, TuneConfig) and own_tuning.tune.budget == 3
    again = parse_config(config.to_dict(), "resolved", SuiteConfig)  # its config.yaml reads back the same
    assert {k: c.to_dict() for k, c in again.configs.items()} == {k: c.to_dict() for k, c in config.configs.items()}
    assert config.replaced == {"by-path": ["lion"]} and again.replaced == {}  # the file's labels gave way (a note)
    plain = parse_config({k: v for k, v in SUITE.items() if k != "seeds"}, "s", SuiteConfig)
    assert isinstance(plain.configs["digits"], CompareConfig) and plain.configs["digits"].seed_list == [0]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"problems": {}}, "problems: must have at least 1 item"),
        ({"problems": {"a": "nowhere.yaml"}}, "problems.a: "),
        ({"problems": {"a": {**PROBLEM, "dataset": {"name": "digitz"}}}}, "problems.a.dataset: unknown name 'digitz'"),
        ({"problems": {"a": 3}}, "problems.a"),
        ({"problems": {"a.csv": PROBLEM}}, "must not end in"),
        ({"profile": {"measure": "steps"}}, "profile.measure"),
        ({"profile": {"tau_max": 1}}, "profile.tau_max: must be > 1"),
        (
            {"seeds": 2, "tune": {"seeds": [1], "space": {"learning_rate": {"log": [0.01, 1]}}}},
            "tune.seeds (for problem digits): seed 1",
        ),
        ({"optimizers": {"adam": {"beta1": 2}}}, "optimizers.adam.beta1"),
        ({"optimizers": {"sgdd": None}}, "optimizers.sgdd: 'sgdd' is not an optimizer's name (did you mean 'sgd'?)"),
    ],
)
def test_a_bad_suite_is_one_line_exit_2_and_writes_nothing(tmp_path, change: dict, says: str) -> None:
    result = invoke("suite", write(tmp_path, {**SUITE, **change}), "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert says in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "runs").exists()


def test_other_commands_name_the_suite_command_and_suite_refuses_other_configs(tmp_path) -> None:
    suite = write(tmp_path, SUITE)
    for command in ("compare", "train", "tune"):
        result = invoke(command, suite)
        assert result.exit_code == 2 and f"run it with 'optrun suite {suite}'" in result.output, result.output
    compare = write(tmp_path, {**PROBLEM, "seeds": 2}, "compare.yaml")
    result = invoke("suite", compare)
    assert (
        result.exit_code == 2 and f"this is a compare config; run it with 'optrun compare {compare}'" in result.output
    )
    result = invoke("suite", write(tmp_path, {"problms": {"a": PROBLEM}}, "typo.yaml"))
    assert result.exit_code == 2 and "problms: unknown key; did you mean 'problems'?" in result.output
    result = invoke("suite", write(tmp_path, {"name": "x"}, "empty.yaml"))
    assert result.exit_code == 2 and "problems: is required" in result.output


def test_a_suite_runs_each_problem_as_compare_would_and_scores_their_times_to_target(tmp_path) -> None:
    result = invoke("suite", write(tmp_path, SUITE), "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    suite_dir = Path(result.output.strip())
    for name in ("config.yaml", "times.csv", "profiles.csv", "profiles.png", "profiles.svg", "summary.json"):
        assert (suite_dir / name).is_file(), name
    # each problem's directory is what optrun compare makes of the problem's config.yaml, to the last digit
    alone = invoke("compare", suite_dir / "digits" / "config.yaml", "--runs-dir", tmp_path / "alone", "-q")
    alone_dir = Path(alone.output.strip())
    assert comparison_without_timing(alone_dir) == comparison_without_timing(suite_dir / "digits")
    for run in (suite_dir / "digits").glob("*/seed-*"):
        assert metrics_without_timing(run) == metrics_without_timing(alone_dir / run.relative_to(suite_dir / "digits"))
    # times.csv: each label's epochs to target as its problem's comparison.csv gives them
    times = csv_dicts(suite_dir / "times.csv")
    for row in times:
        compared = {r["label"]: r for r in csv_dicts(suite_dir / row["problem"] / "comparison.csv")}[row["label"]]
        assert row["target"] == compared["target_accuracy"]
        if compared["epochs_to_target"]:
            assert float(row["epochs_to_target"]) == float(compared["epochs_to_target"])
        else:
            assert row["epochs_to_target"] == row["ratio"] == ""
    # profiles.csv: the score by hand from times.csv, max(0, 4 - r) / 3 averaged over the problems
    scores = {r["label"]: float(r["score"]) for r in csv_dicts(suite_dir / "profiles.csv")}
    for label, score in scores.items():
        ratios = [float(r["ratio"]) if r["ratio"] else np.inf for r in times if r["label"] == label]
        assert score == pytest.approx(np.mean([max(0.0, 4 - r) / 3 for r in ratios]), rel=1e-12)
    shown = invoke("show", suite_dir)
    assert shown.exit_code == 0 and "performance profiles" in shown.output and "digits" in shown.output


def test_an_interrupted_suite_keeps_its_finished_problems_and_resume_finishes_it(tmp_path) -> None:
    # the second problem's runs take a second or more each: the signal comes while the last ones train
    data = {**SUITE, "problems": {"first": PROBLEM, "second": {**PROBLEM, "train": {"epochs": 250}}}}
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "optrun", "suite", str(write(tmp_path, data)), "--runs-dir", str(runs), "-j", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(runs.glob("*/second/*/seed-*/metrics.csv")):
        time.sleep(0.05)
    assert list(runs.glob("*/second/*/seed-*/metrics.csv")), "no run of the second problem finished in time"
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    suite_dir = next(runs.iterdir())
    assert "interrupted by SIGTERM in problem second" in err and f"optrun suite --resume {suite_dir}" in err, err
    assert "Traceback" not in err
    first = comparison_without_timing(suite_dir / "first")
    refused = invoke("compare", "--resume", suite_dir / "second")
    assert refused.exit_code == 2 and f"optrun suite --resume {suite_dir}" in refused.output
    shown = invoke("show", suite_dir)
    assert "1 of 2 problems completed (not: second)" in shown.output
    part = invoke("show", suite_dir / "second")  # the problem stopped: finished through its suite
    assert f"optrun suite --resume {suite_dir}" in part.output and "compare --resume" not in part.output, part.output
    resumed = invoke("suite", "--resume", suite_dir, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert comparison_without_timing(suite_dir / "first") == first  # kept, not run again
    fresh = invoke("suite", write(tmp_path, data), "--runs-dir", tmp_path / "fresh", "-q")
    fresh_dir = Path(fresh.output.strip())
    for name in ("first", "second"):
        assert comparison_without_timing(suite_dir / name) == comparison_without_timing(fresh_dir / name)
    assert rows_without(suite_dir / "times.csv", "seconds_to_target") == rows_without(
        fresh_dir / "times.csv", "seconds_to_target"
    )
    again = invoke("suite", "--resume", suite_dir)
    assert again.exit_code == 2 and "the suite is completed" in again.output


def test_smoke_cuts_every_problem_and_tunes_two_settings() -> None:
    tuned = {**PROBLEM, "train": {"epochs": 30}, "tune": {"budget": 9, "space": {"learning_rate": {"log": [0.001, 1]}}}}
    config = smoke(parse_config({**SUITE, "problems": {"a": PROBLEM, "b": tuned}}, "s", SuiteConfig))
    a, b = config.configs.values()
    assert a.train.epochs == b.train.epochs == 1 and a.seed_list == [0]
    assert b.tune.budget == 2 and b.tune.search == "random"


def test_measure_seconds_scores_on_seconds_to_target(tmp_path) -> None:
    data = {**SUITE, "profile": {"measure": "seconds", "tau_max": 2.5}}
    result = invoke("suite", write(tmp_path, data), "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    suite_dir = Path(result.output.strip())
    times = csv_dicts(suite_dir / "times.csv")
    for problem in {r["problem"] for r in times}:
        rows = [r for r in times if r["problem"] == problem and r["seconds_to_target"]]
        best = min(float(r["seconds_to_target"]) for r in rows)
        for r in rows:
            assert float(r["ratio"]) == pytest.approx(float(r["seconds_to_target"]) / best, rel=1e-12)


def test_validate_describes_a_suite_and_names_a_bad_problem(tmp_path) -> None:
    ok = invoke("validate", write(tmp_path, SUITE))
    assert ok.exit_code == 0 and "suite of 2 optimizers on 2 problems" in ok.output, ok.output
    bad = {**SUITE, "problems": {"x": {**PROBLEM, "train": {"epochs": 0}}}}
    result = invoke("validate", write(tmp_path, bad, "bad.yaml"))
    assert result.exit_code == 2 and "problems.x.train.epochs" in result.output, result.output


def test_a_config_error_names_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^s: problems\.b\.model\.hidden"):
        parse_config({**SUITE, "problems": {"b": {**PROBLEM, "model": {"hidden": [0]}}}}, "s", SuiteConfig)


def test_a_dask_cluster_runs_a_suite_exactly_as_this_process(tmp_path, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    tuned = {**PROBLEM, "tune": {"budget": 3, "space": {"learning_rate": {"log": [0.001, 0.1]}}}}
    config = parse_config({**SUITE, "problems": {"plain": PROBLEM, "tuned": tuned}}, "s", SuiteConfig)
    local = suite(config, tmp_path / "local")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # a LocalCluster sets OMP_NUM_THREADS and its like
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = suite(config, tmp_path / "remote", scheduler=cluster.scheduler_address)
    assert comparison_without_timing(remote.path / "plain") == comparison_without_timing(local.path / "plain")
    evaluation = Path("tuned") / "evaluation"
    assert comparison_without_timing(remote.path / evaluation) == comparison_without_timing(local.path / evaluation)
    assert rows_without(remote.path / "times.csv", "seconds_to_target") == rows_without(
        local.path / "times.csv", "seconds_to_target"
    )


def test_a_tuned_problem_whose_every_setting_breaks_is_reached_by_no_label(tmp_path) -> None:
    broken = {**PROBLEM, "train": {"epochs": 2, "max_samples": 300, "divergence_factor": 1.5},
              "tune": {"budget": 3, "space": {"learning_rate": {"log": [1e6, 1e8]}}}}  # fmt: skip
    data = {**SUITE, "optimizers": {"sgd": None}, "problems": {"fine": PROBLEM, "broken": broken}}
    result = invoke("suite", write(tmp_path, data), "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    suite_dir = Path(result.output.strip())
    times = {r["problem"]: r for r in csv_dicts(suite_dir / "times.csv")}
    assert times["broken"]["epochs_to_target"] == times["broken"]["target"] == "" and times["broken"]["rank"] == "1.0"
    assert "No run diverged" in (suite_dir / "fine" / "report.html").read_text()
    assert invoke("show", suite_dir).exit_code == 0 and (suite_dir / "report.html").is_file()


def test_resume_refuses_a_suite_whose_config_changed_since_it_began(tmp_path) -> None:
    data = {**SUITE, "problems": {"first": PROBLEM}}
    result = invoke("suite", write(tmp_path, data), "--runs-dir", tmp_path / "runs", "-q")
    suite_dir = Path(result.output.strip())
    summary = json.loads((suite_dir / "summary.json").read_text())
    (suite_dir / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))  # as if stopped
    config = yaml.safe_load((suite_dir / "config.yaml").read_text())
    config["optimizers"]["lion"] = {"name": "lion"}  # a label added: it never ran on the finished problem
    (suite_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    refused = invoke("suite", "--resume", suite_dir)
    assert refused.exit_code == 2 and "the suite began with optimizers.lion.name: None" in refused.output, (
        refused.output
    )
    assert "put config.yaml back" in refused.output and len(refused.output.splitlines()) == 1


def test_the_suites_tuning_skips_objectives_and_seconds_cannot_time_them() -> None:
    objective = {"objective": {"name": "rosenbrock"}, "train": {"steps": 50}}
    tuned = {**SUITE, "tune": {"budget": 3, "space": {"learning_rate": {"log": [0.001, 0.1]}}}}
    config = parse_config({**tuned, "problems": {"net": PROBLEM, "rosenbrock": objective}}, "s", SuiteConfig)
    assert isinstance(config.configs["net"], TuneConfig) and not isinstance(config.configs["rosenbrock"], TuneConfig)
    with pytest.raises(ConfigError, match=r"profile\.measure: seconds cannot time problem rosenbrock"):
        parse_config(
            {**SUITE, "profile": {"measure": "seconds"}, "problems": {"rosenbrock": objective}}, "s", SuiteConfig
        )
    clash = {**tuned, "tune": {**tuned["tune"], "seeds": [1]}, "problems": {"net": PROBLEM}}
    with pytest.raises(ConfigError, match=r"^s: tune.seeds \(for problem net\): seed 1 is also an evaluation seed"):
        parse_config(clash, "s", SuiteConfig)


def test_an_unreachable_cluster_writes_nothing(tmp_path) -> None:
    pytest.importorskip("distributed")
    result = invoke("suite", write(tmp_path, SUITE), "--runs-dir", tmp_path / "runs",
                    "--dask-scheduler", "tcp://127.0.0.1:9")  # fmt: skip
    assert result.exit_code == 2 and "Dask scheduler" in result.output, result.output
    assert not (tmp_path / "runs").exists()
