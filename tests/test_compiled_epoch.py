"""The compiled epoch (optrun.compiled_epoch) against numpy's epoch, the reference it replaces.

Both compute the same products in the same order and apply the optimizer's own kernel; only exp and
log in the softmax may differ in the last bit, and in float32 the products where oneDNN computes them
(its kernels round differently from OpenBLAS's). So in float64 the two epochs agree to about 1e-15 after
several steps, and in float32 to a few units in the last place after one.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

from optrun import threads
from optrun.config import parse_config
from optrun.problems.network import Experiment, _run_epoch, compiled_epoch
from optrun.train import prepare

pytest.importorskip("numba")
ce = pytest.importorskip("optrun.compiled_epoch")


@pytest.fixture(params=["onednn", "openblas"])
def float32_gemm(request, monkeypatch) -> str:
    """Each float32 test runs with oneDNN's products (skipped where oneDNN is not installed) and with
    numpy's OpenBLAS's, the fallback."""
    if request.param == "openblas":
        monkeypatch.setattr(ce, "find_dnnl_sgemm", lambda: 0)
    elif not ce.find_dnnl_sgemm():
        pytest.skip(f"{ce.ONEDNN} is not installed")
    return request.param


def spec(optimizer: dict, dtype: str = "float64", **model: object) -> dict:
    """Above FUSED_MIN_SIZE (about 110,000 parameters), with a last batch shorter than the others."""
    return {
        "dataset": {"name": "blobs", "n_samples": 250, "n_features": 300, "n_classes": 5, "noise": 3.0},
        "model": {"type": "mlp", "hidden": [256, 128], "dtype": dtype, **model},
        "train": {"batch_size": 64},  # 200 training rows: batches of 64, 64, 64, 8
        "optimizer": optimizer,
    }


def pair(config: dict) -> tuple[Experiment, Experiment]:
    """Two experiments from one config: the first runs numpy's epoch, the second the compiled one."""
    numpy_exp, compiled_exp = prepare(parse_config(config)), prepare(parse_config(config))
    numpy_exp.compiled = False
    assert compiled_epoch(compiled_exp), "this config should run the compiled epoch"
    return numpy_exp, compiled_exp


OPTIMIZERS = [
    {"name": "sgd", "learning_rate": 0.05},
    {"name": "momentum", "mu_schedule": {"name": "linear", "start": 0.5, "end": 0.9, "steps": 5}},
    {"name": "nesterov", "learning_rate": 0.01},
    {"name": "adagrad"},
    {"name": "rmsprop", "centered": True, "momentum": 0.5},
    {"name": "adam", "schedule": {"name": "cosine", "steps": 8, "warmup": 2}},
    {"name": "adam", "amsgrad": True},
    {"name": "adamw"},
    {"name": "nadam"},
]


CASES = [(optimizer, "relu") for optimizer in OPTIMIZERS] + [
    ({"name": "adam"}, activation) for activation in ("tanh", "sigmoid", "leaky_relu")
]


