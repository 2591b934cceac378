"""A compiled training epoch: every batch's forward pass, backward pass and update, in numba code on
several threads at once, for networks of Dense layers with activations between them (``mlp``, ``logistic``)
trained by a fused kernel.

NumPy's epoch (``optrun.problems.network``) calls BLAS, which splits each product across the cores, and in between
runs dozens of small whole-array operations and the optimizer's kernel on one core. Here T threads share
every step instead, taking tasks from a shared counter, and meet at two barriers per step:

1. rows: a task is a chunk of ``ROWS`` rows of the batch: gather them, run the forward pass on them
   (a = f(x·W + b); the logits' softmax cross-entropy), and the backward pass down to each layer's input
   (Δ·Wᵀ ⊙ f'(a)): each row needs only its own row of every operand. Barrier.
2. weights: a task is a block of rows of a weight gradient (aᵀ·Δ, plus λW with weight decay), or a bias
   gradient (Σ_rows Δ), each followed by the optimizer's kernel on exactly the parameters whose gradients
   it computed. Barrier.

Each thread calls single-threaded BLAS on its tasks (oneDNN's sgemm for float32 where it is installed,
numpy's OpenBLAS otherwise: ``Blas``), so both the products and the update use every core, with no
hand-over between Python threads and no Python between the steps; a core that runs slower (a shared VM's
often does) takes fewer tasks. The tasks are the same pieces on any number of threads, and BLAS gives a
piece the same bits whichever thread computes it, so an epoch's numbers do not depend on the thread count.
They are numpy's epoch's up to rounding: the same products, the bias sums added row after row as numpy
adds them, the optimizer's own kernel, each activation's ``value`` and ``slope`` (``optrun.models.layers``)
compiled into a loop over its rows (``compile_activation``), and the loss's ``log_probability``,
``logit_slope`` and ``decayed`` (``optrun.models.loss``) likewise (``compile_loss``). Four things can change
last bits: exp, log and tanh are libm's here and numpy's own there (each within an ulp), a row's Σ exp is
added in order here and pairwise there, oneDNN's kernels round differently from OpenBLAS's, and OpenBLAS may
compute a chunk of rows of a product with another kernel than it uses for the whole.
tests/test_compiled_epoch.py checks float64 epochs against numpy's to 1e-11, a float32 step to a few ulps
with either library, and 1, 2 and 3 threads against each other bit for bit.

numba compiles the epoch at its first call, which ``optrun.problems.network.compiled_epoch`` makes before its
first timed epoch: about 3 s the first time, then about 0.5 s from numba's cache in ``__pycache__``. Importing
numba takes another half second, so ``optrun.problems.network`` imports it only for a network it will train.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic
from threadpoolctl import ThreadpoolController

from optrun import generated, threads
from optrun.models import Network, loss
from optrun.models.layers import Activation
from optrun.optim import Optimizer, kernels
from optrun.optim.atomics import SCHED_YIELD, call_double, call_kernel, fetch_add, store_release, wait_until
from optrun.optim.split import update_range

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enums
FLAG_STRIDE = 16  # int64s between two threads' barrier flags: one 128-byte line each
ROWS = 64
"""Rows of a batch per task of a step's first phase. Each task's products pack all of every weight matrix
for BLAS, so fewer rows cost more: 32 made the MNIST-shaped epoch 10–30% slower than 64 on 2 cores. A
batch of 128 rows is 2 tasks: on more cores, the first phase leaves the others idle (the second uses all)."""
BLOCK = 128
"""Rows of a weight gradient per task of a step's second phase."""


@dataclass(frozen=True)
class Blas:
    """The products' code: the addresses of numpy's cblas_sgemm and cblas_dgemm and whether they take
    64-bit ints, and the address of oneDNN's dnnl_sgemm (0 where it is not installed), which float32
    products use instead of numpy's: on the small shapes of a step's tasks (64 rows of a batch), its
    kernels reach 10–40% more flops per second than OpenBLAS's on this project's machine."""

    sgemm: int
    dgemm: int
    ilp64: bool
    dnnl_sgemm: int = 0


