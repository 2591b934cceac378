"""The ``optrun`` command: parse arguments, call the library, print with rich.

Exit codes: 0 completed, 2 bad config or usage, 3 diverged (``train``) or every
run diverged or failed (``compare``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial, wraps
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from optrun import config as configs
from optrun import memory, startup, webpage
from optrun import report as reports
from optrun.checkpoints import CheckpointError
from optrun.compare import PlannedRun, compare, comparison_to_resume, pending, select
from optrun.optim import COMMON_KEYS, OPTIMIZERS, optimizer_entry, optimizers_markdown
from optrun.optim.registry import NotAnOptimizer, classes_in, short_name
from optrun.parallel import ExecutorError
from optrun.problems import Record, count_text, problem_of
from optrun.runs import (
    RunDirError,
    RunFailed,
    RunInterrupted,
    RunOutcome,
    Terminated,
    create_run_dir,
    existing_dir,
    is_run_dir,
    read_run,
    resume,
    run,
    run_to_resume,
    signal_name,
    suite_of,
    tuning_of,
)
from optrun.schema import ConfigError
from optrun.search import value_text
from optrun.suite import read_suite, suite, suite_to_resume, tasks, tasks_done
from optrun.tables import (
    comparison_table,
    metrics_table,
    run_overview,
    suite_tables,
    tuning_table,
    unfinished_notice,
)
from optrun.threads import available_cores
from optrun.train import check
from optrun.tune import EVALUATION, PlannedTrial, TrialResult, read_tuning, tune, tune_to_resume

EXIT_DIVERGED = 3


class UserError(click.ClickException):
    """One line on stderr (``Error: ...``) and exit code 2."""

    exit_code = 2


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors about the user's input into UserError."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = {signum: signal.signal(signum, _terminate) for signum in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return command(*args, **kwargs)
        except (ConfigError, RunDirError, ExecutorError, CheckpointError, RunFailed) as exc:
            raise UserError(str(exc)) from None
        except RunInterrupted as exc:
            _tell(
                f"interrupted by {exc.signal} {exc.progress}; what finished is kept in {exc.path}. "
                f"Resume with: optrun {exc.resume_command}"
            )
            sys.exit(_exit_code(exc.signal))
        except KeyboardInterrupt as exc:  # outside a run: loading the config, writing the plots at the end
            _tell(f"interrupted by {signal_name(exc)}")
            sys.exit(_exit_code(signal_name(exc)))
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return wrapper


def _tell(message: str) -> None:
    """A line on stderr, if there is still someone to read it (after SIGHUP, the terminal is gone)."""
    with contextlib.suppress(OSError):
        click.echo(message, err=True)


def _exit_code(name: str) -> int:
    """128 + the signal's number, as shells report a process ended by it: 130 for SIGINT, 143 for SIGTERM,
    129 for SIGHUP."""
    return 128 + signal.Signals[name]


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated(signum)


runs_dir_option = click.option(
    "--runs-dir", default="runs", metavar="DIR", show_default=True, help="Folder in which to create the run directory."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="Print only the path of the directory written.")
jobs_option = click.option(
    "--jobs", "-j", type=click.IntRange(min=1), metavar="N", help="Worker processes [default: the number of cores]."
)
dask_option = click.option(
    "--dask-scheduler", metavar="ADDRESS", help="Run on the Dask cluster at ADDRESS, e.g. tcp://host:8786."
)


def _workers(jobs: int | None, dask_scheduler: str | None) -> int | None:
    """The local worker processes of ``--jobs`` (default: the number of cores), None on a Dask cluster; UserError
    where both are given."""
    if dask_scheduler is None:
        return jobs or available_cores()
    if jobs is not None:
        raise UserError("--jobs and --dask-scheduler exclude each other: a Dask cluster has its own workers")
    return None


smoke_option = click.option(
    "--smoke", is_flag=True, help="One epoch on at most 256 samples (one seed): a quick check that a config runs."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key by its dotted path, e.g. --set optimizer.mu=0.95 (repeatable; VALUE is YAML).",
)


class _Commands(click.Group):
    """The command group, whose usage errors (a missing argument, an unknown option) are one line, as every
    other error is, instead of click's usage, hint and error."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        startup.taken_over()
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare 'optrun': its help
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "optrun"
            click.echo(f"Error: {exc.format_message().rstrip('.')}; see '{where} --help'", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:  # Ctrl-C while click reads the arguments
            click.echo("interrupted by SIGINT", err=True)
            sys.exit(_exit_code("SIGINT"))


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optrun")
def cli() -> None:
    """Train vectorized NumPy networks and compare gradient-descent optimizers."""


def _stdout() -> Any:
    """``sys.stdout`` as it is now, or the file under it where a live progress bar stands in for it (rich's
    proxy, which writes into the console that writes here: written to, it would write to itself forever)."""
    return getattr(sys.stdout, "rich_proxied_file", sys.stdout)


class _Stdout:
    """``sys.stdout`` as it is when written to (``_stdout``); once its reader has gone (``optrun train ... |
    head``), what follows is dropped and the work goes on to its end, its results on disk, instead of dying on a
    BrokenPipeError with an unfinished run."""

    gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                _stdout().write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                _stdout().flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.gone = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), _stdout().fileno())  # nor does Python's flush at exit fail

    def isatty(self) -> bool:
        return _stdout().isatty()

    def fileno(self) -> int:
        return _stdout().fileno()

    @property
    def encoding(self) -> str:
        return getattr(_stdout(), "encoding", None) or "utf-8"


