"""``optrun suite``: the same labels on several problems, each compared (or tuned, then compared), then scored
across the problems by performance profiles.

One problem crowns no optimizer (Schmidt et al. 2021): a suite runs every problem of its config
(``SuiteConfig.configs``) as ``optrun compare`` or ``optrun tune`` would, one after the other on the same
workers, into one suite directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>/``:

- ``config.yaml``: the resolved suite, every problem's config in place of its file;
- ``<problem>/``: each problem's compare (or tune) directory;
- ``times.csv``: per problem and label, its time to the problem's target (epochs and seconds: the first epoch
  the label's mean test-accuracy curve reaches the target, as ``optrun compare`` reports it; an objective's
  steps), its ratio to the best label's and its rank (``optrun.profiles``);
- ``profiles.csv``: per label, its score (the normalised area under its performance profile), its mean rank and
  how many of the problems it reached the target on;
- ``profiles.png`` and ``.svg``: the performance profiles;
- ``summary.json``: the same for machines, with the suite's status.

Ctrl-C or SIGTERM stops the problem in flight as compare and tune do (its finished runs and trials are kept);
``optrun suite --resume DIR`` skips the problems completed, finishes the one stopped and runs the rest.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optrun import profiles
from optrun.compare import PlannedRun, compare, has_result, pending
from optrun.config import CompareConfig, SuiteConfig, TuneConfig, dump_yaml, load_config
from optrun.parallel import WorkersLost, executor
from optrun.problems import NETWORK
from optrun.report import Comparison, build, check_unchanged, collect, write_page
from optrun.runs import (
    RunDirError,
    RunInterrupted,
    RunOutcome,
    check_idle,
    create_run_dir,
    exception_line,
    existing_dir,
    machine,
    read_json,
    signal_name,
    versions,
    write_json,
)
from optrun.schema import ConfigError
from optrun.train import prepare
from optrun.tune import EVALUATION, PlannedTrial, TrialResult, read_trials, tune, tuning_data
from optrun.tune import plan as plan_trials

TIMES = "times.csv"
PROFILES = "profiles.csv"

OnTask = Callable[[str, PlannedTrial | PlannedRun, TrialResult | RunOutcome], None]
"""Told of each finished task: the problem's name, the trial or run, and its result."""


def tasks(config: CompareConfig | TuneConfig) -> int:
    """How many tasks (runs, and a tuning's trials) a problem plans."""
    runs = len(config.optimizers) * len(config.seed_list)
    return runs + (len(plan_trials(config)) if isinstance(config, TuneConfig) else 0)


def tasks_done(config: CompareConfig | TuneConfig, path: Path) -> int:
    """How many of a problem's tasks its directory ``path`` holds finished (none where it does not exist)."""
    if not path.is_dir():
        return 0
    if isinstance(config, TuneConfig):
        trials = len(read_trials(path, config, plan_trials(config)))
        runs = sum(1 for p in (path / EVALUATION).glob("*/seed-*/summary.json") if has_result(p.parent))
        return trials + runs
    return len(config.optimizers) * len(config.seed_list) - len(pending(config, path))


def _completed(path: Path) -> bool:
    return read_json(path / "summary.json").get("status") == "completed"


