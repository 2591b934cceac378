"""Run directories: create one, write its config, metrics and summary.

A run directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]/`` holds

- ``config.yaml``: the fully resolved config (every default filled in); training on it reproduces the run;
- ``metrics.csv``: one row per epoch (or step) from 0 (the columns of its problem's record), flushed row by row;
- ``summary.json``: status, epochs, final and best metrics, timings, seed and versions.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from optrun import checkpoints
from optrun.config import Config, dump_yaml, parse_config, read_yaml
from optrun.parallel import HeldSignals, Terminated
from optrun.problems import OPTIONAL_COLUMNS, PROBLEMS, Record, TrainResult, problem_of, problem_of_columns
from optrun.train import fit, prepare


class RunDirError(OSError):
    """A run directory cannot be created, written or read back."""


def not_a_folder(path: Path) -> Path | None:
    """The first of ``path`` and its parents that exists and is not a folder (a file in the way), or None."""
    for part in (*reversed(path.parents), path):
        if part.exists() and not part.is_dir():
            return part
    return None


def create_run_dir(runs_dir: str | Path, name: str, now: datetime | None = None) -> Path:
    """Make a new, empty run directory; never reuse an existing one (a ``-N`` suffix is added)."""
    runs_dir = Path(runs_dir)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    if (blocker := not_a_folder(runs_dir)) is not None:
        what = "is a file" if blocker == runs_dir else f"cannot be made: {blocker} is a file"
        raise RunDirError(f"{runs_dir}: {what}, not a folder in which to create run directories")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        for n in range(10_000):
            path = runs_dir / (f"{name}-{stamp}" if n == 0 else f"{name}-{stamp}-{n}")
            try:
                path.mkdir()  # atomic: two processes can never both create the same directory
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunDirError(f"{runs_dir}: cannot create a run directory: {exc.strerror or exc}") from None
    raise RunDirError(f"{runs_dir}: too many runs named {name}-{stamp}")


def versions() -> dict[str, str]:
    """The versions of optrun, numpy and Python, as summaries record them."""
    try:
        optrun_version = version("optrun")
    except PackageNotFoundError:  # running from a source tree that is not installed
        optrun_version = "unknown"
    return {"optrun": optrun_version, "numpy": np.__version__, "python": platform.python_version()}


def machine() -> dict[str, Any]:
    """The machine a comparison, tuning or suite ran on, as their summaries record it: the processor, its cores,
    the memory and the system (None where this system does not tell)."""

    def first(path: str, key: str) -> str | None:
        try:
            lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return None
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), None)

    memory = first("/proc/meminfo", "MemTotal")
    return {
        "processor": first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "system": platform.platform(terse=True),
    }


def _number(x: float) -> str:
    return repr(float(x))  # the shortest text that reads back as the same float


class MetricsWriter:
    """Appends rows to metrics.csv, flushing each so a reader never sees a torn row.

    The header is written with the first row, whose kind (epoch or step) and
    optional quantities (``Row.columns``) fix the columns; a run
    that ends before its first row gets the header of ``columns``.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], append: bool = False) -> None:
        self._file = path.open("a" if append else "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._default = columns
        self._columns: tuple[str, ...] = columns if append else ()  # appending: the header is there

    def write(self, row: Record) -> None:
        if not self._columns:
            self._columns = row.columns()
            self._csv.writerow(self._columns)
        self._csv.writerow([_cell(c, getattr(row, c)) for c in self._columns])
        self._file.flush()

    def close(self) -> None:
        if self._file.closed:
            return
        if not self._columns:
            self._csv.writerow(self._default)
        self._file.close()


_INTEGER_COLUMNS = ("epoch", "step", "restarts")


def _cell(column: str, value: float | None) -> str:
    if value is None:
        return ""
    if column == "seconds":
        return f"{value:.6f}"
    if column in _INTEGER_COLUMNS:
        return str(int(value))
    return _number(value)


def summarize(config: Config, result: TrainResult, wall_seconds: float) -> dict[str, Any]:
    """The figures summary.json holds (``final`` and ``best`` are null when nothing was evaluated)."""
    problem, rows = problem_of(config), result.records
    figures = problem.summary(config, rows)
    unit = f"{problem.unit}s"
    return {
        "name": config.name,
        "status": result.status,
        "reason": result.reason,
        unit: result.epochs_completed,
        f"{unit}_planned": problem.planned(config),
        "final": figures.pop("final"),
        "best": figures.pop("best"),
        "train_seconds": sum(getattr(r, "seconds", 0.0) for r in rows),
        "wall_seconds": wall_seconds,
        "seed": config.seed,
        **figures,
        "optimizer": config.optimizer.name,
        "versions": versions(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON, atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class RunOutcome:
    path: Path
    result: TrainResult
    summary: dict[str, Any]


def _start(path: Path, config: Config) -> MetricsWriter:
    (path / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
    return MetricsWriter(path / "metrics.csv", problem_of(config).columns)


def _finish(path: Path, config: Config, result: TrainResult, wall_seconds: float) -> RunOutcome:
    summary = summarize(config, result, wall_seconds)
    write_json(path / "summary.json", summary)
    return RunOutcome(path, result, summary)


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C or SIGTERM, after its finished rows and an 'interrupted' summary were written."""

    def __init__(self, path: Path, signal: str, progress: str, resume_command: str = "") -> None:
        super().__init__(f"{path}: interrupted by {signal} {progress}")
        # progress: what is kept, "after epoch 7", "after step 120", "before the first evaluation", "after 3 of 5 runs"
        self.path, self.signal, self.progress = path, signal, progress
        self.resume_command = resume_command or f"train --resume {path}"


class RunFailed(Exception):
    """A run that raised (a user's optimizer can), after its finished rows, a 'failed' summary and its
    traceback (traceback.txt) were written."""

    def __init__(self, path: Path, reason: str, progress: str) -> None:
        super().__init__(f"{path}: failed {progress}: {reason} (the traceback is in {path / TRACEBACK})")
        self.path = path


TRACEBACK = "traceback.txt"


def exception_line(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def failed_result(exc: BaseException, rows: list[Record] | None = None) -> TrainResult:
    """A run ended by an exception: 'failed', with the exception's first line as the reason."""
    return TrainResult(status="failed", records=rows or [], reason=exception_line(exc))


def signal_name(exc: BaseException) -> str:
    """SIGINT, SIGTERM or SIGHUP: which signal a KeyboardInterrupt stands for."""
    return signal.Signals(exc.signum).name if isinstance(exc, Terminated) else "SIGINT"


def run(config: Config, runs_dir: str | Path = "runs", on_epoch: Callable[[Record], None] | None = None) -> RunOutcome:
    """Train ``config`` and record it in a new run directory under ``runs_dir``.

    Data and model are built first, so a failure there leaves no directory behind.
    metrics.csv grows row by row as training goes, and a network run saves a
    checkpoint after every epoch (``optrun.checkpoints``), from which ``resume``
    continues. Ctrl-C or SIGTERM ends it with an 'interrupted' summary and
    ``RunInterrupted``.
    """
    start = time.perf_counter()
    experiment = prepare(config)
    path, writer, held = _begin(config, lambda: create_run_dir(runs_dir, config.name))
    with _writing(path):
        return _train_into(path, config, experiment, writer, on_epoch, start, held=held)


def _begin(config: Config, make_dir: Callable[[], Path]) -> tuple[Path, MetricsWriter, HeldSignals]:
    """The run's directory (``make_dir``), with its config.yaml written and its metrics.csv open, made while
    stop signals are held: a Ctrl-C meanwhile waits until the directory is whole, then stops the run
    (``_train_into`` delivers it)."""
    held = HeldSignals()
    try:
        path = make_dir()
        with _writing(path):
            return path, _start(path, config), held
    except BaseException:
        held.deliver()
        raise


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (a full disk, a folder made read-only) becomes one clear RunDirError."""
    try:
        yield
    except OSError as exc:
        raise RunDirError(f"{path}: cannot write the run ({exc.strerror or exc}); it is incomplete") from None


def run_to_resume(run_dir: str | Path) -> Path:
    """``run_dir`` when it is the directory of an ``optrun train`` run; RunDirError saying what it is instead (no
    directory, a file, a comparison, a comparison's run: those resume with ``optrun compare --resume``)."""
    path = existing_dir(run_dir, "run directory")
    not_a_suite_part(path, "optrun train --resume")
    not_a_tuning(path, "a run directory")
    if is_compare_config(read_yaml(path / "config.yaml")):
        raise RunDirError(f"{path}: a compare directory, not a run directory; finish it with optrun compare --resume")
    if (comparison := _comparison_of(path)) is not None:
        raise RunDirError(
            f"{path}: a run of the comparison {comparison}, which keeps no checkpoint; "
            f"finish the comparison with optrun compare --resume {comparison}"
        )
    return path


def _comparison_of(path: Path) -> Path | None:
    """The compare directory a run directory belongs to (``<comparison>/<label>/seed-<k>``), or None."""
    comparison = path.parent.parent
    config = comparison / "config.yaml"
    in_one = path.name.startswith("seed-") and config.is_file() and is_compare_config(read_yaml(config))
    return comparison if in_one else None


def is_compare_config(data: Any) -> bool:
    """Whether a config.yaml's contents are a resolved compare config (it lists its labels)."""
    return isinstance(data, dict) and "optimizers" in data


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; empty when the file is missing or is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_at(folder: Path) -> Any:
    return read_yaml(folder / "config.yaml") if (folder / "config.yaml").is_file() else None


def tuning_of(path: Path) -> Path | None:
    """The tune directory (``optrun tune``'s: its config.yaml has a ``tune:`` section) that ``path`` is, or whose
    evaluation, or run of its evaluation, it is; None for anything else."""
    for candidate in (path, path.parent, path.parent.parent.parent):
        config = _config_at(candidate)
        if isinstance(config, dict) and "tune" in config and "problems" not in config:
            return candidate
    return None


def check_idle(path: Path, what: str) -> None:
    """RunDirError where the work at ``path`` (``what``: "the tuning", "the suite") is running now, in a process
    of this machine, as its summary.json's ``pid`` and ``host`` say: a second would run its tasks again and
    write over its files."""
    summary = read_json(path / "summary.json")
    pid = summary.get("pid")
    if summary.get("status") != "running" or summary.get("host") != socket.gethostname() or not isinstance(pid, int):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # ended without a word (killed): resume it
    except PermissionError:
        pass  # another user's process
    raise RunDirError(f"{path}: {what} is running (process {pid}); wait for it, or stop it first")


def suite_of(path: Path) -> Path | None:
    """The suite directory (``optrun suite``'s: its summary.json says so) that ``path`` is or lies in (a problem,
    a tuned problem's evaluation, a run of either); None for anything else."""
    for candidate in (path, *list(path.absolute().parents)[:4]):  # a relative path's folders too
        if read_json(candidate / "summary.json").get("kind") == "suite":
            return candidate
    return None


def not_a_suite_part(path: Path, command: str) -> None:
    """RunDirError where ``path`` is a suite directory or part of one, which only ``optrun suite --resume``
    continues (``command``: the command that was asked to)."""
    if (suite := suite_of(path)) is not None:
        part = "a suite directory" if suite == path else f"part of the suite {suite}"
        raise RunDirError(f"{path}: {part}; {command} does not continue it: optrun suite --resume {suite}")


def not_a_tuning(path: Path, what: str) -> None:
    """RunDirError where ``path`` is a tune directory, its evaluation or one of its runs, which only ``optrun
    tune --resume`` continues; ``what``: what the command wanted instead."""
    if (tuning := tuning_of(path)) is not None:
        part = "a tune directory" if tuning == path else f"part of the tuning {tuning}"
        completed = read_json(tuning / "summary.json").get("status") == "completed"
        then = (
            f"it is completed: optrun show {tuning}" if completed else f"finish it with optrun tune --resume {tuning}"
        )
        raise RunDirError(f"{path}: {part}, not {what}; {then}")


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a folder with a config.yaml (a run or compare directory, ``what``);
    otherwise RunDirError saying what is there instead."""
    path = Path(path)
    if not path.exists():
        raise RunDirError(f"{path}: no such directory")
    if not path.is_dir():
        raise RunDirError(f"{path}: is a file, not a {what}")
    if not (path / "config.yaml").is_file():
        raise RunDirError(f"{path}: not a {what} (no config.yaml)")
    return path


def resume(run_dir: str | Path, on_epoch: Callable[[Record], None] | None = None) -> RunOutcome:
    """Continue an interrupted network run from its last checkpoint, appending to its metrics.csv; train a run
    with nothing to continue from (a run on an objective, which keeps no checkpoint, or one stopped before its
    first evaluation) again from its start, in the same directory.

    The result equals, timings aside, that of a run never interrupted. RunDirError
    or CheckpointError when there is nothing to resume (the run is finished, its
    checkpoint is missing or corrupt).
    """
    start = time.perf_counter()
    path = run_to_resume(run_dir)
    summary = _read_summary(path) if (path / "summary.json").is_file() else {}
    if summary.get("status") not in (None, "interrupted"):
        raise RunDirError(f"{path}: the run is already {summary['status']}; there is nothing to resume")
    config = parse_config(read_yaml(path / "config.yaml"), str(path / "config.yaml"))
    experiment = prepare(config)
    if not problem_of(config).keeps_checkpoints or not (
        (path / checkpoints.NAME).exists() or _read_metrics(path / "metrics.csv")
    ):
        _, writer, held = _begin(config, lambda: path)
        with _writing(path):
            return _train_into(path, config, experiment, writer, on_epoch, start, held=held)
    epoch = checkpoints.restore(experiment, path)
    kept = [row for row in _read_metrics(path / "metrics.csv") if row.done <= epoch]
    if [row.done for row in kept] != list(range(epoch + 1)):
        missing = sorted(set(range(epoch + 1)) - {row.done for row in kept})
        which = f"{missing[0]}..{missing[-1]}" if missing else f"0..{epoch} (out of order)"
        raise RunDirError(f"{path / 'metrics.csv'}: the rows of epochs {which} are missing; cannot resume")
    experiment.initial_loss = kept[0].train_loss
    with _writing(path):
        tmp = path / ".metrics.csv.tmp"  # rows past the checkpoint (if any) are dropped and trained again
        columns = kept[0].columns()
        rewrite = MetricsWriter(tmp, columns)
        for row in kept:
            rewrite.write(row)
        rewrite.close()
        os.replace(tmp, path / "metrics.csv")
        writer = MetricsWriter(path / "metrics.csv", columns, append=True)
        earlier = float(summary.get("wall_seconds") or 0.0)
        return _train_into(path, config, experiment, writer, on_epoch, start - earlier, kept)


def _train_into(
    path: Path,
    config: Config,
    experiment: Any,
    writer: MetricsWriter,
    on_epoch: Callable[[Record], None] | None,
    start: float,
    earlier: list[Record] | None = None,
    held: HeldSignals | None = None,
) -> RunOutcome:
    """Train ``experiment`` into the run directory ``path``, after the rows ``earlier``; a stop signal ``held``
    while the directory was made comes now, and stops the run like any later one."""
    problem, records = problem_of(config), list(earlier or [])

    def record(row: Record) -> None:
        writer.write(row)
        records.append(row)
        if problem.keeps_checkpoints:
            checkpoints.save(experiment, path)
        if on_epoch is not None:
            on_epoch(row)

    try:
        if held is not None:
            held.deliver()
        result = fit(experiment, record)
    except KeyboardInterrupt as exc:
        writer.close()
        kept = _read_metrics(path / "metrics.csv")  # the rows written, whichever instant the signal came
        name, progress = signal_name(exc), problem.kept(kept)
        reason = f"interrupted by {name} {progress}"
        _finish(path, config, TrainResult("interrupted", kept, reason), time.perf_counter() - start)
        raise RunInterrupted(path, name, progress) from None
    except OSError:
        raise  # the machine's fault, as _writing tells it, not the run's
    except Exception as exc:
        writer.close()
        kept = _read_metrics(path / "metrics.csv")
        result = failed_result(exc, kept)
        (path / TRACEBACK).write_text(traceback.format_exc(), encoding="utf-8")
        (path / checkpoints.NAME).unlink(missing_ok=True)  # nothing to resume: the same step would fail again
        _finish(path, config, result, time.perf_counter() - start)
        raise RunFailed(path, str(result.reason), problem.kept(kept)) from None
    finally:
        writer.close()
    result.records = records
    (path / checkpoints.NAME).unlink(missing_ok=True)  # a finished run needs no checkpoint
    return _finish(path, config, result, time.perf_counter() - start)


def write_run(path: Path, config: Config, result: TrainResult, wall_seconds: float) -> RunOutcome:
    """Record a run trained elsewhere (another process or machine) in the new directory ``path``."""
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create the run directory: {exc.strerror or exc}") from None
    with _writing(path):
        writer = _start(path, config)
        try:
            for row in result.records:
                writer.write(row)
        finally:
            writer.close()
        return _finish(path, config, result, wall_seconds)


@dataclass
class RunRecord:
    """A run directory read back: its resolved config, summary and per-epoch rows."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    records: list[Record]

    @property
    def status(self) -> str:
        return str(self.summary["status"])


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file()


def _read_metrics(path: Path) -> list[Record]:
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read the run's metrics ({exc.strerror or exc})") from None
    with f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        problem = problem_of_columns(header)
        if problem is None:
            expected = " or ".join(", ".join(p.columns) for p in PROBLEMS)
            raise RunDirError(
                f"{path}: unexpected columns {', '.join(header) or '(none)'}; expected {expected}"
                f" and optionally {', '.join(OPTIONAL_COLUMNS)}"
            )

        def value(column: str, text: str) -> float | None:
            if text == "":
                return None
            return int(text) if column in _INTEGER_COLUMNS else float(text)

        try:
            return [problem.record(**{c: value(c, v) for c, v in zip(header, r, strict=True)}) for r in reader]
        except (ValueError, TypeError):
            raise RunDirError(f"{path}: line {reader.line_num}: not a row of numbers") from None


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path / 'summary.json'}: not valid JSON: {exc}") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path / 'summary.json'}: not what optrun writes")
    return summary


def read_run(path: str | Path) -> RunRecord:
    """Read a finished run directory; RunDirError names the file at fault."""
    path = Path(path)
    for name in ("config.yaml", "metrics.csv", "summary.json"):
        if not (path / name).is_file():
            if is_run_dir(path) and name == "summary.json":  # killed outright, as SIGKILL does
                comparison = _comparison_of(path)
                how = f"optrun compare --resume {comparison}" if comparison else "optrun train --resume"
                raise RunDirError(f"{path}: an unfinished run (no summary.json); continue it with {how}")
            what = "an unfinished run" if is_run_dir(path) else "not a run directory"
            raise RunDirError(f"{path}: {what} (no {name})")
    config = read_yaml(path / "config.yaml")
    summary = _read_summary(path)
    if not isinstance(config, dict) or "status" not in summary:  # _read_summary checked it is a dict
        raise RunDirError(f"{path}: config.yaml or summary.json is not what optrun writes")
    return RunRecord(path, config, summary, _read_metrics(path / "metrics.csv"))
