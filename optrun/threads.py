"""The threads optrun computes on, and why a run's numbers never depend on how many there are.

One policy holds for every entry point (``optrun train``, ``compare`` in this process, on worker
processes or on Dask, a resumed run, the Python API):

- numpy's BLAS computes every product of a run on one thread: ``optrun.train.fit`` holds
  ``one_blas_thread()`` for the whole run. A product split across BLAS's own threads is cut by
  the thread count and the CPU (OpenBLAS picks both its kernels and its split by CPU), and its edge
  pieces may round differently: on an AVX2 machine, one and two OpenBLAS threads give another last
  digit of the same loss.
- optrun's own threads do the parallel work instead, on pieces that the shapes alone fix: a
  product's rows (``optrun.models.products``), an update's elements (``optrun.optim.split``), a
  compiled epoch's rows and weight blocks (``optrun.compiled_epoch``). A piece has the same bits
  whichever thread computes it, so a run has the same numbers on one thread or many, whatever
  ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` say and however many cores the machine has.
- How many threads: ``count()``, the cores this process may run on, at most ``MAX_THREADS`` and at
  most ``OMP_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS`` where set. A parallel worker (``--jobs N``,
  a Dask task) runs on one (``use(1)``), so that N workers do not oversubscribe the cores. The count
  changes only the time a run takes.

This module imports nothing of optrun: the models, the optimizers and the executors all use it.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

MAX_THREADS = 4
"""The most threads a run uses: its updates are memory-bound, and a few cores saturate the memory bus."""

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables by which a user caps the threads of a process."""


def available_cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_count() -> int:
    """The cores this process may run on, at most ``MAX_THREADS``, and at most ``OMP_NUM_THREADS`` or
    ``OPENBLAS_NUM_THREADS`` where the user has set them to limit the threads a process uses."""
    pinned = os.environ.get("OPTRUN_PINNED_BLAS") == "1"  # optrun.startup's, not the user's: not a cap
    limits = [os.environ.get(name, "").strip() for name in THREAD_VARIABLES if not (pinned and "BLAS" in name)]
    return min(available_cores(), MAX_THREADS, *(int(v) for v in limits if v.isdigit() and int(v) > 0))


_count = default_count()


def count() -> int:
    """The threads a run of this process computes on."""
    return _count


def use(n: int) -> None:
    """Compute on ``n`` threads from now on in this process (parallel workers: 1)."""
    global _count
    _count = max(1, min(int(n), MAX_THREADS))


_pool: tuple[int, ThreadPoolExecutor] | None = None  # (the process it belongs to, the helper threads)


def helpers() -> ThreadPoolExecutor:
    """This process's ``MAX_THREADS − 1`` helper threads, made at first use (a forked child makes its own)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix="optrun"))
    return _pool[1]


def run_pieces(work: Callable[[int], Any], pieces: int) -> None:
    """``work(i)`` for every piece i in 0..pieces−1, on ``count()`` threads at most: this one and helpers,
    each taking the next piece as it comes free (a slower core takes fewer). The pieces must be
    independent of each other; which thread computes one does not change its result."""
    helping = min(count(), pieces) - 1
    if helping <= 0:
        for i in range(pieces):
            work(i)
        return
    taken = itertools.count()  # next() on it is atomic: each piece is taken once
    stopped = False  # this thread was interrupted (Ctrl-C) or failed: the helpers take no more pieces

    def drain() -> None:
        while not stopped and (i := next(taken)) < pieces:
            work(i)

    futures = [helpers().submit(drain) for _ in range(helping)]
    try:
        drain()
    except BaseException:
        stopped = True
        raise
    finally:
        for future in futures:
            future.result()


_blas_lock = threading.Lock()
_blas_holders = 0
_blas_limits: Any = None  # threadpoolctl's limiter while held: it restores the settings found before
_blas_libraries: Any = None  # threadpoolctl's controller of the BLAS libraries loaded (a scan takes ms) ...
_modules_scanned = 0  # ... found again once modules were imported since: one may have loaded a BLAS (scipy's)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS (and any other BLAS loaded) on one thread for the block. Runs in several threads of one
    process (a Dask worker's) share the setting: the first to enter sets it and the last to leave restores
    what it found, so that no run's products change thread count while it computes."""
    global _blas_holders, _blas_limits, _blas_libraries, _modules_scanned
    with _blas_lock:
        if _blas_holders == 0:
            if _blas_libraries is None or len(sys.modules) != _modules_scanned:
                from threadpoolctl import ThreadpoolController

                _modules_scanned = len(sys.modules)
                _blas_libraries = ThreadpoolController().select(user_api="blas")
            _take_blas_control()
            _blas_limits = _blas_libraries.limit(limits=1)
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                _take_blas_control()  # the last run to end may run in another thread than the first
                _blas_limits.restore_original_limits()
                _blas_limits = None
                _take_blas_control()  # and leave no thread in control


def _take_blas_control() -> None:
    """threadpoolctl (from 3.8) lets only one Python thread at a time size a BLAS's process-wide thread pool
    (OpenBLAS on pthreads), the first to try, and silently ignores the others: clear that thread, so that
    the next setting, made under ``_blas_lock``, applies whichever thread makes it."""
    import threadpoolctl

    clear = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)
