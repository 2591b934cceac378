"""Compiled kernels, derived from the optimizers' own rules.

An optimizer states its update once, as ``rule``: a function of one element's θ, g and state, written
with arithmetic and numpy's ufuncs (``np.sqrt``, ``np.sign``, ``np.maximum``). numpy runs it on whole
arrays (``Optimizer._update``); here numba compiles it into a loop over the elements, so that a step reads
every element of θ, g and the state once and writes θ and the state back once, instead of a pass through
memory per operation. Both run the same float operations in the same order on the same dtype, so their
results are the same to the last bit (``tests/test_kernels.py`` checks every rule and option), because

- every scalar argument has the arrays' dtype (the optimizer casts it), so float32 arithmetic stays
  float32 in both;
- nothing is reordered or contracted into fused multiply-adds (no fastmath);
- ``error_model="numpy"``: a division by zero gives inf or nan, as in numpy, instead of raising.

A kernel is a C function, ``kernel(p, g, states, scalars, lo, hi)``, all six arguments 64-bit integers:
the addresses of θ, g, an array of the state arrays' addresses and the step's scalars (in the rule's
order), and the elements [lo, hi) to update. Compiled code calls it through its address
(``optrun.optim.split.update_range``), so the code that runs kernels (a split across threads, the
compiled epoch) is compiled once, for every rule, and a rule compiles alone, in under a second. Flags (a
rule's bool arguments: ``amsgrad``, ``centered``) and which state the optimizer keeps are constants of a
kernel, so the branches they decide cost nothing.

numba caches a compiled kernel on disk with the source it was compiled from: a small module written to
``cache_dir()`` whose name carries a hash of the file that defines the rule, so that an edit to a rule
compiles it again, where numba alone would keep running the old one.

A large update can be split across several threads (``optrun.optim.split``, on ``optrun.threads``): they
take chunks of the parameters from a shared counter, each running the kernel on its chunks. The rules are
elementwise, so the result is the same to the last bit however the chunks fall; only the time differs,
and not always in the split's favour: a helper thread that shares a busy core is preempted for
milliseconds at a time, while on idle cores a split update is up to twice as fast. So each optimizer
times its first few steps both ways (``ThreadChoice``), keeps the faster, and times both again every 2000
steps.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import statistics
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optrun import threads

SPLIT_MIN_SIZE = 1 << 21
"""Elements from which splitting an update across threads is tried (8 MiB of float32 per array)."""

CACHE_ENV = "OPTRUN_CACHE"
"""The environment variable that moves optrun's cache (the compiled kernels' modules)."""


class RuleError(Exception):
    """A rule that numba cannot compile: its optimizer's steps stay numpy's."""


def cache_dir() -> Path:
    """Where the kernels' modules are written: ``$OPTRUN_CACHE/kernels``, else ``$XDG_CACHE_HOME/optrun/kernels``,
    else ``~/.cache/optrun/kernels``."""
    if root := os.environ.get(CACHE_ENV):
        return Path(root) / "kernels"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optrun" / "kernels"


def rule_parameters(rule: Callable[..., Any]) -> list[str]:
    """The names of a rule's parameters, in order: θ, g, the state, the scalars."""
    return list(inspect.signature(rule).parameters)


@dataclass(frozen=True)
class Kernel:
    """A compiled rule: ``address`` of its C function (see the module docstring), ``dtype`` its arrays'."""

    address: int
    dtype: np.dtype

    def __call__(
        self, p: np.ndarray, g: np.ndarray, states: Sequence[np.ndarray], scalars: np.ndarray, n_threads: int = 1
    ) -> None:
        """The rule on every element of the 1-D arrays ``p``, ``g`` and ``states``, split across ``n_threads``
        threads (``optrun.optim.split``)."""
        from optrun.optim import split

        split.update(self.address, p, g, addresses(states), scalars, n_threads)


