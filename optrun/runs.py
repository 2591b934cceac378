"""Run directories: create one, write its config, metrics and summary.

A run directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]/`` holds

- ``config.yaml``: the fully resolved config (every default filled in); training on it reproduces the run;
- ``metrics.csv``: one row per epoch from 0 (columns ``optrun.train.COLUMNS``), flushed row by row;
- ``summary.json``: status, epochs, final and best metrics, timings, seed and versions.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import signal
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
from optrun.objectives import contraction_rate, theory
from optrun.parallel import Terminated
from optrun.train import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    STEP_COLUMNS,
    EpochRecord,
    Experiment,
    Landscape,
    Record,
    StepRecord,
    TrainResult,
    columns_of,
    fit,
    prepare,
)


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


def _number(x: float) -> str:
    return repr(float(x))  # the shortest text that reads back as the same float


class MetricsWriter:
    """Appends rows to metrics.csv, flushing each so a reader never sees a torn row.

    The header is written with the first row, whose kind (epoch or step) and
    optional quantities (``optrun.train.columns_of``) fix the columns; a run
    that ends before its first row gets the header of ``columns``.
    """

    def __init__(self, path: Path, columns: tuple[str, ...], append: bool = False) -> None:
        self._file = path.open("a" if append else "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._default = columns
        self._columns: tuple[str, ...] = columns if append else ()  # appending: the header is there

    def write(self, row: Record) -> None:
        if not self._columns:
            self._columns = columns_of(row)
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
    rows = result.records
    if config.objective is not None:
        final, best = _landscape_figures(rows)
        progress = {"steps": result.epochs_completed, "steps_planned": config.train.steps}
        problem = {"objective": config.objective.name, "rate": _rates(config, rows)}
    else:
        final, best = _network_figures(rows)
        progress = {"epochs": result.epochs_completed, "epochs_planned": config.train.epochs}
        problem = {"dataset": config.dataset.name if config.dataset else None, "model": config.model.type}
    return {
        "name": config.name,
        "status": result.status,
        "reason": result.reason,
        **progress,
        "final": final,
        "best": best,
        "train_seconds": sum(getattr(r, "seconds", 0.0) for r in rows),
        "wall_seconds": wall_seconds,
        "seed": config.seed,
        **problem,
        "optimizer": config.optimizer.name,
        "versions": versions(),
    }


def _network_figures(rows: list[Record]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if not rows:
        return None, None
    final = {k: getattr(rows[-1], k) for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
    top = max(rows, key=lambda r: (r.test_accuracy, -r.epoch))  # the earliest epoch reaching the best accuracy
    return final, {"test_accuracy": top.test_accuracy, "epoch": top.epoch}


def theory_rate(config: Config) -> float | None:
    """The theoretical contraction rate when the run uses the tuned settings on a quadratic, else None."""
    spec, objective = config.optimizer, config.objective
    if objective is None or objective.name != "quadratic" or spec.name not in ("sgd", "momentum", "nesterov"):
        return None
    kappa = objective.condition_number if objective.dim > 1 else 1.0
    tuned = theory(spec.name, kappa, 1.0, bool(getattr(spec, "nesterov", False)))
    used = {"learning_rate": spec.learning_rate, "mu": getattr(spec, "mu", None)}
    if spec.schedule is not None or any(
        not math.isclose(used[k], tuned[k], rel_tol=1e-12) for k in tuned if k != "rate"
    ):
        return None
    return tuned["rate"]


def _rates(config: Config, rows: list[Record]) -> dict[str, float | None]:
    """The measured per-step contraction of the distance to the minimum, and the theory's where it applies."""
    distances = [r.distance_to_minimum for r in rows]
    measured = None if not rows or None in distances else contraction_rate(np.array(distances))
    return {"measured": measured, "theory": theory_rate(config)}


