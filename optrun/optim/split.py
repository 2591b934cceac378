"""Updates split across threads: every thread takes chunks of the parameters from a shared counter and
applies the optimizer's kernel to each, in compiled code, until none is left.

A thread that starts late (a helper takes tens of microseconds to wake) or runs slowly (one core of a
shared machine often does, and after a matrix product BLAS's idle threads spin on the others) simply takes
fewer chunks, and the calling thread waits for the last chunk in compiled code, by spinning on a counter,
instead of through Python (a lock and a wake-up of its own). Each element is updated by the same kernel
with the same scalars wherever its chunk falls, so the result is the same to the last bit on any number
of threads.

Imported by ``optrun.optim.kernels`` at the first split update, since it imports numba.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from optrun import threads
from optrun.optim import kernels
from optrun.optim.atomics import SCHED_YIELD, fetch_add, wait_until

CHUNK = 1 << 16
"""Elements per chunk (256 KiB of float32 per array): small enough that the threads' last chunks end
close together, large enough that taking one (an atomic add) costs nothing next to it."""

_sgd, _heavy_ball, _adagrad, _rmsprop, _adam = (k.compiled() for k in kernels.RULES)


@njit(nogil=True, cache=True, error_model="numpy")
def update_range(rule, p, g, s0, s1, s2, sc, lo, hi):
    """The optimizer's kernel on elements [lo, hi): ``rule`` indexes ``kernels.RULES``; ``sc`` holds the
    step's scalars in the kernel's order (flags as 0 or 1); state arrays left empty stay whole."""
    p, g = p[lo:hi], g[lo:hi]
    a0 = s0[lo:hi] if s0.size else s0
    a1 = s1[lo:hi] if s1.size else s1
    a2 = s2[lo:hi] if s2.size else s2
    if rule == 0:
        _sgd(p, g, sc[0])
    elif rule == 1:
        _heavy_ball(p, g, a0, sc[0], sc[1], sc[2], sc[3] != 0)
    elif rule == 2:
        _adagrad(p, g, a0, sc[0], sc[1])
    elif rule == 3:
        _rmsprop(p, g, a0, a1, a2, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5] != 0, sc[6] != 0)
    else:
        _adam(p, g, a0, a1, a2, sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8], sc[9] != 0,
              sc[10] != 0, sc[11], sc[12])  # fmt: skip


@njit(nogil=True, cache=True)
def update_chunks(rule, p, g, s0, s1, s2, sc, counters, chunk, wait, yield_fn):
    """Take chunk numbers from ``counters[0]`` until they run out, update each chunk's elements
    (``update_range``) and count it in ``counters[1]``; then, where ``wait``, wait until every chunk is
    counted, whichever thread took it. A chunk once taken is always finished: nothing here raises."""
    taken, done = counters.ctypes.data, counters.ctypes.data + 8
    n_chunks = (p.size + chunk - 1) // chunk
    while True:
        c = fetch_add(taken, 1)
        if c >= n_chunks:
            break
        update_range(rule, p, g, s0, s1, s2, sc, c * chunk, min(p.size, (c + 1) * chunk))
        fetch_add(done, 1)
    if wait:
        wait_until(done, n_chunks, yield_fn)


def state_operands(states: list[np.ndarray], p: np.ndarray) -> list[np.ndarray]:
    """``update_range``'s three state arrays: ``states``, then empty stand-ins of ``p``'s dtype."""
    return [*states, p[:0], p[:0], p[:0]][:3]


def split_update(kernel: kernels.Kernel, p: np.ndarray, args: tuple[Any, ...], n_threads: int) -> None:
    """``kernel(p, *args)`` on ``n_threads`` threads: this one and ``n_threads − 1`` helpers
    (``optrun.threads.helpers``), taking chunks as they come, returning when every chunk is done.

    ``args`` are the kernel's arguments after ``p``: its arrays (as long as ``p``, or empty where unused)
    then its scalars, in ``p.dtype`` as every caller passes them. Helpers that wake after the last chunk
    was taken find none, and leave: the call does not wait for them."""
    g, states, scalars = kernels.operands(args)
    counters = np.zeros(2, np.int64)  # chunks taken, chunks done: this call's own
    call = (kernels.RULES.index(kernel), p, g, *state_operands(states, p), np.array(scalars, p.dtype), counters, CHUNK)
    for _ in range(n_threads - 1):
        threads.helpers().submit(update_chunks, *call, False, SCHED_YIELD)
    update_chunks(*call, True, SCHED_YIELD)
