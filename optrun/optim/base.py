"""The optimizer base class: parameters, state that lives for the whole run, the step counter,
and what every optimizer shares: a learning-rate schedule and gradient clipping by global norm.

Every step t = 1, 2, ... first clips, then updates:

    g ← g · min(1, clip_norm / ‖g‖)      (‖g‖: the norm of all gradients together; only with clip_norm)
    lr_t = schedule(learning_rate, t)      (constant without a schedule)
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_serializer

from optrun import generated
from optrun.optim import kernels
from optrun.optim.schedules import ScheduleSpec
from optrun.schema import INTERNAL, ConfigError, PositiveFloat, Section, describe, validate

log = logging.getLogger("optrun")


def flat_buffer(arrays: Sequence[np.ndarray]) -> np.ndarray | None:
    """The 1-D array that ``arrays`` tile exactly, in order, or None.

    Parameters created as consecutive views into one flat buffer (as optrun's
    networks create them) can then be updated with a few whole-array
    operations instead of a Python loop over tensors.
    """
    if not arrays:
        return None
    base = arrays[0].base
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base:
            return None
        if not a.size:  # covers no bytes, and numpy does not keep the address of an empty view
            continue
        if not a.flags.c_contiguous or a.__array_interface__["data"][0] != address:
            return None
        address += a.nbytes
    return base if address == base.__array_interface__["data"][0] + base.nbytes else None


FUSED_MIN_SIZE = 100_000
"""Parameters from which steps use the compiled kernels. A step saves about 3 ns per element (Adam);
numba's start (about 1 s per process) is then repaid within a few thousand steps."""

NUMPY_PIECE = 1 << 16
"""Elements per piece of a step in numpy: a rule's temporaries then take a few MiB at most, at any size."""


