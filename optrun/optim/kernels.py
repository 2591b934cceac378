"""Fused update kernels: each optimizer's rule as one compiled pass over flat arrays.

The numpy ``_update`` method of each optimizer is the plain reference: about a
dozen whole-array operations per step, each one a pass through memory. A
kernel here reads every element of θ, g and the state once, applies the same
float operations in the same order to it, and writes θ and the state back
once. The results are bit-identical to the reference
(``tests/test_kernels.py`` checks every rule and option), because

- every scalar argument has the arrays' dtype (the caller casts it), so float32
  arithmetic stays float32 as in numpy, where Python floats are weak scalars;
- nothing is reordered or contracted into fused multiply-adds (no fastmath);
- ``error_model="numpy"``: a division by zero gives inf or nan, as in numpy,
  instead of raising, and lets the loops vectorize.

Each kernel documents its rule with the state it updates; θ is ``p``.

numba is imported, and a kernel compiled (or loaded from numba's on-disk
cache), at the kernel's first call: together about a second, once per process,
which is why optimizers use the kernels only on large parameter sets
(``optrun.optim.base.FUSED_MIN_SIZE``).

A large update can be split across several threads (``optrun.optim.split``, on ``optrun.threads``):
they take chunks of the parameters from a shared counter, each running the kernel (which releases the
GIL) on its chunks. The rules are elementwise, so the result is the same to the last bit however the
chunks fall; only the time differs, and not always in the split's favour: a helper thread that shares a
busy core is preempted for milliseconds at a time, while on idle cores a split update is up to twice as
fast. So each optimizer times its first few steps both ways (``ThreadChoice``), keeps the faster, and
times both again every 2000 steps.
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np

from optrun import threads

SPLIT_MIN_SIZE = 1 << 21
"""Elements from which splitting an update across threads is tried (8 MiB of float32 per array)."""


def operands(args: tuple[Any, ...]) -> tuple[np.ndarray, list[np.ndarray], list[Any]]:
    """A kernel's arguments after ``p`` as ``g``, its state arrays and its scalars: every kernel takes its
    arrays first."""
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    return arrays[0], arrays[1:], [a for a in args if not isinstance(a, np.ndarray)]


class ThreadChoice:
    """How many threads an optimizer's updates use: 1, or ``threads.count()`` where the update is large enough
    to try splitting and splitting proves faster over the first steps (the first step, which may compile
    the kernel, is not counted; then ``TRIALS`` steps each way, alternating, compared by their median).
    The choice is made again from fresh trials every ``RECHECK`` steps, so that one made in a busy
    moment of a shared machine does not hold for the whole run."""

    TRIALS = 5
    RECHECK = 2000  # the trials then cost at most TRIALS steps at the slower count: 0.25% of the steps

    def __init__(self, size: int) -> None:
        n = threads.count()
        self.candidates = [1, n] if n > 1 and size >= SPLIT_MIN_SIZE else [1]
        self._counted = False  # the first step's time includes compiling: it is left out
        self._retry()

    def _retry(self) -> None:
        """Open the trials (where there is a choice to make)."""
        self.seconds: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = 1 if len(self.candidates) == 1 else None
        self._steps_since_choice = 0

    def next(self) -> int:
        """The thread count for the next step: the choice, or during the trials the least-tried candidate."""
        if self.chosen is not None:
            return self.chosen
        return min(self.candidates, key=lambda n: len(self.seconds[n]))

    def record(self, n: int, seconds: float) -> None:
        """How long a step on ``n`` threads took; decides once every candidate has had its trials."""
        if self.chosen is not None:
            self._steps_since_choice += 1
            if self._steps_since_choice >= self.RECHECK and len(self.candidates) > 1:
                self._retry()
            return
        if not self._counted:
            self._counted = True
            return
        self.seconds[n].append(seconds)
        if all(len(times) >= self.TRIALS for times in self.seconds.values()):
            self.chosen = min(self.candidates, key=lambda k: statistics.median(self.seconds[k]))


class Kernel:
    """An update rule compiled on first use: ``kernel(p, *args, n_threads=1)`` runs it on ``p`` (split
    across ``n_threads`` threads by ``optrun.optim.split``), ``kernel.compiled()`` is the numba function
    itself, for compiled callers.

    No numba parallel loops: the kernels run between BLAS calls, whose threads spin for a while after
    each product, and numba's spinning threads contending with them cost milliseconds."""

    def __init__(self, fn: Callable[..., None]) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._compiled: Callable[..., None] | None = None

    def compiled(self) -> Callable[..., None]:
        if self._compiled is None:
            from numba import njit

            self._compiled = njit(cache=True, nogil=True, error_model="numpy")(self._fn)
        return self._compiled

    def __call__(self, p: np.ndarray, *args: Any, n_threads: int = 1) -> None:
        if n_threads > 1:
            from optrun.optim.split import split_update

            split_update(self, p, args, n_threads)
        else:
            self.compiled()(p, *args)