_STDOUT = _Stdout()


def _console() -> Console:
    """stdout for rich; 120 columns when it is not a terminal (a log, a pipe), so tables are not squeezed."""
    console = Console(file=_STDOUT, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=_STDOUT, highlight=False, soft_wrap=True, width=120)
    return console


def _say(text: object) -> None:
    """A line on stdout, as ``--quiet`` prints a path."""
    _STDOUT.write(f"{text}\n")
    _STDOUT.flush()


@contextmanager
def _progress(console: Console, config: configs.Config, quiet: bool) -> Iterator[Callable[[Record], None]]:
    """A callback that shows each epoch (or step): a live bar on a terminal, plain lines otherwise
    (for steps, about 20 lines in all). What the library tells its logger meanwhile (a compile before
    the first epoch) shows in the bar, or as a line of its own."""
    problem = problem_of(config)
    unit, total = problem.unit, problem.planned(config)
    every = max(1, total // 20) if unit == "step" else 1
    if quiet:
        yield lambda row: None
    elif not console.is_terminal:
        width = len(str(total))

        def line(row: Record) -> None:
            done = row.done
            if done % every == 0 or done == total:
                console.print(f"{unit} {done:>{width}}/{total}  {problem.progress(row)}", highlight=False)

        with _library_messages(lambda message: console.print(message, highlight=False)):
            yield line
    else:
        columns = (TextColumn(unit), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"))
        with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("train", total=total, stats="evaluating the start")
            with _library_messages(lambda message: bar.update(task, stats=message)):
                yield lambda row: bar.update(task, completed=row.done, stats=problem.progress(row))


@contextmanager
def _library_messages(show: Callable[[str], None]) -> Iterator[None]:
    """Pass what the library logs at level INFO or above (``logging.getLogger("optrun")``) to ``show``."""

    class Show(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            show(record.getMessage())

    logger, handler = logging.getLogger("optrun"), Show()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _config_or_resume(config_path: str | None, resume_dir: str | None, command: str, resumable: str) -> None:
    """Exactly one of CONFIG and ``--resume DIR`` (``resumable``: "RUN_DIR", "COMPARE_DIR"): UserError
    saying which is missing, or that both were given."""
    if config_path is None and resume_dir is None:
        raise UserError(f"missing CONFIG: give a config file to {command}, or --resume {resumable} to continue")
    if config_path is not None and resume_dir is not None:
        raise UserError(f"give either a CONFIG or --resume {resumable}, not both")


@cli.command(short_help="Train the network a config describes; write a run directory.")
@click.argument("config_path", metavar="CONFIG", required=False)
@set_option
@click.option("--resume", "resume_dir", metavar="RUN_DIR", help="Continue an interrupted run from its checkpoint.")
@runs_dir_option
@smoke_option
@quiet_option
@user_errors
def train(
    config_path: str | None, overrides: tuple[str, ...], resume_dir: str | None, runs_dir: str, smoke: bool, quiet: bool
) -> None:
    """Train the network that CONFIG describes (or descend its objective) and write a run directory.

    After every epoch a checkpoint is saved; Ctrl-C or SIGTERM stops the run, keeps
    its finished rows, and `optrun train --resume RUN_DIR` continues it.

    Exits 0 when training completed, 3 when it diverged, 2 for a bad config,
    130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP) when interrupted.
    """
    _config_or_resume(config_path, resume_dir, "train", "RUN_DIR")
    if resume_dir is not None and (overrides or smoke):
        raise UserError("--resume continues a run as it was configured; --set and --smoke do not apply")
    if resume_dir is not None:
        config = configs.load_config(run_to_resume(resume_dir) / "config.yaml")
    else:
        config = configs.load_config(config_path, overrides)
    if smoke:
        config = configs.smoke(config)
    console = _console()
    with _progress(console, config, quiet) as on_row, _naming(config_path or f"{resume_dir}/config.yaml"):
        outcome = run(config, runs_dir, on_row) if resume_dir is None else resume(resume_dir, on_row)
    try:
        _tell_outcome(console, config, outcome, quiet)
    except KeyboardInterrupt:  # the run is recorded, as its summary says: a late Ctrl-C only cuts this short
        _tell(f"{outcome.path}: {outcome.result.status}; interrupted while telling it")
    if outcome.result.status == "diverged":
        sys.exit(EXIT_DIVERGED)


def _tell_outcome(console: Console, config: configs.Config, outcome: RunOutcome, quiet: bool) -> None:
    """A finished run's table, result line and directory (its pictures first, where its problem draws a run's:
    on an objective, the path and the rate are the point)."""
    pictures, problem = [], problem_of(config)
    if problem.draws_each_run:
        pictures = reports.draw_run(outcome.path)
    if quiet:
        _say(outcome.path)
    else:
        result, summary = outcome.result, outcome.summary
        if console.is_terminal:
            console.print(metrics_table(problem, result.records))
        unit = f"{problem.unit}s"
        if result.status == "completed":
            done = summary[unit]
            seconds = summary["wall_seconds"]
            console.print(
                f"[green]completed[/] {done} {unit if done != 1 else problem.unit} in {seconds:.1f} s: "
                f"{problem.result(summary)}"
            )
        else:
            console.print(
                f"[red]diverged[/]: {escape(result.reason or '')}; metrics.csv keeps {unit} 0..{summary[unit]}"
            )
        if pictures:
            console.print(f"pictures: {', '.join(p.name for p in pictures)}")
        console.print(f"run directory: {outcome.path}")


def _run_line(planned: PlannedRun, outcome: RunOutcome, width: int) -> str:
    result, summary = outcome.result, outcome.summary
    head = f"{planned.label:<{width}} seed {planned.seed}"
    if result.status == "completed":
        result_text = problem_of(planned.config).result(summary)
        return f"[green]completed[/] {head}  {result_text}  ({summary['wall_seconds']:.1f} s)"
    return f"[red]{result.status:<9}[/] {head}  {escape(result.reason or '')}"


@contextmanager
def _compare_progress(
    console: Console, runs: int, width: int, quiet: bool
) -> Iterator[Callable[[PlannedRun, RunOutcome], None]]:
    """A callback for each finished run: a line, under one overall bar on a terminal. What the library tells
    its logger meanwhile (fewer runs at once than asked, to fit in memory; a compile) shows as a line too."""
    if quiet:
        yield lambda planned, outcome: None
    elif not console.is_terminal:
        with _library_messages(lambda message: console.print(message, highlight=False)):
            yield lambda planned, outcome: console.print(_run_line(planned, outcome, width))
    else:
        columns = (TextColumn("runs"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("compare", total=runs)

            def show(planned: PlannedRun, outcome: RunOutcome) -> None:
                bar.console.print(_run_line(planned, outcome, width))
                bar.advance(task)

            with _library_messages(lambda message: bar.console.print(message, highlight=False, markup=False)):
                yield show


def _split_labels(only: tuple[str, ...]) -> list[str]:
    """The labels of ``--only`` options, each a label or a comma-separated list; UserError for one that names
    none (``--only ""`` would otherwise compare every label)."""
    labels = [label.strip() for item in only for label in item.split(",") if label.strip()]
    if only and not labels:
        raise UserError(f"--only {only[0]!r}: names no label; give one or more labels, separated by commas")
    return labels


@cli.command("compare", short_help="Compare optimizers over seeds; write a comparison directory.")
@click.argument("config_path", metavar="CONFIG", required=False)
@set_option
@click.option(
    "--resume", "resume_dir", metavar="COMPARE_DIR", help="Finish an interrupted comparison: rerun its unfinished runs."
)
@click.option("--seeds", type=click.IntRange(min=1), metavar="N", help="Train each optimizer with N seeds.")
@click.option(
    "--only", multiple=True, metavar="LABEL", help="Compare only these labels (repeatable or comma-separated)."
)
@jobs_option
@dask_option
@runs_dir_option
@smoke_option
@quiet_option
@user_errors
def compare_command(
    config_path: str | None,
    overrides: tuple[str, ...],
    resume_dir: str | None,
    seeds: int | None,
    only: tuple[str, ...],
    jobs: int | None,
    dask_scheduler: str | None,
    runs_dir: str,
    smoke: bool,
    quiet: bool,
) -> None:
    """Train every optimizer in CONFIG once per seed on the same data, initial weights and batches; compare them.

    CONFIG is a train config plus an optional `optimizers:` mapping of labels to
    optimizer specs (default: sgd, momentum, nesterov, adagrad, rmsprop, adam at
    their defaults) and `seeds:` (a count or a list). Writes one run directory per
    label and seed, comparison.csv, curves.png/svg and summary.json.

    Ctrl-C or SIGTERM stops the runs in flight (they keep their finished epochs);
    `optrun compare --resume COMPARE_DIR` then reruns what did not finish.

    Exits 0 when at least one run completed, 3 when every run diverged or failed, 2 for a bad config,
    130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP) when interrupted.
    """
    jobs = _workers(jobs, dask_scheduler)
    _config_or_resume(config_path, resume_dir, "compare", "COMPARE_DIR")
    if resume_dir is not None and (overrides or seeds or only or smoke):
        raise UserError(
            "--resume finishes a comparison as it was configured; --set, --seeds, --only, --smoke do not apply"
        )
    if resume_dir is not None:
        config_path = str(comparison_to_resume(resume_dir) / "config.yaml")
    if seeds is not None:
        overrides = (*overrides, f"seeds={seeds}")
    config = select(configs.load_config(config_path, overrides, configs.CompareConfig), _split_labels(only))
    if smoke:
        config = configs.smoke(config).model_copy(update={"seeds": config.seed_list[:1]})
    console = _console()
    if config.optimizer is not None and not quiet:
        console.print(
            f"note: {config_path} has one 'optimizer:'; compare ignores it and compares the 'optimizers:' "
            f"({', '.join(config.optimizers)})",
            style="yellow",
        )
    n_runs = len(pending(config, resume_dir))
    width = max(map(len, config.optimizers))
    with _compare_progress(console, n_runs, width, quiet) as on_run, _naming(config_path):
        outcome = compare(config, runs_dir, jobs or 1, dask_scheduler, on_run, resume_dir)
    if quiet:
        _say(outcome.path)
    else:
        console.print(comparison_table(outcome.comparison))
        console.print(f"comparison directory: {outcome.path}")
    if outcome.all_failed:
        sys.exit(EXIT_DIVERGED)


def _trial_line(planned: PlannedTrial, result: TrialResult, budget: int, metric: str, width: int) -> str:
    setting = "  ".join(f"{name} {value_text(value)}" for name, value in planned.setting.items())
    head = f"{planned.label:<{width}} trial {planned.trial:>{len(str(budget))}}/{budget} seed {planned.seed}  {setting}"
    if result.status == "completed":
        return f"[green]completed[/] {head}  {_metric_text(metric, result.value)}  ({result.seconds:.1f} s)"
    return f"[red]{result.status:<9}[/] {head}  {escape(result.reason or '')}"


def _metric_text(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    name = metric.replace("_", " ")
    return f"{name} {value:.2%}" if metric.endswith("accuracy") else f"{name} {value:.4f}"


class _TaskBar:
    """One overall bar of a tuning's or a suite's tasks (trials and runs): done of all, how many are running and
    how many diverged or failed, the time taken and the time left; each task's line above it (or, where
    ``lines`` is off, only those of the tasks that broke). Plain lines where the output is not a terminal."""

    def __init__(self, console: Console, total: int, jobs: int | None, lines: bool = True) -> None:
        self.console, self.jobs, self.lines = console, jobs, lines
        self.left = total  # of the work at hand (a suite's problem), for the count running
        columns = (  # the counts and times first: on a narrow terminal the bar gives way
            TextColumn("tasks"), MofNCompleteColumn(), TextColumn("{task.fields[state]} ·"), TimeElapsedColumn(),
            TextColumn("·"), TimeRemainingColumn(), TextColumn("left"), BarColumn(bar_width=None),
        )  # fmt: skip
        self.bar = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
        self.task = self.bar.add_task("tasks", total=total, state="")
        self.failed = 0
        self._show()

    def _show(self) -> None:
        running = "" if self.jobs is None else f"{min(self.jobs, self.left)} running, "
        broken = f"[red]{self.failed} failed[/]" if self.failed else "0 failed"  # diverged, or failed
        self.bar.update(self.task, state=f"{running}{broken}")

    def print(self, line: str) -> None:
        self.bar.console.print(line)

    def work(self, left: int) -> None:
        """The tasks of the work now at hand (a suite's next problem)."""
        self.left = left
        self._show()

    def done(self, line: str, broken: bool) -> None:
        if self.lines or broken:
            self.print(line)
        self.failed += broken
        self.left -= 1
        self.bar.advance(self.task)
        self._show()


@contextmanager
def _task_bar(
    console: Console, total: int, jobs: int | None, quiet: bool, lines: bool = True
) -> Iterator[_TaskBar | None]:
    """A ``_TaskBar`` while the block runs (None when ``quiet``); what the library logs meanwhile shows above it."""
    if quiet:
        yield None
        return
    bar = _TaskBar(console, total, jobs, lines)
    with bar.bar, _library_messages(lambda message: bar.bar.console.print(message, highlight=False, markup=False)):
        yield bar


def _tell_task(
    bar: _TaskBar | None,
    width: int,
    budget: int | None,
    metric: str | None,
    planned: PlannedTrial | PlannedRun,
    result: Any,
) -> None:
    """A finished trial or run on ``bar``: its line, and whether it broke."""
    if bar is None:
        return
    if isinstance(planned, PlannedTrial):
        bar.done(_trial_line(planned, result, budget, metric, width), result.status != "completed")
    else:
        bar.done(_run_line(planned, result, width), result.result.status != "completed")


@cli.command("tune", short_help="Tune every optimizer with the same budget on validation data, then compare.")
@click.argument("config_path", metavar="CONFIG", required=False)
@set_option
@click.option("--resume", "resume_dir", metavar="TUNE_DIR", help="Finish an interrupted tuning: run what is missing.")
@jobs_option
@dask_option
@runs_dir_option
@click.option(
    "--smoke", is_flag=True, help="Two random settings per label, one epoch on at most 256 samples, one seed each."
)
@quiet_option
@user_errors
def tune_command(
    config_path: str | None,
    overrides: tuple[str, ...],
    resume_dir: str | None,
    jobs: int | None,
    dask_scheduler: str | None,
    runs_dir: str,
    smoke: bool,
    quiet: bool,
) -> None:
    """Tune every optimizer in CONFIG with the same budget on a validation split, then compare the chosen
    settings on the test split over fresh seeds.

    CONFIG is a compare config plus a `tune:` section: `budget` (settings per label), `search` (grid or
    random), `seeds` (tuning seeds), `metric` (validation_accuracy or validation_loss), `at` (last or best
    epoch) and `space` (ranges per label, or for every label). Writes trials.csv, tuned.yaml,
    sensitivity.png/svg and the evaluation's comparison (evaluation/).

    Ctrl-C or SIGTERM keeps every finished trial; `optrun tune --resume TUNE_DIR` runs only what is missing.

    Exits 0 when at least one evaluation run completed, 3 when none did, 2 for a bad config,
    130 (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP) when interrupted.
    """
    jobs = _workers(jobs, dask_scheduler)
    _config_or_resume(config_path, resume_dir, "tune", "TUNE_DIR")
    if resume_dir is not None and (overrides or smoke):
        raise UserError("--resume finishes a tuning as it was configured; --set and --smoke do not apply")
    if resume_dir is not None:
        config_path = str(tune_to_resume(resume_dir) / "config.yaml")
    if smoke:  # two random settings: the grid's budget is not checked
        overrides = (*overrides, "tune.search=random", "tune.budget=2")
    config = configs.load_config(config_path, overrides, configs.TuneConfig)
    if smoke:
        config = configs.smoke(config)
    console = _console()
    if config.optimizer is not None and not quiet:
        console.print(f"note: {config_path} has one 'optimizer:'; tune ignores it", style="yellow")
    left = tasks(config) - (tasks_done(config, Path(resume_dir)) if resume_dir else 0)
    width, budget, metric = max(map(len, config.optimizers)), config.tune.budget, config.tune.metric
    with _naming(config_path), _task_bar(console, left, jobs, quiet) as bar:
        told = partial(_tell_task, bar, width, budget, metric)
        outcome = tune(config, runs_dir, jobs or 1, dask_scheduler, told, told, resume_dir)
    if quiet:
        _say(outcome.path)
    else:
        console.print(tuning_table(config, outcome.choices))
        if outcome.evaluation is not None:
            console.print(comparison_table(outcome.evaluation.comparison))
        console.print(f"tune directory: {outcome.path}")
    if outcome.all_failed:
        sys.exit(EXIT_DIVERGED)


@cli.command("suite", short_help="Run the same optimizers on several problems; score them by performance profiles.")
@click.argument("config_path", metavar="SUITE", required=False)
@set_option
@click.option("--resume", "resume_dir", metavar="SUITE_DIR", help="Finish an interrupted suite: run what is missing.")
@jobs_option
@dask_option
@runs_dir_option
@click.option(
    "--smoke", is_flag=True, help="Every problem for one epoch on at most 256 samples, one seed (tuned: two settings)."
)
@quiet_option
@user_errors
def suite_command(
    config_path: str | None,
    overrides: tuple[str, ...],
    resume_dir: str | None,
    jobs: int | None,
    dask_scheduler: str | None,
    runs_dir: str,
    smoke: bool,
    quiet: bool,
) -> None:
    """Run every problem of SUITE with the same optimizers, as compare (or tune, then compare) would, and score
    the optimizers across the problems by performance profiles of their time to each problem's target.

    SUITE maps `problems:` (each a compare or tune config: a path to its file, or the config itself) and
    gives the `optimizers:` to run on all of them; `seeds:`, when given, replaces every problem's seeds;
    `tune:` tunes every network problem that has no tune: section of its own; `profile:` says what time is
    measured in (`measure: epochs` or `seconds`) and the largest ratio to the best counted (`tau_max`, 4).
    Writes each problem's directory, times.csv, profiles.csv, profiles.png/svg, summary.json and report.html.

    Ctrl-C or SIGTERM keeps every finished run and trial; `optrun suite --resume SUITE_DIR` runs only what is
    missing.

    Exits 0 when the suite completed, 3 when no run of any problem completed, 2 for a bad config, 130
    (Ctrl-C), 143 (SIGTERM) or 129 (SIGHUP) when interrupted.
    """
    jobs = _workers(jobs, dask_scheduler)
    _config_or_resume(config_path, resume_dir, "suite", "SUITE_DIR")
    if resume_dir is not None and (overrides or smoke):
        raise UserError("--resume finishes a suite as it was configured; --set and --smoke do not apply")
    if resume_dir is not None:
        config_path = str(suite_to_resume(resume_dir) / "config.yaml")
    config = configs.load_config(config_path, overrides, configs.SuiteConfig)
    if smoke:
        config = configs.smoke(config)
    if resume_dir is not None:  # before its problems' own files are read
        reports.check_unchanged(Path(resume_dir), config.to_dict(), "the suite")
    console = _console()
    for name, own in config.replaced.items():
        if not quiet:
            console.print(f"note: problem {name}'s own optimizers ({', '.join(own)}) give way to the suite's "
                          f"({', '.join(config.optimizers)})", style="yellow", markup=False)  # fmt: skip
    where = {name: Path(resume_dir) / name if resume_dir else None for name in config.configs}
    left = {name: tasks(c) - (tasks_done(c, where[name]) if where[name] else 0) for name, c in config.configs.items()}
    width = max(map(len, config.optimizers))
    with _naming(config_path), _task_bar(console, sum(left.values()), jobs, quiet, lines=False) as bar:

        def problem_begins(name: str) -> None:
            if bar is not None:
                problem, k = config.configs[name], list(config.configs).index(name) + 1
                what = "tune, then compare" if isinstance(problem, configs.TuneConfig) else "compare"
                bar.print(f"problem {k} of {len(config.configs)}: [bold]{escape(name)}[/] ({what}, "
                          f"{count_text(left[name], 'task')} to run)")  # fmt: skip
                bar.work(left[name])

        def task_done(name: str, planned: PlannedTrial | PlannedRun, result: Any) -> None:
            tune = getattr(config.configs[name], "tune", None)
            _tell_task(bar, width, tune and tune.budget, tune and tune.metric, planned, result)

        outcome = suite(config, runs_dir, jobs or 1, dask_scheduler, task_done, problem_begins, resume_dir)
    if quiet:
        _say(outcome.path)
    else:
        for table in suite_tables(config.name, outcome.scores):
            console.print(table)
        console.print(f"suite directory: {outcome.path}")
    if outcome.all_failed:
        sys.exit(EXIT_DIVERGED)


@cli.command(short_help="Rebuild a comparison's table and plots from run directories.")
@click.argument("paths", metavar="RUN_DIR...", nargs=-1, required=True)
@click.option(
    "--out",
    metavar="DIR",
    help="Write comparison.csv, curves.png/svg and summary.json here [default: a new report-* run directory].",
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1, min_open=True),
    callback=lambda ctx, param, value: _a_number(param, value),
    metavar="X",
    help="Accuracy for 'epochs to target' [default: the compare config's, else 95% of the best final accuracy].",
)
@click.option("--html", is_flag=True, help="Rebuild the report.html of one compare, tune or suite directory, in place.")
@runs_dir_option
@quiet_option
@user_errors
def report(
    paths: tuple[str, ...], out: str | None, target_accuracy: float | None, html: bool, runs_dir: str, quiet: bool
) -> None:
    """Compare finished runs: any mix of compare directories and single train run directories.

    Runs of one label in a compare directory are aggregated over their seeds;
    each train run directory is a row of its own. With --html, rebuild the self-contained report.html of one
    compare, tune or suite directory instead.
    """
    if html:
        _rebuild_page(paths, out, target_accuracy, quiet)
        return
    collection = reports.collect(paths)
    comparison = reports.build(collection.groups, collection.name, target_accuracy or collection.target)
    for warning in collection.warnings:
        click.echo(f"warning: {warning}", err=True)
    if differ := reports.problem_differences(collection.groups):
        click.echo(f"warning: the runs differ in {', '.join(differ)}, not only in optimizer and seed", err=True)
    out_dir = reports.report_dir(out) if out else create_run_dir(runs_dir, "report")
    try:
        reports.write_report(comparison, out_dir, {"sources": [str(Path(p)) for p in paths]})
    except BaseException:
        if not out:  # the folder made for it, empty
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    reports.write_page(out_dir)
    if quiet:
        _say(out_dir)
    else:
        console = _console()
        console.print(comparison_table(comparison, collection.unfinished))
        for gap in collection.unfinished:
            console.print(unfinished_notice(gap))
        console.print(f"report directory: {out_dir}")


def _rebuild_page(paths: tuple[str, ...], out: str | None, target_accuracy: float | None, quiet: bool) -> None:
    """``optrun report DIR --html``: DIR's report.html written again from what DIR holds."""
    if len(paths) != 1 or out or target_accuracy is not None:
        raise UserError("--html rebuilds the report.html of one directory in place; give one, without --out or "
                        "--target-accuracy")  # fmt: skip
    path = Path(paths[0]) if reports.report_sources(Path(paths[0])) else existing_dir(paths[0], "directory")
    pages = (suite_of(path) == path or tuning_of(path) == path or reports.is_compare_dir(path)
             or reports.report_sources(path))  # fmt: skip
    if not pages:
        what = "a run directory" if is_run_dir(path) else "not a compare, tune or suite directory"
        raise UserError(f"{path}: {what}; report.html is written for compare, tune and suite directories")
    written = webpage.write_page(path)
    if quiet:
        _say(written)
    else:
        _console().print(f"report page: {written}")


@cli.command(short_help="Print a run's settings and per-epoch table, or a comparison's table.")
@click.argument("path", metavar="RUN_DIR")
@user_errors
def show(path: str) -> None:
    """Print a run directory's settings, outcome and every epoch's metrics; for a compare directory, its table,
    and, when it did not finish, which runs lack a result and how to finish it."""
    console = _console()
    if suite_of(Path(path)) == Path(path):
        _show_suite(console, Path(path))
        return
    if tuning_of(Path(path)) == Path(path):
        _show_tuning(console, Path(path))
        return
    if is_run_dir(Path(path)):
        run_record = read_run(path)
        console.print(run_overview(run_record))
        console.print(metrics_table(problem_of(run_record.config), run_record.records, limit=SHOW_ROWS))
        return
    collection = reports.collect([path])
    if collection.groups or not collection.unfinished:  # an interrupted comparison may have no result yet
        comparison = reports.build(collection.groups, collection.name, collection.target)
        console.print(comparison_table(comparison, collection.unfinished))
    for gap in collection.unfinished:
        console.print(unfinished_notice(gap))


def _show_suite(console: Console, path: Path) -> None:
    """A suite directory: its tables over the problems completed, and, when it did not finish, which are not
    and how to finish it."""
    record = read_suite(path)
    if record.scores is not None:
        for table in suite_tables(record.config.name, record.scores):
            console.print(table)
    if record.status != "completed":
        missing = [name for name in record.config.configs if name not in record.completed]
        console.print(
            f"[yellow]{path}: {record.status or 'not finished'}, {len(record.completed)} of "
            f"{len(record.config.configs)} problems completed (not: {', '.join(missing)})[/]"
        )
        console.print(f"finish it with: optrun suite --resume {path}")


def _show_tuning(console: Console, path: Path) -> None:
    """A tune directory: each label's choice from the trials it has, its evaluation's table, and, when it did not
    finish, how far it got and how to finish it."""
    tuning = read_tuning(path)
    console.print(tuning_table(tuning.config, tuning.choices))
    evaluation = path / EVALUATION
    unfinished = []
    if reports.is_compare_dir(evaluation) and reports.compare_run_dirs(evaluation):
        collection = reports.collect([evaluation])
        unfinished = collection.unfinished
        if collection.groups:
            comparison = reports.build(collection.groups, collection.name, collection.target)
            console.print(comparison_table(comparison, unfinished))
    if tuning.status != "completed":
        console.print(
            f"[yellow]{path}: {tuning.status or 'not finished'}, {tuning.trials} of {tuning.planned} trials[/]"
        )
        for gap in unfinished:
            console.print(unfinished_notice(gap))
        if not unfinished:
            suite = suite_of(path)  # a suite's tuned problem resumes with its suite
            console.print(f"finish it with: optrun {f'suite --resume {suite}' if suite else f'tune --resume {path}'}")


@cli.command(short_help="Check configs without training.")
@click.argument("config_paths", metavar="CONFIG...", nargs=-1, required=True)
@set_option
def validate(config_paths: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check train and compare configs without training: one line per file; exit 2 if any is bad."""
    bad = 0
    for path in config_paths:
        try:
            c = configs.load_any_config(path, overrides)
            need = check(c)
        except ConfigError as exc:
            bad += 1
            click.echo(f"error: {_in_file(path, exc)}", err=True)
            continue
        if isinstance(c, configs.SuiteConfig):
            kinds = [
                f"{name} ({'tuned' if isinstance(p, configs.TuneConfig) else 'compared'})"
                for name, p in c.configs.items()
            ]
            what = f"suite of {count_text(len(c.optimizers), 'optimizer')} on {count_text(len(kinds), 'problem')}"
            click.echo(f"ok: {path} ({what}: {', '.join(kinds)}; about {memory.size(need.total)} of memory a run)")
            continue
        problem = f"on {problem_of(c).describe(c)}"
        if isinstance(c, configs.TuneConfig):
            trials = f"{count_text(c.tune.budget, 'setting')} x {count_text(len(c.tuning_seeds), 'tuning seed')}"
            seeds = count_text(len(c.seed_list), "seed")
            what = f"tune {count_text(len(c.optimizers), 'optimizer')} x {trials}, then {seeds}"
        elif isinstance(c, configs.CompareConfig):
            what = f"compare {count_text(len(c.optimizers), 'optimizer')} x {count_text(len(c.seed_list), 'seed')}"
        else:
            what = short_name(c.optimizer.name)
        click.echo(f"ok: {path} ({what} {problem}; about {memory.size(need.total)} of memory a run)")
    if bad:
        sys.exit(2)


def _in_file(path: str | Path, exc: ConfigError) -> str:
    """A config error's message, naming the config file where it does not already (a split or memory error
    found while preparing the run)."""
    message = str(exc)
    return message if message.startswith(f"{path}:") else f"{path}: {message}"


@contextmanager
def _naming(path: str | Path) -> Iterator[None]:
    """A config error found while preparing a run (a split, the memory it needs) names the config file."""
    try:
        yield
    except ConfigError as exc:
        raise UserError(_in_file(path, exc)) from None


SHOW_ROWS = 1000
"""At most this many rows of a run's table in ``optrun show`` (an objective may run for 200,000 steps): evenly
spaced, the last always, the title saying which; metrics.csv has every row."""


def _a_number(param: click.Parameter, value: float | None) -> float | None:
    """A value of an option that takes a number, not nan (click's ranges let it through)."""
    if value is not None and math.isnan(value):
        raise click.BadParameter("nan is not a number in (0, 1]", param=param)
    return value


@cli.group(short_help="Datasets: fetch the files of one.")
def data() -> None:
    """Datasets read from files: fetch a set's files into optrun's data cache, where runs find them."""


@data.command("fetch", short_help="Download a set's files, checked against their published checksums.")
@click.argument("name", metavar="NAME")
@click.option("--to", "folder", metavar="FOLDER", help="Write the files here (default: optrun's data cache).")
@click.option("--from", "mirror", metavar="URL", help="Download from this mirror instead of the published address.")
@user_errors
def fetch_data(name: str, folder: str | None, mirror: str | None) -> None:
    """Download NAME's files (fashion-mnist, mnist, cifar10) from where its authors publish them, each checked
    against its published MD5 checksum, into optrun's data cache (or --to FOLDER); files already whole are kept."""
    from optrun.data.fetch import fetch

    def told(file: str, size: int, downloaded: bool) -> None:
        click.echo(f"{'fetched' if downloaded else 'already there'}: {file} ({memory.size(size)}, checksum checked)")

    for option, value in (("--to", folder), ("--from", mirror)):
        if value is not None and not value.strip():
            raise click.UsageError(
                f"{option} is empty; give a {'folder' if option == '--to' else 'URL'}, or leave it out"
            )
    where = fetch(name, Path(folder) if folder else None, mirror, told)
    click.echo(f"{name}: its files are in {where}" + ("" if folder else "; runs find them there"))


@cli.command(short_help="List optimizers, their defaults and update rules.")
@click.argument("sources", metavar="[FILE_OR_MODULE]...", nargs=-1)
@click.option("--markdown", is_flag=True, help="Print a Markdown table (docs/optimizers.md holds the built-ins').")
@user_errors
def optimizers(sources: tuple[str, ...], markdown: bool) -> None:
    """List the built-in optimizers with their hyperparameters, defaults and update rules, then those that
    each FILE_OR_MODULE defines (a Python file, my_rules.py, or a module, package.module), named as a config
    names them (my_rules.py:Lion)."""
    found, problems = dict(OPTIMIZERS), []
    for source in sources:
        try:
            valid, invalid = classes_in(source)
        except NotAnOptimizer as exc:
            raise ConfigError(str(exc)) from None
        found |= valid
        problems += invalid
    rows = [optimizer_entry(name, cls) for name, cls in found.items()]
    if markdown:
        click.echo(optimizers_markdown(rows), nl=False)
    else:
        Console(highlight=False).print(_optimizers_table(rows))
    for problem in problems:  # after the table, so that they end the output
        click.echo(f"Error: {problem}", err=True)
    if problems:
        sys.exit(2)


def _optimizers_table(rows: list[tuple[str, dict[str, str], str]]) -> Table:
    table = Table(
        show_lines=True,
        caption=f"every optimizer also takes {' and '.join(COMMON_KEYS)} (default: none); see docs/optimizers.md",
        caption_justify="left",
    )
    table.add_column("name", style="bold", overflow="fold")
    table.add_column("hyperparameters (default)")
    table.add_column("update rule (g: gradient; t: step, from 1)")
    for name, defaults, rule in rows:
        table.add_row(escape(name), "\n".join(f"{k} = {v}" for k, v in defaults.items()), escape(rule))
    return table


def main() -> None:
    try:
        cli()
    finally:
        # The command is done: Python's exit would still look through every object it made or imported
        # (numpy's, numba's, matplotlib's) for cycles to free, a quarter of a second; frozen, they are spared.
        gc.freeze()
