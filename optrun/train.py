"""Training a config's problem, in memory: ``prepare`` builds it, ``fit`` trains it, ``train`` does both.

The kind of problem (a network on a dataset, or a point on an objective: ``optrun.problems``) decides what
a run builds, how it trains and what it records; a network computes the same numbers on any number of
threads, in any entry point (``optrun.threads`` states the policy that ``fit`` holds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from optrun import memory, threads
from optrun.config import CompareConfig, Config, SuiteConfig
from optrun.problems import Record, TrainResult, problem_of
from optrun.schema import ConfigError


def prepare(config: Config) -> Any:
    """Load the data, initialise the network and build the optimizer for ``config`` (or place the start point
    on its objective); ConfigError first if the run cannot fit in memory (``optrun.memory``)."""
    return problem_of(config).prepare(config)


def fit(prepared: Any, on_row: Callable[[Record], None] | None = None) -> TrainResult:
    """Train what ``prepare`` made, calling ``on_row`` with each row of metrics as it is recorded (see the
    problem's ``fit``). numpy's BLAS computes on one thread meanwhile (``optrun.threads``): the numbers are the
    same on any number of threads."""
    with threads.one_blas_thread():
        return problem_of(prepared.config).fit(prepared, on_row)


def train(config: Config, on_row: Callable[[Record], None] | None = None) -> TrainResult:
    """``fit(prepare(config))``: the whole run, in memory."""
    return fit(prepare(config), on_row)


def estimate(config: Config | CompareConfig) -> memory.Estimate:
    """The peak memory of a run of ``config``: of each label's runs, in a comparison, the largest."""
    if isinstance(config, CompareConfig):
        runs = [config.run_config(label, config.seed) for label in config.optimizers]
        return max((estimate(run) for run in runs), key=lambda need: need.total)
    return problem_of(config).estimate(config)


CHECK_DATA_BELOW = 1 << 30
"""``check`` makes and splits a config's data where it takes less than this (1 GiB), as a run would."""


def check(config: Config | CompareConfig | SuiteConfig) -> memory.Estimate:
    """What would refuse a run of ``config`` before it trains, checked without training: its memory (each label's,
    in a comparison; each problem's, in a suite) and, where its data takes less than ``CHECK_DATA_BELOW``, its
    data and split (the first run's: a split's counts do not depend on the seed). The largest run's estimate;
    ConfigError otherwise (a suite's names the problem)."""
    if isinstance(config, SuiteConfig):
        needs = []
        for name, problem in config.configs.items():
            try:
                needs.append(check(problem))
            except ConfigError as exc:
                raise ConfigError(f"problems.{name}: {exc}") from None
        return max(needs, key=lambda need: need.total)
    need = memory.check(estimate(config))
    if need.data < CHECK_DATA_BELOW:
        compared = isinstance(config, CompareConfig)
        prepare(config.run_config(next(iter(config.optimizers)), config.seed_list[0]) if compared else config)
    return need
