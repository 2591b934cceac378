"""A point descending an objective (``optrun.objectives``): a row of metrics per step, and everything a run and
a comparison of such runs show: the loss, the distance to the minimum, the contraction rate beside the
theory's, and on a 2-D objective the path over its contours.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from optrun import memory
from optrun.config import Config, parse_config
from optrun.objectives import Objective, build_objective, contraction_rate, theory
from optrun.optim import Optimizer, build_optimizer
from optrun.problems.base import (
    OPTIONAL_COLUMNS,
    Column,
    Problem,
    Row,
    StatsRow,
    TableSpec,
    TrainResult,
    blown_up,
    mean_sd_text,
    mean_std,
    streams,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optrun.report import Comparison
    from optrun.stats import Curves, Group


@dataclass(frozen=True)
class StepRecord(Row):
    """One row of an objective's metrics.csv: the point after ``step`` steps (0: the start)."""

    step: int
    loss: float  # f at the point (exact, without gradient noise)
    grad_norm: float  # ‖∇f‖ at the point (exact)
    distance_to_minimum: float | None  # None for an objective without a minimum (the saddle)
    learning_rate: float  # of this step (step 0: of the first step)
    x0: float | None = None  # the point, for 2-D objectives
    x1: float | None = None
    mu: float | None = None
    restarts: int | None = None


@dataclass
class Landscape:
    """A point on an objective, its optimizer and the gradient noise stream."""

    config: Config
    objective: Objective
    x: np.ndarray  # updated in place by the optimizer
    optimizer: Optimizer
    noise: np.random.Generator


@dataclass(frozen=True)
class LandscapeStats(StatsRow):
    """One row of an objective comparison's comparison.csv (None: empty, no value)."""

    final_loss_mean: float | None
    final_loss_std: float | None
    final_distance_mean: float | None
    final_distance_std: float | None
    best_loss: float | None
    best_step: int | None
    target_distance: float | None
    steps_to_target: int | None
    rate_measured: float | None
    rate_theory: float | None
    diverged: int
    failed: int


TARGET_DISTANCE_FRACTION = 1e-3  # steps to target: the distance to the minimum shrunk by this factor


def objective_of(config: Config) -> Objective:
    """The objective of ``config`` as its runs see it (the quadratic's rotation comes from the seed)."""
    if config.objective is None:
        raise ValueError(f"{config.name} trains a network, not an objective")
    return build_objective(config.objective, streams(config.seed)[0])


def theory_rate(config: Config) -> float | None:
    """The theoretical contraction rate when the run uses the tuned settings on a quadratic, and the plain
    iteration the theory is of (no schedule, clipping, dampening or momentum restart), else None."""
    spec, objective = config.optimizer, config.objective
    if objective is None or objective.name != "quadratic" or spec.name not in ("sgd", "momentum", "nesterov"):
        return None
    kappa = objective.condition_number if objective.dim > 1 else 1.0
    tuned = theory(spec.name, kappa, 1.0, bool(getattr(spec, "nesterov", False)))
    used = {"learning_rate": spec.learning_rate, "mu": getattr(spec, "mu", None)}
    if any(not math.isclose(used[k], tuned[k], rel_tol=1e-12) for k in tuned if k != "rate"):
        return None
    changed = [k for k in ("schedule", "clip_norm", "mu_schedule", "restart") if getattr(spec, k, None) is not None]
    if changed or getattr(spec, "dampening", 0.0):  # the theory's iteration is the plain one
        return None
    return tuned["rate"]


def _point(exp: Landscape, step: int) -> tuple[StepRecord, np.ndarray]:
    """The row for the current point, and the exact gradient there."""
    f, x = exp.objective, exp.x
    gradient = f.gradient(x)
    distance = None if f.minimum is None else float(np.linalg.norm(x - f.minimum))
    coordinates = {"x0": float(x[0]), "x1": float(x[1])} if x.size == 2 else {}
    row = StepRecord(
        step,
        float(f.value(x)),
        float(np.linalg.norm(gradient)),
        distance,
        exp.optimizer.learning_rate,
        **coordinates,
        **exp.optimizer.extras(),
    )
    return row, gradient


def _describe_objective(objective: Mapping[str, Any]) -> str:
    """``quadratic κ=100, 2-D`` or ``rosenbrock, noise 0.1``: the objective in a few words."""
    words = [str(objective.get("name"))]
    if objective.get("name") == "quadratic":
        words[0] += f" κ={objective.get('condition_number'):g}, {objective.get('dim')}-D"
        if objective.get("rotate") is False:
            words.append("unrotated")
    if objective.get("noise"):
        words.append(f"noise {objective['noise']:g}")
    if objective.get("start") is not None:
        words.append(f"start ({', '.join(f'{x:g}' for x in objective['start'])})")
    return ", ".join(words)


