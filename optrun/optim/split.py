"""Updates split across threads: every thread takes chunks of the parameters from a shared counter and
applies the optimizer's kernel to each, in compiled code, until none is left.

A thread that starts late (a helper takes tens of microseconds to wake) or runs slowly (one core of a
shared machine often does, and after a matrix product BLAS's idle threads spin on the others) simply takes
fewer chunks, and the calling thread waits for the last chunk in compiled code, by spinning on a counter,
instead of through Python (a lock and a wake-up of its own). Each element is updated by the same kernel
with the same scalars wherever its chunk falls, so the result is the same to the last bit on any number
of threads.

Imported by ``optrun.optim.kernels`` at the first kernel call, since it imports numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from optrun import threads
from optrun.optim.atomics import SCHED_YIELD, call_kernel, fetch_add, wait_until

CHUNK = 1 << 16
"""Elements per chunk (256 KiB of float32 per array): small enough that the threads' last chunks end
close together, large enough that taking one (an atomic add) costs nothing next to it."""


@njit(nogil=True, cache=True)
def update_range(kernel, p, g, states, scalars, lo, hi):
    """The kernel at address ``kernel`` (``optrun.optim.kernels``) on elements [lo, hi) of ``p`` and ``g``
    and of the state arrays whose addresses ``states`` holds, with the step's ``scalars``."""
    call_kernel(kernel, p.ctypes.data, g.ctypes.data, states.ctypes.data, scalars.ctypes.data, lo, hi)


@njit(nogil=True, cache=True)
def update_chunks(kernel, p, g, states, scalars, counters, chunk, wait, yield_fn):
    """Take chunk numbers from ``counters[0]`` until they run out, update each chunk's elements
    (``update_range``) and count it in ``counters[1]``; then, where ``wait``, wait until every chunk is
    counted, whichever thread took it. A chunk once taken is always finished: nothing here raises."""
    taken, done = counters.ctypes.data, counters.ctypes.data + 8
    n_chunks = (p.size + chunk - 1) // chunk
    while True:
        c = fetch_add(taken, 1)
        if c >= n_chunks:
            break
        update_range(kernel, p, g, states, scalars, c * chunk, min(p.size, (c + 1) * chunk))
        fetch_add(done, 1)
    if wait:
        wait_until(done, n_chunks, yield_fn)


def update(kernel: int, p: np.ndarray, g: np.ndarray, states: np.ndarray, scalars: np.ndarray, n_threads: int) -> None:
    """The kernel at address ``kernel`` on every element, on ``n_threads`` threads: this one and
    ``n_threads − 1`` helpers (``optrun.threads.helpers``), taking chunks as they come, returning when every
    chunk is done. Helpers that wake after the last chunk was taken find none, and leave: the call does not
    wait for them."""
    if n_threads == 1:
        update_range(kernel, p, g, states, scalars, 0, p.size)
        return
    counters = np.zeros(2, np.int64)  # chunks taken, chunks done: this call's own
    call = (kernel, p, g, states, scalars, counters, CHUNK)
    for _ in range(n_threads - 1):
        threads.helpers().submit(update_chunks, *call, False, SCHED_YIELD)
    update_chunks(*call, True, SCHED_YIELD)
