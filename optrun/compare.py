"""``optrun compare``: every optimizer once per seed on the same problem, in parallel, then the comparison.

Fairness: the runs of one seed differ only in their optimizer. Each is an
ordinary train config (``CompareConfig.run_config``) whose seed fixes the data,
the initial weights and the batch order (``optrun.problems.base.streams``), so for a given seed
every optimizer starts from the same parameters and sees the same minibatches.

A compare directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>/`` holds the resolved
compare config (``config.yaml``), one ordinary run directory per label and seed
(``<label>/seed-<k>/``) and the comparison files (``optrun.report``).
"""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optrun import memory
from optrun.config import CompareConfig, Config, dump_yaml, parse_config, read_yaml
from optrun.data import Dataset
from optrun.parallel import WorkersLost, executor, in_process
from optrun.problems import NETWORK, Record, TrainResult, problem_of
from optrun.report import RESULT_STATUSES, SEED_DIR, Comparison, build, collect, flatten, write, write_page
from optrun.runs import (
    TRACEBACK,
    RunDirError,
    RunInterrupted,
    RunOutcome,
    Terminated,
    create_run_dir,
    existing_dir,
    failed_result,
    is_run_dir,
    not_a_suite_part,
    not_a_tuning,
    read_json,
    signal_name,
    write_json,
    write_run,
)
from optrun.schema import ConfigError
from optrun.train import estimate, fit, prepare


@dataclass(frozen=True)
class PlannedRun:
    """One run of a comparison: an optimizer label and a seed."""

    label: str
    seed: int
    config: Config

    @property
    def subdir(self) -> Path:
        return Path(self.label) / SEED_DIR.format(self.seed)


def select(config: CompareConfig, labels: Iterable[str]) -> CompareConfig:
    """The comparison cut down to ``labels`` (``--only``); ConfigError names an unknown label."""
    labels = list(dict.fromkeys(labels))
    if not labels:
        return config
    unknown = [label for label in labels if label not in config.optimizers]
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: no such label; the labels are: {', '.join(config.optimizers)}")
    return config.model_copy(update={"optimizers": {label: config.optimizers[label] for label in labels}})


def plan(config: CompareConfig) -> list[PlannedRun]:
    """Every label crossed with every seed, seed-major so the first results cover every optimizer."""
    return [
        PlannedRun(label, seed, config.run_config(label, seed))
        for seed in config.seed_list
        for label in config.optimizers
    ]


@dataclass
class Finished:
    """A run trained in memory, possibly in another process or on another machine."""

    result: TrainResult
    wall_seconds: float
    traceback: str | None = None  # for a run that failed with an exception
    signal: str | None = None  # for a run a signal stopped: SIGINT, SIGTERM or SIGHUP


_DATA: dict[str, Dataset] = {}  # a process's data: the last datasets its runs (and trials) asked for
_KEEP = 2  # datasets kept: a seed's, and the next seed's while runs of both are in flight


def _files(spec: Any) -> list[tuple[str, int, int]]:
    """The name, modification time and size of the file a dataset spec names, or of each file in its folder:
    a file changed since it was loaded is loaded again (a Dask worker outlives a tuning)."""
    path = getattr(spec, "path", None)
    if path is None or not (folder := Path(path)).exists():
        return []
    files = sorted(folder.iterdir()) if folder.is_dir() else [folder]
    return [(f.name, (st := f.stat()).st_mtime_ns, st.st_size) for f in files]


def data_of(config: Config) -> Dataset:
    """A network config's data (``NetworkProblem.load``), loaded once per process for every run and trial that
    shares it (the same dataset, seed, dtype and samples; files unchanged)."""
    spec, train = config.dataset, config.train
    key = json.dumps([spec.model_dump(mode="json"), _files(spec), config.seed, config.model.dtype, train.max_samples])
    if key not in _DATA:
        while len(_DATA) >= _KEEP:
            del _DATA[next(iter(_DATA))]  # the oldest
        _DATA[key] = NETWORK.load(config)
    return _DATA[key]


def forget_data() -> None:
    """Empty this process's data cache (``data_of``): a file may have changed since it was loaded."""
    _DATA.clear()


def run_task(config: dict[str, Any]) -> Finished:
    """A worker's run of a comparison (``execute``), a network's data taken from the process's cache
    (``data_of``): the runs are planned seed by seed, so that a worker loads each seed's data once, not once a
    label."""
    return execute(config, data_of if config.get("dataset") is not None else None)