class Hyperparameters(Section):
    """What every optimizer's ``Spec`` has; each subclass adds its own and sets its default ``learning_rate``.
    ``name`` is the name the config gave (``adam``, ``my_rules.py:Lion``)."""

    name: str
    learning_rate: PositiveFloat
    schedule: ScheduleSpec | None = None
    clip_norm: PositiveFloat | None = None
    source: str | None = Field(None, json_schema_extra=INTERNAL)  # a user's class: its file's SHA-256, filled in

    @model_serializer(mode="wrap")
    def _without_source_of_built_ins(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("source") is None:
            data.pop("source", None)
        return data

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its values, validated again where unpickled by the class its name means: a worker
        process or a Dask worker imports a user's file by its path, where the class's own module name
        (``optrun.optim.registry``'s, made up for the file) means nothing."""
        return _rebuild, (self.model_dump(),)


def _rebuild(values: dict[str, Any]) -> Hyperparameters:
    from optrun.optim import parse_optimizer_spec

    return parse_optimizer_spec(values)  # which checks a user's file against the SHA-256 the values recorded


def _elementwise(whole: Any, each: Sequence[Any]) -> bool:
    """Whether a rule's results on two elements (``whole``) are its results on each element alone (``each``),
    each an array of one value per element, to a few ulps (numpy may vectorize one and not the other)."""
    outputs = [r if isinstance(r, tuple) else (r,) for r in (whole, *each)]
    for together, *alone in zip(*outputs, strict=True):
        if not all(isinstance(a, np.ndarray) and a.shape == (1,) for a in alone):
            return False
        if not isinstance(together, np.ndarray) or together.shape != (2,):
            return False
        apart = np.concatenate(alone)
        if not np.allclose(together, apart, rtol=1e-5, atol=0, equal_nan=True):
            return False
    return True


class Optimizer:
    """Updates a list of parameter arrays in place from a list of gradients.

    An optimizer is its hyperparameters (``Spec``, a ``Hyperparameters``: the schema of the YAML
    ``optimizer:`` section), its ``state`` (the names of the buffers it keeps per parameter, each starting
    at zero and persisting across steps and epochs), and its update rule, stated once:

    - ``scalars()``: this step's scalars by name, from the hyperparameters, the step count ``self.t``
      (from 1 over the whole run) and this step's learning rate ``self.lr``; a bool is a flag, constant
      over the run;
    - ``rule(p, g, *state, *scalars)``: a static method, the rule for one element: θ, its gradient, its
      state, then the scalars, in the order of its parameters; returns the new θ and the new state, in
      the same order. Written with arithmetic and numpy's ufuncs on the scalars alone (a number written in
      the rule would be a float64 in compiled code), it runs on whole arrays in numpy (``_update``) and,
      compiled by numba, element by element (``optrun.optim.kernels``), with the same bits.

    Steps use the compiled kernel on contiguous parameters of at least ``FUSED_MIN_SIZE`` elements in all
    (``fused``), where it saves more than the second numba takes to start, and numpy below, or where the
    rule does not compile (with a warning). A rule that is not elementwise overrides ``_update(p, g,
    state)`` instead, and has no compiled form. ``_begin_step`` is for what a rule needs of the whole step
    (momentum's restarts).
    """

    name: ClassVar[str]
    Spec: ClassVar[type[Hyperparameters]] = Hyperparameters
    state: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()

    @classmethod
    def problem(cls) -> str | None:
        """What keeps this class from being an optimizer (None: nothing), for a user's own class."""
        if cls.Spec is Hyperparameters:
            return "it has no Spec: a nested class Spec(Hyperparameters) with its keys and learning_rate's default"
        if not (isinstance(cls.Spec, type) and issubclass(cls.Spec, Hyperparameters)):
            return "its Spec must be a subclass of optrun.optim.Hyperparameters"
        if required := [k for k, field in cls.Spec.model_fields.items() if k != "name" and field.is_required()]:
            return f"its Spec must give every key a default; {', '.join(required)} has none"
        if cls._update is not Optimizer._update:
            return None
        if cls.rule is Optimizer.rule:
            return "it defines no rule (a static method rule(p, g, *state, *scalars))"
        names = kernels.rule_parameters(cls.rule)
        if names[2 : 2 + len(cls.state)] != list(cls.state) or len(names) < 2:
            return f"its rule's parameters must be p, g, then its state {', '.join(cls.state) or '(none)'}"
        if numbers := kernels.written_numbers(cls.rule):
            why = "compiled, a number written in the rule computes in float64, and the sizes would differ"
            return f"its rule uses the number {numbers[0]}; give it as a scalar from scalars() instead ({why})"
        return None

    def __init__(self, params: Sequence[np.ndarray], **hyperparameters: Any) -> None:
        self.hyper = validate(self.Spec, {"name": self.name, **hyperparameters}, prefix="optimizer")
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        for p in self.params:
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError("parameters must be floating-point numpy arrays")
        flat = flat_buffer(self.params)
        # The arrays actually updated: the one flat buffer when there is one.
        self._targets = [flat] if flat is not None else self.params
        self._state = [{k: np.zeros_like(p) for k in self.state_names} for p in self._targets]
        self._is_flat = flat is not None  # one target, the buffer all parameters are views of
        self._grad_buffer: np.ndarray | None = None  # made when gradients must be gathered into one buffer
        self._clip_buffers: list[np.ndarray] = []  # the clipped gradients
        self._seen_grads: list[np.ndarray] = []  # gradient views found to tile one flat buffer ...
        self._seen_flat: list[np.ndarray] = []  # ... and that buffer
        # 1-D views of every target and its state, for the kernels; None if a parameter is not contiguous.
        self._flat: list[tuple[np.ndarray, dict[str, np.ndarray]]] | None = None
        if all(p.flags.c_contiguous for p in self._targets):
            self._flat = [
                (p.reshape(-1), {k: a.reshape(-1) for k, a in state.items()})
                for p, state in zip(self._targets, self._state, strict=True)
            ]
        size = sum(p.size for p in self._targets)
        # kernels where they pay off, for a rule that has one
        self.fused = size >= FUSED_MIN_SIZE and type(self)._update is Optimizer._update
        self._kernels: dict[np.dtype, kernels.Kernel] = {}
        self._threads = kernels.ThreadChoice(size)  # split large updates across threads where that is faster
        self.kernel_threads = 1  # the threads this step's kernels use
        self.t = 0
        self.lr = self.learning_rate
        self._floats = self._check_rule()

    def _check_rule(self) -> list[str]:
        """The names of the rule's float scalars, in its order, after checking on two elements that
        ``scalars()`` and ``rule`` fit each other; a ConfigError naming the problem where they do not."""
        if type(self)._update is not Optimizer._update:
            return []
        where = "scalars()"
        try:
            with self._at_a_step():
                scalars = self.scalars()
                if not isinstance(scalars, dict):
                    raise ConfigError(f"scalars() must return a dict of the rule's scalars, got {describe(scalars)}")
                where = "its rule"
                names = kernels.rule_parameters(self.rule)[2 + len(self.state) :]
                if sorted(scalars) != sorted(names):
                    given, taken = ", ".join(scalars) or "nothing", ", ".join(names) or "nothing"
                    raise ConfigError(f"scalars() gives {given}; its rule takes {taken}")
                two = np.array([0.75, -0.25], self._targets[0].dtype)  # one element would let an `if` pass
                with np.errstate(all="ignore"):
                    new = self.rule(two, two, *(np.abs(two) for _ in self.state), **scalars)
                    each = [self.rule(x, x, *(np.abs(x) for _ in self.state), **scalars) for x in (two[:1], two[1:])]
        except ConfigError as exc:
            raise ConfigError(f"optimizer {self.label}: {exc}") from None
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if "truth value of an array" in failure:
                failure += " (a rule runs on whole arrays too: compare values with np.where or np.maximum, not if)"
            raise ConfigError(f"optimizer {self.label}: {where} fails: {failure}") from None
        self._bare = not self.state and not isinstance(new, tuple)  # θ alone, for a rule without state
        self._flags = {k: v for k, v in scalars.items() if isinstance(v, bool)}  # constants of the kernel
        if not self._bare and (not isinstance(new, tuple) or len(new) != 1 + len(self.state)):
            count = len(new) if isinstance(new, tuple) else 1
            wanted = f"θ, then {', '.join(self.state)}"
            raise ConfigError(f"optimizer {self.label}: its rule returns {count} value(s); it must return {wanted}")
        if not _elementwise(new, each):
            raise ConfigError(
                f"optimizer {self.label}: its rule is not elementwise: each element's new values must depend on that "
                "element's alone (no np.mean, np.sum or np.linalg.norm over the array), one value per element"
            )
        return [n for n in names if not isinstance(scalars[n], bool)]

    @contextlib.contextmanager
    def _at_a_step(self) -> Iterator[None]:
        """Within it, ``self.t`` is at least 1, as every step's scalars need it (Adam's 1/(1 − β1ᵗ))."""
        t, self.t = self.t, max(self.t, 1)
        try:
            yield
        finally:
            self.t = t

    @property
    def label(self) -> str:
        """The optimizer as its config names it, a file by its name alone (``my_rules.py:Lion``)."""
        from optrun.optim.registry import short_name

        return short_name(self.hyper.name)

    @property
    def state_names(self) -> tuple[str, ...]:
        """The state this optimizer keeps: ``state``, or the part of it that its options use."""
        return self.state

    def scalars(self) -> dict[str, float | bool]:
        """This step's scalars, by the names of the rule's parameters after its state."""
        return {}

    @staticmethod
    def rule(p: Any, g: Any, *state_and_scalars: Any) -> Any:
        """The update of one element: returns the new θ, then the new state (see the class docstring)."""
        raise NotImplementedError

    def learning_rate_at(self, t: int) -> float:
        """The learning rate of step ``t`` (from 1)."""
        lr, schedule = float(self.hyper.learning_rate), self.hyper.schedule
        return lr if schedule is None else float(schedule(lr, t))

    @property
    def learning_rate(self) -> float:
        """The learning rate of the last step taken (of the first one before any)."""
        return self.learning_rate_at(max(self.t, 1))

    def extras(self) -> dict[str, float]:
        """Per-step quantities worth a metrics column (momentum's scheduled mu, restarts), as of the last step."""
        return {}

    def step(self, grads: Sequence[np.ndarray], loss: float | None = None) -> None:
        """Apply one update; ``grads[i]`` is the gradient of ``params[i]``; ``loss`` the minibatch loss
        (needed only by rules that watch it, such as momentum restart on loss)."""
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        gs = self._clipped(self._gradient_targets(grads))  # first: a gradient of the wrong shape changes nothing
        self.t += 1
        self.lr = self.learning_rate_at(self.t)
        self._begin_step(gs, loss)
        kernel = self._kernel() if self.fused and self._flat is not None else None
        if kernel is not None:
            self.kernel_threads = self._threads.next()
            start = time.perf_counter()
            scalars = self._kernel_scalars(kernel.dtype)
            for (p, state), g in zip(self._flat, gs, strict=True):  # type: ignore[arg-type]
                g = np.ravel(g).astype(p.dtype, copy=False)
                kernel(p, g, [state[k] for k in self.state_names], scalars, self.kernel_threads)
            self._threads.record(self.kernel_threads, time.perf_counter() - start)
        else:
            for p, g, state in zip(self._targets, gs, self._state, strict=True):
                self._update(p, g, state)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """The rule on whole arrays in numpy, in pieces of ``NUMPY_PIECE`` elements: the same operations as its
        kernel's, element for element."""
        g = g.astype(p.dtype, copy=False)  # as the kernel reads it
        scalars, cast = self._step_scalars(), p.dtype.type
        for name in self._floats:  # in the arrays' dtype, as the kernel reads them
            scalars[name] = cast(scalars[name])
        if p.size <= NUMPY_PIECE or not (p.flags.c_contiguous and g.flags.c_contiguous):
            self._apply_rule(p, g, state, scalars)
            return
        p, g, state = p.reshape(-1), g.reshape(-1), {k: a.reshape(-1) for k, a in state.items()}
        for lo in range(0, p.size, NUMPY_PIECE):
            piece = slice(lo, lo + NUMPY_PIECE)
            self._apply_rule(p[piece], g[piece], {k: a[piece] for k, a in state.items()}, scalars)

    def _apply_rule(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], scalars: dict[str, Any]) -> None:
        """θ and the state it keeps ← the rule's results (a state an option leaves unused reads as 0)."""
        new = self.rule(p, g, *[state[k] if k in state else p.dtype.type(0) for k in self.state], **scalars)
        if self._bare:
            np.copyto(p, new)
            return
        np.copyto(p, new[0])
        for k, value in zip(self.state, new[1:], strict=True):
            if k in state:
                np.copyto(state[k], value)

    def _kernel(self) -> kernels.Kernel | None:
        """The compiled rule for the parameters' dtype, compiled (or loaded from numba's cache) at the first
        call; None, with a warning, where numba cannot compile the rule: steps then stay numpy's."""
        dtype = self._targets[0].dtype
        if dtype not in self._kernels:
            from optrun.optim.registry import location_of, source_of

            try:
                with self._at_a_step():
                    self._kernels[dtype] = kernels.compile_rule(
                        type(self),
                        location_of(type(self)),
                        source_of(type(self)),
                        dtype,
                        self.scalars(),
                        self.state_names,
                        self._bare,
                    )
            except generated.CompileError as exc:
                log.warning(f"optimizer {self.label}: its rule does not compile ({exc}); its steps run in numpy")
                self.fused = False
                return None
        return self._kernels[dtype]

    def _step_scalars(self) -> dict[str, Any]:
        """``scalars()``, where its flags are still the first step's; a ValueError where one changed (a kernel
        has them as constants: numpy's steps refuse it too, so that a rule is the same at every size)."""
        scalars = self.scalars()
        flags = {k: v for k, v in scalars.items() if isinstance(v, bool)}
        if flags != self._flags:
            raise ValueError(f"optimizer {self.label}: scalars() changed its flags from {self._flags} to {flags} "
                             f"at step {self.t}; a flag (a bool) must be the same at every step")  # fmt: skip
        return scalars

    def _kernel_scalars(self, dtype: np.dtype) -> np.ndarray:
        """This step's float scalars, in the rule's order, as the kernel reads them."""
        scalars = self._step_scalars()
        return np.array([scalars[n] for n in self._floats] or [0], dtype)

    def warm_up(self) -> None:
        """Load the compiled kernel the steps will use, where they use one: numba's start (about a second,
        once per process) and the kernel's compiling (under a second, once per rule and machine) then
        happen here instead of inside the first step, which keeps them out of timed epochs. Where the steps
        may be split across threads, the split's code is loaded too; the kernel runs on empty views:
        nothing changes."""
        if not self.fused or self._flat is None or (kernel := self._kernel()) is None:
            return
        with self._at_a_step():
            scalars = self._kernel_scalars(kernel.dtype)
        for p, state in self._flat:
            for n_threads in self._threads.candidates:
                kernel(p[:0], p[:0], [state[k][:0] for k in self.state_names], scalars, n_threads)

    @property
    def kernel_only(self) -> bool:
        """Whether each step is exactly one kernel call on the flat parameters, with scalars that depend on
        the step count alone (no clipping, no ``_begin_step`` that watches the gradient or the loss), so
        that compiled code may take the steps itself (``kernel_steps``, ``advance``)."""
        return (
            self.fused
            and self._is_flat
            and self.hyper.clip_norm is None
            and not self._watches_steps()
            and self._kernel() is not None
        )

    def _watches_steps(self) -> bool:
        """Whether ``_begin_step`` looks at the step's gradients or loss (a subclass that overrides it does,
        unless it says otherwise here)."""
        return type(self)._begin_step is not Optimizer._begin_step

    def kernel_steps(self, n: int) -> tuple[kernels.Kernel, list[np.ndarray], np.ndarray]:
        """For the next ``n`` steps, without taking them: the kernel, its state arrays (those kept, in the
        rule's order), and its scalars, one row per step in the rule's order, in the parameters' dtype."""
        (p, state), t, lr = self._flat[0], self.t, self.lr  # type: ignore[index]
        kernel = self._kernel()
        assert kernel is not None, "kernel_steps needs kernel_only"
        rows: list[np.ndarray] = []
        try:
            for self.t in range(t + 1, t + n + 1):
                self.lr = self.learning_rate_at(self.t)
                self._begin_step([], None)
                rows.append(self._kernel_scalars(p.dtype))
        finally:
            self.t, self.lr = t, lr
        width = max(len(self._floats), 1)
        return kernel, [state[k] for k in self.state_names], np.array(rows, p.dtype).reshape(n, width)

    def advance(self, n: int) -> None:
        """Count ``n`` steps that ``kernel_steps`` described and compiled code took."""
        self.t += n
        self.lr = self.learning_rate_at(max(self.t, 1))

    def _clipped(self, gs: list[np.ndarray]) -> list[np.ndarray]:
        clip = self.hyper.clip_norm
        if clip is None:
            return gs
        norm = float(np.sqrt(sum(np.vdot(g, g) for g in gs)))
        if norm <= clip:
            return gs
        buffers = self._clip_buffers  # made at the first clipped step and reused: a step allocates nothing
        if [(b.shape, b.dtype) for b in buffers] != [(g.shape, g.dtype) for g in gs]:
            buffers = self._clip_buffers = [np.empty_like(g) for g in gs]
        return [np.multiply(g, clip / norm, out=b) for g, b in zip(gs, buffers, strict=True)]

    def _begin_step(self, gs: list[np.ndarray], loss: float | None) -> None:
        """Called once per step, after clipping and before the per-array updates."""

    def _gradient_targets(self, grads: Sequence[np.ndarray]) -> list[np.ndarray]:
        # A network hands over the same gradient views every step: the views into its one flat buffer.
        if len(grads) == len(self._seen_grads) and all(map(operator.is_, grads, self._seen_grads)):
            return self._seen_flat
        for p, g in zip(self.params, grads, strict=True):
            if g.shape != p.shape:
                raise ValueError(f"gradient of shape {g.shape} for a parameter of shape {p.shape}")
        if not self._is_flat:
            return list(grads)
        flat = flat_buffer(grads)
        if flat is not None and flat.dtype == self._targets[0].dtype:
            self._seen_grads, self._seen_flat = list(grads), [flat]
            return [flat]
        if self._grad_buffer is None:
            self._grad_buffer = np.empty_like(self._targets[0])
        np.concatenate([np.ravel(g) for g in grads], out=self._grad_buffer, casting="same_kind")
        return [self._grad_buffer]

    def _per_param(self, name: str) -> list[np.ndarray]:
        """State buffer ``name`` as one array per parameter (views, not copies)."""
        if not self._is_flat:
            return [s[name] for s in self._state]
        flat, out, start = self._state[0][name], [], 0
        for p in self.params:
            out.append(flat[start : start + p.size].reshape(p.shape))
            start += p.size
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{'name', 'step', 'state': {buffer: [one array per parameter]}}``, as copies."""
        return {
            "name": self.name,
            "step": self.t,
            "state": {k: [a.copy() for a in self._per_param(k)] for k in self.state_names},
            **self._scalar_state(),
        }

    def _scalar_state(self) -> dict[str, Any]:
        """State besides the buffers and t (momentum restart's count and last loss)."""
        return {}

    def _load_scalar_state(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``_scalar_state`` returned."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned, checking that it fits these parameters."""
        if state_dict.get("name") != self.name:
            raise ValueError(f"state of optimizer {state_dict.get('name')!r} cannot load into {self.name!r}")
        if set(state_dict["state"]) != set(self.state_names):
            raise ValueError(f"state buffers {sorted(state_dict['state'])} != {sorted(self.state_names)}")
        for k in self.state_names:
            for dst, src in zip(self._per_param(k), state_dict["state"][k], strict=True):
                if dst.shape != np.shape(src):
                    raise ValueError(f"state {k!r} of shape {np.shape(src)} for a parameter of shape {dst.shape}")
                np.copyto(dst, src)
        self.t = int(state_dict["step"])
        self.lr = self.learning_rate
        self._load_scalar_state(state_dict)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper.model_dump().items() if k != "name")
        return f"{type(self).__name__}({args})"
