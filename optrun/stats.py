"""Statistics over seeds: one row of figures per label, and the mean curves the plots draw.

Networks (``LabelStats``):

A *group* is the runs of one label (an optimizer with its settings), one per
seed. Means, spreads and curves are over the group's completed runs; diverged
and failed runs are counted, and drawn, but never averaged into the figures
(a NaN loss would otherwise erase the whole row).

- final test accuracy, final train loss: mean and sample standard deviation
  (ddof = 1; empty with fewer than two completed seeds);
- best test accuracy and its epoch: the maximum of the mean test-accuracy curve,
  at the earliest epoch that reaches it;
- epochs to target: the first epoch at which the mean test-accuracy curve
  reaches ``target`` (none when it never does);
- seconds per epoch: the mean over every trained epoch of every run.

Objectives (``LandscapeStats``), over the completed seeds likewise:

- final loss and final distance to the minimum: mean and sample standard deviation;
- best loss and its step: the minimum of the mean loss curve, at the earliest step reaching it;
- steps to target: the first step at which the mean distance to the minimum is at most
  ``target_distance``, 1/1000 of the starting distance;
- rate: the mean over seeds of the measured per-step contraction of the distance
  (``optrun.objectives.contraction_rate``), beside the theory's where it applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optrun.optim.registry import NotAnOptimizer, optimizer_class, short_name
from optrun.runs import RunRecord

DEFAULT_TARGET_FRACTION = 0.95  # target accuracy: this fraction of the best mean final test accuracy


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

    @property
    def on_objective(self) -> bool:
        """Whether these runs descend an objective (rows per step) rather than train a network."""
        return bool(self.runs[0].config.get("objective"))


@dataclass(frozen=True)
class Curves:
    """Metrics of a group's completed runs, one row per run, over their common epochs (or steps)."""

    x: np.ndarray  # the epochs, or the steps
    values: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]


def curves(group: Group) -> Curves | None:
    """The completed runs' curves (train loss and test accuracy; on an objective, loss and distance to the
    minimum where there is one), or None when no run completed."""
    runs = group.completed
    if not runs:
        return None
    n = min(len(r.records) for r in runs)
    if group.on_objective:
        x, names = (
            "step",
            ["loss"] + (["distance_to_minimum"] if runs[0].records[0].distance_to_minimum is not None else []),
        )
    else:
        x, names = "epoch", ["train_loss", "test_accuracy"]

    def column(name: str) -> np.ndarray:
        return np.array([[getattr(row, name) for row in r.records[:n]] for r in runs], dtype=np.float64)

    return Curves(np.array([getattr(row, x) for row in runs[0].records[:n]]), {name: column(name) for name in names})


@dataclass(frozen=True)
class _RowStart:
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
class LabelStats(_RowStart):
    """One row of comparison.csv (None: empty, no value)."""

    final_test_accuracy_mean: float | None
    final_test_accuracy_std: float | None
    final_train_loss_mean: float | None
    final_train_loss_std: float | None
    best_test_accuracy: float | None
    best_epoch: int | None
    target_accuracy: float | None
    epochs_to_target: int | None
    seconds_per_epoch: float | None
    diverged: int
    failed: int


@dataclass(frozen=True)
class LandscapeStats(_RowStart):
    """One row of an objective comparison's comparison.csv (None: empty, no value)."""

    final_loss_mean: float | None
    final_loss_std: float | None
    final_distance_mean: float | None
    final_distance_std: float | None
    best_loss: float | None
    best_step: int | None
    target_distance: float | None
    steps_to_target: int | None
    rate_measured: float | None
    rate_theory: float | None
    diverged: int
    failed: int


TARGET_DISTANCE_FRACTION = 1e-3  # steps to target: the distance to the minimum shrunk by this factor


