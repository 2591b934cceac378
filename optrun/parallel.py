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
task's module starts each worker in milliseconds. They never import this
process's main module, as multiprocessing otherwise has them do: a user's script
that starts a comparison at its top level, with no ``if __name__ == "__main__"``
guard, would run again in every worker. Tasks must live in an importable module.

A worker that dies (killed, out of memory, a crash in compiled code) takes the
pool's unfinished tasks with it: ``WorkersLost``, after the tasks that finished.

A Ctrl-C on the terminal, or a job scheduler's SIGTERM, goes to every process of
the group. The fork server, the resource tracker and the workers start with both
signals blocked; the first two never take them. A worker's first signal interrupts
its running task (which hands back what it has) and makes it refuse every task it
is given after, so that no run starts once the signal came; a signal while they
start or wait prints no traceback. Where this process ignores SIGINT (a command
started with ``&`` in a script), its workers ignore it too. This process holds
both signals while its pool runs (``HeldSignals``) and acts on them in the wait
for results, whatever the caller was doing when they came: it passes the signal on
to the workers, hands back the results of the runs in flight, and raises the
signal's exception to the caller (KeyboardInterrupt, or ``Terminated``).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from functools import partial
from typing import Any, Protocol, TypeVar

from optrun import threads

T = TypeVar("T")
R = TypeVar("R")
OnError = Callable[[BaseException], Any] | None


class ExecutorError(RuntimeError):
    """An executor cannot be used: a missing optional dependency, an unreachable scheduler."""


class WorkersLost(ExecutorError):
    """A local worker process died: the pool's unfinished tasks are lost (those that finished were yielded)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal), raised where a SIGINT would raise KeyboardInterrupt (the command
    line's handler in the main process, a worker's in a running task), so that a run stops as it does on Ctrl-C
    and says which signal it was."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class MapUnordered(Protocol):
    def __call__(self, fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None) -> Iterator[tuple[int, R]]:
        """Yield ``(i, fn(items[i]))`` for every item, in the order they finish. ``items`` may be a list the
        caller appends to while it reads the results (tasks that depend on earlier ones): what it appends
        before it reads the last result runs too.

        ``fn`` must be a module-level function the workers can import. When a
        task raises, ``on_error(exception)`` stands in for its result (without
        ``on_error``, the exception propagates). When a local worker dies, the
        unfinished tasks raise ``WorkersLost``.
        """
        ...


_task_running = False  # in a local worker: whether a task is running, which a signal then interrupts
_stopping = False  # in a local worker: whether a stop signal came, after which it starts no task


class NoResult:
    """What a local worker hands back for a task stopped by a signal before it had anything to hand back:
    given to the worker after the signal, or interrupted before it began."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _init_worker(ignore_sigint: bool) -> None:
    """A local worker's setup: one thread, and SIGINT and SIGTERM for the running task only (the worker
    started with both blocked: see ``_starting``). Where this process ignores SIGINT (started in the
    background of a script, a shell ignores Ctrl-C for it), its workers ignore it too."""
    threads.use(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN if ignore_sigint else _interrupt_task)
    signal.signal(signal.SIGTERM, _interrupt_task)
    signal.signal(signal.SIGHUP, _interrupt_task)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if (parent := multiprocessing.parent_process()) is not None:
        threading.Thread(target=_end_with, args=(parent,), name="optrun-parent-watch", daemon=True).start()


def _end_with(parent: Any) -> None:
    """End this worker when the process that started the pool has died (killed, out of memory): nothing else
    would, as the worker waits for tasks on a queue it holds both ends of, and with it the fork server and the
    resource tracker would stay."""
    parent.join()
    os._exit(1)


def _interrupt_task(signum: int, frame: Any) -> None:
    """The first SIGINT or SIGTERM interrupts the running task, if any; every one stops the worker starting
    new tasks. A signal to the whole group and this process's own SIGINT both come: a second exception would
    break the task while it hands back what it has. An idle worker stays, to be ended by the pool's shutdown:
    a worker that dies breaks the pool, which then kills the others before they hand back their rows."""
    global _stopping
    first, _stopping = not _stopping, True
    if first and _task_running:
        raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