@pytest.mark.parametrize(
    "optimizer, activation", CASES, ids=lambda o: o if isinstance(o, str) else "-".join(map(str, o.values()))[:40]
)
def test_two_compiled_epochs_match_numpys_in_float64(optimizer: dict, activation: str) -> None:
    """Every optimizer's kernel and every activation, compiled from the same code numpy's epoch runs."""
    ref, fast = pair(spec(optimizer, weight_decay=0.01, activation=activation))
    for epoch in (1, 2):
        assert _run_epoch(ref, epoch) is None
        assert _run_epoch(fast, epoch) is None
    assert fast.optimizer.t == ref.optimizer.t == 8
    assert fast.optimizer.learning_rate == ref.optimizer.learning_rate
    start = prepare(parse_config(spec(optimizer, activation=activation))).model.flat_params
    moved = np.abs(ref.model.flat_params - start).max()
    assert moved > 1e-3  # the steps did something
    np.testing.assert_allclose(fast.model.flat_params, ref.model.flat_params, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(fast.model.flat_grads, ref.model.flat_grads, rtol=1e-9, atol=1e-13)
    for name in ref.optimizer.state_names:
        for a, b in zip(fast.optimizer._per_param(name), ref.optimizer._per_param(name), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-15)


def test_a_float32_step_matches_numpys_to_a_few_ulps(float32_gemm: str) -> None:
    ref, fast = pair(spec({"name": "sgd", "learning_rate": 0.1}, dtype="float32"))
    assert fast.compiled.dnnl == (float32_gemm == "onednn")
    order = np.arange(64)  # one full batch
    fast.compiled.run(fast.data.x_train, fast.data.y_train, order)
    x, y = ref.data.x_train[order], ref.data.y_train[order]
    ref.optimizer.step(ref.model.grads, ref.model.loss_and_grad(x, y))
    scale = np.abs(ref.model.flat_grads).max()
    np.testing.assert_allclose(fast.model.flat_grads, ref.model.flat_grads, rtol=0, atol=scale * 1e-6)
    np.testing.assert_allclose(fast.model.flat_params, ref.model.flat_params, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_any_number_of_threads_gives_the_same_bits(monkeypatch, float32_gemm: str, dtype: str) -> None:
    """The rows go in fixed chunks and the weight gradients in fixed blocks, whichever thread takes them:
    every product has the same operands on 1, 2 or 3 threads, so the epochs agree to the last bit (BLAS
    may round a product split at other rows differently). Batches of 150 rows: chunks of 64, 64 and 22,
    then a last batch of 50."""
    if dtype == "float64" and float32_gemm == "onednn":
        pytest.skip("float64 products are always numpy's BLAS's")
    runs = []
    for n in (1, 2, 3):
        monkeypatch.setattr(threads, "_count", n)
        _, fast = pair({**spec({"name": "adam"}, dtype), "train": {"batch_size": 150}})
        assert fast.compiled.threads == n
        for epoch in (1, 2):
            _run_epoch(fast, epoch)
        runs.append(fast.model.flat_params.copy())
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


def test_a_float32_epoch_on_onednn_starts_no_openmp_thread_and_leaves_openmps_setting(float32_gemm: str) -> None:
    """dnnl_sgemm would run on as many threads as OpenMP allows, starting OpenMP's own: each of the epoch's
    threads allows itself one for the epoch, then has its setting back."""
    if float32_gemm != "onednn":
        pytest.skip("OpenMP is oneDNN's")
    _, fast = pair(spec({"name": "adam"}, dtype="float32"))
    openmp = ThreadpoolController().select(user_api="openmp")
    assert openmp.info(), "oneDNN's libgomp is loaded"
    before = [lib["num_threads"] for lib in openmp.info()]

    def threads_outside_python() -> int:  # OpenBLAS's, and OpenMP's if it started any
        return len(os.listdir("/proc/self/task")) - len(threading.enumerate())

    started = threads_outside_python()
    with openmp.limit(limits=3):
        assert _run_epoch(fast, 1) is None
        assert threads_outside_python() == started
        assert [lib["num_threads"] for lib in openmp.info()] == [3] * len(before)
    assert [lib["num_threads"] for lib in openmp.info()] == before


def test_without_onednn_the_products_are_numpys_blass(monkeypatch) -> None:
    def not_installed(name: str) -> None:
        raise ce.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(ce.importlib.metadata, "files", not_installed)
    assert ce.find_dnnl_sgemm() == 0
    blas = ce.find_blas()
    assert blas is not None and blas.dnnl_sgemm == 0
    _, fast = pair(spec({"name": "adam"}, dtype="float32"))
    assert not fast.compiled.dnnl and fast.compiled.gemm == blas.sgemm


def test_a_non_finite_loss_stops_the_epoch_at_the_same_step_with_the_same_parameters() -> None:
    ref, fast = pair(spec({"name": "sgd", "learning_rate": 1e120}))
    with np.errstate(all="ignore"):  # fit() ignores them too: the divergence is reported instead
        reasons = [_run_epoch(exp, 1) for exp in (ref, fast)]
    assert reasons[0] is not None and reasons[0].startswith("non-finite minibatch loss at epoch 1, step ")
    assert reasons[1] == reasons[0]
    assert fast.optimizer.t == ref.optimizer.t < 4
    np.testing.assert_array_equal(np.isfinite(fast.model.flat_params), np.isfinite(ref.model.flat_params))


@pytest.mark.parametrize(
    "config",
    [
        spec({"name": "adam", "clip_norm": 1.0}),  # clipping needs the norm of the whole gradient
        spec({"name": "momentum", "restart": {"every": 3}}),  # restarts change the state between steps
        {**spec({"name": "adam"}), "model": {"type": "mlp", "hidden": [8]}},  # too small for the kernels
    ],
    ids=["clip_norm", "restart", "small"],
)
def test_what_the_compiled_epoch_cannot_train_runs_in_numpy(config: dict) -> None:
    exp = prepare(parse_config(config))
    assert compiled_epoch(exp) is False
    assert _run_epoch(exp, 1) is None
