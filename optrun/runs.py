"""Run directories: create one, write its config, metrics and summary.

A run directory ``<runs_dir>/<name>-<YYYYmmdd-HHMMSS>[-N]/`` holds

- ``config.yaml``: the fully resolved config (every default filled in); training on it reproduces the run;
- ``metrics.csv``: one row per epoch from 0 (columns ``optrun.train.COLUMNS``), flushed row by row;
- ``summary.json``: status, epochs, final and best metrics, timings, seed and versions.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from optrun.config import Config, dump_yaml, read_yaml
from optrun.train import COLUMNS, OPTIONAL_COLUMNS, EpochRecord, TrainResult, columns_of, fit, prepare


class RunDirError(OSError):
    """A run directory cannot be created, written or read back."""


def create_run_dir(runs_dir: str | Path, name: str, now: datetime | None = None) -> Path:
    """Make a new, empty run directory; never reuse an existing one (a ``-N`` suffix is added)."""
    runs_dir = Path(runs_dir)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
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
    """Appends rows to metrics.csv, flushing each so a reader never sees a torn row."""

    def __init__(self, path: Path, columns: tuple[str, ...] = COLUMNS) -> None:
        self._columns = columns
        self._file = path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(columns)
        self._file.flush()

    def write(self, row: EpochRecord) -> None:
        self._csv.writerow([_cell(c, getattr(row, c)) for c in self._columns])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _cell(column: str, value: float) -> str:
    if column == "seconds":
        return f"{value:.6f}"
    if column in ("epoch", "restarts"):
        return str(int(value))
    return _number(value)


def summarize(config: Config, result: TrainResult, wall_seconds: float) -> dict[str, Any]:
    """The figures summary.json holds (``final`` and ``best`` are null when no epoch was evaluated)."""
    rows = result.records
    final = best = None
    if rows:
        final = {k: getattr(rows[-1], k) for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
        top = max(rows, key=lambda r: (r.test_accuracy, -r.epoch))  # the earliest epoch reaching the best accuracy
        best = {"test_accuracy": top.test_accuracy, "epoch": top.epoch}
    return {
        "name": config.name,
        "status": result.status,
        "reason": result.reason,
        "epochs": result.epochs_completed,
        "epochs_planned": config.train.epochs,
        "final": final,
        "best": best,
        "train_seconds": sum(r.seconds for r in rows),
        "wall_seconds": wall_seconds,
        "seed": config.seed,
        "dataset": config.dataset.name,
        "model": config.model.type,
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


def _start(path: Path, config: Config, columns: tuple[str, ...]) -> MetricsWriter:
    (path / "config.yaml").write_text(dump_yaml(config.to_dict()), encoding="utf-8")
    return MetricsWriter(path / "metrics.csv", columns)


def _finish(path: Path, config: Config, result: TrainResult, wall_seconds: float) -> RunOutcome:
    summary = summarize(config, result, wall_seconds)
    write_json(path / "summary.json", summary)
    return RunOutcome(path, result, summary)


def run(
    config: Config, runs_dir: str | Path = "runs", on_epoch: Callable[[EpochRecord], None] | None = None
) -> RunOutcome:
    """Train ``config`` and record it in a new run directory under ``runs_dir``.

    Data and model are built first, so a failure there leaves no directory behind.
    metrics.csv grows row by row as training goes.
    """
    start = time.perf_counter()
    experiment = prepare(config)
    path = create_run_dir(runs_dir, config.name)
    writer = _start(path, config, COLUMNS + tuple(experiment.optimizer.extras()))

    def record(row: EpochRecord) -> None:
        writer.write(row)
        if on_epoch is not None:
            on_epoch(row)

    try:
        result = fit(experiment, record)
    finally:
        writer.close()
    return _finish(path, config, result, time.perf_counter() - start)


def write_run(path: Path, config: Config, result: TrainResult, wall_seconds: float) -> RunOutcome:
    """Record a run trained elsewhere (another process or machine) in the new directory ``path``."""
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot create the run directory: {exc.strerror or exc}") from None
    writer = _start(path, config, columns_of(result.records[0]) if result.records else COLUMNS)
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


def _read_metrics(path: Path) -> list[EpochRecord]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header[: len(COLUMNS)] != COLUMNS or not set(header[len(COLUMNS) :]) <= set(OPTIONAL_COLUMNS):
            raise RunDirError(
                f"{path}: unexpected columns {', '.join(header) or '(none)'}; expected {', '.join(COLUMNS)}"
                f" and optionally {', '.join(OPTIONAL_COLUMNS)}"
            )
        integers = {"epoch", "restarts"}
        try:
            return [
                EpochRecord(**{c: (int if c in integers else float)(v) for c, v in zip(header, r, strict=True)})
                for r in reader
            ]
        except (ValueError, TypeError):
            raise RunDirError(f"{path}: line {reader.line_num}: not a row of numbers") from None


def read_run(path: str | Path) -> RunRecord:
    """Read a finished run directory; RunDirError names the file at fault."""
    path = Path(path)
    for name in ("config.yaml", "metrics.csv", "summary.json"):
        if not (path / name).is_file():
            what = "an unfinished run" if is_run_dir(path) else "not a run directory"
            raise RunDirError(f"{path}: {what} (no {name})")
    config = read_yaml(path / "config.yaml")
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path / 'summary.json'}: not valid JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(summary, dict) or "status" not in summary:
        raise RunDirError(f"{path}: config.yaml or summary.json is not what optrun writes")
    return RunRecord(path, config, summary, _read_metrics(path / "metrics.csv"))
