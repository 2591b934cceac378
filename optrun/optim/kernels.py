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

numba caches a compiled kernel on disk, in a small module (``optrun.generated``) whose name carries a hash
of the file that defines the rule, so that an edit to a rule compiles it again.

A large update can be split across several threads (``optrun.optim.split``, on ``optrun.threads``): they
take chunks of the parameters from a shared counter, each running the kernel on its chunks. The rules are
elementwise, so the result is the same to the last bit however the chunks fall; only the time differs,
and not always in the split's favour: a helper thread that shares a busy core is preempted for
milliseconds at a time, while on idle cores a split update is up to twice as fast. So each optimizer
times its first few steps both ways (``ThreadChoice``), keeps the faster, and times both again every 2000
steps.
"""

from __future__ import annotations

import inspect
import statistics
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optrun import generated, threads
from optrun.generated import jitted

SPLIT_MIN_SIZE = 1 << 21
"""Elements from which splitting an update across threads is tried (8 MiB of float32 per array)."""


def written_numbers(fn: Callable[..., Any]) -> list[str]:
    """The numbers written in ``fn`` and in the helpers it calls (``generated.helpers_of``, compiled with it), and
    the numbers they read by name (a module's ``HALF = 0.5``, ``np.pi``), as they would read in an error message:
    numba would compute with each in float64 or int64, where numpy keeps the arrays' dtype."""
    functions = [fn, *generated.helpers_of(fn).values()]
    numbers: list[str] = []
    for function in functions:
        code_objects = [function.__code__]
        while code_objects:
            code = code_objects.pop()
            for const in code.co_consts:
                if isinstance(const, types.CodeType):
                    code_objects.append(const)
                else:
                    numbers += [repr(c) for c in (const if isinstance(const, tuple) else (const,)) if _is_number(c)]
            numbers += _named_numbers(code, function.__globals__)
    return numbers


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | complex | np.number) and not isinstance(value, bool | np.bool_)


def _named_numbers(code: types.CodeType, namespace: dict[str, Any]) -> list[str]:
    """The numbers ``code`` reads by name: a global of its module (``HALF``), or an attribute of a module it
    reads (``np.pi``)."""
    found = []
    for name in code.co_names:
        value = namespace.get(name)
        if _is_number(value):
            found.append(f"{name} = {value!r}")
        elif isinstance(value, types.ModuleType):
            attributes = (a for a in code.co_names if _is_number(getattr(value, a, None)))
            found += [f"{name}.{a} = {getattr(value, a)!r}" for a in attributes]
    return found


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


def jitted_rule(location: str, qualname: str) -> Any:
    """The rule of the optimizer class ``qualname`` from ``location`` (a module, or a Python file's path),
    compiled by numba (the kernels' modules call this)."""
    from optrun.optim.registry import load_class

    return jitted(load_class(location, qualname).rule)


_TEMPLATE = '''"""optrun's kernel of {qualname}.rule from {location} ({dtype}; generated by optrun.optim.kernels)."""

import numpy as np
from numba import carray, cfunc, types

from optrun.optim.atomics import pointer_to
from optrun.optim.kernels import jitted_rule

rule = jitted_rule({location!r}, {qualname!r})


@cfunc(types.void(types.int64, types.int64, types.int64, types.int64, types.int64, types.int64),
       cache=True, error_model="numpy")
def kernel(p_, g_, states_, scalars_, lo, hi):
    # views of elements lo..hi, indexed from 0: numba then knows no index is negative, and the loop vectorizes
    n, skip = hi - lo, lo * {itemsize}
    p = carray(pointer_to(p_ + skip, np.{dtype}), n)
    g = carray(pointer_to(g_ + skip, np.{dtype}), n)
    states = carray(pointer_to(states_, np.int64), {n_states})
    scalars = carray(pointer_to(scalars_, np.{dtype}), {n_scalars})
{unpack}
    for i in range(n):
        {results} = rule({arguments})
'''


def _source(cls: type, location: str, dtype: np.dtype, scalars: dict[str, Any], kept: Sequence[str], bare: bool) -> str:
    """The kernel module's source: the rule's call with its arrays' elements, its float scalars read from
    the scalars array, its flags as constants and the state the optimizer does not keep as 0."""
    names = rule_parameters(cls.rule)
    state = [n for n in names[2:] if n not in scalars]
    floats = [n for n in names[2:] if n in scalars and not isinstance(scalars[n], bool)]
    unpack = [f"    s{i} = carray(pointer_to(states[{i}] + skip, np.{dtype}), n)" for i, _ in enumerate(kept)]
    unpack += [f"    k{i} = scalars[{i}]" for i, _ in enumerate(floats)]
    unpack.append(f"    zero = np.{dtype}(0)")
    element = {n: f"s{kept.index(n)}[i]" if n in kept else "zero" for n in state}
    element |= {n: f"k{i}" for i, n in enumerate(floats)}
    arguments = ["p[i]", "g[i]"] + [element.get(n, repr(scalars.get(n))) for n in names[2:]]
    results = ["p[i]"] + [element[n] if n in kept else "_" for n in state]  # state not kept: dropped
    results_text = "p[i]" if bare else ", ".join(results) + ","  # bare: a rule without state returns θ alone
    return _TEMPLATE.format(
        qualname=cls.__qualname__, location=location, dtype=dtype.name, itemsize=dtype.itemsize,
        n_states=max(len(kept), 1), n_scalars=max(len(floats), 1), unpack="\n".join(unpack), results=results_text,
        arguments=", ".join(arguments),
    )  # fmt: skip


def compile_rule(
    cls: type,
    location: str,
    source: bytes,
    dtype: np.dtype,
    scalars: dict[str, Any],
    kept: Sequence[str],
    bare: bool = False,
) -> Kernel:
    """The kernel of ``cls.rule`` on ``dtype`` arrays, for these flags (the bools of ``scalars``) and this kept
    state (``bare``: a rule without state that returns θ alone), loaded from numba's cache or compiled
    (``optrun.generated``), under a hash of ``source``, the text of the file ``cls`` was run from; raises
    CompileError where numba cannot compile the rule."""
    text = _source(cls, location, np.dtype(dtype), scalars, list(kept), bare)
    module = generated.load(f"kernel_{cls.__name__.lower()}", text, source)
    return Kernel(module.kernel.address, np.dtype(dtype))


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
