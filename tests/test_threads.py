"""The thread policy (optrun.threads): how many threads, BLAS on one thread during a run, fixed pieces."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from optrun import threads
from optrun.config import parse_config
from optrun.train import prepare, train


def blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


@pytest.mark.parametrize(
    ("cores", "env", "want"),
    [
        (2, {}, 2),
        (16, {}, threads.MAX_THREADS),
        (16, {"OMP_NUM_THREADS": "1"}, 1),
        (2, {"OPENBLAS_NUM_THREADS": "1"}, 1),
        (2, {"OMP_NUM_THREADS": "many"}, 2),  # not a count: ignored
    ],
)
def test_the_thread_count_follows_the_cores_and_the_users_thread_limits(
    cores: int, env: dict[str, str], want: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert threads.default_count() == want


@pytest.mark.parametrize(
    "spec",
    [
        {"dataset": {"name": "digits"}, "train": {"epochs": 2}, "optimizer": {"name": "adam"}},
        {"objective": {"name": "quadratic", "dim": 50}, "train": {"steps": 5}, "optimizer": {"name": "sgd"}},
    ],
    ids=["network", "objective"],
)
def test_a_run_computes_with_blas_on_one_thread_and_gives_the_setting_back(spec: dict) -> None:
    """Whatever the caller set: in every row's callback (after each evaluation) BLAS has one thread."""
    seen: list[set[int]] = []
    with threadpool_limits(limits=3, user_api="blas"):
        before = blas_threads()
        train(parse_config(spec), lambda row: seen.append(blas_threads()))
        assert blas_threads() == before
    assert seen and all(s == {1} for s in seen)


def test_runs_in_several_threads_keep_blas_on_one_thread_until_the_last_ends() -> None:
    """A Dask worker runs tasks in several threads: the first run to end must not give BLAS its threads back
    while another still computes."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with threads.one_blas_thread():
            inside.set()
            leave.wait()

    with threadpool_limits(limits=2, user_api="blas"):
        holder = threading.Thread(target=hold)
        holder.start()
        try:
            inside.wait()
            with threads.one_blas_thread():
                assert blas_threads() == {1}
            assert blas_threads() == {1}  # the other holder is still inside
        finally:
            leave.set()
            holder.join()
        assert blas_threads() == {2}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_run_pieces_runs_every_piece_once_on_any_number_of_threads(monkeypatch, n: int) -> None:
    monkeypatch.setattr(threads, "_count", n)
    done = np.zeros(50, np.int64)
    names: set[str] = set()

    def work(i: int) -> None:
        names.add(threading.current_thread().name)
        done[i] += 1

    threads.run_pieces(work, 50)
    assert (done == 1).all()
    assert len(names) <= n


def test_an_interrupted_run_pieces_stops_its_helpers_taking_pieces(monkeypatch) -> None:
    """Ctrl-C in the calling thread: the helpers finish the piece in hand and take no other."""
    monkeypatch.setattr(threads, "_count", 2)
    started = threading.Event()
    done: list[int] = []

    def work(i: int) -> None:
        if threading.current_thread() is threading.main_thread():
            started.wait(5)
            raise KeyboardInterrupt
        started.set()
        done.append(i)

    with pytest.raises(KeyboardInterrupt):
        threads.run_pieces(work, 10_000)
    assert len(done) < 10_000


def test_evaluation_gives_the_same_bits_on_any_number_of_threads(monkeypatch) -> None:
    """In pieces of EVALUATION_ROWS rows whichever thread takes them, summed in order."""
    exp = prepare(parse_config({"dataset": {"name": "digits"}, "optimizer": {"name": "sgd"}}))
    results = []
    for n in (1, 2, 3):
        monkeypatch.setattr(threads, "_count", n)
        results.append(exp.model.evaluate(exp.data.x_train, exp.data.y_train))
    assert results[1:] == results[:1] * 2


def test_the_command_starts_openblas_with_one_thread() -> None:
    """Once OpenBLAS's own pool of threads had run, the compiled epoch without oneDNN gave last bits that
    differed between processes: the command loads numpy's OpenBLAS with one thread from the start."""
    import subprocess
    import sys

    probe = (
        "import sys; sys.argv[0] = 'optrun'; import optrun, numpy; from threadpoolctl import threadpool_info; "
        "print(sorted({i['num_threads'] for i in threadpool_info() if i['internal_api'] == 'openblas'}), "
        "optrun.threads.count())"
    )
    unset = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPTRUN_PINNED_BLAS")
    env = {k: v for k, v in __import__("os").environ.items() if k not in unset}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["[1]", str(threads.default_count())], out  # optrun's own threads: as many as before