class ObjectiveProblem(Problem):
    """A point descending the config's ``objective`` for ``train.steps`` steps."""

    name, unit, record = "objective", "step", StepRecord
    keeps_checkpoints = False  # a run takes moments: resuming one trains it again
    draws_each_run = True  # the path and the rate are the point of a landscape
    sections = (("objective", "name"),)

    def planned(self, config: Config) -> int:
        return config.train.steps

    def estimate(self, config: Config) -> memory.Estimate:
        dim = getattr(config.objective, "dim", 2)
        matrices = memory.QUADRATIC_MATRICES * 8 * dim * dim if config.objective.name == "quadratic" else 0
        return memory.Estimate(0, matrices, 0, memory.PER_ROW_BYTES * (config.train.steps + 1))

    def prepare(self, config: Config) -> Landscape:
        """Place the start point on the objective and build the optimizer."""
        memory.check(self.estimate(config))
        objective = objective_of(config)
        x = objective.start.copy()
        return Landscape(config, objective, x, build_optimizer(config.optimizer, [x]), streams(config.seed)[2])

    def fit(self, exp: Landscape, on_row: Callable[[Any], None] | None) -> TrainResult:
        """``train.steps`` optimizer steps from the start point, recording the start and every step; a
        non-finite loss or point ends the run as diverged."""
        result = TrainResult(status="completed")
        noise = exp.config.objective.noise if exp.config.objective is not None else 0.0

        def record(row: StepRecord) -> bool:
            result.records.append(row)
            if on_row is not None:
                on_row(row)
            if not (math.isfinite(row.loss) and np.isfinite(exp.x).all()):
                result.reason = f"non-finite loss or point after step {row.step}"
            else:
                result.reason = blown_up(exp.config, row.loss, result.records[0].loss, f"step {row.step}")
            if result.reason is not None:
                result.status = "diverged"
            return result.reason is None

        with np.errstate(all="ignore"):
            row, gradient = _point(exp, 0)
            healthy = record(row)
            for step in range(1, exp.config.train.steps + 1):
                if not healthy:
                    break
                seen = gradient + noise * exp.noise.standard_normal(gradient.shape) if noise else gradient
                exp.optimizer.step([seen], loss=row.loss)
                row, gradient = _point(exp, step)
                healthy = record(row)
        return result

    def summary(self, config: Config, rows: Sequence[StepRecord]) -> dict[str, Any]:
        final = best = None
        if rows:
            last = rows[-1]
            final = {k: getattr(last, k) for k in ("loss", "grad_norm", "distance_to_minimum")}
            if last.x0 is not None:
                final["point"] = [last.x0, last.x1]
            finite = [r for r in rows if math.isfinite(r.loss)]
            top = min(finite, key=lambda r: (r.loss, r.step)) if finite else last
            best = {"loss": top.loss, "step": top.step}
        distances = [r.distance_to_minimum for r in rows]
        measured = None if not rows or None in distances else contraction_rate(np.array(distances))
        rate = {"measured": measured, "theory": theory_rate(config)}
        return {"final": final, "best": best, "objective": config.objective.name, "rate": rate}

    def describe(self, config: Config) -> str:
        return f"{config.objective.name}, {config.train.steps} steps"

    def describe_parts(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        steps = (config.get("train") or {}).get("steps")
        return [(_describe_objective(config.get("objective") or {}), "objective"), (f"{steps} steps", "train")]

    def progress(self, row: StepRecord) -> str:
        distance = "" if row.distance_to_minimum is None else f"  distance to minimum {row.distance_to_minimum:.3g}"
        return f"loss {row.loss:.4g}  |grad| {row.grad_norm:.3g}{distance}"

    def result(self, summary: Mapping[str, Any]) -> str:
        final, best = summary["final"], summary["best"]
        distance = final["distance_to_minimum"]
        return f"loss {final['loss']:.4g} (best {best['loss']:.4g} at step {best['step']})" + (
            "" if distance is None else f", distance to the minimum {distance:.3g}"
        )

    def metrics_columns(self, rows: Sequence[StepRecord]) -> list[Column]:
        extras = [c for c in OPTIONAL_COLUMNS if rows and getattr(rows[0], c, None) is not None]
        return [
            ("step", lambda r: str(r.step)),
            ("loss", lambda r: f"{r.loss:.4g}"),
            ("|grad|", lambda r: f"{r.grad_norm:.3g}"),
            ("distance to min", lambda r: "-" if r.distance_to_minimum is None else f"{r.distance_to_minimum:.4g}"),
            ("lr", lambda r: f"{r.learning_rate:g}"),
            *((c, lambda r, c=c: f"{getattr(r, c):.4g}") for c in extras),
        ]

    def curve_names(self, row: StepRecord) -> list[str]:
        return ["loss"] + (["distance_to_minimum"] if row.distance_to_minimum is not None else [])

    def target(self, curves: Sequence[Curves | None], given: float | None) -> tuple[float | None, str]:
        """No accuracy to reach: each group's target is its own start's distance shrunk 1000-fold."""
        return None, f"at most 1/{1 / TARGET_DISTANCE_FRACTION:.0f} of the start's"

    def stats(self, group: Group, curves: Curves | None, target: float | None) -> LandscapeStats:
        """Final loss and distance to the minimum (mean and sd over the completed seeds); the minimum of the mean
        loss curve and its earliest step; the first step the mean distance is at most ``TARGET_DISTANCE_FRACTION``
        of the start's; the mean measured contraction rate, and the theory's where it applies."""
        loss_mean = loss_std = dist_mean = dist_std = best = best_step = distance_target = reach = None
        if curves is not None:
            loss_mean, loss_std = mean_std(curves["loss"][:, -1])
            mean_loss = curves["loss"].mean(axis=0)
            top = int(np.argmin(mean_loss))
            best, best_step = float(mean_loss[top]), int(curves.x[top])
            if "distance_to_minimum" in curves.values:
                distance = curves["distance_to_minimum"]
                dist_mean, dist_std = mean_std(distance[:, -1])
                mean_distance = distance.mean(axis=0)
                distance_target = TARGET_DISTANCE_FRACTION * float(mean_distance[0])
                if (hits := np.flatnonzero(mean_distance <= distance_target)).size:
                    reach = int(curves.x[hits[0]])
        rates = [r.summary.get("rate") or {} for r in group.completed]
        measured = [x["measured"] for x in rates if x.get("measured") is not None]
        theories = {x.get("theory") for x in rates}
        return LandscapeStats(
            **group.shared_figures(),
            final_loss_mean=loss_mean,
            final_loss_std=loss_std,
            final_distance_mean=dist_mean,
            final_distance_std=dist_std,
            best_loss=best,
            best_step=best_step,
            target_distance=distance_target,
            steps_to_target=reach,
            rate_measured=float(np.mean(measured)) if measured else None,
            rate_theory=theories.pop() if len(theories) == 1 else None,
        )

    def rank(self, row: LandscapeStats) -> tuple[Any, ...]:
        """Lowest mean final loss first."""
        return (row.final_loss_mean is None, row.final_loss_mean or 0.0)

    def table(self, comparison: Comparison) -> TableSpec:
        caption = (
            "loss, distance: final, mean ± sd over the completed seeds; best: of the mean loss curve (step)\n"
            f"to target: first step the mean distance to the minimum is {comparison.target_rule}\n"
            "rate: measured per-step contraction of the distance (theory's where the settings are the theory's)"
        )

        def cells(s: LandscapeStats) -> list[str]:
            rate = "-" if s.rate_measured is None else f"{s.rate_measured:.3f}"
            if s.rate_theory is not None:
                rate += f" ({s.rate_theory:.3f})"
            return [
                mean_sd_text(s.final_loss_mean, s.final_loss_std, percent=False),
                mean_sd_text(s.final_distance_mean, s.final_distance_std, percent=False),
                "-" if s.best_loss is None else f"{s.best_loss:.3g} ({s.best_step})",
                "-" if s.steps_to_target is None else str(s.steps_to_target),
                rate,
            ]

        return TableSpec(caption, ("loss", "distance", "best (step)"), ("to target", "rate"), cells)

    def figures(self, comparison: Comparison) -> dict[str, Figure]:
        """Loss and distance curves; on a 2-D objective the paths over its contours (where every group ran on
        the same landscape: the same objective and, for the quadratic's rotation, the same seed); on the
        quadratic, the measured convergence beside the theory's."""
        from optrun import plots  # here: matplotlib takes 0.4 s to import, and workers never need it

        groups, title = comparison.groups, comparison.title
        figures = {"curves": plots.landscape_curves_figure(groups, title)}
        config = parse_config(groups[0].runs[0].config, str(groups[0].runs[0].path / "config.yaml"))
        objective = objective_of(config)
        same = all(
            g.runs[0].config.get("objective") == config.objective.model_dump(mode="json")
            and g.runs[0].config.get("seed") == config.seed
            for g in groups
        )
        if objective.dim == 2 and same:
            figures["trajectories"] = plots.trajectories_figure(groups, objective, title)
        if config.objective.name == "quadratic":
            figures["convergence"] = plots.convergence_figure(groups, comparison.rows, title)
        return figures


OBJECTIVE = ObjectiveProblem()
