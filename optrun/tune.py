"""``optrun tune``: every label searched with the same budget on validation data, then compared on fresh seeds.

The protocol (Choi et al. 2019; Schmidt et al. 2021):

1. Each label tries ``tune.budget`` settings of its search space (``optrun.search``), each trained once per
   tuning seed. A trial trains on the training split less the validation split and is scored on the
   validation split alone: its data's test split is dropped before it trains (``Dataset.for_tuning``), so
   no figure of the test split is computed while tuning.
2. A setting's score is its metric (``tune.metric`` at the last epoch, or at each run's best epoch:
   ``tune.at``) averaged over the tuning seeds; a setting that diverged or failed on any of them is a
   result, ranked below every setting that completed. Each label's chosen setting is its best score (the
   first tried, on a tie); a range whose chosen value is the lowest or highest tried is flagged.
3. Each chosen setting is trained on the comparison's own ``seeds`` and the labels are compared on the test
   split, as ``optrun compare`` does: ``tuned.yaml`` is that compare config, and reruns it exactly.

A tune directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>/`` holds the resolved config (``config.yaml``),
``trials.csv`` (a row per trial and tuning seed, appended as each finishes), ``tuned.yaml``,
``sensitivity.png``/``.svg``, ``summary.json`` and the evaluation's compare directory (``evaluation/``).
``optrun tune --resume DIR`` runs only the trials trials.csv lacks, then what is left of the evaluation.
"""

from __future__ import annotations

import csv
import importlib
import logging
import math
import os
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optrun import memory
from optrun.compare import (
    CompareOutcome,
    Finished,
    PlannedRun,
    check_kept,
    conclude,
    data_of,
    executor_name,
    forget_data,
    has_result,
    record,
    run_task,
    stop_comparison,
    stop_signal,
    worker_lost,
)
from optrun.config import CompareConfig, Config, TuneConfig, dump_yaml, load_config, parse_config
from optrun.data import Dataset
from optrun.parallel import WorkersLost, executor, in_process
from optrun.problems import NETWORK
from optrun.report import check_unchanged, write_page
from optrun.runs import (
    RunDirError,
    RunInterrupted,
    RunOutcome,
    check_idle,
    create_run_dir,
    exception_line,
    existing_dir,
    machine,
    not_a_suite_part,
    read_json,
    signal_name,
    tuning_of,
    versions,
    write_json,
)
from optrun.schema import ConfigError
from optrun.search import at_edge, settings
from optrun.train import estimate, fit

log = logging.getLogger("optrun")

TRIALS = "trials.csv"
TUNED = "tuned.yaml"
EVALUATION = "evaluation"


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a tuning: a label's ``trial``-th setting (from 1), trained with a tuning seed."""

    label: str
    trial: int
    seed: int
    setting: dict[str, Any]
    config: Config

    @property
    def key(self) -> tuple[str, int, int]:
        return self.label, self.trial, self.seed


def plan(config: TuneConfig) -> list[PlannedTrial]:
    """Every label's settings crossed with the tuning seeds: seed by seed (a seed's trials share their data,
    which a worker loads once), and within a seed setting by setting, each across every label, so that the
    first results cover every label."""
    tried = {label: tried_settings(config, label) for label in config.optimizers}
    return [
        PlannedTrial(label, i + 1, seed, tried[label][i], config.trial_config(label, tried[label][i], seed))
        for seed in config.tuning_seeds
        for i in range(config.tune.budget)
        for label in config.optimizers
    ]


def tried_settings(config: TuneConfig, label: str) -> list[dict[str, Any]]:
    """The settings ``label`` tries, in order (a random search is seeded by the first tuning seed)."""
    return settings(config.spaces[label], config.tune.budget, config.tune.search, config.tuning_seeds[0])


@dataclass
class TrialResult:
    """What a trial hands back: its status, its score where it completed, and its wall seconds."""

    status: str  # completed, diverged, failed, or interrupted (not recorded: a resume runs it again)
    value: float | None = None  # the metric, where it completed
    epoch: int | None = None  # the epoch it was read at
    seconds: float = 0.0
    reason: str | None = None
    signal: str | None = None  # for a trial a signal stopped


