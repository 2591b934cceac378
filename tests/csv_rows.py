"""The CSV files optrun writes, without their wall-clock timing columns, which no two runs share:
for tests that check two runs agree to the last digit."""

from __future__ import annotations

import csv
from pathlib import Path


def rows_without(path: Path, *columns: str) -> list[list[str]]:
    """The rows of CSV file ``path``, header first, without ``columns`` (those it has)."""
    with path.open() as fh:
        rows = list(csv.reader(fh))
    keep = [i for i, name in enumerate(rows[0]) if name not in columns]
    return [[row[i] for i in keep] for row in rows]


def metrics_without_timing(run_dir: Path) -> list[list[str]]:
    """A run's metrics.csv without its ``seconds`` column."""
    return rows_without(run_dir / "metrics.csv", "seconds")


def comparison_without_timing(compare_dir: Path) -> list[list[str]]:
    """A comparison's comparison.csv without its timing columns, ``seconds_per_epoch`` and ``seconds_to_target``."""
    return rows_without(compare_dir / "comparison.csv", "seconds_per_epoch", "seconds_to_target")
