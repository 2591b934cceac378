"""How sure a comparison is: bootstrap confidence intervals over seeds.

A label's figure over its seeds (final test accuracy, say) gets a percentile bootstrap interval of its mean: the
seeds are resampled with replacement ``RESAMPLES`` times, and the interval is the middle ``LEVEL`` of the
resampled means. Two labels trained on the same seeds share their starts and batches (``optrun.problems.base
.streams``), so they are compared seed by seed (a paired design): the mean of the per-seed differences, its own
bootstrap interval, and the share of seeds on which the label did better. The resampling draws from a fixed seed:
the same runs always give the same intervals. With fewer than ``MIN_SEEDS`` values there is no interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
LEVEL = 0.95
MIN_SEEDS = 3
"""The fewest values an interval is drawn from: with two, every resampled mean is one of three numbers."""
SEED = 0
"""The resampling's own seed: an interval depends on the values alone."""


def interval(values: np.ndarray) -> tuple[float, float] | None:
    """The ``LEVEL`` percentile bootstrap interval of the mean of ``values``; None for fewer than ``MIN_SEEDS``."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < MIN_SEEDS:
        return None
    picks = np.random.default_rng(SEED).integers(0, len(values), (RESAMPLES, len(values)))
    means = values[picks].mean(axis=1)
    low, high = np.quantile(means, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class Paired:
    """A label against another on the same seeds: the mean of its per-seed differences (label − other), that
    mean's bootstrap interval (None for fewer than ``MIN_SEEDS`` seeds), and the share of seeds it did better."""

    difference: float
    interval: tuple[float, float] | None
    win_rate: float


def paired(values: np.ndarray, others: np.ndarray, higher_is_better: bool = True) -> Paired:
    """``values`` against ``others``, seed by seed (the same seeds, in the same order)."""
    differences = np.asarray(values, dtype=np.float64) - np.asarray(others, dtype=np.float64)
    wins = differences > 0 if higher_is_better else differences < 0
    return Paired(float(differences.mean()), interval(differences), float(wins.mean()))