def tuning_data(config: Config) -> Dataset:
    """The data of a trial: ``data_of``'s, its validation split held out instead of its test split."""
    return data_of(config).for_tuning()


def run_trial(task: tuple[Mapping[str, Any], str, str]) -> TrialResult:
    """Train one trial (a resolved train config; the metric; ``last`` or ``best``) and score it on the validation
    split. An exception is a failed trial; a signal hands back an interrupted one."""
    config_data, metric, at = task
    start = time.perf_counter()
    try:
        config = parse_config(dict(config_data))
        data = tuning_data(config)
        start = time.perf_counter()  # a trial's seconds: its own, not the loading of the data it shares
        result = fit(NETWORK.prepare(config, data))
    except KeyboardInterrupt as exc:
        return TrialResult("interrupted", seconds=time.perf_counter() - start, signal=signal_name(exc))
    except Exception as exc:
        return TrialResult("failed", seconds=time.perf_counter() - start, reason=exception_line(exc))
    seconds = time.perf_counter() - start
    if result.status != "completed":
        return TrialResult(result.status, seconds=seconds, reason=result.reason)
    held_out = "test_accuracy" if metric == "validation_accuracy" else "test_loss"  # the validation split's
    rows = result.records[1:] if at == "best" and len(result.records) > 1 else result.records[-1:]
    sign = 1.0 if metric == "validation_accuracy" else -1.0
    row = max(rows, key=lambda r: sign * getattr(r, held_out))  # the earliest best
    return TrialResult("completed", getattr(row, held_out), row.epoch, seconds)


# --- trials.csv -------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A metric's cell (empty for none) or a hyperparameter's value (``null`` for none, as YAML writes it)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _value_cell(value: Any) -> str:
    return "null" if value is None else _cell(value)


def trial_columns(config: TuneConfig) -> list[str]:
    """trials.csv's columns: who, every tuned hyperparameter (empty where a label does not tune it), the metric,
    the epoch it was read at, and how the trial went."""
    tuned = list(dict.fromkeys(name for space in config.spaces.values() for name in space))
    return ["label", "trial", "seed", *tuned, config.tune.metric, "epoch", "status", "seconds", "reason"]


def _trial_row(planned: PlannedTrial, result: TrialResult, columns: Sequence[str], metric: str) -> dict[str, str]:
    row = {"label": planned.label, "trial": str(planned.trial), "seed": str(planned.seed)}
    row |= {name: _value_cell(value) for name, value in planned.setting.items()}
    row |= {metric: _cell(result.value), "epoch": _cell(result.epoch), "status": result.status}
    row |= {"seconds": f"{result.seconds:.3f}", "reason": result.reason or ""}
    return {c: row.get(c, "") for c in columns}


def read_trials(path: Path, config: TuneConfig, trials: Sequence[PlannedTrial]) -> dict[tuple[str, int, int], dict]:
    """The trials (``plan(config)``) of ``path``, a tune directory, that trials.csv records whole, by key;
    RunDirError where config.yaml was edited since the tuning began, or a trial was trained otherwise than the
    config plans it."""
    check_idle(path, "the tuning")
    check_unchanged(path, config.to_dict(), "the tuning")
    columns = trial_columns(config)
    try:
        with (path / TRIALS).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path / TRIALS}: cannot read it: {exc}") from None
    planned = {t.key: t for t in trials}
    done = {}
    for row in rows:
        if None in row or any(row.get(c) is None for c in columns):  # a row torn by a crash while written
            continue
        try:
            key = (row["label"], int(row["trial"]), int(row["seed"]))
            if row["status"] == "completed":
                float(row[config.tune.metric])  # the metric: a row damaged since it was written is run again
            elif row["status"] not in ("diverged", "failed"):
                continue
        except ValueError:
            continue
        if key not in planned:
            raise RunDirError(f"{path / TRIALS}: {key[0]} trial {key[1]} seed {key[2]} is not in the tuning's plan")
        for name, value in planned[key].setting.items():
            if row[name] != _value_cell(value):
                raise RunDirError(
                    f"{path / TRIALS}: {key[0]} trial {key[1]} was trained with {name} {row[name]}, and config.yaml "
                    f"now plans {_value_cell(value)}; put config.yaml back, or tune anew"
                )
        done[key] = row
    return done