ONEDNN = "onednn-cpu-gomp"
"""The package that ships oneDNN's library (``libdnnl.so.3``), built for GNU OpenMP: optrun's optional extra
``onednn`` on x86-64 Linux (``pip install "optrun[onednn]"``), where its kernels are the faster."""


def cached() -> bool:
    """Whether numba has compiled the epoch on this machine before (its cache index is beside this module):
    the epoch is then loaded in a fraction of a second, not compiled."""
    return any((Path(__file__).parent / "__pycache__").glob("compiled_epoch._worker-*.nbi"))


def find_dnnl_sgemm() -> int:
    """The address of dnnl_sgemm in ``ONEDNN``'s library, or 0 where the package is not installed or its
    library does not load (it needs the system's libgomp): the products then stay numpy's BLAS's."""
    try:
        files = importlib.metadata.files(ONEDNN) or []
    except importlib.metadata.PackageNotFoundError:
        return 0
    for file in files:
        if file.name == "libdnnl.so.3":
            try:
                return ctypes.cast(ctypes.CDLL(str(file.locate())).dnnl_sgemm, ctypes.c_void_p).value or 0
            except (OSError, AttributeError):
                return 0
    return 0


def find_blas() -> Blas | None:
    """numpy's OpenBLAS, where numpy uses one whose integer width is known: the ``scipy_openblas`` of
    numpy's wheels (``scipy_cblas_sgemm64_`` for ILP64), or an OpenBLAS that reports its configuration;
    with oneDNN's sgemm where it loads (``find_dnnl_sgemm``)."""
    for info in ThreadpoolController().info():
        if info.get("internal_api") != "openblas":
            continue
        lib = ctypes.CDLL(info["filepath"])
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            names = [f"{prefix}cblas_{t}gemm{suffix}" for t in "sd"]
            config = getattr(lib, f"{prefix}openblas_get_config{suffix}", None)
            if not all(hasattr(lib, name) for name in names) or config is None:
                continue
            config.restype = ctypes.c_char_p
            ilp64 = b"USE64BITINT" in (config() or b"")
            if ilp64 != (suffix == "64_") and suffix:  # a suffix other than the ILP64 one: unknown
                return None
            sgemm, dgemm = (ctypes.cast(getattr(lib, n), ctypes.c_void_p).value or 0 for n in names)
            return Blas(sgemm, dgemm, ilp64, find_dnnl_sgemm())
    return None


# ---------------------------------------------------------------- BLAS calls


@intrinsic
def _gemm(typingctx, fn, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta):
    """cblas_?gemm(RowMajor, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) through the
    function at address ``fn``; ``a``, ``b``, ``c`` are addresses, the dimensions have BLAS's int width."""
    sig = types.void(fn, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta)

    def codegen(context, builder, signature, args):
        fn_, ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_, alpha_, beta_ = args
        i32, dim, ptr = ir.IntType(32), m_.type, ir.IntType(8).as_pointer()
        real = alpha_.type
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, dim, dim, dim, real, ptr, dim, ptr, dim, real, ptr, dim])
        call = builder.inttoptr(fn_, fnty.as_pointer())

        def enum(v):
            return builder.trunc(v, i32) if v.type.width > 32 else v

        builder.call(call, [
            ir.Constant(i32, ROW_MAJOR), enum(ta), enum(tb), m_, n_, k_, alpha_,
            builder.inttoptr(a_, ptr), lda_, builder.inttoptr(b_, ptr), ldb_, beta_, builder.inttoptr(c_, ptr), ldc_,
        ])  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _dnnl_gemm(typingctx, fn, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta):
    """dnnl_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), row-major like ``_gemm``,
    through the function at address ``fn``: the transposes given as CBLAS's enums go as 'N' or 'T' (C chars,
    passed in a 32-bit register as the ABI passes them), the dimensions as 64-bit ints; its status (an
    error only for invalid dimensions) is ignored, as CBLAS has none."""
    sig = types.void(fn, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, alpha, beta)

    def codegen(context, builder, signature, args):
        fn_, ta, tb, m_, n_, k_, a_, lda_, b_, ldb_, c_, ldc_, alpha_, beta_ = args
        i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        real = alpha_.type
        fnty = ir.FunctionType(i32, [i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64])
        call = builder.inttoptr(fn_, fnty.as_pointer())

        def char(enum):
            transposed = builder.icmp_signed("==", enum, ir.Constant(enum.type, TRANS))
            return builder.select(transposed, ir.Constant(i32, ord("T")), ir.Constant(i32, ord("N")))

        def dim(v):
            return builder.sext(v, i64) if v.type.width < 64 else v

        builder.call(call, [
            char(ta), char(tb), dim(m_), dim(n_), dim(k_), alpha_, builder.inttoptr(a_, ptr), dim(lda_),
            builder.inttoptr(b_, ptr), dim(ldb_), beta_, builder.inttoptr(c_, ptr), dim(ldc_),
        ])  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------- the epoch


