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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np


def _kernel(fn: Callable[..., None]) -> Callable[..., None]:
    """``fn`` compiled on first call, single-threaded: the kernels run between BLAS calls, whose threads
    spin for a while after each product, and parallel kernels contending with them cost milliseconds."""
    compiled: Callable[..., None] | None = None

    @functools.wraps(fn)
    def call(*args: Any) -> None:
        nonlocal compiled
        if compiled is None:
            from numba import njit

            compiled = njit(cache=True, nogil=True, error_model="numpy")(fn)
        compiled(*args)

    return call


@_kernel
def sgd(p, g, lr):
    """θ ← θ − lr·g"""
    for i in range(p.size):
        p[i] -= g[i] * lr


@_kernel
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


@_kernel
def adagrad(p, g, c, lr, eps):
    """c ← c + g²;  θ ← θ − lr·g / (√c + eps)"""
    for i in range(p.size):
        ci = c[i] + g[i] * g[i]
        c[i] = ci
        p[i] -= g[i] * lr / (np.sqrt(ci) + eps)


@_kernel
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


@_kernel
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