def _as_task(fn: Callable[[T], R], item: T) -> R | NoResult:
    """``fn(item)`` in a local worker, open to SIGINT and SIGTERM while it runs (``fn`` catches
    KeyboardInterrupt to hand back what it has); ``NoResult`` once a signal came."""
    global _task_running
    try:
        _task_running = True
        return NoResult() if _stopping else fn(item)
    except KeyboardInterrupt:  # the signal came before fn could catch it
        return NoResult()
    finally:
        _task_running = False


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
def _without_main() -> Iterator[None]:
    """Processes started in the block do not import this process's main module: multiprocessing has a new
    process import it (to find the task's function, where it lives there), and a script with no ``__main__``
    guard would run again in each. An empty stand-in has no file or module name for them to import."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


@contextmanager
def _starting() -> Iterator[None]:
    """For a block that starts processes: they begin with SIGINT and SIGTERM blocked (a child inherits the
    mask), so that a signal to the whole group is not taken by them while they import, and without this
    process's main module (``_without_main``). The fork server and the resource tracker never unblock them,
    so a signal to the group leaves them alive (a worker whose fork server dies looks dead to the pool, which
    then gives up its running tasks); a worker unblocks them once its handlers are in place."""
    with _without_main():
        if threading.current_thread() is threading.main_thread():
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                yield
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        else:
            yield


class HeldSignals:
    """SIGINT, SIGTERM and SIGHUP held back from the moment it is made, in the main thread, until ``deliver``:
    while a pool of workers runs, which acts on them where it can wind its workers down and hand back their
    partial results, whatever the caller was doing when they came (writing a run, printing); while a run
    directory is made, which is then whole (``optrun.runs.run``)."""

    def __init__(self) -> None:
        self.caught: list[int] = []
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():  # a signal this process ignores stays ignored
            held = [s for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN]
            self._previous = {s: signal.signal(s, self._catch) for s in held}

    def _catch(self, signum: int, frame: Any) -> None:
        self.caught.append(signum)

    def deliver(self) -> None:
        """Put the handlers back, then raise what was caught (their exception, KeyboardInterrupt for SIGINT,
        comes out of this call)."""
        caught, self.caught = dict.fromkeys(self.caught), []
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
        for signum in caught:
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
def executor(jobs: int = 1, scheduler: str | None = None, tasks_from: str | None = None) -> Iterator[MapUnordered]:
    """The Dask cluster at ``scheduler``, else ``jobs`` local worker processes (1: this process). ``tasks_from``:
    the module of the tasks to come, which the local workers' fork server starts importing at once, while the
    caller prepares them (else at the first ``map_unordered``)."""
    if scheduler is not None:
        with _connect(scheduler) as client:
            yield partial(_dask_map, client)
    elif jobs <= 1:
        yield _serial_map
    else:
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        ignore_sigint = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        held = HeldSignals()
        try:
            with _starting():  # the pool's queues start the resource tracker
                pool = ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(ignore_sigint,))
            if tasks_from is not None:
                _start_server(context, tasks_from)
            try:
                yield partial(_pool_map, pool, context, held)
            except BaseException:
                _signal_workers(pool, signal.SIGKILL)  # an error outside the wait: no worker lingers
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # drop what has not started
        finally:
            held.deliver()  # a signal the pool did not act on (the caller left it early)


def _start_server(context: Any, module: str) -> None:
    """Start the fork server, if it is the start method and not running yet, importing ``module`` (the tasks'):
    workers fork from a server that imported it once."""
    if context.get_start_method() != "forkserver":
        return
    with _starting():  # first, alone: starting it unblocks the signals, which the fork server must start without
        multiprocessing.resource_tracker.ensure_running()
    with _starting():
        context.set_forkserver_preload([module])
        # The server starts without the current directory on its path (Python's -P): it imports the task's
        # module before it learns this process's path, and a folder named optrun there (a clone of the
        # repository) would stand in for the package.
        with _environment(PYTHONSAFEPATH="1"):
            multiprocessing.forkserver.ensure_running()


def start_early(module: str) -> None:
    """Start the local workers' fork server now, importing ``module`` (the tasks'): a command that will run its
    tasks in worker processes calls it as it starts, so that the server imports while the command does."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        _start_server(multiprocessing.get_context("forkserver"), module)


