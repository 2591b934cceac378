"""Optimizers on objectives: per-step rows against closed forms, noise, divergence, run directories."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli
from optrun.compare import compare
from optrun.config import CompareConfig, parse_config
from optrun.objectives import contraction_rate, random_rotation
from optrun.plots import convergence_figure, trajectories_figure
from optrun.problems.landscape import StepRecord, objective_of, theory_rate
from optrun.report import build, collect
from optrun.schema import ConfigError
from optrun.train import train


def config(objective: dict, optimizer: dict, steps: int = 50, **extra):
    return parse_config({"objective": objective, "optimizer": optimizer, "train": {"steps": steps}, **extra})


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_gradient_descent_on_the_rotated_quadratic_is_a_matrix_power() -> None:
    """x_t = (I − lr·H)^t·x0, with H = Q·diag(1..κ)·Qᵀ and Q drawn from the seed's first stream."""
    lr, steps, seed = 0.015, 60, 3
    quadratic = {"name": "quadratic", "dim": 4, "condition_number": 100}
    result = train(config(quadratic, {"name": "sgd", "learning_rate": lr}, steps, seed=seed))
    q = random_rotation(4, np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0]))
    H = q @ np.diag(np.linspace(1, 100, 4)) @ q.T
    assert len(result.records) == steps + 1 and all(isinstance(r, StepRecord) for r in result.records)
    for row in result.records[::10]:
        x = np.linalg.matrix_power(np.eye(4) - lr * H, row.step) @ np.ones(4)
        assert row.distance_to_minimum == pytest.approx(np.linalg.norm(x), rel=1e-10)
        assert row.loss == pytest.approx(0.5 * x @ H @ x, rel=1e-10)
        assert row.grad_norm == pytest.approx(np.linalg.norm(H @ x), rel=1e-10)
        assert row.x0 is None  # coordinates only for 2-D objectives


def test_noisy_gradients_come_from_the_seed_and_not_the_optimizer() -> None:
    """SGD on booth with noise σ: x_{t+1} = x_t − lr·(∇f(x_t) + σ·ξ_t), ξ_t from the seed's third stream."""
    lr, sigma, seed = 0.02, 0.5, 11
    result = train(config({"name": "booth", "noise": sigma}, {"name": "sgd", "learning_rate": lr}, 30, seed=seed))
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    x = np.array([0.0, 0.0])
    for row in result.records[1:]:
        a, b = x
        r1, r2 = a + 2 * b - 7, 2 * a + b - 5
        x = x - lr * (np.array([2 * r1 + 4 * r2, 4 * r1 + 2 * r2]) + sigma * rng.standard_normal(2))
        assert (row.x0, row.x1) == pytest.approx(tuple(x), rel=1e-12)
    # the recorded loss is exact: f at the point, without noise
    last = result.records[-1]
    assert last.loss == pytest.approx((last.x0 + 2 * last.x1 - 7) ** 2 + (2 * last.x0 + last.x1 - 5) ** 2, rel=1e-12)


