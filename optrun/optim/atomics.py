"""What compiled code needs to share work between threads and to call code it was not compiled with:
atomic loads, stores and fetch-adds on int64s at an address, the CPU's spin-wait hint, a wait that spins,
then yields the core, a typed pointer from an address, and calls through an address (a kernel's, see
``optrun.optim.kernels``; sched_yield's).

These are numba intrinsics (LLVM's instructions, emitted in place), not ctypes calls, so the functions that
use them stay cacheable (``cache=True``). Imported with numba, by the code that needs them:
``optrun.optim.split``, ``optrun.compiled_epoch`` and the kernels' modules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def store_release(typingctx, address, value):
    """*address = value (int64), after every earlier write is visible."""

    def codegen(context, builder, signature, args):
        pointer = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        builder.store_atomic(builder.sext(args[1], ir.IntType(64)) if args[1].type.width < 64 else args[1],
                             pointer, "release", 8)  # fmt: skip
        return context.get_dummy_value()

    return types.void(address, value), codegen


@intrinsic
def load_acquire(typingctx, address):
    """*address (int64), before any later read."""

    def codegen(context, builder, signature, args):
        return builder.load_atomic(builder.inttoptr(args[0], ir.IntType(64).as_pointer()), "acquire", 8)

    return types.int64(address), codegen


@intrinsic
def fetch_add(typingctx, address, value):
    """*address += value (int64), atomically; returns the value before."""

    def codegen(context, builder, signature, args):
        pointer = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.atomic_rmw("add", pointer, args[1], "acq_rel")

    return types.int64(address, types.int64), codegen


@intrinsic
def pointer_to(typingctx, address, dtype):
    """The address (int64) as a pointer to ``dtype`` elements (a numpy scalar type: ``np.float32``), for
    ``numba.carray``."""
    element = dtype.instance_type

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(element).as_pointer())

    return types.CPointer(element)(address, dtype), codegen


@intrinsic
def call_kernel(typingctx, fn, p, g, states, scalars, lo, hi):
    """The kernel at address ``fn``: ``void kernel(p, g, states, scalars, lo, hi)``, all int64."""

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        function = builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), [i64] * 6).as_pointer())
        builder.call(function, [builder.sext(a, i64) if a.type.width < 64 else a for a in args[1:]])
        return context.get_dummy_value()

    return types.void(fn, p, g, states, scalars, lo, hi), codegen


@intrinsic
def call_double(typingctx, fn, args):
    """The C function at address ``fn``, ``double f(...)``, called with the values of the tuple ``args`` (each
    passed as its own type: int64, float32, float64)."""

    def codegen(context, builder, signature, llargs):
        arguments = [builder.extract_value(llargs[1], i) for i in range(len(args))]
        fnty = ir.FunctionType(ir.DoubleType(), [a.type for a in arguments])
        return builder.call(builder.inttoptr(llargs[0], fnty.as_pointer()), arguments)

    return types.float64(fn, args), codegen


_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def pause(typingctx):
    """The CPU's spin-wait hint (x86's pause), where there is one."""

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause"
            )
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def call_void(typingctx, fn):
    """The C function ``void f(void)`` at address ``fn`` (here sched_yield, whose int result is ignored)."""

    def codegen(context, builder, signature, args):
        builder.call(builder.inttoptr(args[0], ir.FunctionType(ir.VoidType(), []).as_pointer()), [])
        return context.get_dummy_value()

    return types.void(fn), codegen


_libc = ctypes.CDLL(ctypes.util.find_library("c"))
SCHED_YIELD = ctypes.cast(_libc.sched_yield, ctypes.c_void_p).value or 0
"""The address of sched_yield, for ``wait_until``'s ``yield_fn`` (an argument, not a global, so that the
functions that use it stay cacheable: an address changes from process to process)."""
SPINS = 1 << 14
"""Spins before each yield of the core: the work waited for is microseconds away, and a yield only
matters where more threads than cores compete."""


@njit(nogil=True, cache=True)
def wait_until(address, value, yield_fn):
    """Spin until the int64 at ``address`` is at least ``value`` (reading it with acquire: whatever the
    thread that raised it wrote before is visible), yielding the core every ``SPINS`` spins."""
    spins = 0
    while load_acquire(address) < value:
        spins += 1
        if spins % SPINS:
            pause()
        else:
            call_void(yield_fn)