@Kernel
def sgd(p, g, lr):
    """θ ← θ − lr·g"""
    for i in range(p.size):
        p[i] -= g[i] * lr


@Kernel
def heavy_ball(p, g, v, mu, v_scale, lr, nesterov):
    """v ← mu·v + v_scale·g  (v_scale = (1 − dampening)·lr);
    θ ← θ − v, or with nesterov θ ← θ − (mu·v + lr·g)"""
    for i in range(p.size):
        vi = v[i] * mu + g[i] * v_scale
        v[i] = vi
        if nesterov:
            p[i] -= vi * mu + g[i] * lr
        else:
            p[i] -= vi


@Kernel
def adagrad(p, g, c, lr, eps):
    """c ← c + g²;  θ ← θ − lr·g / (√c + eps)"""
    for i in range(p.size):
        ci = c[i] + g[i] * g[i]
        c[i] = ci
        p[i] -= g[i] * lr / (np.sqrt(ci) + eps)


@Kernel
def rmsprop(p, g, c, g_avg, buffer, rho, one_minus_rho, eps, lr, momentum, centered, with_momentum):
    """c ← rho·c + (1 − rho)·g²;  d = √c + eps, or centered: ḡ ← rho·ḡ + (1 − rho)·g, d = √(c − ḡ²) + eps;
    θ ← θ − lr·g / d, or with momentum: b ← momentum·b + g / d, θ ← θ − lr·b
    (``g_avg`` and ``buffer`` are only touched where centered and with_momentum say so)"""
    for i in range(p.size):
        gi = g[i]
        ci = c[i] * rho + gi * gi * one_minus_rho
        c[i] = ci
        if centered:
            ai = g_avg[i] * rho + gi * one_minus_rho
            g_avg[i] = ai
            d = np.sqrt(ci - ai * ai) + eps
        else:
            d = np.sqrt(ci) + eps
        if with_momentum:
            bi = buffer[i] * momentum + gi / d
            buffer[i] = bi
            p[i] -= bi * lr
        else:
            p[i] -= gi * lr / d


@Kernel
def adam(
    p,
    g,
    m,
    s,
    s_max,
    b1,
    one_minus_b1,
    b2,
    one_minus_b2,
    step_size,
    inv_root_correction2,
    lr,
    eps,
    decay,
    amsgrad,
    nadam,
    k1,
    k2,
):
    """m ← β1·m + (1 − β1)·g;  s ← β2·s + (1 − β2)·g²;  with amsgrad s_max ← max(s_max, s), used for s;
    d = √s · inv_root_correction2 + eps  (√ŝ + eps, with ŝ = s / (1 − β2ᵗ));
    θ ← decay·θ − step_size·m / d  (step_size = lr / (1 − β1ᵗ): lr·m̂ / d), or with nadam
    θ ← decay·θ − lr·(k1·m + k2·g) / d  (NAdam's look-ahead m̄; k1, k2 from the caller).
    ``decay`` is 1 − lr·weight_decay for AdamW and 1 otherwise (an exact no-op)."""
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + gi * one_minus_b1
        si = s[i] * b2 + gi * gi * one_minus_b2
        m[i] = mi
        s[i] = si
        if amsgrad:
            top = s_max[i]
            if top < si or si != si:  # np.maximum: nan wins
                top = si
            s_max[i] = top
            si = top
        d = np.sqrt(si) * inv_root_correction2 + eps
        step = (mi * k1 + gi * k2) * lr / d if nadam else mi * step_size / d
        p[i] = p[i] * decay - step


RULES = (sgd, heavy_ball, adagrad, rmsprop, adam)
"""Every kernel, in the order ``optrun.compiled_epoch`` numbers them."""
