"""What every kind of problem has: the interface (``Problem``), a run's result, and the pieces both kinds share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from optrun.config import Config

if TYPE_CHECKING:  # the layers above, which hand their objects to a problem
    from matplotlib.figure import Figure

    from optrun.memory import Estimate
    from optrun.report import Comparison
    from optrun.stats import Curves, Group

OPTIONAL_COLUMNS = ("validation_loss", "validation_accuracy", "x0", "x1", "mu", "restarts")
"""Columns of metrics.csv where they apply: a network's validation split, a 2-D objective's point, momentum's
schedule and restarts (``Optimizer.extras``). Each stands where its record declares it."""


@dataclass(frozen=True)
class Row:
    """A row of metrics.csv: its leading fields are the columns every run of its kind has, in order."""

    @property
    def done(self) -> int:
        """The epochs (or steps) done when it was recorded: its first field."""
        return int(getattr(self, fields(self)[0].name))

    def columns(self) -> tuple[str, ...]:
        """Its metrics.csv columns: the leading fields, and the ``OPTIONAL_COLUMNS`` that apply to it."""
        names = (f.name for f in fields(self))
        return tuple(c for c in names if c not in OPTIONAL_COLUMNS or getattr(self, c) is not None)


@dataclass
class TrainResult:
    status: str  # "completed" or "diverged" (a comparison adds "failed", an interrupted run "interrupted")
    records: list[Row] = field(default_factory=list)  # the problem's rows
    reason: str | None = None  # why a diverged run stopped

    @property
    def epochs_completed(self) -> int:
        """Epochs (steps, on an objective) completed."""
        return self.records[-1].done if self.records else 0


@dataclass(frozen=True)
class StatsRow:
    """The first columns of every comparison.csv row: who the group is (``Group.shared_figures``).
    The broken-run counts that close every row are declared last in each subclass, to stay last."""

    label: str
    optimizer: str
    learning_rate: float | None
    hyperparameters: str
    seeds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableSpec:
    """A comparison table's columns besides label, optimizer, seeds: the ``wrapping`` ones ("mean ± sd": on a
    narrow terminal they wrap at their space), the ``whole`` ones, each row's cells for them, and the caption."""

    caption: str
    wrapping: tuple[str, ...]
    whole: tuple[str, ...]
    cells: Callable[[Any], list[str]]


Column = tuple[str, Callable[[Any], str]]  # a metrics table's header and its cell of a row


