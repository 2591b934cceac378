"""Run independent tasks in this process, in local worker processes or on a Dask cluster.

``executor(jobs, scheduler)`` opens one (connecting to the cluster, if any,
before the caller writes anything) and gives a ``map_unordered(fn, items,
on_error)`` that yields ``(i, fn(items[i]))`` as each task finishes.

A local worker or a Dask task computes on one thread (``optrun.threads.use(1)``), so that
parallel runs do not oversubscribe the cores; a run's numbers do not depend on it
(``optrun.threads``), so ``--jobs 2`` agrees with ``--jobs 1`` to the last digit.

Local workers come from the ``forkserver`` start method (``spawn`` where there is
none): forking a process that runs threads (a live progress display, BLAS
pools) can deadlock the child, and a fork server that has already imported the
task's module starts each worker in milliseconds.

A Ctrl-C on the terminal goes to every process of the group. Only this process
acts on it: the fork server and the workers start with SIGINT blocked (the server
then ignores it), and a
worker's SIGINT interrupts a running task (which hands back what it has) and
nothing else, so that a Ctrl-C while they start or wait prints no traceback.
On an interrupt this process sends SIGINT to the workers itself.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol, TypeVar

from optrun import threads

T = TypeVar("T")
R = TypeVar("R")
OnError = Callable[[BaseException], Any] | None


class ExecutorError(RuntimeError):
    """An executor cannot be used: a missing optional dependency, an unreachable scheduler."""


class MapUnordered(Protocol):
    def __call__(self, fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None) -> Iterator[tuple[int, R]]:
        """Yield ``(i, fn(items[i]))`` for every item, in the order they finish.

        ``fn`` must be a module-level function the workers can import. When a
        task raises or its worker dies, ``on_error(exception)`` stands in for its
        result (without ``on_error``, the exception propagates).
        """
        ...


_task_running = False  # in a local worker: whether a task is running, which a SIGINT then interrupts


def _init_worker() -> None:
    """A local worker's setup: one thread, and SIGINT for the running task only (the worker started with
    SIGINT blocked: see ``_starting``)."""
    threads.use(1)
    signal.signal(signal.SIGINT, _interrupt_task)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def _interrupt_task(signum: int, frame: Any) -> None:
    if _task_running:
        raise KeyboardInterrupt


def _as_task(fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` in a local worker, open to SIGINT while it runs."""
    global _task_running
    _task_running = True
    try:
        return fn(item)
    finally:
        _task_running = False