def test_a_run_directory_of_an_objective(tmp_path) -> None:
    path = tmp_path / "valley.yaml"
    path.write_text("objective: {name: rosenbrock}\ntrain: {steps: 40}\noptimizer: {name: adam, learning_rate: 0.05}\n")
    result = invoke("train", path, "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    run_dir = Path(result.output.strip())
    with (run_dir / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["step", "loss", "grad_norm", "distance_to_minimum", "learning_rate", "x0", "x1"]
    assert [int(r["step"]) for r in rows] == list(range(41))
    assert (float(rows[0]["x0"]), float(rows[0]["x1"])) == (-1.2, 1.0)  # the classic start
    assert float(rows[0]["distance_to_minimum"]) == pytest.approx(np.hypot(2.2, 0.0))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 40 and summary["objective"] == "rosenbrock"
    assert summary["final"]["point"] == [float(rows[-1]["x0"]), float(rows[-1]["x1"])]
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert "dataset" not in resolved and "model" not in resolved
    assert resolved["train"] == {"steps": 40, "divergence_factor": None}
    again = Path(invoke("train", run_dir / "config.yaml", "--runs-dir", tmp_path / "runs", "-q").output.strip())
    assert (again / "metrics.csv").read_text() == (run_dir / "metrics.csv").read_text()
    shown = invoke("show", run_dir).output
    assert "per-step metrics" in shown and "distance to min" in shown
    pictures = sorted(p.name for p in run_dir.glob("*.png"))
    assert pictures == ["curves.png", "trajectories.png"]  # convergence.png is for the quadratic


@pytest.mark.parametrize("objective", ["{name: booth, start: [1, 3]}", "{name: quadratic, start: [1.0e-9, 0]}"])
def test_a_run_that_starts_at_the_minimum_draws_its_pictures(tmp_path, objective: str) -> None:
    """Its contours around one point, and a distance that is zero throughout, still make pictures."""
    path = tmp_path / "there.yaml"
    path.write_text(f"objective: {objective}\ntrain: {{steps: 5}}\noptimizer: {{name: sgd, learning_rate: 0.001}}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "cannot be log-scaled" too
        result = invoke("train", path, "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    assert {"curves.png", "trajectories.png"} <= {p.name for p in Path(result.output.strip()).glob("*.png")}


def test_the_saddle_has_no_distance_and_escapes(tmp_path) -> None:
    result = train(config({"name": "saddle"}, {"name": "sgd", "learning_rate": 0.1}, 40))
    assert all(r.distance_to_minimum is None for r in result.records)
    # y grows by a factor 1.2 per step from 0.001; x shrinks by 0.8
    assert result.records[-1].x1 == pytest.approx(0.001 * 1.2**40, rel=1e-12)
    assert result.records[-1].x0 == pytest.approx(0.8**40, rel=1e-12)


def test_divergence_on_an_objective_exits_3(tmp_path) -> None:
    path = tmp_path / "hot.yaml"
    path.write_text(
        "objective: {name: quadratic, condition_number: 100}\noptimizer: {name: sgd, learning_rate: 1000}\n"
    )
    result = invoke("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 3 and "diverged" in result.output and "Traceback" not in result.output
    run_dir = next((tmp_path / "runs").iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] < 500


@pytest.mark.parametrize(
    "text, message",
    [
        ("objective: {name: booth}\nmodel: {hidden: [3]}\n", "model: a test function has no model"),
        ("objective: {name: booth}\ntrain: {epochs: 3}\n", "train.epochs: an objective runs for 'train.steps'"),
        ("dataset: {name: digits}\ntrain: {steps: 3}\n", "train.steps: a network trains for 'train.epochs'"),
        ("dataset: {name: digits}\nobjective: {name: booth}\n", "objective: give either 'dataset' (a network)"),
        ("seed: 1\n", "dataset: is required (or 'objective' for a test function)"),
        ("objective: {name: everest}\n", "objective: unknown name 'everest'; choose from: quadratic, rosenbrock"),
        ("objective: {name: beale, start: [1]}\n", "objective.start: must have 2 coordinates, got 1"),
    ],
)
def test_objective_config_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text + "optimizer: {name: sgd}\n")
    result = invoke("train", path, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"Error: {path}: {message}"), result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "optimizer, rate",
    [
        ({"name": "sgd", "learning_rate": "theory"}, 99 / 101),  # (κ − 1)/(κ + 1)
        ({"name": "momentum", "learning_rate": "theory", "mu": "theory"}, 9 / 11),  # (√κ − 1)/(√κ + 1)
        ({"name": "nesterov", "learning_rate": "theory", "mu": "theory"}, 0.9),  # 1 − 1/√κ
        ({"name": "momentum", "nesterov": True, "learning_rate": "theory", "mu": "theory"}, 0.9),
    ],
)
def test_measured_rates_on_the_kappa_100_quadratic_are_within_0_03_of_theory(optimizer: dict, rate: float) -> None:
    """Gradient descent, heavy ball and Nesterov at their tuned settings, on a rotated 10-D quadratic."""
    c = config({"name": "quadratic", "dim": 10, "condition_number": 100}, optimizer, steps=300)
    result = train(c)
    measured = contraction_rate(np.array([r.distance_to_minimum for r in result.records]))
    assert theory_rate(c) == pytest.approx(rate, rel=1e-12)
    assert abs(measured - rate) <= 0.03, (measured, rate)


def test_theory_settings_by_hand() -> None:
    """κ = 100, L = 100, μ = 1."""
    quadratic = {"name": "quadratic", "condition_number": 100}
    sgd = config(quadratic, {"name": "sgd", "learning_rate": "theory"}).optimizer
    assert sgd.learning_rate == pytest.approx(2 / 101, rel=1e-15)
    heavy = config(quadratic, {"name": "momentum", "learning_rate": "theory", "mu": "theory"}).optimizer
    assert (heavy.learning_rate, heavy.mu) == pytest.approx((4 / 121, 81 / 121), rel=1e-15)
    nag = config(quadratic, {"name": "nesterov", "learning_rate": "theory", "mu": "theory"}).optimizer
    assert (nag.learning_rate, nag.mu) == pytest.approx((0.01, 9 / 11), rel=1e-15)
    mixed = config(quadratic, {"name": "momentum", "learning_rate": 0.05, "mu": "theory"}).optimizer
    assert (mixed.learning_rate, mixed.mu) == pytest.approx((0.05, 81 / 121), rel=1e-15)
    heavy_rate = theory_rate(config(quadratic, {"name": "momentum", "learning_rate": "theory", "mu": "theory"}))
    assert heavy_rate == pytest.approx(9 / 11, rel=1e-12)
    for other in ({"dampening": 0.5}, {"restart": {"every": 5}}, {"clip_norm": 1.0}):  # not the theory's iteration
        spec = {"name": "momentum", "learning_rate": "theory", "mu": "theory", **other}
        assert theory_rate(config(quadratic, spec)) is None, other


@pytest.mark.parametrize(
    "objective, optimizer, message",
    [
        ({"name": "rosenbrock"}, {"name": "sgd", "learning_rate": "theory"}, "optimizer: 'theory' needs a quadratic"),
        ({"name": "quadratic"}, {"name": "adam", "learning_rate": "theory"}, "optimizer: there is no theory for adam"),
        ({"name": "quadratic"}, {"name": "sgd", "mu": "theory"}, "optimizer: sgd has no mu"),
    ],
)
def test_theory_errors(objective: dict, optimizer: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(objective, optimizer)


# --- comparisons on objectives ---------------------------------------------------------------------------------------

VALLEY = """name: valley
objective: {name: quadratic, dim: 2, condition_number: 100}
train: {steps: 120}
optimizers:
  gd: {name: sgd, learning_rate: theory}
  heavy-ball: {name: momentum, learning_rate: theory, mu: theory}
  slow: {name: sgd, learning_rate: 0.001}
"""


def test_an_objective_comparison_writes_its_table_and_pictures(tmp_path) -> None:
    path = tmp_path / "valley.yaml"
    path.write_text(VALLEY)
    result = invoke("compare", path, "--runs-dir", tmp_path / "runs", "-j", "1")
    assert result.exit_code == 0, result.output
    compare_dir = next((tmp_path / "runs").iterdir())
    for name in ("comparison.csv", "curves.png", "curves.svg", "trajectories.png", "convergence.png"):
        assert (compare_dir / name).is_file(), name
    with (compare_dir / "comparison.csv").open() as fh:
        rows = {r["label"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["heavy-ball", "gd", "slow"]  # lowest final loss first
    assert float(rows["heavy-ball"]["rate_theory"]) == pytest.approx(9 / 11)
    assert abs(float(rows["heavy-ball"]["rate_measured"]) - 9 / 11) <= 0.03
    assert rows["slow"]["rate_theory"] == "" and rows["slow"]["steps_to_target"] == ""
    with (compare_dir / "heavy-ball" / "seed-0" / "metrics.csv").open() as fh:
        distances = [float(r["distance_to_minimum"]) for r in csv.DictReader(fh)]
    first = next(i for i, d in enumerate(distances) if d <= 1e-3 * distances[0])
    assert int(rows["heavy-ball"]["steps_to_target"]) == first
    assert "0.818" in result.output and "to target" in result.output
    invoke("report", compare_dir, "--out", tmp_path / "again")
    assert (tmp_path / "again" / "comparison.csv").read_bytes() == (compare_dir / "comparison.csv").read_bytes()


def test_trajectories_and_convergence_draw_the_recorded_points(tmp_path) -> None:
    cc = parse_config(yaml.safe_load(VALLEY), schema=CompareConfig)
    out = compare(cc, tmp_path)
    groups = collect([out.path]).groups
    objective = objective_of(cc.run_config("gd", 0))
    ax = trajectories_figure(groups, objective).axes[0]
    paths = [line for line in ax.lines if len(line.get_xdata()) == 121]
    recorded = groups[0].runs[0].records
    np.testing.assert_array_equal(paths[0].get_xdata(), [r.x0 for r in recorded])
    np.testing.assert_array_equal(paths[0].get_ydata(), [r.x1 for r in recorded])
    comparison = build(groups, "valley")
    lines = convergence_figure(groups, comparison.rows).axes[0].lines
    d0 = recorded[0].distance_to_minimum
    theory = [line for line in lines if line.get_linestyle() == "--"]
    assert len(theory) == 2  # gd and heavy ball use the theory's settings; "slow" does not
    np.testing.assert_allclose(theory[0].get_ydata(), d0 * (99 / 101) ** np.arange(121), rtol=1e-12)


def test_networks_and_objectives_do_not_share_a_table(tmp_path) -> None:
    network = tmp_path / "net.yaml"
    network.write_text("dataset: {name: digits}\ntrain: {epochs: 1, max_samples: 100}\noptimizer: {name: sgd}\n")
    landscape = tmp_path / "land.yaml"
    landscape.write_text("objective: {name: booth}\ntrain: {steps: 5}\noptimizer: {name: sgd, learning_rate: 0.01}\n")
    dirs = [invoke("train", p, "--runs-dir", tmp_path / "runs", "-q").output.strip() for p in (network, landscape)]
    result = invoke("report", *dirs, "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert result.output.strip() == "Error: these runs mix networks and objectives; compare each kind on its own"