class _TrialsWriter:
    """Appends trials.csv's rows, each flushed as its trial finishes; rewrites the kept ones first on a resume
    (dropping a row a crash tore)."""

    def __init__(self, path: Path, columns: Sequence[str], kept: Sequence[Mapping[str, str]]) -> None:
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, columns, lineterminator="\n")
        self._csv.writeheader()
        self._csv.writerows(kept)
        self._file.flush()

    def write(self, row: Mapping[str, str]) -> None:
        self._csv.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# --- choosing ---------------------------------------------------------------------------------------------------


@dataclass
class Setting:
    """A label's setting: its score over the tuning seeds (None: it diverged or failed on one)."""

    label: str
    trial: int
    values: dict[str, Any]
    score: float | None
    status: str  # completed; else how its first broken seed ended
    seeds: int  # the tuning seeds it was trained with


@dataclass
class Choice:
    """A label's chosen setting (None where every setting diverged or failed), and how its search went."""

    label: str
    setting: Setting | None
    settings: list[Setting] = field(default_factory=list)
    edges: dict[str, str] = field(default_factory=dict)  # a range's chosen value at its lowest or highest tried

    @property
    def broken(self) -> int:
        """Settings that diverged or failed."""
        return sum(s.score is None for s in self.settings)


def _number(text: str) -> float | None:
    return float(text) if text else None


def settings_of(config: TuneConfig, rows: Mapping[tuple[str, int, int], Mapping[str, str]]) -> list[Setting]:
    """Every setting that trials.csv's ``rows`` hold for every tuning seed, scored."""
    out = []
    metric, seeds = config.tune.metric, config.tuning_seeds
    for label in config.optimizers:
        for i, values in enumerate(tried_settings(config, label), start=1):
            runs = [rows.get((label, i, seed)) for seed in seeds]
            if any(r is None for r in runs):
                continue
            broken = next((r["status"] for r in runs if r["status"] != "completed"), None)
            score = None if broken else math.fsum(_number(r[metric]) for r in runs) / len(runs)
            out.append(Setting(label, i, values, score, broken or "completed", len(runs)))
    return out


def choose(config: TuneConfig, tried: Sequence[Setting]) -> dict[str, Choice]:
    """Each label's best setting by its score (the earliest, on a tie), and the ranges it sits at the edge of."""
    sign = 1.0 if config.tune.maximize else -1.0
    choices = {}
    for label in config.optimizers:
        mine = [s for s in tried if s.label == label]
        scored = [s for s in mine if s.score is not None]
        best = max(scored, key=lambda s: sign * s.score) if scored else None
        edges = at_edge(config.spaces[label], [s.values for s in mine], best.values) if best else {}
        choices[label] = Choice(label, best, mine, edges)
    return choices


# --- the whole tuning -------------------------------------------------------------------------------------------


@dataclass
class TuneOutcome:
    path: Path
    choices: dict[str, Choice]
    evaluation: CompareOutcome | None  # None where no label has a setting to evaluate

    @property
    def all_failed(self) -> bool:
        return self.evaluation is None or self.evaluation.all_failed


@dataclass
class TuningRecord:
    """A tune directory read back (``optrun show``): its config, each label's choice from the trials it has,
    how many of its trials it has, and its status."""

    config: TuneConfig
    choices: dict[str, Choice]
    trials: int
    planned: int
    status: str | None


def read_tuning(path: Path) -> TuningRecord:
    """The tune directory at ``path`` read back; RunDirError where its config.yaml or trials.csv cannot be."""
    try:
        config = load_config(path / "config.yaml", schema=TuneConfig)
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None
    trials = plan(config)
    rows = read_trials(path, config, trials)
    status = read_json(path / "summary.json").get("status")
    return TuningRecord(config, choose(config, settings_of(config, rows)), len(rows), len(trials), status)


