"""How sure a comparison is: bootstrap intervals against theory and hand-computed paired differences, and a
comparison's table and comparison.csv carrying them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optrun import bootstrap
from optrun.cli import cli
from optrun.compare import compare
from optrun.config import CompareConfig, parse_config


def test_an_interval_needs_three_values_and_is_the_same_for_the_same_values() -> None:
    assert bootstrap.interval(np.array([0.9, 0.8])) is None
    values = np.array([0.91, 0.88, 0.93, 0.9])
    low, high = bootstrap.interval(values)
    assert (low, high) == bootstrap.interval(values.copy())  # a fixed resampling seed
    assert values.min() <= low < values.mean() < high <= values.max()


def test_the_interval_of_a_large_sample_is_the_normal_theorys() -> None:
    """For n = 400 draws, the bootstrap interval of the mean approaches mean ± 1.96·s/√n."""
    values = np.random.default_rng(7).normal(0.5, 0.1, 400)
    low, high = bootstrap.interval(values)
    half = 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
    assert low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.1 * half)


def test_paired_differences_are_the_seed_by_seed_ones() -> None:
    mine, best = np.array([0.90, 0.80, 0.85, 0.70]), np.array([0.80, 0.85, 0.80, 0.70])
    pair = bootstrap.paired(mine, best)
    assert pair.difference == pytest.approx((0.10 - 0.05 + 0.05 + 0.0) / 4)  # by hand
    assert pair.win_rate == 0.5  # seeds 0 and 2; a tie is no win
    assert -0.05 <= pair.interval[0] < pair.difference < pair.interval[1] <= 0.10
    assert bootstrap.paired(best, mine).difference == pytest.approx(-pair.difference)
    loss = bootstrap.paired(np.array([0.1, 0.2, 0.3]), np.array([0.2, 0.2, 0.2]), higher_is_better=False)
    assert loss.win_rate == pytest.approx(1 / 3)


def compared(tmp_path, seeds: int, optimizers: dict, **train) -> tuple[Path, list[dict[str, str]]]:
    """A comparison of ``optimizers`` on a few digits over ``seeds`` seeds: its directory and comparison.csv's rows."""
    spec = {
        "name": "cmp",
        "dataset": {"name": "digits"},
        "train": {"epochs": 2, "max_samples": 300, **train},
        "seeds": seeds,
        "optimizers": optimizers,
    }
    out = compare(parse_config(spec, schema=CompareConfig), tmp_path, jobs=1).path
    with (out / "comparison.csv").open() as f:
        return out, list(csv.DictReader(f))


def test_an_optimizer_against_an_identical_copy_of_itself_differs_by_nothing(tmp_path) -> None:
    twins = {"sgd": {"learning_rate": 0.05}, "sgd-copy": {"name": "sgd", "learning_rate": 0.05}}
    _, rows = compared(tmp_path, 3, twins)
    first, second = sorted(rows, key=lambda row: row["diff_to_best"] != "")
    assert first["diff_to_best"] == "" and first["win_rate"] == ""  # the best row itself
    assert float(second["diff_to_best"]) == 0.0 and float(second["win_rate"]) == 0.0
    assert float(second["diff_ci_low"]) <= 0.0 <= float(second["diff_ci_high"])
    for row in rows:  # the interval holds the mean
        low, high = float(row["test_accuracy_ci_low"]), float(row["test_accuracy_ci_high"])
        assert low <= float(row["final_test_accuracy_mean"]) <= high


def test_with_two_seeds_there_is_no_interval_and_the_table_says_so(tmp_path) -> None:
    out, rows = compared(tmp_path, 2, {"sgd": None, "adam": None}, epochs=1, max_samples=200)
    assert all(row["test_accuracy_ci_low"] == "" and row["diff_ci_low"] == "" for row in rows)
    assert sum(row["diff_to_best"] != "" for row in rows) == 1  # the other label, paired on its two seeds
    shown = CliRunner().invoke(cli, ["show", str(out)])
    assert "95% CI: of the mean test accuracy, bootstrap over the seeds (at least 3 completed)" in shown.output
