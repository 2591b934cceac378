"""A Ctrl-C while the ``optrun`` command is still importing its libraries (the first half second) ends it with
one line and exit 130, as a Ctrl-C later does, instead of a traceback from the middle of an import; numpy's
OpenBLAS starts with one thread in the command, before numpy is imported; and a command that will run worker
processes (``compare``, ``tune``, ``suite``, not on one job or a Dask cluster) starts their fork server at once, which
then imports optrun while the command does (half a second sooner to the first run).

Imported first by the package, it acts only in the ``optrun`` command (``optrun ...`` or ``python -m optrun
...``), whose own handling takes over once it runs (``taken_over``); a program that imports optrun as a library
keeps Python's handler, and a command that ignores Ctrl-C (started with ``&`` in a script) keeps ignoring it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def _is_the_command() -> bool:
    command = getattr(sys, "orig_argv", sys.argv)  # sys.argv[0] is "-m" while python -m imports the package
    return Path(sys.argv[0]).name == "optrun" or command[1:3] == ["-m", "optrun"]


def _stop(signum: int, frame: Any) -> None:
    os.write(2, b"interrupted by SIGINT\n")
    os._exit(128 + signum)


def taken_over() -> None:
    """The command runs: Python's handler again, which its own handling builds on."""
    if signal.getsignal(signal.SIGINT) is _stop:
        signal.signal(signal.SIGINT, signal.default_int_handler)


PINNED_BLAS = "OPTRUN_PINNED_BLAS"
"""Set where the command, not its user, set ``OPENBLAS_NUM_THREADS`` (``optrun.threads`` then does not read it
as the user's cap on threads)."""

if _is_the_command() and "OPENBLAS_NUM_THREADS" not in os.environ:
    # numpy's OpenBLAS with one thread from the start: every product of a run computes on one BLAS thread anyway
    # (optrun.threads), and once OpenBLAS's own pool of threads has run, its later single-threaded products
    # were measured to differ in their last bits from one process to the next (the compiled epoch without
    # oneDNN). Set here, before numpy loads it; workers inherit it.
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ[PINNED_BLAS] = "1"

if (
    _is_the_command()
    and threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
):
    signal.signal(signal.SIGINT, _stop)


# The module of each command's tasks: a suite's problems run compare's and tune's, and optrun.tune imports
# optrun.compare.
TASKS = {"compare": "optrun.compare", "tune": "optrun.tune", "suite": "optrun.tune"}


def _workers_to_come(argv: list[str]) -> str | None:
    """The module of the tasks a command line will run in local worker processes, or None: another command, one
    job, a Dask cluster, or help. A guess from the words alone: a wrong one costs a fork server, no more."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or words[0] not in TASKS or {"-h", "--help", "--dask-scheduler"} & set(argv):
        return None
    for i, arg in enumerate(argv):
        if arg in ("-j1", "--jobs=1") or (arg in ("-j", "--jobs") and argv[i + 1 : i + 2] == ["1"]):
            return None
    from optrun.threads import available_cores

    return TASKS[words[0]] if available_cores() > 1 else None


if _is_the_command() and (module := _workers_to_come(sys.argv[1:])) is not None:
    from optrun import parallel

    parallel.start_early(module)