def in_process(map_unordered: MapUnordered) -> bool:
    """Whether ``map_unordered`` runs its tasks in this process (``executor`` with one job), where a signal
    stops the caller as it stops the task."""
    return map_unordered is _serial_map


def _serial_map(fn: Callable[[T], R], items: Sequence[T], on_error: OnError = None) -> Iterator[tuple[int, R]]:
    i = 0
    while i < len(items):  # items appended meanwhile run too
        yield i, _guarded(partial(fn, items[i]), on_error)
        i += 1


def _pool_map(
    pool: ProcessPoolExecutor,
    context: Any,
    held: HeldSignals,
    fn: Callable[[T], R],
    items: Sequence[T],
    on_error: OnError = None,
) -> Iterator[tuple[int, R]]:
    _start_server(context, fn.__module__)
    futures: dict[Any, int] = {}
    pending: set[Any] = set()

    def submit_new() -> None:  # the items not submitted yet: at first all, then those appended meanwhile
        with _starting():  # the pool starts its workers as tasks come, each forked from the fork server
            for i in range(len(futures), len(items)):
                future = pool.submit(_as_task, fn, items[i])
                futures[future] = i
                pending.add(future)

    submit_new()
    while pending and not held.caught:
        done, _ = wait(pending, timeout=SIGNAL_POLL_SECONDS, return_when=FIRST_COMPLETED)
        for future in done:
            pending.discard(future)
            if isinstance(future.exception(), BrokenProcessPool):
                raise WorkersLost(
                    "a worker process ended abruptly (killed, out of memory, or a crash in compiled code), "
                    f"with {len(pending) + 1} of {len(futures)} tasks unfinished"
                )
            if isinstance(result := _guarded(future.result, on_error), NoResult):
                held.caught.append(signal.SIGINT)  # a worker was sent SIGINT, not this process: stop as if it were
            else:
                yield futures[future], result
                if not held.caught:
                    submit_new()
    if held.caught:  # Ctrl-C or SIGTERM: let the running tasks hand back what they have, then raise
        yield from _wind_down(pool, futures, pending, held.caught[0])
        held.deliver()
        raise KeyboardInterrupt  # the handler in place did not raise: the pool has stopped all the same


SIGNAL_POLL_SECONDS = 0.1
"""How often the wait for tasks looks for a held signal: the delay of a Ctrl-C's effect."""
INTERRUPT_GRACE_SECONDS = 10.0  # how long running tasks get to return their partial results


def _wind_down(
    pool: ProcessPoolExecutor, futures: dict[Any, int], pending: set[Any], signum: int
) -> Iterator[tuple[int, Any]]:
    """After signal ``signum``: cancel what has not started, pass the signal on to the workers so that running
    tasks stop and return what they have (``fn`` must catch KeyboardInterrupt for that), and yield those
    results; kill the workers whose task has not returned within ``INTERRUPT_GRACE_SECONDS``. A task that
    raised or never ran yields nothing; the pool's shutdown ends the idle workers."""
    for future in pending:
        future.cancel()
    _signal_workers(pool, signum)
    running = [f for f in pending if not f.cancelled()]
    try:
        for future in as_completed(running, timeout=INTERRUPT_GRACE_SECONDS):
            if future.exception() is None and not isinstance(future.result(), NoResult):
                yield futures[future], future.result()
    except TimeoutError:
        _signal_workers(pool, signal.SIGKILL)


def _signal_workers(pool: ProcessPoolExecutor, signum: int) -> None:
    """Send ``signum`` to every worker of the pool that has not exited."""
    for worker in list(getattr(pool, "_processes", {}).values()):  # no public API lists them before Python 3.14
        with contextlib.suppress(ProcessLookupError, TypeError):  # exited; a pid of None: never started
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

    task = partial(_one_thread, fn)
    futures = client.map(task, list(items), pure=False)
    index = {future.key: i for i, future in enumerate(futures)}
    running = dask_completed(futures, loop=client.loop)
    for future in running:
        yield index[future.key], _guarded(future.result, on_error)
        for i in range(len(index), len(items)):  # appended meanwhile
            new = client.submit(task, items[i], pure=False)
            index[new.key] = i
            running.add(new)
