"""optrun tune: the search spaces, the protocol (validation data only, equal budgets, fresh evaluation seeds),
the choice, its files, interrupt and resume, and one-line errors for bad tune sections."""

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
from optrun.config import TuneConfig, parse_config, smoke
from optrun.problems import NETWORK
from optrun.runs import RunInterrupted
from optrun.search import Choices, Range, at_edge, grid_points, settings
from optrun.train import train
from optrun.tune import Setting, TrialResult, _Tuning, choose, plan, run_trial, tune, tuning_data

SMALL = {
    "name": "tn",
    "dataset": {"name": "digits"},
    "model": {"hidden": [16]},
    "train": {"epochs": 2, "max_samples": 400},
    "seeds": 2,
    "optimizers": {"sgd": None, "adam": None},
    "tune": {
        "budget": 6,
        "space": {"learning_rate": {"log": [0.001, 1.0]}, "adam": {"beta2": [0.99, 0.999]}},
    },
}


def tune_config(**changes) -> TuneConfig:
    data = {**SMALL, **changes}
    return parse_config(data, "tn.yaml", TuneConfig)


def write_config(tmp_path: Path, data: dict, name: str = "tn.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def trials_without_timing(tune_dir: Path) -> list[list[str]]:
    return rows_without(tune_dir / "trials.csv", "seconds")


# --- search spaces ---------------------------------------------------------------------------------------------------


def test_a_log_grid_is_evenly_spaced_in_the_exponent_and_a_linear_one_in_the_value() -> None:
    assert Range(1e-3, 1.0, "log").grid(4) == [0.001, 0.01, 0.1, 1.0]
    assert Range(1e-4, 1e-1, "log").grid(7) == [0.0001, 0.000316, 0.001, 0.00316, 0.01, 0.0316, 0.1]
    assert Range(0.0, 0.9, "linear").grid(4) == [0.0, 0.3, 0.6, 0.9]


def test_rounding_never_leaves_the_range_and_the_ends_are_exact() -> None:
    values = Range(0.9, 0.99999, "linear").grid(9)  # 3 significant digits would make 0.9875 ... 0.99999 into 1
    assert values[0] == 0.9 and values[-1] == 0.99999
    assert all(0.9 <= v <= 0.99999 for v in values)
    assert values == sorted(set(values))


@pytest.mark.parametrize(
    "space, budget, points",
    [
        ({"a": Range(1e-3, 1, "log")}, 16, {"a": 16}),
        ({"a": Range(1e-3, 1, "log"), "b": Range(0, 1, "linear")}, 16, {"a": 4, "b": 4}),
        ({"a": Range(1e-3, 1, "log"), "b": Range(0, 1, "linear")}, 12, {"a": 4, "b": 3}),
        ({"a": Range(1e-3, 1, "log"), "c": Choices((1, 2))}, 16, {"a": 8, "c": 2}),
        ({"c": Choices((1, 2, 3))}, 3, {"c": 3}),
    ],
)
def test_a_grid_has_exactly_the_budget(space, budget: int, points) -> None:
    assert grid_points(space, budget) == points
    tried = settings(space, budget, "grid", 0)
    assert len(tried) == budget and len({tuple(s.values()) for s in tried}) == budget


@pytest.mark.parametrize(
    "space, budget, says",
    [
        ({"a": Range(1e-3, 1, "log"), "b": Range(0, 1, "linear")}, 13, "fewer than 3 points"),
        ({"a": Range(1e-3, 1, "log"), "b": Range(0, 1, "linear")}, 8, "fewer than 3 points"),  # 4 × 2: b's ends
        ({"a": Range(1e-3, 1, "log"), "c": Choices((1, 2, 3))}, 16, "a multiple of 3"),
        ({"c": Choices((1, 2))}, 4, "make the budget 2"),
    ],
)
def test_a_budget_no_grid_can_hold_is_refused(space, budget: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        grid_points(space, budget)


def test_random_search_is_seeded_log_uniform_and_shares_its_draws_between_labels() -> None:
    space = {"learning_rate": Range(1e-4, 1.0, "log")}
    tried = settings(space, 4000, "random", 7)
    assert tried == settings(space, 4000, "random", 7) and tried != settings(space, 4000, "random", 8)
    exponents = np.log10([s["learning_rate"] for s in tried])
    assert exponents.min() >= -4 and exponents.max() <= 0
    # log-uniform on [1e-4, 1]: the exponent is uniform on [-4, 0], mean -2 and variance 16/12, each quarter 1/4
    assert abs(exponents.mean() + 2) < 0.1 and abs(exponents.var() - 16 / 12) < 0.1
    assert np.allclose(np.histogram(exponents, bins=4, range=(-4, 0))[0] / 4000, 0.25, atol=0.03)
    wider = settings({**space, "beta2": Choices((0.99, 0.999))}, 4000, "random", 7)
    assert [s["learning_rate"] for s in wider] == [s["learning_rate"] for s in tried]  # the same draws
    assert abs(np.mean([s["beta2"] == 0.99 for s in wider]) - 0.5) < 0.03


def test_a_chosen_value_at_the_lowest_or_highest_tried_is_at_the_edge() -> None:
    space = {"learning_rate": Range(1e-3, 1, "log"), "beta2": Choices((0.99, 0.999))}
    tried = settings(space, 8, "grid", 0)
    assert at_edge(space, tried, {"learning_rate": 1.0, "beta2": 0.99}) == {"learning_rate": "high"}
    assert at_edge(space, tried, {"learning_rate": 0.001, "beta2": 0.999}) == {"learning_rate": "low"}
    assert at_edge(space, tried, {"learning_rate": 0.01, "beta2": 0.999}) == {}  # a choice is never an edge


# --- the config ------------------------------------------------------------------------------------------------------


def test_spaces_combine_ranges_for_every_label_with_a_labels_own() -> None:
    config = tune_config()
    assert config.spaces == {
        "sgd": {"learning_rate": Range(0.001, 1.0, "log")},
        "adam": {"learning_rate": Range(0.001, 1.0, "log"), "beta2": Choices((0.99, 0.999))},
    }
    assert config.dataset.validation_fraction == 0.1  # tuning needs a validation split: 0.1 unless given
    assert config.tuning_seeds == [2] and config.seed_list == [0, 1]  # after the evaluation seeds, disjoint


LR = {"learning_rate": {"log": [1e-3, 1]}}
BAD_TUNE_SECTIONS = [
    ({"space": {"mu": {"log": [0.5, 0.9]}}}, "tune.space.mu: is neither a label (adam, sgd) nor a hyperparameter"),
    (
        {"space": {"beta2": [0.99]}},
        "tune.space.beta2: sgd (sgd) has no hyperparameter beta2; give beta2 under the labels",
    ),
    ({"space": {"adam": {"mu": [0.9]}, **LR}}, "tune.space.adam.mu: adam (adam) has no hyperparameter mu; it takes:"),
    ({"space": {"learning_rate": {"log": [0, 1]}}}, "tune.space.learning_rate: log: needs 0 < low"),
    ({"space": {"learning_rate": {"log": [1, 0.1]}}}, "tune.space.learning_rate: log: needs low < high"),
    ({"space": {"learning_rate": 0.1}}, "tune.space.learning_rate: must be a range ({log: [low, high]}"),
    ({"space": {"learning_rate": []}}, "tune.space.learning_rate: an empty list has nothing to choose"),
    ({"space": {**LR, "adam": {"beta2": [0.99, 1.5]}}}, "tune.space.adam.beta2: must be in [0, 1), got 1.5"),
    ({"space": {"sgd": LR}}, "tune.space: gives adam nothing to tune"),
    ({"budget": 5, "space": {**LR, "adam": {"beta2": [0.99, 0.999]}}}, "tune.budget: adam: a grid of 2 choices"),
    ({"seeds": [1], "space": LR}, "tune.seeds: seed 1 is also an evaluation seed"),
    ({"budget": 0, "space": LR}, "tune.budget: must be >= 1, got 0"),
    (
        {"metric": "test_accuracy", "space": LR},
        "tune.metric: must be one of validation_accuracy or validation_loss, got",
    ),
    ({"serach": "grid", "space": LR}, "tune.serach: unknown key (did you mean 'search'?)"),
    ({}, "tune.space: is required"),
    ({"space": {}}, "tune.space: is empty"),
]


@pytest.mark.parametrize("tune, expected", BAD_TUNE_SECTIONS)
def test_a_bad_tune_section_is_one_line_exit_2_and_writes_nothing(tmp_path, tune: dict, expected: str) -> None:
    path = write_config(tmp_path, {**SMALL, "tune": {"budget": 6, **tune}})
    result = invoke("tune", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {path}: {expected}") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "runs").exists()


def test_an_objective_cannot_be_tuned_and_other_commands_name_the_tune_command(tmp_path) -> None:
    data = {"objective": {"name": "rosenbrock"}, "optimizers": {"sgd": None}, "tune": SMALL["tune"]}
    result = invoke("tune", write_config(tmp_path, data, "obj.yaml"))
    assert result.exit_code == 2 and "tune: tunes a network on a dataset's validation split" in result.output
    path = write_config(tmp_path, SMALL)
    for command in ("compare", "train"):
        result = invoke(command, path)
        assert (
            result.exit_code == 2 and f"tune: this is a tune config; run it with 'optrun tune {path}'" in result.output
        )
    result = invoke("validate", path)
    assert result.exit_code == 0 and result.output.startswith(f"ok: {path}"), result.output
    plain = write_config(tmp_path, {k: v for k, v in SMALL.items() if k != "tune"}, "plain.yaml")
    result = invoke("tune", plain)
    assert result.exit_code == 2 and "tune: is required: optrun tune needs a tune: section" in result.output


# --- the protocol ----------------------------------------------------------------------------------------------------


def test_a_trial_is_scored_on_the_validation_split_and_never_sees_the_test_split() -> None:
    config = tune_config()
    trial = plan(config)[3]
    data = tuning_data(trial.config)
    whole = NETWORK.load(trial.config)
    assert data.x_val is None and np.array_equal(data.x_test, whole.x_val) and np.array_equal(data.y_test, whole.y_val)
    assert np.array_equal(data.x_train, whole.x_train)
    # the same config trained as an ordinary run (which evaluates all three splits) has the trial's score as its
    # validation accuracy: the trial trained the same network on the same batches and scored the validation split
    result = run_trial((trial.config.to_dict(), "validation_accuracy", "last"))
    reference = train(trial.config).records
    assert result.status == "completed" and result.value == reference[-1].validation_accuracy
    best = run_trial((trial.config.to_dict(), "validation_loss", "best"))
    losses = [r.validation_loss for r in reference[1:]]
    assert best.value == min(losses) and best.epoch == 1 + losses.index(min(losses))


def settings_for(label: str, scores: list[float | None]) -> list[Setting]:
    return [
        Setting(label, i, {"learning_rate": 10.0**-i}, s, "completed" if s is not None else "diverged", 1)
        for i, s in enumerate(scores, start=1)
    ]


def test_the_choice_is_the_best_score_the_earliest_on_a_tie_and_broken_settings_lose() -> None:
    config = tune_config(tune={"budget": 4, "space": {"learning_rate": {"log": [1e-4, 0.1]}}})
    tried = settings_for("sgd", [0.5, None, 0.7, 0.7]) + settings_for("adam", [None, None, None, None])
    choices = choose(config, tried)
    assert choices["sgd"].setting.trial == 3 and choices["sgd"].broken == 1
    assert choices["adam"].setting is None and choices["adam"].broken == 4
    losses = tune_config(tune={**config.tune.model_dump(), "metric": "validation_loss"})
    assert choose(losses, settings_for("sgd", [0.5, 0.2, 0.2, None]))["sgd"].setting.trial == 2


def test_tune_writes_its_files_trials_on_validation_only_and_tuned_yaml_reruns_the_evaluation(tmp_path) -> None:
    path = write_config(tmp_path, SMALL)
    result = invoke("tune", path, "--runs-dir", tmp_path / "runs", "-j", "1")
    assert result.exit_code == 0, result.output
    tune_dir = next((tmp_path / "runs").iterdir())
    names = {p.name for p in tune_dir.iterdir()}
    assert {"config.yaml", "trials.csv", "tuned.yaml", "sensitivity.png", "sensitivity.svg", "summary.json"} <= names
    with (tune_dir / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header == ["label", "trial", "seed", "learning_rate", "beta2", "validation_accuracy", "epoch", "status",
                      "seconds", "reason"]  # fmt: skip
    assert not any("test" in column for column in header)
    per_label = {label: sum(r["label"] == label for r in rows) for label in ("sgd", "adam")}
    assert per_label == {"sgd": 6, "adam": 6}  # the same budget for every label
    assert {r["seed"] for r in rows} == {"2"}  # the tuning seed, not an evaluation seed
    summary = json.loads((tune_dir / "summary.json").read_text())
    assert summary["status"] == "completed"
    for label, chosen in summary["chosen"].items():
        mine = [r for r in rows if r["label"] == label and r["status"] == "completed"]
        best = max(mine, key=lambda r: float(r["validation_accuracy"]))
        assert chosen["score"] == float(best["validation_accuracy"])
        assert chosen["setting"]["learning_rate"] == float(best["learning_rate"])
    tuned = yaml.safe_load((tune_dir / "tuned.yaml").read_text())
    assert tuned["seeds"] == [0, 1] and "tune" not in tuned
    assert tuned["optimizers"]["adam"]["beta2"] == summary["chosen"]["adam"]["setting"]["beta2"]
    evaluation = tune_dir / "evaluation"
    assert sorted(p.parent.name for p in evaluation.glob("*/seed-*/metrics.csv")) == [
        "seed-0",
        "seed-0",
        "seed-1",
        "seed-1",
    ]
    rerun = invoke("compare", tune_dir / "tuned.yaml", "--runs-dir", tmp_path / "rerun", "-j", "1", "-q")
    assert rerun.exit_code == 0, rerun.output
    rerun_dir = next((tmp_path / "rerun").iterdir())
    for run in evaluation.glob("*/seed-*"):
        assert metrics_without_timing(run) == metrics_without_timing(rerun_dir / run.relative_to(evaluation))
    assert "tuning" in result.output and "chosen setting" in result.output and "tune directory" in result.output


def test_two_workers_tune_exactly_as_one(tmp_path) -> None:
    one = tune(tune_config(), tmp_path / "one", jobs=1)
    two = tune(tune_config(), tmp_path / "two", jobs=2)
    assert sorted(trials_without_timing(one.path)) == sorted(trials_without_timing(two.path))
    assert (one.path / "tuned.yaml").read_text() == (two.path / "tuned.yaml").read_text()


def test_a_freed_worker_takes_the_next_task_of_the_label_with_the_most_work_left(tmp_path) -> None:
    """Hand-worked: with 3 trials and 1 evaluation run a label, a label whose trials take 4 s has 4 times the
    work left of one whose take 1 s, and is given the freed workers until the two are even."""
    config = tune_config(seeds=1, tune={"budget": 3, "space": {"learning_rate": {"log": [0.001, 1.0]}}})
    tuning = _Tuning(config, tmp_path, plan(config), {}, in_flight=2)

    def given() -> list[tuple[str, int | str]]:  # the tasks given to the executor so far
        return [(p.label, getattr(p, "trial", "run")) for p in tuning.planned]

    def finish(label: str, trial: int, seconds: float) -> None:
        planned = next(p for p in tuning.planned if (p.label, getattr(p, "trial", None)) == (label, trial))
        tuning.trial_done(planned, TrialResult("completed", 0.5, 2, seconds))
        tuning.task_done()
        assert len(tuning.tasks) - tuning.finished <= 2  # never more than a task a worker

    try:
        assert given() == [("sgd", 1), ("adam", 1)]  # nothing timed: the plan's order
        finish("sgd", 1, 1.0)  # left: sgd 2 trials + 1 run at 1 s; adam's untimed, at every label's mean: a tie
        assert given()[-1] == ("sgd", 2)
        finish("adam", 1, 4.0)  # adam 3 x 4 s against sgd 2 x 1 s
        assert given()[-1] == ("adam", 2)
        finish("sgd", 2, 1.0)  # adam 2 x 4 s against sgd 2 x 1 s: adam again, where the plan's order is sgd's
        assert given()[-1] == ("adam", 3)
        finish("adam", 2, 4.0)  # adam has no waiting task, its run is to come
        assert given()[-1] == ("sgd", 3)
        finish("adam", 3, 4.0)  # adam chosen: its evaluation run waits, and a worker is free
        assert given()[-1] == ("adam", "run")
        finish("sgd", 3, 1.0)
        assert given()[-1] == ("sgd", "run") and not tuning.waiting
    finally:
        tuning.writer.close()


def test_every_setting_diverging_is_a_result_not_a_crash(tmp_path) -> None:
    config = tune_config(
        optimizers={"sgd": None},
        train={"epochs": 2, "max_samples": 400, "divergence_factor": 1.5},
        tune={"budget": 3, "space": {"learning_rate": {"log": [1e6, 1e8]}}},
    )
    outcome = tune(config, tmp_path / "runs")
    assert outcome.evaluation is None and outcome.all_failed
    assert outcome.choices["sgd"].setting is None and outcome.choices["sgd"].broken == 3
    with (outcome.path / "trials.csv").open() as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["diverged"] * 3
    assert (outcome.path / "sensitivity.png").is_file() and not (outcome.path / "tuned.yaml").exists()


def test_smoke_tries_two_settings_per_label_for_one_epoch() -> None:
    config = smoke(tune_config())
    assert config.tune.budget == 2 and config.train.epochs == 1 and config.seed_list == [0]
    assert len(plan(config)) == 4


# --- interrupt and resume --------------------------------------------------------------------------------------------


def test_an_interrupted_tuning_keeps_every_finished_trial_and_resume_runs_only_the_rest(tmp_path) -> None:
    config = tune_config()
    whole = tune(config, tmp_path / "whole")
    seen = []

    def stop_after_three(planned, result) -> None:
        seen.append(planned.key)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        tune(config, tmp_path / "cut", on_trial=stop_after_three)
    cut = stopped.value.path
    assert len(trials_without_timing(cut)) == 1 + 3
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    with (cut / "trials.csv").open("a") as f:
        f.write("adam,3,2,0.1")  # a row torn by a crash while it was written
    rerun = []
    outcome = tune(config, tmp_path / "unused", resume_dir=cut, on_trial=lambda p, r: rerun.append(p.key))
    assert outcome.path == cut and len(rerun) == 12 - 3 and not set(rerun) & set(seen[:3])  # only what was missing
    assert sorted(trials_without_timing(cut)) == sorted(trials_without_timing(whole.path))
    assert (cut / "tuned.yaml").read_text() == (whole.path / "tuned.yaml").read_text()
    assert json.loads((cut / "summary.json").read_text())["status"] == "completed"
    for run in (whole.path / "evaluation").glob("*/seed-*"):
        assert metrics_without_timing(run) == metrics_without_timing(cut / run.relative_to(whole.path))
    again = invoke("tune", "--resume", cut)
    assert again.exit_code == 2 and "already completed" in again.output


def test_an_evaluation_interrupted_keeps_its_finished_runs_and_resume_finishes_it_as_if_never_stopped(
    tmp_path,
) -> None:
    config = tune_config()
    whole = tune(config, tmp_path / "whole")
    runs = []

    def stop_after_one(planned, outcome) -> None:
        runs.append(planned.subdir)
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        tune(config, tmp_path / "cut", on_run=stop_after_one)
    cut = stopped.value.path
    assert "1 of 4 evaluation runs" in str(stopped.value)
    assert json.loads((cut / "evaluation" / "summary.json").read_text())["status"] == "interrupted"
    assert json.loads((cut / "summary.json").read_text())["status"] == "interrupted"
    again = []
    tune(config, tmp_path / "unused", resume_dir=cut, on_run=lambda planned, outcome: again.append(planned.subdir))
    assert runs[0] not in again and len(again) == 3  # the finished run is kept, not trained again
    assert sorted(trials_without_timing(cut)) == sorted(trials_without_timing(whole.path))
    for run in (whole.path / "evaluation").glob("*/seed-*"):
        assert metrics_without_timing(run) == metrics_without_timing(cut / run.relative_to(whole.path))
    assert comparison_without_timing(cut / "evaluation") == comparison_without_timing(whole.path / "evaluation")
    assert json.loads((cut / "summary.json").read_text())["status"] == "completed"


def test_a_dask_cluster_tunes_exactly_as_this_process(tmp_path, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    local = tune(tune_config(), tmp_path / "local")
    monkeypatch.setattr(os, "environ", os.environ.copy())  # a LocalCluster sets OMP_NUM_THREADS and its like
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote = tune(tune_config(), tmp_path / "remote", scheduler=cluster.scheduler_address)
    assert sorted(trials_without_timing(remote.path)) == sorted(trials_without_timing(local.path))
    assert comparison_without_timing(remote.path / "evaluation") == comparison_without_timing(local.path / "evaluation")


@pytest.mark.parametrize(
    "key, value, says",
    [
        (("tune", "space", "learning_rate"), {"log": [0.01, 1.0]}, "tune.space.learning_rate.log: [0.001, 1.0]"),
        (("train", "epochs"), 3, "train.epochs: 2, and its config.yaml now says 3"),
        (("tune", "metric"), "validation_loss", "tune.metric: validation_accuracy, and its config.yaml now says"),
        (("model", "hidden"), [8], "model.hidden: [16], and its config.yaml now says [8]"),
    ],
)
def test_resume_refuses_a_config_edited_since_the_tuning_began(tmp_path, key, value, says: str) -> None:
    def stop(planned, result) -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        tune(tune_config(), tmp_path / "runs", on_trial=stop)
    cut = stopped.value.path
    kept = trials_without_timing(cut)
    config = yaml.safe_load((cut / "config.yaml").read_text())
    section = config
    for part in key[:-1]:
        section = section[part]
    section[key[-1]] = value
    (cut / "config.yaml").write_text(yaml.safe_dump(config))
    result = invoke("tune", "--resume", cut)
    assert result.exit_code == 2 and f"the tuning began with {says}" in result.output, result.output
    assert "put config.yaml back, or start anew" in result.output and trials_without_timing(cut) == kept


def test_ctrl_c_on_parallel_trials_keeps_the_finished_ones_and_resume_finishes(tmp_path) -> None:
    data = {**SMALL, "train": {"epochs": 40}, "tune": {**SMALL["tune"], "budget": 16}}
    data["tune"]["space"] = {"learning_rate": {"log": [0.001, 1.0]}}
    path = write_config(tmp_path, data)
    runs = tmp_path / "runs"
    command = [sys.executable, "-m", "optrun", "tune", str(path), "--runs-dir", str(runs), "-j", "2"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline
        and sum(len(f.read_text().splitlines()) for f in runs.glob("*/trials.csv")) <= 3  # header + 3 rows
    ):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    tune_dir = next(runs.iterdir())
    assert err.startswith("interrupted by SIGINT after") and f"optrun tune --resume {tune_dir}" in err, err
    assert "Traceback" not in err
    kept = trials_without_timing(tune_dir)
    assert 3 <= len(kept) - 1 < 32
    resumed = invoke("tune", "--resume", tune_dir, "-j", "2", "-q")
    assert resumed.exit_code == 0, resumed.output
    after = trials_without_timing(tune_dir)
    assert len(after) - 1 == 32 and all(row in after for row in kept)  # every finished trial kept as it was


def test_the_sensitivity_plot_puts_numbers_on_a_number_axis_whatever_each_label_searched(tmp_path) -> None:
    from optrun.plots import save_figure, sensitivity_figure
    from optrun.tune import Choice

    spaces = {"adam": {"beta1": Choices((0.9, 0.8))}, "lion": {"beta1": Range(0.8, 0.95, "linear")},
              "sgd": {"clip_norm": Choices((None, 1.0))}}  # fmt: skip
    adam = [Setting("adam", i, {"beta1": b}, s, "completed", 1) for i, (b, s) in enumerate([(0.9, 0.5), (0.8, 0.6)])]
    lion = [
        Setting("lion", 1, {"beta1": 0.95}, None, "diverged", 1),
        Setting("lion", 2, {"beta1": 0.8}, 0.4, "completed", 1),
    ]
    sgd = [
        Setting("sgd", 1, {"clip_norm": None}, 0.3, "completed", 1),
        Setting("sgd", 2, {"clip_norm": 1.0}, 0.2, "completed", 1),
    ]
    choices = {
        "adam": Choice("adam", adam[1], adam),
        "lion": Choice("lion", lion[1], lion),
        "sgd": Choice("sgd", sgd[0], sgd),
    }
    figure = sensitivity_figure(choices, spaces, "validation_accuracy", "last", "t")
    beta1, clip = figure.axes[:2]
    assert beta1.get_xscale() == "linear" and beta1.get_xlabel() == "beta1"
    star = next(line for line in beta1.get_lines() if line.get_marker() == "*")
    assert star.get_xdata()[0] == 0.8  # adam's chosen 0.8 at 0.8 on the axis, not at the place it was listed
    assert [t.get_text() for t in clip.get_xticklabels()] == ["null", "1"]
    assert len(save_figure(figure, tmp_path, "sensitivity")) == 2
    # a range for one label and a list with null for another: each value tried a tick, null first, then in order
    mixed = {"sgd": {"clip_norm": Range(0.1, 10.0, "log")}, "adam": {"clip_norm": Choices((None, 5.0, 0.1))}}
    tried = {"sgd": [0.1, 1.0, 10.0], "adam": [None, 5.0, 0.1]}
    mixed_choices = {
        label: Choice(label, None, [Setting(label, i, {"clip_norm": v}, 0.5, "completed", 1) for i, v in enumerate(vs)])
        for label, vs in tried.items()
    }
    panel = sensitivity_figure(mixed_choices, mixed, "validation_loss", "last").axes[0]
    assert [t.get_text() for t in panel.get_xticklabels()] == ["null", "0.1", "1", "5", "10"]
    broken = {"sgd": Choice("sgd", None, [Setting("sgd", 1, {"clip_norm": None}, None, "diverged", 1)])}
    empty = sensitivity_figure(broken, {"sgd": spaces["sgd"]}, "validation_loss", "last")
    assert empty.axes[0].get_ylim() == (0, 1) and "every setting diverged" in empty.axes[0].texts[0].get_text()


def test_a_random_search_over_lists_alone_draws_distinct_settings_and_refuses_more_than_there_are() -> None:
    space = {"beta2": Choices((0.99, 0.999)), "amsgrad": Choices((True, False)), "clip_norm": Choices((None, 1.0))}
    tried = settings(space, 8, "random", 3)
    assert len({tuple(s.values()) for s in tried}) == 8  # every one of the 8 settings, each once
    with pytest.raises(ValueError, match="its lists make 8 settings, and a random search of 9 would repeat them"):
        settings(space, 9, "random", 3)


def test_a_tuning_running_now_is_not_resumed_a_second_time_and_one_killed_is(tmp_path) -> None:
    import socket

    def stop(planned, result) -> None:
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        tune(tune_config(), tmp_path / "runs", on_trial=stop)
    cut = stopped.value.path
    summary = json.loads((cut / "summary.json").read_text())
    running = {**summary, "status": "running", "host": socket.gethostname()}
    (cut / "summary.json").write_text(json.dumps({**running, "pid": os.getpid()}))
    result = invoke("tune", "--resume", cut)
    assert result.exit_code == 2 and f"the tuning is running (process {os.getpid()})" in result.output
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (cut / "summary.json").write_text(json.dumps({**running, "pid": int(dead.stdout)}))  # killed: no summary after
    assert invoke("tune", "--resume", cut, "-j", "1", "-q").exit_code == 0


def test_show_and_report_read_a_tune_directory_and_its_parts_point_to_tune(tmp_path) -> None:
    data = {**SMALL, "optimizers": {"sgd": None, "momentum": {"clip_norm": 1.0}}}
    data["tune"] = {"budget": 3, "space": {"learning_rate": {"log": [0.01, 1.0]}, "momentum": {"clip_norm": [None]}}}
    config = parse_config(data, "tn", TuneConfig)

    def stop_after_two(planned, result, seen=[]) -> None:  # noqa: B006 (counts across calls)
        seen.append(planned)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        tune(config, tmp_path / "cut", on_trial=stop_after_two)
    shown = invoke("show", stopped.value.path)
    assert shown.exit_code == 0 and "not chosen yet: 1 of 3 settings tried" in shown.output, shown.output
    assert f"finish it with: optrun tune --resume {stopped.value.path}" in shown.output
    with (stopped.value.path / "trials.csv").open() as f:
        assert {r["clip_norm"] for r in csv.DictReader(f)} >= {"null"}  # tried as null: not an empty cell
    one, two = (tune(config, tmp_path / name).path for name in ("one", "two"))
    reported = invoke("report", one, two, "--out", tmp_path / "report")
    assert reported.exit_code == 0, reported.output
    assert f"{one.name}/sgd" in reported.output and f"{two.name}/sgd" in reported.output
    for command, where in (("compare", one), ("train", one / "evaluation" / "sgd" / "seed-0")):
        result = invoke(command, "--resume", where)
        assert result.exit_code == 2 and f"it is completed: optrun show {one}" in result.output, result.output


def test_smoke_draws_two_random_settings_where_the_grid_could_not_hold_two(tmp_path) -> None:
    path = write_config(tmp_path, SMALL)  # adam's grid needs a multiple of 2 with 3 rates at least
    result = invoke("tune", path, "--smoke", "--runs-dir", tmp_path / "runs", "-j", "1", "-q")
    assert result.exit_code == 0, result.output
    assert len(trials_without_timing(next((tmp_path / "runs").iterdir()))) == 1 + 4
