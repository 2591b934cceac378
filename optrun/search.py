"""Hyperparameter search: the ``tune:`` section of a config, its search spaces and the settings a search tries.

A space gives each tuned hyperparameter of a label one dimension:

- ``{log: [low, high]}``: a range searched on a log scale (0 < low < high), as learning rates are;
- ``{linear: [low, high]}``: a range searched on a linear scale (low < high);
- ``[v1, v2, ...]``: a list of values to choose from.

``search: grid`` tries every combination of the choices with a grid of each range, the grid points evenly
spaced on the range's scale, ends included: ``budget`` = (product of the choices' counts) × (product of the
ranges' point counts), the point counts as equal as the budget allows (``grid_points``). ``search: random``
draws ``budget`` settings, a range's values uniform on its scale and a choice uniform among its values, from
a generator seeded by ``seed``: every label with as many dimensions gets the same uniform draws, mapped onto
its own ranges. Values of a range are rounded to three significant digits (more where a narrow range's
values would repeat), so that tables and ``tuned.yaml`` read well; the rounded value is the one trained.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import PlainValidator
from pydantic_core import PydanticCustomError

from optrun.schema import PositiveInt, Section, describe

SIGNIFICANT_DIGITS = 3  # at least: more where the values of a narrow range would otherwise repeat
MIN_GRID_POINTS = 3  # a range's points in a grid: with 2, only its ends, and every choice would sit at an edge


def _rounded(x: np.ndarray, digits: int) -> np.ndarray:
    return np.array([float(f"{v:.{digits}g}") for v in x])


@dataclass(frozen=True)
class Range:
    """Values from ``low`` to ``high``, on a ``log`` or ``linear`` scale."""

    low: float
    high: float
    scale: Literal["log", "linear"]

    def at(self, u: np.ndarray) -> list[float]:
        """The values at fractions ``u`` (in [0, 1]) of the way from low to high on the scale, the ends exact,
        rounded to the fewest significant digits (3 at least) that keep apart the values that differ, and only
        where the rounded value stays in the range (0.99996 of [0.9, 0.99999] would round to 1)."""
        u = np.asarray(u, dtype=np.float64)
        if self.scale == "log":
            values = self.low * (self.high / self.low) ** u
        else:
            values = self.low + (self.high - self.low) * u
        values = np.where(u <= 0, self.low, np.where(u >= 1, self.high, values))
        distinct = len(np.unique(values))
        digits = next(d for d in range(SIGNIFICANT_DIGITS, 18) if len(np.unique(_rounded(values, d))) == distinct)
        rounded = _rounded(values, digits)
        inside = (rounded >= self.low) & (rounded <= self.high)
        return [float(v) for v in np.where(inside, rounded, values)]

    def grid(self, points: int) -> list[float]:
        """``points`` values evenly spaced on the scale, both ends included."""
        return self.at(np.linspace(0.0, 1.0, points))

    def __str__(self) -> str:
        return f"{self.scale} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Choices:
    """A list of values to choose from."""

    values: tuple[Any, ...]

    def at(self, u: np.ndarray) -> list[Any]:
        """The value whose share of [0, 1) holds each fraction of ``u``."""
        index = np.minimum((np.asarray(u) * len(self.values)).astype(np.int64), len(self.values) - 1)
        return [self.values[i] for i in index]

    def __str__(self) -> str:
        return "[" + ", ".join(map(str, self.values)) + "]"


Dimension = Range | Choices
Space = dict[str, Dimension]  # one label's: hyperparameter -> its dimension


def value_text(value: Any) -> str:
    """A hyperparameter's value as tables, lines and pictures write it: ``null``, ``true``, ``0.00316``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def dimension(value: Any) -> Dimension:
    """A space's entry as a Dimension; ValueError with the one-line reason where it is none."""
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty list has nothing to choose from; give at least one value")
        if any(isinstance(v, dict | list) for v in value):
            raise ValueError(f"a list of values holds numbers, strings or booleans, got {describe(value)}")
        if len({repr(v) for v in value}) != len(value):
            raise ValueError(f"lists a value twice: {describe(value)}")
        return Choices(tuple(value))
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in ("log", "linear"):
        scale, ends = next(iter(value.items()))
        numbers = isinstance(ends, list) and len(ends) == 2
        if not numbers or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in ends):
            raise ValueError(f"{scale}: must be [low, high], two numbers, got {describe(ends)}")
        low, high = (float(v) for v in ends)
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError(f"{scale}: needs low < high, both finite, got {describe(ends)}")
        if scale == "log" and low <= 0:
            raise ValueError(f"log: needs 0 < low (a log scale), got {describe(ends)}; use linear for 0 and below")
        return Range(low, high, scale)
    raise ValueError(
        f"must be a range ({{log: [low, high]}} or {{linear: [low, high]}}) or a list of values, got {describe(value)}"
    )


def _check_seeds(value: Any) -> list[int] | None:
    if value is None:
        return None
    whole = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if whole and value and all(v >= 0 for v in value) and len(set(value)) == len(value):
        return value
    raise PydanticCustomError(
        "seeds", "must be a non-empty list of distinct seeds (>= 0), got {got}", {"got": describe(value)}
    )


