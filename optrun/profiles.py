"""Performance profiles (Dolan and Moré 2002) of labels over a set of problems, their scores and ranks.

A label's time on a problem, ``t[p, s]``, is what it took to reach the problem's target (epochs, or seconds;
``inf`` where it never did). Against the best label of the problem, its ratio is

    r[p, s] = t[p, s] / min_s' t[p, s']            (1 where t[p, s] is the best, inf where it never reached)

and a problem no label reached gives every label ``inf``. The profile of label ``s`` is the share of the
problems on which it was within a factor ``tau`` of the best:

    rho_s(tau) = |{p : r[p, s] <= tau}| / P,       tau >= 1.

Its score is the area under the profile from 1 to ``tau_max``, normalised to [0, 1], as AlgoPerf scores a
submission (Dahl et al. 2023, with tau_max = 4): a label best on every problem scores 1, one never within
``tau_max`` of the best scores 0. The profile is a step function, so the area is exact:

    score_s = 1 / (tau_max - 1) * integral_1^tau_max rho_s(tau) dtau
            = mean_p max(0, tau_max - r[p, s]) / (tau_max - 1).

Ranks order the labels of each problem by time (1: the fastest); labels with equal times, or that never reached
the target, share the mean of the ranks they span, as Demšar (2006) ranks classifiers.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np

from optrun.schema import Section, interval

TAU_MAX = 4.0  # AlgoPerf's


class ProfileSpec(Section):
    """The ``profile:`` section of a suite: what a label's time to a problem's target is measured in, and the
    largest ratio to the best the profile and its score count."""

    measure: Literal["epochs", "seconds"] = "epochs"  # epochs (an objective's steps): the same on every machine
    tau_max: Annotated[float, interval(1, lo_open=True)] = TAU_MAX


def ratios(times: np.ndarray) -> np.ndarray:
    """``r[p, s]``: each label's time (``times[p, s]``, inf where it never reached the target) over the best
    label's on the same problem; 1 for the best, inf for a label that never reached the target or a problem
    no label reached. A best time of 0 (the target met before training) makes every later time infinitely
    slower, as the ratio says."""
    times = np.asarray(times, dtype=np.float64)
    best = times.min(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = times / best
    return np.where(np.isfinite(best) & (times == best), 1.0, np.where(np.isfinite(best) & (best > 0), r, np.inf))


def profile(r: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """``rho[s, k]``: the share of the problems on which label ``s`` is within ``taus[k]`` of the best."""
    r = np.asarray(r, dtype=np.float64)
    return (r[:, :, None] <= np.asarray(taus, dtype=np.float64)[None, None, :]).mean(axis=0)


def scores(r: np.ndarray, tau_max: float = TAU_MAX) -> np.ndarray:
    """Each label's area under its profile from 1 to ``tau_max``, normalised to [0, 1] (exact: the profile is a
    step function)."""
    r = np.asarray(r, dtype=np.float64)
    return (np.clip(tau_max - r, 0.0, None) / (tau_max - 1.0)).mean(axis=0)


def ranks(times: np.ndarray) -> np.ndarray:
    """``rank[p, s]``: label ``s``'s place on problem ``p`` by time, 1 the fastest; equal times (inf among them:
    never reached) share the mean of the places they span."""
    t = np.asarray(times, dtype=np.float64)
    below = (t[:, None, :] < t[:, :, None]).sum(axis=2)  # labels faster than s
    equal = (t[:, None, :] == t[:, :, None]).sum(axis=2)  # labels as fast as s, s among them
    return below + (equal + 1) / 2
