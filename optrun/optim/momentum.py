"""Gradient descent and the heavy-ball family: SGD, momentum, Nesterov's accelerated gradient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from optrun.optim.base import Hyperparameters, Optimizer
from optrun.optim.schedules import MomentumScheduleSpec, Restart
from optrun.schema import PositiveFloat, UnitOpenFloat


class SGD(Optimizer):
    """Plain (stochastic) gradient descent.

        θ ← θ − lr·g

    g is the minibatch gradient at the stored parameters θ.
    """

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 0.316

    def scalars(self) -> dict[str, float | bool]:
        return {"lr": self.lr}

    @staticmethod
    def rule(p, g, lr):
        return (p - g * lr,)


class _HeavyBall(Hyperparameters):
    mu: UnitOpenFloat | None = None  # 0.9 unless there is a mu_schedule
    mu_schedule: MomentumScheduleSpec | None = None
    restart: Restart | None = None

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        data = super().fill_defaults(data)
        if isinstance(data, Mapping) and data.get("mu") is None and data.get("mu_schedule") is None:
            return {**data, "mu": 0.9}
        return data

    @model_validator(mode="after")
    def _mu_or_schedule(self) -> _HeavyBall:
        if self.mu is not None and self.mu_schedule is not None:
            raise PydanticCustomError("mu", "give either 'mu' or 'mu_schedule', not both", {"key": "mu_schedule"})
        return self


class Momentum(Optimizer):
    """SGD with momentum (the heavy ball), optionally Nesterov's look-ahead form.

        v ← mu·v + (1 − dampening)·lr·g
        θ ← θ − v
        with nesterov: θ ← θ − (mu·v + lr·g)

    Convention: the learning rate sits inside the velocity, as in the reference
    texts (v_t = γ·v_{t−1} + η·∇J(θ_t), θ_{t+1} = θ_t − v_t); PyTorch puts it
    outside (v ← mu·v + g; θ ← θ − lr·v), which differs only while lr changes.
    With ``dampening`` equal to ``mu`` this is the weighted (moving-average)
    form of the reference texts, v ← α·v + (1 − α)·g; θ ← θ − β·v, with α = mu
    and β = lr (our v is β times theirs).

    Nesterov: the reference rule evaluates the gradient at the look-ahead point,
    v ← mu·v + lr·∇J(φ − mu·v); φ ← φ − v. Storing θ = φ − mu·v instead makes
    every gradient one at the stored parameters, and the same sequence of
    gradient points follows from v ← mu·v + lr·g; θ ← θ − (mu·v + lr·g), the
    form PyTorch, Keras and Optax use. The stored θ is the look-ahead point.
    Dampening is not allowed with it (as in PyTorch).

    ``mu_schedule`` replaces mu by mu_t (``optrun.optim.schedules``); with
    Nesterov, mu_t is used in both places, which is exact while mu is constant.
    ``restart`` sets v to zero before a step: every k steps (after steps k, 2k,
    ...), or when v points uphill (g·v < 0, the gradient of all parameters
    together; O'Donoghue and Candès, 2015), or when the minibatch loss rose
    above the previous step's. The step then starts from v = 0.
    """

    state = ("velocity",)

    class Spec(_HeavyBall):
        learning_rate: PositiveFloat = 0.0316
        nesterov: bool = False
        dampening: UnitOpenFloat = 0.0

        @model_validator(mode="after")
        def _no_dampening_with_nesterov(self) -> Momentum.Spec:
            if self.nesterov and self.dampening:
                raise PydanticCustomError("dampening", "must be 0 with nesterov: true", {"key": "dampening"})
            return self

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        super().__init__(params, **hyperparameters)
        self.restarts = 0
        self._previous_loss: float | None = None

    @property
    def nesterov(self) -> bool:
        return bool(self.hyper.nesterov)

    @property
    def dampening(self) -> float:
        return float(self.hyper.dampening)

    def mu_at(self, t: int) -> float:
        """The momentum coefficient of step ``t`` (from 1)."""
        schedule = self.hyper.mu_schedule
        return float(self.hyper.mu if schedule is None else schedule(t))

    def _watches_steps(self) -> bool:
        return self.hyper.restart is not None  # _begin_step acts only for a restart

    def extras(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.hyper.mu_schedule is not None or self.hyper.restart is not None:
            out["mu"] = self.mu_at(max(self.t, 1))
        if self.hyper.restart is not None:
            out["restarts"] = self.restarts
        return out

    def _begin_step(self, gs: list[np.ndarray], loss: float | None) -> None:
        restart = self.hyper.restart
        if restart is None:
            return
        if restart.every is not None:
            reset = self.t > 1 and (self.t - 1) % restart.every == 0
        elif restart.when == "gradient":
            reset = sum(float(np.vdot(g, s["velocity"])) for g, s in zip(gs, self._state, strict=True)) < 0
        else:
            if loss is None:
                raise ValueError("momentum restart when: loss needs the minibatch loss: step(grads, loss=...)")
            reset = self._previous_loss is not None and loss > self._previous_loss
            self._previous_loss = loss
        if reset:
            for s in self._state:
                s["velocity"].fill(0)
            self.restarts += 1

    def scalars(self) -> dict[str, float | bool]:
        mu, lr = self.mu_at(self.t), self.lr
        return {"mu": mu, "v_scale": (1 - self.dampening) * lr, "lr": lr, "nesterov": self.nesterov}

    @staticmethod
    def rule(p, g, velocity, mu, v_scale, lr, nesterov):
        velocity = velocity * mu + g * v_scale  # v_scale = (1 − dampening)·lr
        if nesterov:
            return p - (velocity * mu + g * lr), velocity
        return p - velocity, velocity

    def _scalar_state(self) -> dict[str, Any]:
        return {"restarts": self.restarts, "previous_loss": self._previous_loss}

    def _load_scalar_state(self, state_dict: dict[str, Any]) -> None:
        self.restarts = int(state_dict.get("restarts", 0))
        self._previous_loss = state_dict.get("previous_loss")


class Nesterov(Momentum):
    """Nesterov's accelerated gradient: momentum with ``nesterov: true``.

        v ← mu·v + lr·g
        θ ← θ − (mu·v + lr·g)

    The reformulated look-ahead rule: the stored θ is the point φ − mu·v at which
    the reference texts evaluate the gradient (see ``momentum``). Takes
    ``mu_schedule`` and ``restart`` as momentum does.
    """

    class Spec(_HeavyBall):
        learning_rate: PositiveFloat = 0.0316

    @property
    def nesterov(self) -> bool:
        return True

    @property
    def dampening(self) -> float:
        return 0.0