@njit(nogil=True, cache=True)
def _barrier(flags, tid, n_threads, generation, yield_fn):
    """Wait until every thread has reached ``generation``: each writes only its own flag."""
    base = flags.ctypes.data
    store_release(base + tid * FLAG_STRIDE * 8, generation)
    for other in range(n_threads):
        wait_until(base + other * FLAG_STRIDE * 8, generation, yield_fn)


@njit(nogil=True, cache=True)
def _product(gemm, dnnl, dims, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, one, zero):
    """C ← op(A)·op(B), m × n with inner size k, for the row-major matrices at addresses a, b, c with leading
    dimensions lda, ldb, ldc, by the function at ``gemm``: dnnl_sgemm where ``dnnl``, else a cblas_?gemm,
    whose integers go through ``dims``, scratch of BLAS's integer type."""
    if dnnl:
        _dnnl_gemm(gemm, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, one, zero)
        return
    dims[0], dims[1], dims[2], dims[3], dims[4], dims[5] = m, n, k, lda, ldb, ldc
    _gemm(gemm, trans_a, trans_b, dims[0], dims[1], dims[2], a, dims[3], b, dims[4], c, dims[5], one, zero)


@njit(nogil=True, cache=True, error_model="numpy")
def _rows(buffer, offset, batch, width):
    """The (batch, width) matrix at ``offset`` of a flat buffer (2-D views let the loops vectorize)."""
    return buffer[offset : offset + batch * width].reshape((batch, width))


@njit(nogil=True, cache=True, error_model="numpy")
def _gather(inputs, x, rows, r0, r1):
    """Rows r0..r1 of inputs ← x[rows[r0..r1]], element by element (a row assigned as a slice copies at
    half the speed)."""
    for i in range(r0, r1):
        row = rows[i]
        for j in range(x.shape[1]):
            inputs[i, j] = x[row, j]


@njit(nogil=True, cache=True, error_model="numpy")
def _bias(h, b, r0, r1):
    """Rows r0..r1 of h ← h + b (the logits; a hidden layer adds its bias in its activation's ``forward``)."""
    for i in range(r0, r1):
        for j in range(h.shape[1]):
            h[i, j] += b[j]


@njit(nogil=True, cache=True, error_model="numpy")
def _column_sums(d, out, n):
    """out ← Σ over the first n rows of d, adding row after row as numpy's reduce over axis 0 does."""
    for j in range(out.size):  # element by element: a slice assignment costs numba 2 s to compile
        out[j] = d[0, j]
    for i in range(1, n):
        for j in range(out.size):
            out[j] += d[i, j]