def tune_to_resume(tune_dir: str | Path) -> Path:
    """``tune_dir`` when it is a tuning that did not finish; RunDirError otherwise."""
    path = existing_dir(tune_dir, "tune directory")
    not_a_suite_part(path, "optrun tune --resume")
    summary = read_json(path / "summary.json")
    if (tuning := tuning_of(path)) is None:
        raise RunDirError(f"{path}: not a tune directory (its config.yaml has no tune: section)")
    if tuning != path:
        raise RunDirError(f"{path}: part of the tuning {tuning}; give that: optrun tune --resume {tuning}")
    if summary.get("status") == "completed":
        raise RunDirError(f"{path}: the tuning is already completed; there is nothing to resume")
    return path


def _stopped(path: Path, config: TuneConfig, status: str, reason: str, extra: Mapping[str, Any] = ()) -> None:
    """Write the tuning's summary.json; it keeps the config the tuning began with, which a resume checks."""
    summary = {"kind": "tune", "name": config.name, "status": status, "reason": reason, **dict(extra)}
    write_json(path / "summary.json", summary | {"config": config.to_dict()})


def task(item: tuple[str, Any]) -> TrialResult | Finished:
    """A worker's task: a trial, ``("trial", (config, metric, at))``, or a run of the evaluation, ``("run",
    config)`` (``optrun.compare.execute``)."""
    kind, payload = item
    return run_trial(payload) if kind == "trial" else run_task(payload)


@dataclass
class _Lost:
    """A task whose worker could not run it: its failure, made by the kind of task it was."""

    exc: BaseException