@dataclass(frozen=True)
class Scores:
    """A suite's figures: each label's time to each problem's target, their ratios to the best, ranks, and each
    label's profile score and mean rank (``optrun.profiles``)."""

    problems: list[str]
    labels: list[str]
    measure: str  # epochs or seconds
    tau_max: float
    targets: list[float | None]
    times: np.ndarray  # (problems, labels): inf where the label never reached the target
    epochs: np.ndarray  # the same in epochs (steps), and in seconds, for the table
    seconds: np.ndarray
    final: np.ndarray  # the final test accuracy's mean (nan where none)
    stepped: list[str] = field(default_factory=list)  # the problems timed in steps: objectives

    @property
    def unit(self) -> str:
        """What the times count: ``seconds``; ``epochs``, ``steps`` where every problem is an objective, or
        ``epochs (steps on an objective)`` where some are."""
        if self.measure == "seconds" or not self.stepped:
            return self.measure
        return "steps" if len(self.stepped) == len(self.problems) else "epochs (steps on an objective)"

    @functools.cached_property
    def ratios(self) -> np.ndarray:
        return profiles.ratios(self.times)

    @functools.cached_property
    def ranks(self) -> np.ndarray:
        return profiles.ranks(self.times)

    @functools.cached_property
    def scores(self) -> np.ndarray:
        return profiles.scores(self.ratios, self.tau_max)

    @property
    def reached(self) -> np.ndarray:
        return np.isfinite(self.times).sum(axis=0)

    def order(self) -> list[int]:
        """The labels best first: by score, then mean rank, then the config's order."""
        score, mean_rank = self.scores.round(12), self.ranks.mean(axis=0).round(12)  # equal sums in any order
        return sorted(range(len(self.labels)), key=lambda s: (-score[s], mean_rank[s], s))


def _figure(row: Any, name: str) -> float:
    value = getattr(row, name, None)
    return math.inf if value is None else float(value)


def scores(config: SuiteConfig, comparisons: Mapping[str, Comparison | None]) -> Scores:
    """The suite's figures from each problem's comparison (a label with no row, or no time, never reached; a
    problem with no comparison, a tuning whose every setting broke, was reached by none)."""
    labels, problems = list(config.optimizers), list(comparisons)
    shape = (len(problems), len(labels))
    epochs, seconds, final = np.full(shape, math.inf), np.full(shape, math.inf), np.full(shape, math.nan)
    targets: list[float | None] = []
    stepped = [name for name, c in comparisons.items() if c and c.rows and not hasattr(c.rows[0], "epochs_to_target")]
    for p, name in enumerate(problems):
        comparison = comparisons[name]
        targets.append(comparison and comparison.target)
        rows = {row.label: row for row in comparison.rows} if comparison else {}
        for s, label in enumerate(labels):
            if (row := rows.get(label)) is None:
                continue
            epochs[p, s] = _figure(row, "epochs_to_target" if hasattr(row, "epochs_to_target") else "steps_to_target")
            seconds[p, s] = _figure(row, "seconds_to_target")
            accuracy = getattr(row, "final_test_accuracy_mean", None)
            final[p, s] = math.nan if accuracy is None else accuracy
    times = epochs if config.profile.measure == "epochs" else seconds
    measure, tau_max = config.profile.measure, config.profile.tau_max
    return Scores(problems, labels, measure, tau_max, targets, times, epochs, seconds, final, stepped)


@dataclass
class SuiteOutcome:
    path: Path
    scores: Scores
    comparisons: dict[str, Comparison | None]

    @property
    def all_failed(self) -> bool:
        """Whether no run of any problem completed (every one diverged or failed, or every setting broke)."""
        return not any(g.completed for c in self.comparisons.values() if c is not None for g in c.groups)


def _summary(path: Path, config: SuiteConfig, status: str, reason: str | Mapping[str, Any] = "") -> None:
    """Write the suite's summary.json: its status and why (``reason``), or the figures it holds; it keeps the
    config the suite began with, which a resume checks."""
    extra = reason if isinstance(reason, Mapping) else {"reason": reason}
    summary = {"kind": "suite", "name": config.name, "status": status, "reason": "", **extra}
    write_json(path / "summary.json", summary | {"config": config.to_dict()})


def suite_to_resume(suite_dir: str | Path) -> Path:
    """``suite_dir`` when it is a suite that did not finish; RunDirError otherwise."""
    path = existing_dir(suite_dir, "suite directory")
    summary = read_json(path / "summary.json")
    if summary.get("kind") != "suite":
        raise RunDirError(f"{path}: not a suite directory (its summary.json is not a suite's)")
    if summary.get("status") == "completed":
        raise RunDirError(f"{path}: the suite is completed; nothing to resume (optrun show {path} prints it)")
    check_idle(path, "the suite")
    return path