@njit(nogil=True, cache=True, error_model="numpy")
def _rows_pass(r0, r1, n, x, y, rows, batch, widths, w_off, b_off, a_off, d_off, params, acts, deltas, forward,
               backward, loss_fn, gemm, dnnl, dims):  # fmt: skip
    """Rows r0..r1 of a step's n: gather them, the forward pass (a = f(x·W + b), by the hidden layers'
    ``forward`` activations, at their addresses), the softmax cross-entropy of the logits and its gradient
    (by ``loss_fn``, at its address), and the backward pass down to every layer's input (Δ·Wᵀ ⊙ f'(a), by
    ``backward``); returns the rows' summed loss."""
    n_layers = widths.size - 1
    one, zero = params.dtype.type(1), params.dtype.type(0)
    size = np.int64(params.itemsize)
    a_base, d_base, p_base = np.int64(acts.ctypes.data), np.int64(deltas.ctypes.data), np.int64(params.ctypes.data)
    _gather(_rows(acts, a_off[0], batch, widths[0]), x, rows, r0, r1)
    for layer in range(n_layers):
        fan_in, fan_out, src, out = widths[layer], widths[layer + 1], a_off[layer], a_off[layer + 1]
        _product(gemm, dnnl, dims, NO_TRANS, NO_TRANS, r1 - r0, fan_out, fan_in,
                 a_base + (src + r0 * fan_in) * size, fan_in, p_base + w_off[layer] * size, fan_out,
                 a_base + (out + r0 * fan_out) * size, fan_out, one, zero)  # fmt: skip
        if layer < n_layers - 1:
            call_kernel(forward[layer], a_base + out * size, p_base + b_off[layer] * size, r0, r1, fan_out, 0)
        else:
            _bias(_rows(acts, out, batch, fan_out), params[b_off[layer] : b_off[layer] + fan_out], r0, r1)
    classes = widths[n_layers]
    labels, chosen = np.int64(y.ctypes.data), np.int64(rows.ctypes.data)
    logits, d_logits = a_base + a_off[n_layers] * size, d_base + d_off[n_layers] * size
    total = call_double(loss_fn, (logits, d_logits, labels, chosen, r0, r1, classes, np.int64(n)))
    for layer in range(n_layers - 1, 0, -1):  # Δ_l = Δ_{l+1}·W_lᵀ ⊙ f'(a_l)
        fan_in, fan_out, d_in = widths[layer], widths[layer + 1], d_off[layer]
        _product(gemm, dnnl, dims, NO_TRANS, TRANS, r1 - r0, fan_in, fan_out,
                 d_base + (d_off[layer + 1] + r0 * fan_out) * size, fan_out, p_base + w_off[layer] * size,
                 fan_out, d_base + (d_in + r0 * fan_in) * size, fan_in, one, zero)  # fmt: skip
        call_kernel(backward[layer - 1], d_base + d_in * size, a_base + a_off[layer] * size, r0, r1, fan_in, 0)
    return total