def execute(config: Config | dict[str, Any], data_of: Callable[[Config], Any] | None = None) -> Finished:
    """Train one run in memory; an exception becomes a failed run, not a lost comparison. A worker is given the
    config as its resolved mapping (``Config.to_dict``) and validates it here: a config that no longer holds
    there (a user's optimizer file edited since the comparison began) fails its run, where unpickling a Config
    would have ended the worker. ``data_of``: the network's data for a config, where the caller keeps it (a
    tuning's worker, between runs); else the run loads its own."""
    start = time.perf_counter()
    rows: list[Record] = []
    try:
        if not isinstance(config, Config):
            config = parse_config(config)
        experiment = prepare(config) if data_of is None else problem_of(config).prepare(config, data_of(config))
        result = fit(experiment, rows.append)
    except KeyboardInterrupt as exc:  # a stop signal: hand back the rows so far, marked interrupted
        name = signal_name(exc)
        reason = f"interrupted by {name} {problem_of(config).kept(rows)}"
        return Finished(TrainResult("interrupted", rows, reason), time.perf_counter() - start, signal=name)
    except Exception as exc:
        return Finished(failed_result(exc, rows), time.perf_counter() - start, traceback.format_exc())
    return Finished(result, time.perf_counter() - start)


def worker_lost(exc: BaseException) -> Finished:
    """What the executor reports for a run whose worker died or could not run it."""
    return Finished(failed_result(exc), 0.0, "".join(traceback.format_exception(exc)))


@dataclass
class CompareOutcome:
    path: Path
    comparison: Comparison
    runs: list[RunOutcome]

    @property
    def all_failed(self) -> bool:
        """Whether no run of the comparison completed: of those run now and, on a resume, those before."""
        return not any(group.completed for group in self.comparison.groups)


def has_result(run_dir: Path) -> bool:
    """Whether the run has a result (``RESULT_STATUSES``): resume skips it."""
    return read_json(run_dir / "summary.json").get("status") in RESULT_STATUSES


def stop_comparison(path: Path, config: CompareConfig, runs: list[PlannedRun], status: str, reason: str) -> int:
    """Write the summary.json of a comparison that stopped before its end; how many of its runs finished."""
    done = sum(has_result(path / r.subdir) for r in runs)
    summary = {"kind": "comparison", "name": config.name, "status": status, "reason": reason}
    write_json(path / "summary.json", summary | {"runs_finished": done, "runs_planned": len(runs)})
    return done


def comparison_to_resume(compare_dir: str | Path) -> Path:
    """``compare_dir`` when it is a comparison that did not finish: RunDirError when it is no directory, a
    run directory of ``optrun train``, or a comparison already completed."""
    path = existing_dir(compare_dir, "compare directory")
    not_a_suite_part(path, "optrun compare --resume")
    not_a_tuning(path, "a compare directory")
    status = read_json(path / "summary.json").get("status")  # none yet, or damaged: resume rewrites it
    if is_run_dir(path):
        hint = "; continue it with optrun train --resume" if status in (None, "interrupted") else ""
        raise RunDirError(f"{path}: a run directory, not a compare directory{hint}")
    if status == "completed":
        raise RunDirError(f"{path}: the comparison is already completed; there is nothing to resume")
    return path


def check_kept(path: Path, runs: list[PlannedRun], todo: list[PlannedRun]) -> None:
    """RunDirError when a finished run of the comparison at ``path`` (of its planned ``runs``) was trained
    otherwise than its config.yaml now plans it (edited since): resuming would average runs of two problems in
    one row."""
    for planned in runs:
        run_config = path / planned.subdir / "config.yaml"
        if planned in todo or not run_config.is_file():
            continue
        kept, now = flatten(read_yaml(run_config) or {}), flatten(planned.config.to_dict())
        if differ := [key for key in now if kept.get(key) != now[key]]:
            key = differ[0]
            raise RunDirError(
                f"{path}: {planned.subdir} was trained with {key}: {kept.get(key)}, and its config.yaml now says "
                f"{now[key]}; put config.yaml back, or compare anew"
            )


def pending(config: CompareConfig, resume_dir: str | Path | None = None) -> list[PlannedRun]:
    """The runs still to do: all of them, or those of ``resume_dir`` that did not finish."""
    runs = plan(config)
    return runs if resume_dir is None else [r for r in runs if not has_result(Path(resume_dir) / r.subdir)]


def record(path: Path, planned: PlannedRun, finished: Finished) -> RunOutcome:
    """Write a finished run into its directory of the comparison at ``path`` (and its traceback, if it failed)."""
    outcome = write_run(path / planned.subdir, planned.config, finished.result, finished.wall_seconds)
    if finished.traceback:
        (outcome.path / TRACEBACK).write_text(finished.traceback, encoding="utf-8")
    return outcome