def suite(
    config: SuiteConfig,
    runs_dir: str | Path = "runs",
    jobs: int = 1,
    scheduler: str | None = None,
    on_task: OnTask | None = None,
    on_problem: Callable[[str], None] | None = None,
    resume_dir: str | Path | None = None,
) -> SuiteOutcome:
    """Run every problem of the suite (``jobs`` local processes, or the Dask cluster at ``scheduler``), then
    score the labels across them.

    The cluster is reached and every problem's first run (a tuning's first trial) built, its data loaded,
    before any directory is made, so that a suite that cannot run leaves nothing behind. A problem's directory
    is made with its config.yaml, then run as an interrupted comparison (tuning) would be resumed:
    ``compare``'s (``tune``'s) own resume runs everything it lacks. Ctrl-C or SIGTERM: RunInterrupted naming
    the suite and ``optrun suite --resume``; any other stop leaves the suite 'failed', and resumable.
    ``resume_dir``: an unfinished suite run with its own config.yaml, which must be the one it began with.
    """
    if resume_dir is None:
        _preflight(config, scheduler)
        path = create_run_dir(runs_dir, config.name)
        (path / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
    else:
        path = suite_to_resume(resume_dir)
        check_unchanged(path, config.to_dict(), "the suite")
    _summary(path, config, "running", {"pid": os.getpid(), "host": socket.gethostname()})
    stage = "between problems"
    try:
        for k, (name, problem) in enumerate(config.configs.items()):
            _run_problem(path, name, problem, k, len(config.configs), jobs, scheduler, on_task, on_problem)
        stage = "while writing the suite's results"
        comparisons = {name: _comparison(path / name, problem) for name, problem in config.configs.items()}
        found = scores(config, comparisons)
        write(found, path)
    except KeyboardInterrupt as exc:  # between problems, or while the suite's files are written
        name = signal_name(exc)
        _summary(path, config, "interrupted", f"interrupted by {name}")
        raise RunInterrupted(path, name, stage, resume_command=f"suite --resume {path}") from None
    except RunInterrupted as exc:
        _summary(path, config, "interrupted", f"interrupted by {exc.signal} {exc.progress}")
        raise
    except Exception as exc:  # WorkersLost, a disk that fills, a file that cannot be read
        _summary(path, config, "failed", exception_line(exc))
        raise
    _summary(path, config, "completed", _figures_summary(found) | {"versions": versions(), "machine": machine()})
    write_page(path)
    return SuiteOutcome(path, found, comparisons)


def _preflight(config: SuiteConfig, scheduler: str | None) -> None:
    """What would stop the suite, found before it writes anything: a cluster that cannot be reached, a problem
    whose first run (a tuning's first trial, on its validation split) cannot be built."""
    if scheduler is not None:
        with executor(1, scheduler):
            pass
    for name, problem in config.configs.items():
        try:
            if isinstance(problem, TuneConfig):
                first = plan_trials(problem)[0]
                NETWORK.prepare(first.config, tuning_data(first.config))
            else:
                prepare(problem.run_config(next(iter(problem.optimizers)), problem.seed_list[0]))
        except ConfigError as exc:  # its data's files, its split, the memory it needs
            raise ConfigError(f"problems.{name}: {exc}") from None


def _run_problem(
    path: Path,
    name: str,
    problem: CompareConfig | TuneConfig,
    k: int,
    n: int,
    jobs: int,
    scheduler: str | None,
    on_task: OnTask | None,
    on_problem: Callable[[str], None] | None,
) -> None:
    """Run (or finish) the ``k``-th of the suite's ``n`` problems in its folder of the suite at ``path``."""
    where = path / name
    if _completed(where):
        return
    if on_problem is not None:
        on_problem(name)
    where.mkdir(exist_ok=True)
    if not (where / "config.yaml").is_file():
        (where / "config.yaml").write_text(dump_yaml(problem.to_dict()), encoding="utf-8")
    told = (lambda planned, result: on_task(name, planned, result)) if on_task else None
    try:
        if isinstance(problem, TuneConfig):
            tune(problem, path, jobs, scheduler, told, told, resume_dir=where)
        else:
            compare(problem, path, jobs, scheduler, told, resume_dir=where)
    except RunInterrupted as exc:  # the suite's, which resumes it
        progress = f"in problem {name} ({k + 1} of {n}: {exc.progress})"
        raise RunInterrupted(path, exc.signal, progress, resume_command=f"suite --resume {path}") from None
    except WorkersLost as exc:
        raise WorkersLost(
            f"{exc}; the suite's other problems are kept. Resume with: optrun suite --resume {path}"
        ) from None


@dataclass
class SuiteRecord:
    """A suite directory as ``optrun show`` reads it: its config, status, the problems completed and the scores
    over them (None before the first)."""

    path: Path
    config: SuiteConfig
    status: str
    completed: list[str]
    scores: Scores | None


def read_suite(path: Path) -> SuiteRecord:
    """The suite at ``path``, its scores computed from its completed problems' directories."""
    config = load_config(path / "config.yaml", schema=SuiteConfig)
    done = {name: c for name, c in config.configs.items() if _completed(path / name)}
    comparisons = {name: _comparison(path / name, problem) for name, problem in done.items()}
    found = scores(config, comparisons) if comparisons else None
    return SuiteRecord(path, config, read_json(path / "summary.json").get("status", ""), list(done), found)


def _comparison(path: Path, config: CompareConfig) -> Comparison | None:
    """A problem's comparison, from its directory (a tuning's: its evaluation), as ``optrun report`` builds it;
    None for a tuning whose every setting broke, which has no evaluation."""
    if isinstance(config, TuneConfig) and not (path / EVALUATION / "config.yaml").is_file():
        return None
    return build(collect([path]).groups, config.name, config.target_accuracy)


def _figures_summary(found: Scores) -> dict[str, Any]:
    mean_rank = found.ranks.mean(axis=0)
    return {
        "measure": found.measure,
        "tau_max": found.tau_max,
        "problems": found.problems,
        "labels": [
            {
                "label": found.labels[s],
                "score": float(found.scores[s]),
                "mean_rank": float(mean_rank[s]),
                "reached": int(found.reached[s]),
            }
            for s in found.order()
        ],
    }


def _cell(x: float) -> str:
    return "" if not math.isfinite(x) else repr(float(x))


def _whole(x: float) -> str:
    return "" if not math.isfinite(x) else str(int(x))


def write(found: Scores, path: Path) -> None:
    """times.csv, profiles.csv and profiles.png/svg into the suite directory ``path``."""
    from optrun import plots  # here: matplotlib takes 0.4 s to import

    figure = plots.profiles_figure(found)  # a failure to draw comes before a file is written
    ratios, ranks = found.ratios, found.ranks
    with (path / TIMES).open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["problem", "label", "target", "epochs_to_target", "seconds_to_target", "ratio", "rank",
                      "final_test_accuracy_mean"])  # fmt: skip
        for p, problem in enumerate(found.problems):
            for s, label in enumerate(found.labels):
                target = found.targets[p]
                out.writerow([problem, label, "" if target is None else repr(target), _whole(found.epochs[p, s]),
                              _cell(found.seconds[p, s]), _cell(ratios[p, s]), repr(float(ranks[p, s])),
                              _cell(found.final[p, s])])  # fmt: skip
    mean_rank = ranks.mean(axis=0)
    with (path / PROFILES).open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["label", "score", "mean_rank", "reached", "problems"])
        for s in found.order():
            out.writerow([found.labels[s], repr(float(found.scores[s])), repr(float(mean_rank[s])),
                          int(found.reached[s]), len(found.problems)])  # fmt: skip
    plots.save_figure(figure, path, "profiles")