@njit(nogil=True, cache=True, error_model="numpy")
def _worker(
    tid, n_threads, x, y, order, batch, widths, w_off, b_off, a_off, d_off, params, grads, decay, acts, deltas,
    forward, backward, loss_fn, decay_fn, tasks, kernel, states, scalars, gemm, dnnl, dims, losses, flags, yield_fn,
):  # fmt: skip
    """Thread ``tid``'s share of every step of an epoch (see the module docstring); returns the steps
    completed: fewer than the epoch's where a minibatch loss was not finite (that step updates nothing).

    ``acts`` holds each layer's input a_l at ``a_off[l]`` (a_0 the batch, the last the logits), ``deltas``
    each layer's output gradient Δ_l at ``d_off[l]`` (l ≥ 1), as rows of ``batch``; ``dims`` is this
    thread's scratch for ``_product``. Both phases take their tasks from one counter: every thread takes
    exactly one past a phase's last, so each knows where the next phase's tasks begin (``first``)."""
    one, zero = params.dtype.type(1), params.dtype.type(0)
    size = np.int64(params.itemsize)
    a_base, d_base = np.int64(acts.ctypes.data), np.int64(deltas.ctypes.data)
    g_base, p_base = np.int64(grads.ctypes.data), np.int64(params.ctypes.data)
    n_steps = (order.size + batch - 1) // batch
    counter = np.int64(flags.ctypes.data) + n_threads * FLAG_STRIDE * 8  # the tasks taken, after the flags
    generation, first = 0, 0
    for step in range(n_steps):
        start = step * batch
        n = min(batch, order.size - start)
        rows = order[start : start + n]
        # 1. rows, in chunks of ROWS taken from the counter
        n_chunks = (n + ROWS - 1) // ROWS
        loss = 0.0
        while True:
            chunk = fetch_add(counter, 1) - first
            if chunk >= n_chunks:
                break
            r0, r1 = chunk * ROWS, min(n, (chunk + 1) * ROWS)
            loss += _rows_pass(r0, r1, n, x, y, rows, batch, widths, w_off, b_off, a_off, d_off, params, acts,
                               deltas, forward, backward, loss_fn, gemm, dnnl, dims)  # fmt: skip
        first += n_chunks + n_threads
        losses[tid * FLAG_STRIDE] = loss
        generation += 1
        _barrier(flags, tid, n_threads, generation, yield_fn)
        total_loss = 0.0
        for other in range(n_threads):
            total_loss += losses[other * FLAG_STRIDE]
        if not math.isfinite(total_loss):
            return step
        # 2. weights, in tasks taken from the counter: a block of rows of one weight gradient
        # (a_lᵀ·Δ_{l+1} + λW) and its update, or one bias gradient (Σ_rows Δ_{l+1}, row after row as numpy
        # adds them) and its update.
        while True:
            task = fetch_add(counter, 1) - first
            if task >= tasks.shape[0]:
                break
            layer, q0, q1 = tasks[task, 0], tasks[task, 1], tasks[task, 2]
            fan_in, fan_out, d = widths[layer], widths[layer + 1], d_off[layer + 1]
            if q0 < 0:
                b = b_off[layer]
                _column_sums(_rows(deltas, d, batch, fan_out), grads[b : b + fan_out], n)
                update_range(kernel, params, grads, states, scalars[step], b, b + fan_out)
                continue
            w = w_off[layer]
            lo, hi = w + q0 * fan_out, w + q1 * fan_out
            _product(gemm, dnnl, dims, TRANS, NO_TRANS, q1 - q0, fan_out, n, a_base + (a_off[layer] + q0) * size,
                     fan_in, d_base + d * size, fan_out, g_base + lo * size, fan_out, one, zero)  # fmt: skip
            if decay != 0:
                call_double(decay_fn, (g_base + lo * size, p_base + lo * size, hi - lo, decay))
            update_range(kernel, params, grads, states, scalars[step], lo, hi)
        first += tasks.shape[0] + n_threads
        generation += 1
        _barrier(flags, tid, n_threads, generation, yield_fn)
    return n_steps


_ACTIVATION = '''"""optrun's compiled {name} ({dtype}; generated by optrun.compiled_epoch from optrun.models.layers)."""

import numpy as np
from numba import carray, cfunc, types

from optrun.generated import jitted
from optrun.models.layers import {name}
from optrun.optim.atomics import pointer_to

value, slope = jitted({name}.value), jitted({name}.slope)
SIGNATURE = types.void(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64)


@cfunc(SIGNATURE, cache=True, error_model="numpy")
def forward(h_, b_, r0, r1, width, unused):
    """Rows r0..r1 of the (rows, width) matrix h at h_: h ← value(h + b), b the bias at b_. (Views from row
    r0, indexed from 0: numba then knows no index is negative, and the loops vectorize.)"""
    h = carray(pointer_to(h_ + r0 * width * {itemsize}, np.{dtype}), ((r1 - r0), width))
    b = carray(pointer_to(b_, np.{dtype}), width)
{constants}
    for i in range(r1 - r0):
        for j in range(width):
            h[i, j] = value(h[i, j] + b[j], {arguments})


@cfunc(SIGNATURE, cache=True, error_model="numpy")
def backward(d_, a_, r0, r1, width, unused):
    """Rows r0..r1 of the (rows, width) matrix d at d_: d ← d·slope(a), a the activations at a_."""
    d = carray(pointer_to(d_ + r0 * width * {itemsize}, np.{dtype}), ((r1 - r0), width))
    a = carray(pointer_to(a_ + r0 * width * {itemsize}, np.{dtype}), ((r1 - r0), width))
{constants}
    for i in range(r1 - r0):
        for j in range(width):
            d[i, j] = d[i, j] * slope(a[i, j], {arguments})
'''