class Problem(ABC):
    """A kind of problem optrun trains on: a network on a dataset, evaluated every epoch
    (``optrun.problems.network``), or a point descending an objective, recorded every step
    (``optrun.problems.landscape``). It owns all that differs between the kinds, from its run to its
    comparison's table and pictures; the rest of optrun asks it and never branches on which kind it holds."""

    name: str  # "network", "objective"
    unit: str  # what a row of metrics counts: "epoch", "step"
    record: type[Row]  # the rows of its metrics.csv
    keeps_checkpoints: bool  # a run saves one after every row, and resumes from it
    draws_each_run: bool  # ``optrun train`` draws its pictures too, not only a comparison
    sections: tuple[tuple[str, str], ...]  # the config's sections that say what it trains: (section, its name key)

    @property
    def columns(self) -> tuple[str, ...]:
        """The metrics.csv columns every run of this kind has (``OPTIONAL_COLUMNS`` follow where they apply)."""
        return tuple(f.name for f in fields(self.record) if f.name not in OPTIONAL_COLUMNS)

    def kept(self, rows: Sequence[Row]) -> str:
        """What a stopped run kept, by its last row: "after epoch 5", "after step 120", or "before the first
        evaluation"."""
        return f"after {self.unit} {rows[-1].done}" if rows else "before the first evaluation"

    @abstractmethod
    def planned(self, config: Config) -> int:
        """The epochs (steps) ``config`` trains for."""

    @abstractmethod
    def estimate(self, config: Config) -> Estimate:
        """The peak memory of a run of ``config`` (``optrun.memory``)."""

    @abstractmethod
    def prepare(self, config: Config) -> Any:
        """What ``fit`` trains: the data, network and optimizer (the point, objective and optimizer), built and
        checked (its memory first) before anything is written."""

    @abstractmethod
    def fit(self, prepared: Any, on_row: Callable[[Any], None] | None) -> TrainResult:
        """Train what ``prepare`` made, calling ``on_row`` with each row as it is recorded."""

    @abstractmethod
    def summary(self, config: Config, rows: Sequence[Row]) -> dict[str, Any]:
        """summary.json's figures of a run with these rows: ``final`` and ``best`` (null when nothing was
        recorded), and what the run was on."""

    @abstractmethod
    def describe(self, config: Config) -> str:
        """``digits, mlp, 20 epochs``: what a run of ``config`` trains, in a few words (``optrun validate``)."""

    @abstractmethod
    def describe_parts(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """A run directory's config in words, part by part, each with the config section it comes from:
        ``[("digits", "dataset"), ("mlp [64] relu", "model"), ("20 epochs, batch 32", "train")]``."""

    @abstractmethod
    def progress(self, row: Row) -> str:
        """A row in a few figures, as the progress bar shows it."""

    @abstractmethod
    def result(self, summary: Mapping[str, Any]) -> str:
        """How a finished run ended, in one phrase, from its summary.json."""

    @abstractmethod
    def metrics_columns(self, rows: Sequence[Row]) -> list[Column]:
        """The per-row table's columns: header and cell."""

    @abstractmethod
    def curve_names(self, row: Row) -> list[str]:
        """The metrics a comparison averages over seeds and draws, for runs whose rows look like ``row``."""

    @abstractmethod
    def target(self, curves: Sequence[Curves | None], given: float | None) -> tuple[float | None, str]:
        """A comparison's target and how it was set, from its groups' curves and the target a user gave."""

    @abstractmethod
    def stats(self, group: Group, curves: Curves | None, target: float | None) -> StatsRow:
        """One group's row of comparison.csv."""

    @abstractmethod
    def rank(self, row: Any) -> tuple[Any, ...]:
        """The sort key that puts the best row first and rows without a completed run last."""

    def against_best(self, row: Any, group: Group, best: Group) -> Any:
        """``row`` with its figures against the best group's on the same seeds, where the kind has them (a
        network's paired differences); ``row`` itself otherwise, and for the best group."""
        return row

    @abstractmethod
    def table(self, comparison: Comparison) -> TableSpec:
        """A comparison's table, besides the columns every comparison has."""

    @abstractmethod
    def figures(self, comparison: Comparison) -> dict[str, Figure]:
        """A comparison's pictures by file name (``curves`` first)."""

    def run_figures(self, comparison: Comparison) -> dict[str, Figure]:
        """The pictures ``optrun train`` draws of its run (``comparison``: of that run alone), by file name: a
        comparison's, unless the kind draws a run otherwise."""
        return self.figures(comparison)

    def __repr__(self) -> str:
        return f"<problem {self.name}>"


def streams(seed: int) -> list[np.random.Generator]:
    """The seed's three independent streams: data (or the objective), initial weights, batch order (or noise).

    Fairness: none of them is the optimizer's, so every optimizer given the same seed starts from the same
    parameters and sees the same minibatches (the same noise) in the same order."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def blown_up(config: Config, loss: float, initial: float | None, when: str) -> str | None:
    """Why a finite loss counts as diverged (``train.divergence_factor`` times the initial loss), or None."""
    factor = config.train.divergence_factor
    if factor is None or initial is None or initial <= 0 or loss <= factor * initial:
        return None
    return f"loss {loss:.4g} after {when} exceeds divergence_factor {factor:g} × the initial loss {initial:.4g}"


def count_text(n: Any, thing: str) -> str:
    """``1 epoch``, ``3 seeds``."""
    return f"{n} {thing}{'s' if n != 1 else ''}"


def mean_std(values: np.ndarray) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (ddof = 1; None for one value)."""
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def mean_sd_text(mean: float | None, sd: float | None, percent: bool) -> str:
    """``91.25 ± 0.40`` (percent) or ``0.0312 ± 0.0041``; ``-`` for no value."""
    if mean is None:
        return "-"
    if percent:
        return f"{mean * 100:.2f}" + (f" ± {sd * 100:.2f}" if sd is not None else "")
    return f"{mean:.3g}" + (f" ± {sd:.2g}" if sd is not None else "")
