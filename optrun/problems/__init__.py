"""The kinds of problem optrun trains on, behind one interface (``Problem``): a network on a dataset
(``NETWORK``, rows per epoch) and a point on an objective (``OBJECTIVE``, rows per step).

``problem_of`` tells which kind a config, a run directory's config or a metrics.csv header holds: the one
place that asks. Everything after it (training, run directories, statistics, tables, pictures, the command
line) calls the problem's methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optrun.config import CompareConfig, Config
from optrun.problems.base import OPTIONAL_COLUMNS, Problem, Row, StatsRow, TrainResult, count_text
from optrun.problems.landscape import OBJECTIVE, Landscape, LandscapeStats, StepRecord
from optrun.problems.network import NETWORK, EpochRecord, Experiment, LabelStats

PROBLEMS: tuple[Problem, ...] = (NETWORK, OBJECTIVE)

Record = EpochRecord | StepRecord


def problem_of(config: Config | CompareConfig | Mapping[str, Any]) -> Problem:
    """The kind of problem a config holds (a resolved config's mapping, as a run directory keeps it, too):
    an objective where it names one, a network otherwise."""
    objective = config.get("objective") if isinstance(config, Mapping) else config.objective
    return OBJECTIVE if objective else NETWORK


def problem_of_columns(header: Sequence[str]) -> Problem | None:
    """The kind of problem whose runs write a metrics.csv with this header, or None."""
    for problem in PROBLEMS:
        fields = list(problem.record.__dataclass_fields__)
        if list(header) == [c for c in fields if c in header] and set(problem.columns) <= set(header):
            return problem  # its columns, each once, in its record's order, the ones every run has among them
    return None


__all__ = [
    "NETWORK",
    "OBJECTIVE",
    "OPTIONAL_COLUMNS",
    "PROBLEMS",
    "EpochRecord",
    "Experiment",
    "LabelStats",
    "Landscape",
    "LandscapeStats",
    "Problem",
    "Record",
    "Row",
    "StatsRow",
    "StepRecord",
    "TrainResult",
    "count_text",
    "problem_of",
    "problem_of_columns",
]