_LOSS = '''"""optrun's compiled softmax cross-entropy and L2 decay ({dtype}; generated by optrun.compiled_epoch from
optrun.models.loss)."""

import numpy as np
from numba import carray, cfunc, types

from optrun.generated import jitted
from optrun.models import loss
from optrun.optim.atomics import pointer_to

log_probability, logit_slope, decayed = jitted(loss.log_probability), jitted(loss.logit_slope), jitted(loss.decayed)
i64 = types.int64


@cfunc(types.float64(i64, i64, i64, i64, i64, i64, i64, i64), cache=True, error_model="numpy")
def cross_entropy(z_, dz_, y_, rows_, r0, r1, classes, n):
    """Rows r0..r1 of a step's n, in the (rows, classes) matrices z (the logits) at z_ and dz at dz_:
    dz ← logit_slope(log p, [k = y], n), where log p = log_probability(z, max z, log Σ exp(z − max z)) and y is
    the row's label, y_[rows_[i]]; returns Σ −log p_y over the rows."""
    z = carray(pointer_to(z_ + r0 * classes * {itemsize}, np.{dtype}), (r1 - r0, classes))
    dz = carray(pointer_to(dz_ + r0 * classes * {itemsize}, np.{dtype}), (r1 - r0, classes))
    rows = carray(pointer_to(rows_ + r0 * 8, np.int64), r1 - r0)
    one, zero, count = np.{dtype}(1), np.{dtype}(0), np.{dtype}(n)
    summed = 0.0
    for i in range(r1 - r0):
        largest = z[i, 0]
        for j in range(1, classes):
            if z[i, j] > largest or z[i, j] != z[i, j]:  # as np.maximum.reduce: nan wins
                largest = z[i, j]
        total = zero
        for j in range(classes):
            total += np.exp(z[i, j] - largest)
        log_total = np.log(total)
        label = carray(pointer_to(y_ + rows[i] * 8, np.int64), 1)[0]
        for j in range(classes):
            log_p = log_probability(z[i, j], largest, log_total)
            if j == label:
                summed -= log_p
            dz[i, j] = logit_slope(log_p, one if j == label else zero, count)
    return summed


@cfunc(types.float64(i64, i64, i64, types.{dtype}), cache=True, error_model="numpy")
def decay(g_, w_, size, rate):
    """g ← decayed(g, w, rate), over the ``size`` elements of g at g_ and w at w_; returns 0."""
    g = carray(pointer_to(g_, np.{dtype}), size)
    w = carray(pointer_to(w_, np.{dtype}), size)
    for i in range(size):
        g[i] = decayed(g[i], w[i], rate)
    return 0.0
'''


def compile_loss(dtype: np.dtype) -> Any:
    """The module of the softmax cross-entropy's and the L2 decay's C functions on ``dtype`` matrices, compiled from
    ``optrun.models.loss`` (``optrun.generated``: once, then loaded from numba's cache)."""
    name = np.dtype(dtype).name
    source = _LOSS.format(dtype=name, itemsize=np.dtype(dtype).itemsize)
    return generated.load(f"loss_{name}", source, generated.file_of(loss))


def compile_activation(cls: type[Activation], dtype: np.dtype) -> Any:
    """The module of ``cls``'s ``forward`` and ``backward`` on ``dtype`` rows, C functions the epoch calls by
    their addresses (``optrun.generated``: compiled once, then loaded from numba's cache)."""
    typed = cls.arguments()
    source = _ACTIVATION.format(
        name=cls.__name__,
        dtype=np.dtype(dtype).name,
        itemsize=np.dtype(dtype).itemsize,
        constants="\n".join(f"    {k} = np.{np.dtype(dtype).name}({v!r})" for k, v in typed.items()),
        arguments=", ".join(typed),
    )
    return generated.load(f"activation_{cls.__name__.lower()}", source, generated.file_of(cls))


