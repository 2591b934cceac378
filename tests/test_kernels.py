"""The compiled kernels give the same numbers, to the last bit, as the numpy reference rules."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from test_optim import SPECS, make_params, split

from optrun import threads
from optrun.optim import build_optimizer, kernels
from optrun.optim import split as split_module
from optrun.optim.atomics import SCHED_YIELD
from optrun.optim.base import FUSED_MIN_SIZE
from optrun.optim.momentum import SGD
from optrun.optim.registry import source_of

STEPS = 60


def run(spec: dict, fused: bool, dtype: str, layout: str, gradients: list[np.ndarray]) -> tuple[list, dict]:
    params = [p.astype(dtype) for p in make_params("separate", np.random.default_rng(4))]
    if layout == "flat":  # views into one buffer, as a network's parameters are
        flat = np.concatenate([p.ravel() for p in params])
        params = split(flat)
    opt = build_optimizer(spec, params)
    opt.fused = fused
    opt.warm_up()  # loads the kernel on empty views: changes nothing the steps then compute
    for t, g in enumerate(gradients):
        opt.step(split(g.astype(dtype)), loss=float(np.sin(t)))  # a loss that rises and falls, for restart
    return params, opt.state_dict()


@pytest.fixture(params=["one thread", "split"])
def threading_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels on the calling thread, or every other update split across 3 threads, in chunks that
    straddle the parameters' boundaries (the thread choice's trials never end)."""
    if request.param == "split":
        monkeypatch.setattr(split_module, "CHUNK", 5)
        monkeypatch.setattr(threads, "_count", 3)
        monkeypatch.setattr(kernels, "SPLIT_MIN_SIZE", 0)
        monkeypatch.setattr(kernels.ThreadChoice, "TRIALS", STEPS)
    else:
        monkeypatch.setattr(threads, "_count", 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: "-".join(f"{k}={v}" if k != "name" else v for k, v in s.items()))
@pytest.mark.usefixtures("threading_mode")
def test_the_compiled_rule_is_bit_identical_to_numpys(spec: dict, dtype: str) -> None:
    rng = np.random.default_rng(5)
    n = sum(p.size for p in make_params("separate", rng))
    gradients = [rng.standard_normal(n) * 10.0 ** rng.integers(-6, 3) for _ in range(STEPS)]
    gradients[7][:4] = 0.0  # zero gradients: AdaGrad's and Adam's denominators rest on eps alone
    for layout in ("flat", "separate"):
        want_params, want_state = run(spec, False, dtype, layout, gradients)
        got_params, got_state = run(spec, True, dtype, layout, gradients)
        for got, want in zip(got_params, want_params, strict=True):
            assert got.dtype == want.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, want, strict=True)
        for name, arrays in want_state["state"].items():
            for got, want in zip(got_state["state"][name], arrays, strict=True):
                np.testing.assert_array_equal(got, want, strict=True)
        assert {k: v for k, v in got_state.items() if k != "state"} == {
            k: v for k, v in want_state.items() if k != "state"
        }


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
def test_the_compiled_rule_keeps_numpys_inf_and_nan(name: str) -> None:
    """Overflow and 0/0 follow numpy's semantics in the kernel (inf and nan, no exception)."""
    g = np.array([np.inf, -np.inf, np.nan, 0.0, 3e38, -1.0], dtype=np.float32)
    results = []
    for fused in (False, True):
        p = [np.zeros(6, dtype=np.float32)]
        opt = build_optimizer({"name": name, "eps": 1e-30}, p)
        opt.fused = fused
        with np.errstate(all="ignore"):
            opt.step([g.copy()])
            opt.step([g[::-1].copy()])
        results.append(p[0])
    np.testing.assert_array_equal(results[1], results[0], strict=True)
    assert not np.isfinite(results[1][:3]).any()


def test_non_contiguous_parameters_take_the_reference_path() -> None:
    """A strided view cannot be flattened without a copy: its update must still land in place."""
    base = np.arange(20, dtype=np.float64).reshape(4, 5)
    view = base[:, ::2]
    opt = build_optimizer({"name": "sgd", "learning_rate": 0.5}, [view])
    opt.step([np.ones_like(view)])
    np.testing.assert_array_equal(base[:, ::2], np.arange(20).reshape(4, 5)[:, ::2] - 0.5)
    np.testing.assert_array_equal(base[:, 1::2], np.arange(20).reshape(4, 5)[:, 1::2])