def _landscape_figures(rows: list[Record]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if not rows:
        return None, None
    last = rows[-1]
    final = {k: getattr(last, k) for k in ("loss", "grad_norm", "distance_to_minimum")}
    if last.x0 is not None:
        final["point"] = [last.x0, last.x1]
    finite = [r for r in rows if math.isfinite(r.loss)]
    top = min(finite, key=lambda r: (r.loss, r.step)) if finite else last
    return final, {"loss": top.loss, "step": top.step}


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
    return MetricsWriter(path / "metrics.csv", STEP_COLUMNS if config.objective is not None else COLUMNS)


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


def failed_result(exc: BaseException, rows: list[Record] | None = None) -> TrainResult:
    """A run ended by an exception: 'failed', with the exception's first line as the reason."""
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return TrainResult(status="failed", records=rows or [], reason=reason)


def kept_progress(rows: list[Record]) -> str:
    """What an interrupted run kept, by its last row: "after epoch 5", "after step 120", or "before the first
    evaluation"."""
    if not rows:
        return "before the first evaluation"
    last = rows[-1]
    return f"after step {last.step}" if isinstance(last, StepRecord) else f"after epoch {last.epoch}"


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
    path = create_run_dir(runs_dir, config.name)
    with _writing(path):
        return _train_into(path, config, experiment, _start(path, config), on_epoch, start)


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
    if isinstance(experiment, Landscape) or not (
        (path / checkpoints.NAME).exists() or _read_metrics(path / "metrics.csv")
    ):
        with _writing(path):
            return _train_into(path, config, experiment, _start(path, config), on_epoch, start)
    epoch = checkpoints.restore(experiment, path)
    kept = [row for row in _read_metrics(path / "metrics.csv") if row.epoch <= epoch]
    if [row.epoch for row in kept] != list(range(epoch + 1)):
        missing = sorted(set(range(epoch + 1)) - {row.epoch for row in kept})
        which = f"{missing[0]}..{missing[-1]}" if missing else f"0..{epoch} (out of order)"
        raise RunDirError(f"{path / 'metrics.csv'}: the rows of epochs {which} are missing; cannot resume")
    experiment.initial_loss = kept[0].train_loss
    with _writing(path):
        tmp = path / ".metrics.csv.tmp"  # rows past the checkpoint (if any) are dropped and trained again
        rewrite = MetricsWriter(tmp, columns_of(kept[0]))
        for row in kept:
            rewrite.write(row)
        rewrite.close()
        os.replace(tmp, path / "metrics.csv")
        writer = MetricsWriter(path / "metrics.csv", columns_of(kept[0]), append=True)
        earlier = float(summary.get("wall_seconds") or 0.0)
        return _train_into(path, config, experiment, writer, on_epoch, start - earlier, kept)


def _train_into(
    path: Path,
    config: Config,
    experiment: Experiment | Landscape,
    writer: MetricsWriter,
    on_epoch: Callable[[Record], None] | None,
    start: float,
    earlier: list[Record] | None = None,
) -> RunOutcome:
    records = list(earlier or [])

    def record(row: Record) -> None:
        writer.write(row)
        records.append(row)
        if isinstance(experiment, Experiment):
            checkpoints.save(experiment, path)
        if on_epoch is not None:
            on_epoch(row)

    try:
        result = fit(experiment, record)
    except KeyboardInterrupt as exc:
        writer.close()
        kept = _read_metrics(path / "metrics.csv")  # the rows written, whichever instant the signal came
        name, progress = signal_name(exc), kept_progress(kept)
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
        raise RunFailed(path, str(result.reason), kept_progress(kept)) from None
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
    records: list[EpochRecord]

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
        kind, base = (StepRecord, STEP_COLUMNS) if header[:1] == ("step",) else (EpochRecord, COLUMNS)
        if header[: len(base)] != base or not set(header[len(base) :]) <= set(OPTIONAL_COLUMNS):
            raise RunDirError(
                f"{path}: unexpected columns {', '.join(header) or '(none)'}; expected {', '.join(base)}"
                f" and optionally {', '.join(OPTIONAL_COLUMNS)}"
            )

        def value(column: str, text: str) -> float | None:
            if text == "":
                return None
            return int(text) if column in _INTEGER_COLUMNS else float(text)

        try:
            return [kind(**{c: value(c, v) for c, v in zip(header, r, strict=True)}) for r in reader]
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