class CompiledEpoch:
    """Epochs of ``model`` trained by ``optimizer`` in batches of ``batch`` rows, on ``n_threads`` threads.

    ``model`` is Dense layers with activations between them, in float32 or float64; ``optimizer`` takes
    steps that are exactly its kernel's (``Optimizer.kernel_only``): ``optrun.problems.network`` checks both. Raises
    CompileError where an activation does not compile."""

    def __init__(self, model: Network, optimizer: Optimizer, batch: int, blas: Blas, n_threads: int) -> None:
        self.model, self.optimizer, self.batch, self.threads = model, optimizer, batch, n_threads
        dtype, dense = model.dtype, model.dense
        widths = [d.fan_in for d in dense] + [dense[-1].fan_out]
        self.widths = np.array(widths, np.int64)

        def offset(a: np.ndarray) -> int:
            return (a.ctypes.data - model.flat_params.ctypes.data) // dtype.itemsize

        self.w_off = np.array([offset(d.W) for d in dense], np.int64)
        self.b_off = np.array([offset(d.b) for d in dense], np.int64)
        self.a_off = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64) * batch
        self.d_off = np.concatenate([[0, 0], np.cumsum(widths[1:-1])]).astype(np.int64) * batch  # from Δ_1
        activations = [compile_activation(type(layer), dtype) for layer in model.layers[1::2]]
        self.loss = compile_loss(dtype)
        self.forward = np.array([a.forward.address for a in activations] or [0], np.int64)
        self.backward = np.array([a.backward.address for a in activations] or [0], np.int64)
        self.acts = np.empty(batch * sum(widths), dtype)
        self.deltas = np.empty(batch * sum(widths[1:]), dtype)
        self.dnnl = dtype == np.float32 and blas.dnnl_sgemm != 0
        self.gemm = blas.dnnl_sgemm if self.dnnl else blas.sgemm if dtype == np.float32 else blas.dgemm
        self.dims = [np.zeros(6, np.int64 if blas.ilp64 else np.int32) for _ in range(n_threads)]
        self.losses = np.zeros(n_threads * FLAG_STRIDE)
        self.flags = np.zeros((n_threads + 1) * FLAG_STRIDE, np.int64)  # and the task counter
        # The second phase's tasks: (layer, first row, end row) of a weight gradient block, (layer, -1, -1)
        # for a bias; the largest first, so that the last ones taken are short.
        blocks = [(layer, q, min(q + BLOCK, fan_in)) for layer, fan_in in enumerate(widths[:-1])
                  for q in range(0, fan_in, BLOCK)]  # fmt: skip
        blocks.sort(key=lambda task: -(task[2] - task[1]) * widths[task[0] + 1])
        self.tasks = np.array(blocks + [(layer, -1, -1) for layer in range(len(dense))], np.int64)
        self._threadpools = ThreadpoolController()  # after find_blas: it sees the libgomp that oneDNN loaded

    def run(self, x: np.ndarray, y: np.ndarray, order: np.ndarray) -> int:
        """One epoch over the rows ``order`` of (x, y): the steps completed (fewer than the epoch's where
        a minibatch loss was not finite; the optimizer's step count advances by the steps completed)."""
        n_steps = -(-len(order) // self.batch)
        kernel, states, scalars = self.optimizer.kernel_steps(n_steps)
        state_addresses = kernels.addresses(states)
        model, decay = self.model, self.model.dtype.type(self.model.weight_decay)
        self.flags[:] = 0

        def share(tid: int, n_threads: int) -> int:
            # dnnl_sgemm runs on as many threads as OpenMP allows the thread that calls it: one, here (a
            # setting of each thread's own; restored when the share is done)
            with self._threadpools.limit(limits=1, user_api="openmp"):
                return _worker(
                    tid, n_threads, x, y, order, self.batch, self.widths, self.w_off, self.b_off, self.a_off,
                    self.d_off, model.flat_params, model.flat_grads, decay, self.acts, self.deltas, self.forward,
                    self.backward, self.loss.cross_entropy.address, self.loss.decay.address, self.tasks,
                    kernel.address, state_addresses, scalars, self.gemm, self.dnnl, self.dims[tid],
                    self.losses, self.flags, SCHED_YIELD,
                )  # fmt: skip

        n_threads = self.threads if n_steps else 1
        with threads.one_blas_thread():
            helping = [threads.helpers().submit(share, tid, n_threads) for tid in range(1, n_threads)]
            done = share(0, n_threads)
            for future in helping:
                future.result()
        self.optimizer.advance(done)
        return done
