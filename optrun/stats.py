"""Statistics over seeds: one row of figures per label, and the mean curves the plots draw.

A *group* is the runs of one label (an optimizer with its settings), one per seed. Means, spreads and
curves are over the group's completed runs; diverged and failed runs are counted, and drawn, but never
averaged into the figures (a NaN loss would otherwise erase the whole row). Which figures a row holds is
its problem's (``Problem.stats``): for a network, final and best test accuracy and epochs to a target
accuracy (``optrun.problems.network``); on an objective, final loss and distance, steps to a target
distance and the contraction rate (``optrun.problems.landscape``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from optrun.optim.registry import NotAnOptimizer, optimizer_class, short_name
from optrun.problems import Problem, StatsRow, problem_of
from optrun.runs import RunDirError, RunRecord


@dataclass
class Group:
    """The runs of one label, sorted by seed; ``source`` is the directory they were read from."""

    label: str
    runs: list[RunRecord]
    source: Path

    @property
    def optimizer(self) -> dict[str, Any]:
        return dict(self.runs[0].config.get("optimizer") or {})

    @property
    def completed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status == "completed" and r.records]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    def shared_figures(self) -> dict[str, Any]:
        """The columns every comparison row has: who the group is, how many seeds, how many broke."""
        optimizer = self.optimizer
        return {
            "label": self.label,
            "optimizer": short_name(str(optimizer.get("name", "?"))),
            "learning_rate": optimizer.get("learning_rate"),
            "hyperparameters": describe_hyperparameters(optimizer),
            "seeds": len(self.runs),
            "diverged": self.count("diverged"),
            "failed": self.count("failed"),
        }

    @cached_property
    def curves(self) -> Curves | None:
        """The completed runs' curves (``Problem.curve_names``: train loss and test accuracy; on an objective,
        loss and distance to the minimum where there is one), or None when no run completed. Made once (a run's
        rows are read into arrays one by one, and an objective's run has one per step), then kept: the target,
        the figures and each picture use them."""
        runs = self.completed
        if not runs:
            return None
        n = min(len(r.records) for r in runs)
        x, names = self.problem.unit, self.problem.curve_names(runs[0].records[0])

        def column(name: str) -> np.ndarray:
            return np.array([[getattr(row, name) for row in r.records[:n]] for r in runs], dtype=np.float64)

        first = runs[0].records[:n]
        return Curves(np.array([getattr(row, x) for row in first]), {name: column(name) for name in names})

    @property
    def problem(self) -> Problem:
        """The kind of problem these runs are on."""
        return problem_of(self.runs[0].config)


@dataclass(frozen=True)
class Curves:
    """Metrics of a group's completed runs, one row per run, over their common epochs (or steps)."""

    x: np.ndarray  # the epochs, or the steps
    values: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def curves(group: Group) -> Curves | None:
    """The completed runs' curves (``Group.curves``)."""
    return group.curves


def describe_hyperparameters(optimizer: dict[str, Any]) -> str:
    """``learning_rate=0.003 beta1=0.9 ...``: an optimizer spec without its name."""
    return " ".join(f"{k}={v}" for k, v in optimizer.items() if k not in _NOT_SETTINGS)


_NOT_SETTINGS = ("name", "source")  # what names the optimizer (source: the hash of a user's file)
_ALWAYS_SHOWN = (*_NOT_SETTINGS, "learning_rate")  # every optimizer description starts with the name and these


def distinguishing_keys(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The hyperparameters, besides name and learning rate, whose values differ between the specs that have them:
    what tells labels apart, e.g. ``mu`` in a sweep of momentum. A key only some optimizers have (adam's ``beta1``)
    is compared among those, so that the names alone tell sgd from adam. In the order the specs list them."""
    keys = dict.fromkeys(k for spec in specs for k in spec if k not in _ALWAYS_SHOWN)
    return [k for k in keys if len({repr(spec[k]) for spec in specs if k in spec}) > 1]


def describe_optimizer(spec: Mapping[str, Any], keys: Iterable[str] = (), exact: bool = False) -> str:
    """``momentum lr=0.01 mu=0.5``: the optimizer's name, learning rate and the settings ``keys`` it sets (unset
    ones, None, are left out); floats to 4 significant digits, or, ``exact``, in full."""
    words = [short_name(str(spec.get("name", "?")))]
    if spec.get("learning_rate") is not None:
        words.append(f"lr={_setting(spec['learning_rate'], exact)}")
    words += [f"{k}={_setting(spec[k], exact)}" for k in keys if spec.get(k) is not None]
    return " ".join(words)


def _setting(value: Any, exact: bool) -> str:
    """One setting, compactly: ``cosine(steps=200, warmup=10)`` for a mapping with a name (a schedule),
    ``(when=loss)`` for one without, ``true`` for a boolean (as YAML writes it), 0.003 for a float."""
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}={_setting(v, exact)}" for k, v in value.items() if k != "name" and v is not None)
        return f"{short_name(str(value['name']))}({inner})" if "name" in value else f"({inner})"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if exact else f"{value:.4g}"
    return str(value)


def _defaults(name: Any) -> dict[str, Any] | None:
    """The settings of optimizer ``name`` left at their defaults (a resolved spec holds every key, unset ones as
    None); None for a name optrun does not know (a run directory from another version)."""
    try:
        cls = optimizer_class(str(name))
    except NotAnOptimizer:
        return None
    return cls.Spec(name=str(name)).model_dump(mode="json")


def non_default_keys(spec: Mapping[str, Any]) -> list[str]:
    """The settings, besides name and learning rate, that ``spec`` sets away from its optimizer's defaults, in the
    order it lists them: ``restart`` in ``{name: momentum, restart: {every: 50}}``. An unset one (None) is never
    among them; for an optimizer optrun does not know, none are."""
    defaults = _defaults(spec.get("name"))
    if defaults is None:
        return []
    return [
        k
        for k, v in spec.items()
        if k not in _ALWAYS_SHOWN and v is not None and (k not in defaults or not _same(v, defaults[k]))
    ]


def _same(value: Any, default: Any) -> bool:
    """Whether a setting equals its default: 0 and 0.0 do, and so do mappings whose unset keys are the difference
    (a schedule written with and without ``warmup: null``)."""
    if isinstance(value, Mapping) and isinstance(default, Mapping):
        keys = set(value) | set(default)
        return all(_same(value.get(k), default.get(k)) for k in keys)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return bool(value == default)


def optimizer_descriptions(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each spec described (``describe_optimizer``) with the settings that tell it from the others and the ones it
    sets away from its optimizer's defaults (``non_default_keys``: a setting no other label has is still shown);
    floats in full where 4 significant digits would make two different specs read the same."""
    differ = distinguishing_keys(specs)
    order = {k: i for i, k in enumerate(dict.fromkeys(k for spec in specs for k in spec))}
    mapping = {k for k in order if any(isinstance(spec.get(k), Mapping) for spec in specs)}
    keys = [
        sorted({*differ, *non_default_keys(spec)}, key=lambda k: (k in mapping, order[k])) for spec in specs
    ]  # in the order the specs list them, the numbers and flags before the mappings (schedules), which read longer
    texts = [describe_optimizer(spec, k) for spec, k in zip(specs, keys, strict=True)]
    distinct_specs = {repr(dict(spec)) for spec in specs}
    if len(set(texts)) < len(distinct_specs):
        texts = [describe_optimizer(spec, k, exact=True) for spec, k in zip(specs, keys, strict=True)]
    return texts


def comparison_target(groups: list[Group], target: float | None = None) -> tuple[float | None, str]:
    """The comparison's target and how it was set (``Problem.target``): for networks, ``target`` or 95% of the
    best mean final test accuracy among the groups."""
    return problem_of_groups(groups).target([curves(g) for g in groups], target)


def ranked(groups: list[Group], target: float | None) -> list[StatsRow]:
    """Every group's figures (``Problem.stats``), best first (``Problem.rank``), each against the best group's
    (``Problem.against_best``); groups with no completed run last."""
    problem = problem_of_groups(groups)
    rows = sorted(((problem.stats(g, curves(g), target), g) for g in groups), key=lambda pair: problem.rank(pair[0]))
    best = rows[0][1]
    return [problem.against_best(row, group, best) for row, group in rows]


def problem_of_groups(groups: list[Group]) -> Problem:
    """The one kind of problem the groups' runs are on; RunDirError when there are none, or they mix kinds."""
    kinds = {g.problem for g in groups}
    if not kinds:
        raise RunDirError("no finished runs to compare")
    if len(kinds) > 1:
        raise RunDirError("these runs mix networks and objectives; compare each kind on its own")
    return kinds.pop()