def landscape_stats(group: Group) -> LandscapeStats:
    """The figures of one group of runs on an objective (see the module docstring)."""
    c = curves(group)
    loss_mean = loss_std = dist_mean = dist_std = best = best_step = target = reach = None
    if c is not None:
        loss_mean, loss_std = _mean_std(c["loss"][:, -1])
        mean_loss = c["loss"].mean(axis=0)
        top = int(np.argmin(mean_loss))
        best, best_step = float(mean_loss[top]), int(c.x[top])
        if "distance_to_minimum" in c.values:
            distance = c["distance_to_minimum"]
            dist_mean, dist_std = _mean_std(distance[:, -1])
            mean_distance = distance.mean(axis=0)
            target = TARGET_DISTANCE_FRACTION * float(mean_distance[0])
            if (hits := np.flatnonzero(mean_distance <= target)).size:
                reach = int(c.x[hits[0]])
    rates = [r.summary.get("rate") or {} for r in group.completed]
    measured = [x["measured"] for x in rates if x.get("measured") is not None]
    theories = {x.get("theory") for x in rates}
    return LandscapeStats(
        **group.shared_figures(),
        final_loss_mean=loss_mean,
        final_loss_std=loss_std,
        final_distance_mean=dist_mean,
        final_distance_std=dist_std,
        best_loss=best,
        best_step=best_step,
        target_distance=target,
        steps_to_target=reach,
        rate_measured=float(np.mean(measured)) if measured else None,
        rate_theory=theories.pop() if len(theories) == 1 else None,
    )


def _mean_std(values: np.ndarray) -> tuple[float, float | None]:
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


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


def label_stats(group: Group, target: float | None) -> LabelStats:
    """The figures of one group (see the module docstring for each definition)."""
    c = curves(group)
    acc_mean = acc_std = loss_mean = loss_std = best = best_epoch = reach = None
    if c is not None:
        acc_mean, acc_std = _mean_std(c["test_accuracy"][:, -1])
        loss_mean, loss_std = _mean_std(c["train_loss"][:, -1])
        mean_curve = c["test_accuracy"].mean(axis=0)
        top = int(np.argmax(mean_curve))  # the first maximum
        best, best_epoch = float(mean_curve[top]), int(c.x[top])
        if target is not None and (hits := np.flatnonzero(mean_curve >= target)).size:
            reach = int(c.x[hits[0]])
    seconds = [row.seconds for r in group.runs for row in r.records if row.epoch > 0]
    return LabelStats(
        **group.shared_figures(),
        final_test_accuracy_mean=acc_mean,
        final_test_accuracy_std=acc_std,
        final_train_loss_mean=loss_mean,
        final_train_loss_std=loss_std,
        best_test_accuracy=best,
        best_epoch=best_epoch,
        target_accuracy=target,
        epochs_to_target=reach,
        seconds_per_epoch=float(np.mean(seconds)) if seconds else None,
    )


def default_target(groups: list[Group]) -> float | None:
    """95% of the best mean final test accuracy among the groups (None if no run completed or on objectives)."""
    if any(g.on_objective for g in groups):
        return None
    finals = [c["test_accuracy"][:, -1].mean() for g in groups if (c := curves(g)) is not None]
    return DEFAULT_TARGET_FRACTION * float(max(finals)) if finals else None


def ranked(groups: list[Group], target: float | None) -> list[LabelStats] | list[LandscapeStats]:
    """Every group's figures, best mean final test accuracy first (ties: lower train loss first); groups with no
    completed run last. On objectives: lowest mean final loss first."""
    if groups and groups[0].on_objective:
        landscape = [landscape_stats(g) for g in groups]
        return sorted(landscape, key=lambda s: (s.final_loss_mean is None, s.final_loss_mean or 0.0))
    rows = [label_stats(g, target) for g in groups]
    return sorted(
        rows,
        key=lambda s: (
            s.final_test_accuracy_mean is None,
            -round(s.final_test_accuracy_mean or 0.0, 12),  # equal means of k/n accuracies tie exactly
            s.final_train_loss_mean if s.final_train_loss_mean is not None else 0.0,
        ),
    )