def addresses(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The data addresses of ``arrays``, as a kernel takes its state."""
    return np.array([a.ctypes.data for a in arrays], np.int64)


def _jitted(fn: types.FunctionType) -> Any:
    """numba's compiled ``fn``, where every plain function it calls from its own module (a helper two rules
    share) is compiled too."""
    from numba import njit

    names = fn.__code__.co_names
    helpers = {
        name: _jitted(value)
        for name in names
        if isinstance(value := fn.__globals__.get(name), types.FunctionType)
        and value.__module__ == fn.__module__
        and value is not fn
    }
    if helpers:
        fn = types.FunctionType(fn.__code__, {**fn.__globals__, **helpers}, fn.__name__, fn.__defaults__,
                                fn.__closure__)  # fmt: skip
    return njit(error_model="numpy")(fn)


def jitted_rule(location: str, qualname: str) -> Any:
    """The rule of the optimizer class ``qualname`` from ``location`` (a module, or a Python file's path),
    compiled by numba (the kernels' modules call this)."""
    from optrun.optim.registry import load_class

    return _jitted(load_class(location, qualname).rule)


_TEMPLATE = '''"""optrun's kernel of {qualname}.rule from {location} ({dtype}; generated by optrun.optim.kernels)."""

import numpy as np
from numba import carray, cfunc, types

from optrun.optim.atomics import pointer_to
from optrun.optim.kernels import jitted_rule

rule = jitted_rule({location!r}, {qualname!r})


@cfunc(types.void(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64),
       cache=True, error_model="numpy")
def kernel(p_, g_, states_, scalars_, lo, hi):
    p = carray(pointer_to(p_, np.{dtype}), hi)
    g = carray(pointer_to(g_, np.{dtype}), hi)
    states = carray(pointer_to(states_, np.int64), {n_states})
    scalars = carray(pointer_to(scalars_, np.{dtype}), {n_scalars})
{unpack}
    for i in range(lo, hi):
        {results}, = rule({arguments})
'''


def _source(cls: type, location: str, dtype: np.dtype, scalars: dict[str, Any], kept: Sequence[str]) -> str:
    """The kernel module's source: the rule's call with its arrays' elements, its float scalars read from
    the scalars array, its flags as constants and the state the optimizer does not keep as 0."""
    names = rule_parameters(cls.rule)
    state = [n for n in names[2:] if n not in scalars]
    floats = [n for n in names[2:] if n in scalars and not isinstance(scalars[n], bool)]
    unpack = [f"    s{i} = carray(pointer_to(states[{i}], np.{dtype}), hi)" for i, _ in enumerate(kept)]
    unpack += [f"    k{i} = scalars[{i}]" for i, _ in enumerate(floats)]
    unpack.append(f"    zero = np.{dtype}(0)")
    element = {n: f"s{kept.index(n)}[i]" if n in kept else "zero" for n in state}
    element |= {n: f"k{i}" for i, n in enumerate(floats)}
    arguments = ["p[i]", "g[i]"] + [element.get(n, repr(scalars.get(n))) for n in names[2:]]
    results = ["p[i]"] + [element[n] if n in kept else "_" for n in state]  # state not kept: dropped
    return _TEMPLATE.format(
        qualname=cls.__qualname__, location=location, dtype=dtype.name, n_states=max(len(kept), 1),
        n_scalars=max(len(floats), 1), unpack="\n".join(unpack), results=", ".join(results),
        arguments=", ".join(arguments),
    )  # fmt: skip


def _source_of(cls: type) -> bytes:
    """The text of the file that defines ``cls`` (its rule and the helpers it calls), for the kernel's hash."""
    try:
        return Path(inspect.getfile(cls)).read_bytes()
    except (OSError, TypeError):
        return inspect.getsource(cls.rule).encode()


@functools.cache
def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def compile_rule(cls: type, location: str, dtype: np.dtype, scalars: dict[str, Any], kept: Sequence[str]) -> Kernel:
    """The kernel of ``cls.rule`` on ``dtype`` arrays, for these flags (the bools of ``scalars``) and this kept
    state, loaded from numba's cache or compiled; raises RuleError where numba cannot compile the rule."""
    source = _source(cls, location, np.dtype(dtype), scalars, list(kept))
    digest = hashlib.sha256(source.encode() + _source_of(cls) + Path(__file__).read_bytes()).hexdigest()[:20]
    name = f"optrun_kernel_{cls.__name__.lower()}_{digest}"
    try:
        return _kernel(name, source, np.dtype(dtype))
    except RuleError:
        raise
    except Exception as exc:  # numba's typing and lowering errors, and whatever the rule's module raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuleError(f"{type(exc).__name__}: {first}") from exc


@functools.cache
def _kernel(name: str, source: str, dtype: np.dtype) -> Kernel:
    path = _write(name, source)
    return Kernel(_load(path).kernel.address, dtype)


def _write(name: str, source: str) -> Path:
    """The kernel module's file in ``cache_dir()`` (written once, atomically); in a temporary folder of this
    process where the cache cannot be written (numba then compiles the kernel in every process)."""
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"optrun-kernels-{os.getuid()}"):
        path = folder / f"{name}.py"
        try:
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f".{name}.{os.getpid()}.tmp"
                partial.write_text(source, encoding="utf-8")
                os.replace(partial, path)
            return path
        except OSError:
            continue
    raise RuleError(f"cannot write the kernel's module to {cache_dir()} (set {CACHE_ENV} to a writable folder)")


class ThreadChoice:
    """How many threads an optimizer's updates use: 1, or ``threads.count()`` where the update is large enough
    to try splitting and splitting proves faster over the first steps (the first step, which may compile
    the kernel, is not counted; then ``TRIALS`` steps each way, alternating, compared by their median).
    The choice is made again from fresh trials every ``RECHECK`` steps, so that one made in a busy
    moment of a shared machine does not hold for the whole run."""

    TRIALS = 5
    RECHECK = 2000  # the trials then cost at most TRIALS steps at the slower count: 0.25% of the steps

    def __init__(self, size: int) -> None:
        n = threads.count()
        self.candidates = [1, n] if n > 1 and size >= SPLIT_MIN_SIZE else [1]
        self._counted = False  # the first step's time includes compiling: it is left out
        self._retry()

    def _retry(self) -> None:
        """Open the trials (where there is a choice to make)."""
        self.seconds: dict[int, list[float]] = {n: [] for n in self.candidates}
        self.chosen: int | None = 1 if len(self.candidates) == 1 else None
        self._steps_since_choice = 0

    def next(self) -> int:
        """The thread count for the next step: the choice, or during the trials the least-tried candidate."""
        if self.chosen is not None:
            return self.chosen
        return min(self.candidates, key=lambda n: len(self.seconds[n]))

    def record(self, n: int, seconds: float) -> None:
        """How long a step on ``n`` threads took; decides once every candidate has had its trials."""
        if self.chosen is not None:
            self._steps_since_choice += 1
            if self._steps_since_choice >= self.RECHECK and len(self.candidates) > 1:
                self._retry()
            return
        if not self._counted:
            self._counted = True
            return
        self.seconds[n].append(seconds)
        if all(len(times) >= self.TRIALS for times in self.seconds.values()):
            self.chosen = min(self.candidates, key=lambda k: statistics.median(self.seconds[k]))
