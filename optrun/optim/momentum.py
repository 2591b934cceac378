"""Gradient descent and the heavy-ball family: SGD, momentum, Nesterov's accelerated gradient."""

from __future__ import annotations

from typing import Literal

import numpy as np

from optrun.optim.base import Optimizer
from optrun.schema import PositiveFloat, Section, UnitOpenFloat


class SGD(Optimizer):
    """Plain (stochastic) gradient descent.

        θ ← θ − lr·g

    g is the minibatch gradient at the stored parameters θ.
    """

    name = "sgd"

    class Spec(Section):
        name: Literal["sgd"]
        learning_rate: PositiveFloat = 0.1

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        p -= self.hyper.learning_rate * g


class Momentum(Optimizer):
    """SGD with momentum (the heavy ball), optionally Nesterov's look-ahead form.

        v ← mu·v + lr·g
        θ ← θ − v
        with nesterov: θ ← θ − (mu·v + lr·g)

    Convention: the learning rate sits inside the velocity, as in the reference
    texts (v_t = γ·v_{t−1} + η·∇J(θ_t), θ_{t+1} = θ_t − v_t); PyTorch puts it
    outside (v ← mu·v + g; θ ← θ − lr·v), which differs only while lr changes.

    Nesterov: the reference rule evaluates the gradient at the look-ahead point,
    v ← mu·v + lr·∇J(φ − mu·v); φ ← φ − v. Storing θ = φ − mu·v instead makes
    every gradient one at the stored parameters, and the same sequence of
    gradient points follows from v ← mu·v + lr·g; θ ← θ − (mu·v + lr·g), the
    form PyTorch, Keras and Optax use. The stored θ is the look-ahead point.
    """

    name = "momentum"
    state_names = ("velocity",)

    class Spec(Section):
        name: Literal["momentum"]
        learning_rate: PositiveFloat = 0.01
        mu: UnitOpenFloat = 0.9
        nesterov: bool = False

    @property
    def nesterov(self) -> bool:
        return bool(self.hyper.nesterov)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        mu, lr, v = self.hyper.mu, self.hyper.learning_rate, state["velocity"]
        v *= mu
        v += lr * g
        if self.nesterov:
            p -= mu * v + lr * g
        else:
            p -= v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient: momentum with ``nesterov: true``.

        v ← mu·v + lr·g
        θ ← θ − (mu·v + lr·g)

    The reformulated look-ahead rule: the stored θ is the point φ − mu·v at which
    the reference texts evaluate the gradient (see ``momentum``).
    """

    name = "nesterov"

    class Spec(Section):
        name: Literal["nesterov"]
        learning_rate: PositiveFloat = 0.01
        mu: UnitOpenFloat = 0.9

    @property
    def nesterov(self) -> bool:
        return True