class _Tuning:
    """A tuning while its tasks run: its trials written to trials.csv as they finish, each label chosen once
    its last trial is in, and that label's evaluation runs queued at once, so that they fill the workers the
    last trials leave idle.

    The executor reads ``tasks`` as it grows. With ``in_flight`` workers (local ones), no more tasks than that
    are given to it at a time, and a freed worker is given the next task of the label with the most work left
    (its trials and evaluation runs to come, timed by its trials so far): the critical path first, so that the
    labels end their trials together and their evaluation runs fill every worker, not one while the others
    idle. The order changes no result: each task's numbers depend on its own config alone."""

    def __init__(
        self, config: TuneConfig, path: Path, trials: list[PlannedTrial], done: dict, in_flight: int | None = None
    ) -> None:
        self.config, self.path, self.trials = config, path, trials
        self.evaluation_dir = path / EVALUATION
        self.rows = dict(done)
        self.columns = trial_columns(config)
        self.writer = _TrialsWriter(path / TRIALS, self.columns, list(done.values()))
        self.missing = {label: 0 for label in config.optimizers}  # trials not in yet, by label
        for t in trials:
            self.missing[t.label] += t.key not in done
        self.chosen: dict[str, Setting] = {}
        self.runs: list[PlannedRun] = []  # the evaluation's, of the labels chosen so far
        self.trial_seconds: dict[str, list[float]] = {label: [] for label in config.optimizers}
        self.tasks: list[tuple[str, Any]] = []  # given to the executor
        self.planned: list[PlannedTrial | PlannedRun] = []
        self.waiting: list[tuple[tuple[str, Any], PlannedTrial | PlannedRun]] = []  # not given yet, in plan order
        self.in_flight, self.finished = in_flight, 0
        self.trials_seconds: float | None = None
        metric, at = config.tune.metric, config.tune.at
        for t in trials:
            if t.key not in done:
                self.waiting.append((("trial", (t.config.to_dict(), metric, at)), t))
        self.choose_ready()
        self.dispatch()

    def dispatch(self) -> None:
        """Give the executor waiting tasks while it has fewer than ``in_flight`` running: each the first waiting
        task of the label with the most work left."""
        while self.waiting and (self.in_flight is None or len(self.tasks) - self.finished < self.in_flight):
            left = self.work_left()
            i = max(range(len(self.waiting)), key=lambda i: (left[self.waiting[i][1].label], -i))
            item, planned = self.waiting.pop(i)
            self.tasks.append(item)
            self.planned.append(planned)

    def work_left(self) -> dict[str, float]:
        """By label, the seconds its tasks not begun would take (its waiting trials, and its evaluation runs,
        to come or waiting), at the mean time of its trials so far (of every label's, before its first; an
        evaluation run counted as a trial)."""
        every = [s for times in self.trial_seconds.values() for s in times] or [1.0]
        tasks = {label: 0 if label in self.chosen else len(self.config.seed_list) for label in self.config.optimizers}
        for _, planned in self.waiting:
            tasks[planned.label] += 1
        return {label: n * statistics.fmean(self.trial_seconds[label] or every) for label, n in tasks.items()}

    def task_done(self) -> None:
        """A task the executor was given has finished (after its trial_done or record): give it the next."""
        self.finished += 1
        self.dispatch()

    def trial_done(self, planned: PlannedTrial, result: TrialResult) -> None:
        self.rows[planned.key] = _trial_row(planned, result, self.columns, self.config.tune.metric)
        self.writer.write(self.rows[planned.key])
        self.missing[planned.label] -= 1
        self.trial_seconds[planned.label].append(result.seconds)
        self.choose_ready()

    def choose_ready(self) -> None:
        """Choose every label whose trials are all in and that is not chosen yet, and queue its evaluation runs
        (those a resume does not find finished)."""
        ready = [label for label, n in self.missing.items() if n == 0 and label not in self.chosen]
        if not ready:
            return
        choices = choose(self.config, settings_of(self.config, self.rows))
        for label in ready:
            setting = choices[label].setting
            self.chosen[label] = setting
            if setting is None:  # every setting broke: nothing to evaluate
                continue
            alone = self.config.evaluation({label: setting.values})
            runs = [PlannedRun(label, seed, alone.run_config(label, seed)) for seed in alone.seed_list]
            todo = [r for r in runs if not has_result(self.evaluation_dir / r.subdir)]
            check_kept(self.evaluation_dir, runs, todo)
            for run in todo:  # an interrupted or half-written run starts again from scratch
                shutil.rmtree(self.evaluation_dir / run.subdir, ignore_errors=True)
                self.waiting.append((("run", run.config.to_dict()), run))
            self.runs += runs
        if self.evaluated:
            self.evaluation_dir.mkdir(exist_ok=True)
            config = dump_yaml(self.evaluation().to_dict())  # the labels chosen so far, for optrun show
            (self.evaluation_dir / "config.yaml").write_text(config, encoding="utf-8")

    @property
    def evaluated(self) -> dict[str, dict[str, Any]]:
        """The chosen setting of each label that has one, in the config's order."""
        return {label: s.values for label in self.config.optimizers if (s := self.chosen.get(label)) is not None}

    def evaluation(self) -> CompareConfig:
        return self.config.evaluation(self.evaluated)

    def write_tuned(self) -> CompareConfig:
        """Write tuned.yaml, once every label is chosen; the evaluation's config."""
        evaluation = self.evaluation()
        (self.path / TUNED).write_text(_tuned_yaml(self.config, evaluation.to_dict()), encoding="utf-8")
        return evaluation

    def stopped(self, status: str, reason: str) -> str:
        """Write the summaries of a tuning stopped before its end; what it kept, in words."""
        trials, runs = len(self.trials), len(self.config.optimizers) * len(self.config.seed_list)
        _stopped(self.path, self.config, status, reason, {"trials_finished": len(self.rows)})
        kept = f"{len(self.rows)} of {trials} trials"
        if self.evaluated and self.evaluation_dir.is_dir():
            done = stop_comparison(self.evaluation_dir, self.evaluation(), self.runs, status, reason)
            kept += f" and {done} of {runs} evaluation runs"
        return kept