class TuneSpec(Section):
    """The ``tune:`` section of a config: how ``optrun tune`` searches each label's hyperparameters."""

    budget: PositiveInt = 16  # settings tried per label: the same for every label
    search: Literal["grid", "random"] = "grid"
    seeds: Annotated[list[int] | None, PlainValidator(_check_seeds)] = None  # None: one seed after the evaluation's
    metric: Literal["validation_accuracy", "validation_loss"] = "validation_accuracy"
    at: Literal["last", "best"] = "last"  # the metric at the last epoch, or at each run's best epoch
    space: dict[str, Any]  # a label's ranges by hyperparameter, or a hyperparameter's range for every label

    @property
    def maximize(self) -> bool:
        return self.metric.endswith("accuracy")


def _factors(n: int) -> list[int]:
    """The prime factors of ``n``, largest first."""
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return sorted([*out, *([n] if n > 1 else [])], reverse=True)


def grid_points(space: Space, budget: int) -> dict[str, int]:
    """How many values each dimension of a grid search takes so that the grid has ``budget`` settings: a
    list all its values, the ranges as equal a share of the rest as its factors allow, the first range the
    largest (16 over two ranges: 4 × 4; 12: 4 × 3). ValueError, in a line, where no grid has exactly ``budget``
    settings with at least ``MIN_GRID_POINTS`` points per range."""
    choices = math.prod(len(d.values) for d in space.values() if isinstance(d, Choices))
    ranges = [name for name, d in space.items() if isinstance(d, Range)]
    if budget % choices or (not ranges and budget != choices):
        need = f"{choices}" if not ranges else f"a multiple of {choices}"
        raise ValueError(
            f"a grid of {' × '.join(str(len(d.values)) for d in space.values() if isinstance(d, Choices))} "
            f"choices cannot hold a budget of {budget}; make the budget {need}, or search: random"
        )
    points = dict.fromkeys(ranges, 1)
    for factor in _factors(budget // choices):
        smallest = min(ranges, key=lambda name: points[name])
        points[smallest] *= factor
    points = dict(zip(ranges, sorted(points.values(), reverse=True), strict=True))  # the first range the most
    if any(p < MIN_GRID_POINTS for p in points.values()):
        raise ValueError(
            f"a budget of {budget} leaves a range of the grid ({', '.join(ranges)}) fewer than {MIN_GRID_POINTS} "
            f"points ({' × '.join(map(str, points.values()))}), its ends and little else; choose a budget such as "
            f"{_a_budget(len(ranges), choices)}, or search: random"
        )
    return {name: (points[name] if name in points else len(d.values)) for name, d in space.items()}


def _a_budget(ranges: int, choices: int) -> str:
    return " or ".join(str(choices * k**ranges) for k in (MIN_GRID_POINTS, MIN_GRID_POINTS + 1))


def check_budget(space: Space, budget: int, search: str) -> None:
    """ValueError, in a line, where ``space`` cannot give ``budget`` distinct settings by ``search``: a grid
    that cannot hold it (``grid_points``), or a random search over lists alone that has fewer settings."""
    total = math.prod(len(d.values) if isinstance(d, Choices) else budget + 1 for d in space.values())  # a range:
    # more values than any budget asks
    if search == "grid":
        grid_points(space, budget)
    elif budget > total:  # lists alone
        raise ValueError(
            f"its lists make {total} settings, and a random search of {budget} would repeat them; "
            f"make the budget at most {total}, or add a range"
        )


def settings(space: Space, budget: int, search: str, seed: int) -> list[dict[str, Any]]:
    """The ``budget`` settings a search tries, in the order it tries them (a grid: the first dimension varies
    slowest). A random search over lists alone draws distinct settings."""
    check_budget(space, budget, search)
    if search == "grid":
        points = grid_points(space, budget)
        axes = [d.grid(points[n]) if isinstance(d, Range) else list(d.values) for n, d in space.items()]
        return [dict(zip(space, values, strict=True)) for values in itertools.product(*axes)]
    rng = np.random.default_rng(seed)
    if all(isinstance(d, Choices) for d in space.values()):  # without replacement: each setting at most once
        combinations = list(itertools.product(*(d.values for d in space.values())))
        picked = rng.choice(len(combinations), size=budget, replace=False)
        return [dict(zip(space, combinations[i], strict=True)) for i in picked]
    u = rng.random((len(space), budget))  # a dimension's draws: the same in any space
    columns = [d.at(u[i]) for i, d in enumerate(space.values())]
    return [dict(zip(space, values, strict=True)) for values in zip(*columns, strict=True)]


def at_edge(space: Space, tried: Sequence[Mapping[str, Any]], chosen: Mapping[str, Any]) -> dict[str, str]:
    """The ranges whose chosen value is the lowest or highest value tried: {hyperparameter: "low" or "high"}.
    The best may lie beyond the range; it should be widened that way."""
    edges = {}
    for name, d in space.items():
        if isinstance(d, Range) and len(values := {t[name] for t in tried}) > 1:
            if chosen[name] == min(values):
                edges[name] = "low"
            elif chosen[name] == max(values):
                edges[name] = "high"
    return edges