def stop_signal(name: str | None) -> KeyboardInterrupt:
    """The exception of the signal ``name`` that stopped a task: raised where the task ran in this process, as
    the workers' executors raise it."""
    stop = signal.Signals[name or "SIGINT"]
    return KeyboardInterrupt() if stop == signal.SIGINT else Terminated(stop)


def executor_name(jobs: int, scheduler: str | None) -> str:
    return f"Dask cluster at {scheduler}" if scheduler else ("this process" if jobs == 1 else f"{jobs} processes")


def conclude(path: Path, config: CompareConfig, runs: list[PlannedRun], extra: dict[str, Any]) -> Comparison:
    """Compute the comparison at ``path`` from its written runs and write its files (``extra`` into its
    summary.json). A Ctrl-C meanwhile keeps every run: RunInterrupted, and a resume writes the rest."""
    try:
        comparison = build(collect([path]).groups, config.name, config.target_accuracy)
        write(comparison, path, {"status": "completed", **extra})
        write_page(path)
    except KeyboardInterrupt as exc:
        name = signal_name(exc)
        done = stop_comparison(path, config, runs, "interrupted", f"interrupted by {name} while writing the comparison")
        progress = f"after {done} of {len(runs)} runs, while writing the comparison"
        raise RunInterrupted(path, name, progress, resume_command=f"compare --resume {path}") from None
    return comparison


def compare(
    config: CompareConfig,
    runs_dir: str | Path = "runs",
    jobs: int = 1,
    scheduler: str | None = None,
    on_run: Callable[[PlannedRun, RunOutcome], None] | None = None,
    resume_dir: str | Path | None = None,
) -> CompareOutcome:
    """Run every planned run (``jobs`` local processes, or the Dask cluster at ``scheduler``) and compare them.

    The executor is opened (a cluster connected to) and the first run's data and
    model built before any directory is made, so a config or a scheduler that
    cannot work leaves nothing behind. Each finished run is written as it
    arrives; the comparison is computed from the written directories.

    Ctrl-C or SIGTERM stops every run in flight, which hands back its finished
    epochs (written as 'interrupted'), writes an 'interrupted' summary.json and
    raises RunInterrupted. ``resume_dir``: an interrupted compare directory (run
    with its own config.yaml); its finished runs are kept, the others run again.
    """
    start = time.perf_counter()
    forget_data()  # a file may have changed since an earlier comparison in this process loaded it
    runs = plan(config)
    todo = pending(config, resume_dir)
    if resume_dir is not None:
        check_kept(Path(resume_dir), runs, todo)
    jobs = max(1, min(jobs, len(todo) or 1))
    if todo and scheduler is None:  # a Dask worker checks its own memory when it prepares a run
        jobs = memory.runs_that_fit(memory.check(estimate(config)), jobs)
    if todo and (jobs > 1 or scheduler is not None):
        # While the workers start, a core is idle: import matplotlib for the plots then, not after the runs.
        threading.Thread(target=importlib.import_module, args=("optrun.plots",), daemon=True).start()
    outcomes: list[RunOutcome] = []
    with executor(jobs, scheduler, __name__) as map_unordered:
        if todo:
            prepare(todo[0].config)
        if resume_dir is None:
            path = create_run_dir(runs_dir, config.name)
            (path / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
        else:
            path = Path(resume_dir)
            for planned in todo:  # an interrupted or half-written run starts again from scratch
                shutil.rmtree(path / planned.subdir, ignore_errors=True)
        try:
            for i, finished in map_unordered(run_task, [r.config.to_dict() for r in todo], on_error=worker_lost):
                outcomes.append(outcome := record(path, todo[i], finished))
                if on_run is not None:
                    on_run(todo[i], outcome)
                if finished.signal is not None and in_process(map_unordered):
                    raise stop_signal(finished.signal)  # run in this process, execute caught the signal: stop here too
        except KeyboardInterrupt as exc:
            name = signal_name(exc)
            done = stop_comparison(path, config, runs, "interrupted", f"interrupted by {name}")
            progress = f"after {done} of {len(runs)} runs"
            raise RunInterrupted(path, name, progress, resume_command=f"compare --resume {path}") from None
        except WorkersLost as exc:
            done = stop_comparison(path, config, runs, "failed", str(exc))
            raise WorkersLost(
                f"{path}: {exc}; {done} of {len(runs)} runs finished and are kept. "
                f"Resume with: optrun compare --resume {path}"
            ) from None
    extra = {"executor": executor_name(jobs, scheduler), "runs_wall_seconds": time.perf_counter() - start}
    return CompareOutcome(path, conclude(path, config, runs, extra), outcomes)