def test_kernels_are_used_from_fused_min_size_parameters() -> None:
    """Small problems keep the numpy path (no compiler start-up); large contiguous ones use the kernels."""
    assert not build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE - 1)]).fused
    assert build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE)]).fused
    assert build_optimizer({"name": "adam"}, [np.zeros(FUSED_MIN_SIZE // 2), np.zeros(FUSED_MIN_SIZE // 2)]).fused


def test_warm_up_loads_the_compiler_only_where_steps_use_kernels_and_changes_nothing() -> None:
    """A small problem never starts numba (quickstart stays fast); a large one starts it in warm_up,
    before any step, leaving the parameters, the state and the step count as they were."""
    code = """
import sys
import numpy as np
from optrun.optim import build_optimizer
from optrun.optim.base import FUSED_MIN_SIZE
small = build_optimizer({"name": "adam"}, [np.ones(FUSED_MIN_SIZE - 1, np.float32)])
small.warm_up()
print("numba" in sys.modules)
p = np.ones(FUSED_MIN_SIZE, np.float32)
large = build_optimizer({"name": "adam", "amsgrad": True}, [p])
large.warm_up()
state = large.state_dict()
print("numba" in sys.modules, large.t, state["step"], bool((p == 1).all()),
      all(not a.any() for arrays in state["state"].values() for a in arrays))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "0", "0", "True", "True"]


def sgd_kernel(dtype: type) -> kernels.Kernel:
    """SGD's kernel, θ ← θ − lr·g: its one scalar is lr."""
    return kernels.compile_rule(SGD, "optrun.optim.momentum", source_of(SGD), np.dtype(dtype), {"lr": 0.0}, ())


def test_split_update_takes_every_chunk_once_on_several_threads() -> None:
    """Three threads run the chunk loop at once: each chunk is updated exactly once (twice would double
    it), every thread took one chunk number past the last, and the caller waited for every chunk."""
    p, g, sc = np.zeros(95), np.arange(95.0), np.array([-2.0])
    counters = np.zeros(2, np.int64)
    call = (sgd_kernel(np.float64).address, p, g, kernels.addresses([]), sc, counters, 7)
    split_module.update_chunks(*call, True, SCHED_YIELD)  # compiled before the threads start
    p[:], counters[:] = 0.0, 0
    helpers = [threading.Thread(target=split_module.update_chunks, args=(*call, False, SCHED_YIELD)) for _ in "ab"]
    for helper in helpers:
        helper.start()
    split_module.update_chunks(*call, True, SCHED_YIELD)
    assert counters[1] == 14  # every chunk done when the caller returns: ceil(95 / 7)
    np.testing.assert_array_equal(p, 2 * g)
    for helper in helpers:
        helper.join()
    assert counters[0] == 14 + 3


def test_split_update_is_exact_where_helpers_never_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller takes every chunk itself when the helpers are busy elsewhere, and returns."""
    monkeypatch.setattr(split_module, "CHUNK", 4)
    p, g = np.zeros(50, np.float32), np.arange(50, dtype=np.float32)
    gate = threading.Event()
    busy = [threads.helpers().submit(gate.wait) for _ in range(threads.MAX_THREADS - 1)]
    try:
        sgd_kernel(np.float32)(p, g, [], np.array([-0.5], np.float32), n_threads=3)
        np.testing.assert_array_equal(p, g * np.float32(0.5))
    finally:
        gate.set()
        for future in busy:
            future.result()


def test_thread_choice_keeps_the_faster_after_its_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_count", 2)
    assert kernels.ThreadChoice(kernels.SPLIT_MIN_SIZE - 1).next() == 1  # too small to try
    for split_seconds, want in ((0.5, 2), (2.0, 1)):
        choice = kernels.ThreadChoice(kernels.SPLIT_MIN_SIZE)
        choice.record(choice.next(), 100.0)  # the first step (compiling) is not counted
        assert choice.seconds == {1: [], 2: []}
        tried = []
        for _ in range(2 * kernels.ThreadChoice.TRIALS):
            n = choice.next()
            tried.append(n)
            choice.record(n, split_seconds if n == 2 else 1.0)
        assert tried.count(1) == tried.count(2) == kernels.ThreadChoice.TRIALS  # alternating trials
        assert choice.chosen == want
        assert {choice.next() for _ in range(5)} == {want}


def test_thread_choice_is_made_again_after_recheck_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A choice made in a busy moment does not last: RECHECK steps later the trials run again."""
    monkeypatch.setattr(threads, "_count", 2)
    choice = kernels.ThreadChoice(kernels.SPLIT_MIN_SIZE)
    choice.record(choice.next(), 100.0)  # compiling: not counted

    def trials(split_seconds: float) -> None:
        for _ in range(2 * kernels.ThreadChoice.TRIALS):
            n = choice.next()
            choice.record(n, split_seconds if n == 2 else 1.0)

    trials(split_seconds=3.0)  # the helper's core was busy: one thread wins
    assert choice.chosen == 1
    for _ in range(kernels.ThreadChoice.RECHECK - 1):
        choice.record(choice.next(), 1.0)
    assert choice.chosen == 1  # not yet
    choice.record(choice.next(), 1.0)
    assert choice.chosen is None and choice.seconds == {1: [], 2: []}  # trials again, all counted
    trials(split_seconds=0.5)  # the core is free now: the split wins
    assert choice.chosen == 2
