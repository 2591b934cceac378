"""The optimizer base class: parameters, state that lives for the whole run, the step counter,
and what every optimizer shares: a learning-rate schedule and gradient clipping by global norm.

Every step t = 1, 2, ... first clips, then updates:

    g ← g · min(1, clip_norm / ‖g‖)      (‖g‖: the norm of all gradients together; only with clip_norm)
    lr_t = schedule(learning_rate, t)      (constant without a schedule)
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from optrun.optim import kernels
from optrun.optim.schedules import ScheduleSpec
from optrun.schema import PositiveFloat, Section, validate


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


KernelCall = tuple[kernels.Kernel, tuple[Any, ...]]
"""A kernel and its arguments after the parameters: see ``Optimizer._kernel_call``."""

FUSED_MIN_SIZE = 100_000
"""Parameters from which steps use the compiled kernels. A step saves about 3 ns per element (Adam);
numba's start (about 1 s per process) is then repaid within a few thousand steps."""


class Hyperparameters(Section):
    """What every optimizer's ``Spec`` has; each subclass narrows ``name`` and sets its default ``learning_rate``."""

    name: str
    learning_rate: PositiveFloat
    schedule: ScheduleSpec | None = None
    clip_norm: PositiveFloat | None = None


class Optimizer:
    """Updates a list of parameter arrays in place from a list of gradients.

    Subclasses set ``name``, ``Spec`` (a ``Hyperparameters``: the same schema
    as the YAML ``optimizer:`` section), ``state_names`` (buffers that start at
    zero and persist across steps and epochs) and implement ``_update(p, g,
    state)`` for one array, using ``self.lr``, the learning rate of this step.
    ``self.t`` counts steps from 1 over the whole run.

    ``_update`` is the plain reference: whole-array numpy operations, easy to
    read against the rule. ``_fused_update`` does the same arithmetic in one
    compiled pass (``optrun.optim.kernels``) on flat views, with bit-identical
    results, on ``kernel_threads`` threads. ``fused`` chooses: by default the
    kernels run on contiguous parameters of at least ``FUSED_MIN_SIZE`` elements
    in all, where they save more than the second their compiler takes to start.
    """

    name: ClassVar[str]
    Spec: ClassVar[type[Hyperparameters]]
    state_names: tuple[str, ...] = ()

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
        self.fused = size >= FUSED_MIN_SIZE  # kernels where they pay off
        self._threads = kernels.ThreadChoice(size)  # split large updates across threads where that is faster
        self.kernel_threads = 1  # the threads this step's kernels use
        self.t = 0
        self.lr = self.learning_rate

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
        if self.fused and self._flat is not None:
            self.kernel_threads = self._threads.next()
            start = time.perf_counter()
            for (p, state), g in zip(self._flat, gs, strict=True):
                self._fused_update(p, np.ravel(g).astype(p.dtype, copy=False), state)
            self._threads.record(self.kernel_threads, time.perf_counter() - start)
        else:
            for p, g, state in zip(self._targets, gs, self._state, strict=True):
                if "_a" not in state:
                    # Two scratch arrays per target, made at the first reference step: every update is a few
                    # in-place whole-array operations that allocate nothing after it ("_" keys are not saved).
                    state["_a"], state["_b"] = np.empty_like(p), np.empty_like(p)
                self._update(p, g, state)

    def warm_up(self) -> None:
        """Load the compiled kernel the steps will use, where they use one: numba's start (about a second,
        once per process) then happens here instead of inside the first step, which keeps it out of timed
        epochs (in a comparison, only the first run of a process would pay it). The kernel runs on empty
        views: nothing changes. Where the steps may be split across threads, the split's code is loaded too."""
        if not self.fused or self._flat is None:
            return
        t, self.t = self.t, max(self.t, 1)  # a step's scalars need t ≥ 1 (Adam's 1/(1 − β1ᵗ))
        try:
            for p, state in self._flat:
                for n_threads in self._threads.candidates:
                    self.kernel_threads = n_threads
                    self._fused_update(p[:0], p[:0], {k: a[:0] for k, a in state.items()})
        finally:
            self.t, self.kernel_threads = t, 1

    @property
    def kernel_only(self) -> bool:
        """Whether each step is exactly one kernel call on the flat parameters, with scalars that depend on
        the step count alone (no clipping, no rule that watches the loss), so that compiled code may take
        the steps itself (``kernel_steps``, ``advance``)."""
        return self.fused and self._is_flat and self.hyper.clip_norm is None

    def kernel_steps(self, n: int) -> tuple[kernels.Kernel, list[np.ndarray], np.ndarray]:
        """For the next ``n`` steps, without taking them: the kernel, its state arrays (as long as the
        parameters, or empty where unused), and its scalars, one row per step in the kernel's order, in the
        parameters' dtype (flags as 0 or 1)."""
        (p, state), t, lr = self._flat[0], self.t, self.lr  # type: ignore[index]
        rows: list[list[Any]] = []
        try:
            for self.t in range(t + 1, t + max(n, 1) + 1):  # with n = 0, one step tells the kernel and arrays
                self.lr = self.learning_rate_at(self.t)
                self._begin_step([], None)
                kernel, args = self._kernel_call(p, p, state)
                _, arrays, scalars = kernels.operands(args)
                rows.append(scalars)
        finally:
            self.t, self.lr = t, lr
        return kernel, arrays, np.array(rows[:n], dtype=p.dtype).reshape(n, len(rows[0]))

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

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _fused_update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        """``_update`` on 1-D views in one compiled pass; scalars go in as ``p.dtype`` (see kernels)."""
        kernel, args = self._kernel_call(p, g, state)
        kernel(p, *args, n_threads=self.kernel_threads)

    def _kernel_call(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> KernelCall:
        """The kernel of this step's update and its arguments after ``p``: ``g``, the state arrays (each as
        long as ``p``, or empty where an option leaves it unused), then the scalars, for step ``self.t``."""
        raise NotImplementedError

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