@contextmanager
def _handling(signums: Sequence[int], handler: Any) -> Iterator[None]:
    """``handler`` for the signals ``signums`` during the block, where one can be set (in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Environment variables set for the block (for the processes it starts)."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


@contextmanager
def _starting() -> Iterator[None]:
    """For a block that starts processes: SIGINT and SIGTERM that come during it are delivered at its end,
    to the handlers in place before it, and the processes begin with SIGINT blocked (a child inherits the
    mask), so that a Ctrl-C to the whole group is neither lost here nor taken by them while they import.
    The fork server never unblocks it (it ignores SIGINT once it has imported); a worker does."""
    caught: list[int] = []
    with _handling((signal.SIGINT, signal.SIGTERM), lambda signum, frame: caught.append(signum)):
        if threading.current_thread() is threading.main_thread():
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
            try:
                yield
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        else:
            yield
    for signum in dict.fromkeys(caught):
        signal.raise_signal(signum)


def _one_thread(fn: Callable[[T], R], item: T) -> R:
    threads.use(1)  # on a Dask worker, whose tasks run side by side in its threads and processes
    return fn(item)


def _guarded(call: Callable[[], R], on_error: OnError) -> R:
    """``call()``, or ``on_error(exception)`` when it raises and there is an ``on_error``."""
    try:
        return call()
    except Exception as exc:
        if on_error is None:
            raise
        return on_error(exc)


@contextmanager
def executor(jobs: int = 1, scheduler: str | None = None) -> Iterator[MapUnordered]:
    """The Dask cluster at ``scheduler``, else ``jobs`` local worker processes (1: this process)."""
    if scheduler is not None:
        with _connect(scheduler) as client:
            yield partial(_dask_map, client)
    elif jobs <= 1:
        yield _serial_map
    else:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker)
        try:
            yield partial(_pool_map, pool, context)
        except BaseException:
            _signal_workers(pool, signal.SIGTERM)  # an interrupt or error outside the wait: no worker lingers
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # drop what has not started


def _serial_map(fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None) -> Iterator[tuple[int, R]]:
    for i, item in enumerate(items):
        yield i, _guarded(partial(fn, item), on_error)


def _pool_map(
    pool: ProcessPoolExecutor, context: Any, fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None
) -> Iterator[tuple[int, R]]:
    with _starting():
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload([fn.__module__])  # workers fork from a server that imported it once
            # The server starts without the current directory on its path (Python's -P): it imports the
            # task's module before it learns this process's path, and a folder named optrun there (a clone
            # of the repository) would stand in for the package.
            with _environment(PYTHONSAFEPATH="1"):
                multiprocessing.forkserver.ensure_running()
        # The pool starts its workers as tasks come (from the fork server once it has imported the task's
        # module: about a second). An interrupt in there would leave a worker starting that the pool does
        # not know of yet: it is taken after the block.
        futures = {pool.submit(_as_task, fn, item): i for i, item in enumerate(items)}
    pending = set(futures)
    try:
        for future in as_completed(futures):
            pending.discard(future)
            yield futures[future], _guarded(future.result, on_error)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while waiting: let the running tasks hand back what they have
        yield from _wind_down(pool, futures, pending)
        raise


INTERRUPT_GRACE_SECONDS = 10.0  # how long running tasks get to return their partial results


def _wind_down(pool: ProcessPoolExecutor, futures: dict[Any, int], pending: set[Any]) -> Iterator[tuple[int, Any]]:
    """After an interrupt: cancel what has not started, send SIGINT to the workers so that running tasks stop
    and return what they have (``fn`` must catch KeyboardInterrupt for that), yield those results, then end
    every worker. A task that raised or never ran yields nothing."""
    for future in pending:
        future.cancel()
    _signal_workers(pool, signal.SIGINT)
    running = [f for f in pending if not f.cancelled()]
    try:
        for future in as_completed(running, timeout=INTERRUPT_GRACE_SECONDS):
            if future.exception() is None:
                yield futures[future], future.result()
    except TimeoutError:
        pass
    finally:
        _signal_workers(pool, signal.SIGTERM)


def _signal_workers(pool: ProcessPoolExecutor, signum: int) -> None:
    for worker in list(getattr(pool, "_processes", {}).values()):  # no public API lists them before Python 3.14
        if worker.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)


def _connect(scheduler: str) -> Any:
    try:
        from distributed import Client
        from distributed.comm import parse_address, parse_host_port
        from distributed.comm.registry import backends
    except ImportError:
        raise ExecutorError("--dask-scheduler needs dask.distributed: pip install 'optrun[dask]'") from None
    try:  # checked first: a Client given a malformed address fails slowly and untidily
        protocol, location = parse_address(scheduler)
        if protocol not in backends:
            raise ValueError(f"unknown protocol {protocol}")
        parse_host_port(location)
    except ValueError:
        raise ExecutorError(f"{scheduler}: not a Dask scheduler address; expected tcp://HOST:PORT") from None
    try:
        return Client(scheduler, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ExecutorError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from None


def _dask_map(
    client: Any, fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None
) -> Iterator[tuple[int, R]]:
    from distributed import as_completed as dask_completed

    futures = client.map(partial(_one_thread, fn), list(items), pure=False)
    index = {future.key: i for i, future in enumerate(futures)}
    for future in dask_completed(futures, loop=client.loop):
        yield index[future.key], _guarded(future.result, on_error)