def tune(
    config: TuneConfig,
    runs_dir: str | Path = "runs",
    jobs: int = 1,
    scheduler: str | None = None,
    on_trial: Callable[[PlannedTrial, TrialResult], None] | None = None,
    on_run: Callable[[PlannedRun, RunOutcome], None] | None = None,
    resume_dir: str | Path | None = None,
) -> TuneOutcome:
    """Tune every label (``jobs`` local processes, or the Dask cluster at ``scheduler``) and evaluate the chosen
    settings (``optrun.compare``'s runs and comparison), each label's evaluation runs beginning as soon as its
    last trial is in.

    The executor is opened and the first trial's data and model built before any directory is made. Each trial
    is written to trials.csv as it finishes, each evaluation run to its directory. Ctrl-C or SIGTERM stops the
    tasks in flight (trials are not recorded; runs keep their finished epochs), writes 'interrupted' summaries
    and raises RunInterrupted; ``resume_dir``, an interrupted tune directory (run with its own config.yaml),
    keeps its finished trials and runs and runs the rest.
    """
    start = time.perf_counter()
    forget_data()  # a file may have changed since an earlier tuning in this process loaded it
    trials = plan(config)
    done = read_trials(Path(resume_dir), config, trials) if resume_dir is not None else {}
    jobs = max(1, min(jobs, len(trials) - len(done) + len(config.optimizers) * len(config.seed_list)))
    if scheduler is None:
        jobs = memory.runs_that_fit(memory.check(estimate(config)), jobs)
    # matplotlib, for the pictures at the end, is imported meanwhile: the compiled epoch lets go of the GIL
    threading.Thread(target=importlib.import_module, args=("optrun.plots",), daemon=True).start()
    with executor(jobs, scheduler, __name__) as pool:
        first = next((t for t in trials if t.key not in done), trials[0])
        NETWORK.prepare(first.config, tuning_data(first.config))  # a split that cannot be made: no folder
        if resume_dir is None:
            path = create_run_dir(runs_dir, config.name)
            (path / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
        else:
            path = Path(resume_dir)
        _stopped(path, config, "running", "", {"pid": os.getpid(), "host": socket.gethostname()})
        resume_command = f"tune --resume {path}"
        tuning = _Tuning(config, path, trials, done, in_flight=jobs if scheduler is None else None)
        drawing = None
        try:
            for i, result in pool(task, tuning.tasks, on_error=_Lost):
                planned = tuning.planned[i]
                if isinstance(planned, PlannedTrial):
                    result = _trial_lost(result.exc) if isinstance(result, _Lost) else result
                    if result.status == "interrupted":  # not recorded: a resume runs it again
                        if in_process(pool):  # the signal stops this process too
                            raise stop_signal(result.signal)
                    else:
                        tuning.trial_done(planned, result)
                        if on_trial is not None:
                            on_trial(planned, result)
                    if drawing is None and len(tuning.chosen) == len(config.optimizers):
                        tuning.trials_seconds = time.perf_counter() - start
                        if tuning.evaluated:
                            tuning.write_tuned()
                        drawing = _Drawing(path, config, choose(config, settings_of(config, tuning.rows)))
                else:
                    result = worker_lost(result.exc) if isinstance(result, _Lost) else result
                    outcome = record(tuning.evaluation_dir, planned, result)
                    if on_run is not None:
                        on_run(planned, outcome)
                    if result.signal is not None and in_process(pool):
                        raise stop_signal(result.signal)
                tuning.task_done()
        except (KeyboardInterrupt, WorkersLost) as exc:
            if drawing is not None:  # its picture whole or absent when tune returns (a resume draws it)
                drawing.join(quietly=True)
            if isinstance(exc, WorkersLost):
                kept = tuning.stopped("failed", str(exc))
                raise WorkersLost(f"{path}: {exc}; {kept} are kept. Resume with: optrun {resume_command}") from None
            name = signal_name(exc)
            kept = tuning.stopped("interrupted", f"interrupted by {name}")
            raise RunInterrupted(path, name, f"after {kept}", resume_command=resume_command) from None
        finally:
            tuning.writer.close()
    choices = choose(config, settings_of(config, tuning.rows))
    summary = {
        "kind": "tune",
        "name": config.name,
        "metric": config.tune.metric,
        "at": config.tune.at,
        "chosen": {label: _chosen_summary(c) for label, c in choices.items()},
        "trials": len(trials),
        "trials_wall_seconds": tuning.trials_seconds or time.perf_counter() - start,
        "executor": executor_name(jobs, scheduler),
        "versions": versions(),
        "machine": machine(),
    }
    try:
        drawing = drawing or _Drawing(path, config, choices)
        drawing.join()
        if not tuning.evaluated:
            _stopped(path, config, "completed", "every setting of every label diverged or failed", summary)
            write_page(path)
            return TuneOutcome(path, choices, None)
        evaluation = tuning.write_tuned()
        extra = {"executor": executor_name(jobs, scheduler), "runs_wall_seconds": time.perf_counter() - start}
        comparison = conclude(tuning.evaluation_dir, evaluation, tuning.runs, extra)
    except (KeyboardInterrupt, RunInterrupted) as exc:  # while the pictures are drawn: a resume draws them
        name = exc.signal if isinstance(exc, RunInterrupted) else signal_name(exc)
        _stopped(path, config, "interrupted", f"interrupted by {name} while writing the results", summary)
        raise RunInterrupted(path, name, "while writing the results", resume_command) from None
    _stopped(path, config, "completed", "", {**summary, "evaluation": EVALUATION})
    write_page(path)
    return TuneOutcome(path, choices, CompareOutcome(tuning.evaluation_dir, comparison, []))


def _trial_lost(exc: BaseException) -> TrialResult:
    return TrialResult("failed", reason=exception_line(exc))


class _Drawing(threading.Thread):
    """``_sensitivity`` in a thread of its own, begun at once (while the last runs train). It is joined before
    the evaluation's comparison draws its own: one figure at a time."""

    def __init__(self, path: Path, config: TuneConfig, choices: Mapping[str, Choice]) -> None:
        super().__init__(name="optrun-sensitivity", daemon=True)
        self.arguments, self.error = (path, config, choices), None
        self.start()

    def run(self) -> None:
        try:
            _sensitivity(*self.arguments)
        except BaseException as exc:  # raised where it is joined
            self.error = exc

    def join(self, timeout: float | None = None, quietly: bool = False) -> None:
        """Wait for the picture; a failure to draw it is told (at level WARNING), and loses nothing else."""
        super().join(timeout)
        if self.error is not None and not quietly:
            error, self.error = self.error, None
            if isinstance(error, KeyboardInterrupt):
                raise error
            log.warning(f"sensitivity.png was not drawn: {exception_line(error)}")


def _sensitivity(path: Path, config: TuneConfig, choices: Mapping[str, Choice]) -> None:
    from optrun import plots  # here: matplotlib takes 0.4 s to import, and workers never need it

    seeds = len(config.tuning_seeds)
    search = f"{config.tune.budget} settings per label, {config.tune.search} search"
    title = (
        f"{config.name}: tuning on the validation split\n({search}; mean over {seeds} tuning seed{'s' * (seeds > 1)})"
    )
    figure = plots.sensitivity_figure(choices, config.spaces, config.tune.metric, config.tune.at, title)
    plots.save_figure(figure, path, "sensitivity")


def _chosen_summary(choice: Choice) -> dict[str, Any]:
    setting = choice.setting
    return {
        "setting": setting.values if setting else None,
        "trial": setting.trial if setting else None,
        "score": setting.score if setting else None,
        "at_edge": choice.edges,
        "settings": len(choice.settings),
        "broken": choice.broken,
    }


def _tuned_yaml(config: TuneConfig, evaluation: Mapping[str, Any]) -> str:
    head = (
        f"# {config.name}: each label at the setting optrun tune chose on the validation split\n"
        f"# ({config.tune.metric} at the {config.tune.at} epoch, {config.tune.budget} settings per label, "
        f"{config.tune.search} search, tuning seeds {config.tuning_seeds}).\n"
        "# optrun compare on this file reruns the evaluation exactly.\n"
    )
    return head + dump_yaml(evaluation)
