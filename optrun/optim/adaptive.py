"""Per-parameter step sizes from running gradient statistics: AdaGrad, RMSprop, Adam."""

from __future__ import annotations

from typing import Literal

import numpy as np

from optrun.optim.base import Optimizer
from optrun.schema import PositiveFloat, Section, UnitOpenFloat

EPS = 1e-8  # one documented default for every optimizer (the reference code mixes 1e-8 and 1e-4)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan and Singer, 2011): the sum of squared gradients scales each step.

        c ← c + g²
        θ ← θ − lr·g / (√c + eps)

    Operations are elementwise; c starts at zero and only grows, so steps shrink.
    """

    name = "adagrad"
    state_names = ("cache",)

    class Spec(Section):
        name: Literal["adagrad"]
        learning_rate: PositiveFloat = 0.03
        eps: PositiveFloat = EPS

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        c = state["cache"]
        c += g * g
        p -= self.hyper.learning_rate * g / (np.sqrt(c) + self.hyper.eps)


class RMSprop(Optimizer):
    """RMSprop (Tieleman and Hinton, 2012): a decaying average of squared gradients scales each step.

        c ← decay_rate·c + (1 − decay_rate)·g²
        θ ← θ − lr·g / (√c + eps)

    Operations are elementwise; c starts at zero.
    """

    name = "rmsprop"
    state_names = ("cache",)

    class Spec(Section):
        name: Literal["rmsprop"]
        learning_rate: PositiveFloat = 0.001
        decay_rate: UnitOpenFloat = 0.9
        eps: PositiveFloat = EPS

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        rho, c = self.hyper.decay_rate, state["cache"]
        c *= rho
        c += (1 - rho) * (g * g)
        p -= self.hyper.learning_rate * g / (np.sqrt(c) + self.hyper.eps)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): momentum on the gradient and on its square, bias-corrected.

        m ← β1·m + (1 − β1)·g
        s ← β2·s + (1 − β2)·g²
        m̂ = m / (1 − β1ᵗ),  ŝ = s / (1 − β2ᵗ)
        θ ← θ − lr·m̂ / (√ŝ + eps)

    Operations are elementwise; m and s start at zero and t counts steps from 1
    over the whole run (never reset between epochs). eps is added outside the
    square root, as in the paper.
    """

    name = "adam"
    state_names = ("m", "s")

    class Spec(Section):
        name: Literal["adam"]
        learning_rate: PositiveFloat = 0.003
        beta1: UnitOpenFloat = 0.9
        beta2: UnitOpenFloat = 0.999
        eps: PositiveFloat = EPS

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        b1, b2, m, s = self.hyper.beta1, self.hyper.beta2, state["m"], state["s"]
        m *= b1
        m += (1 - b1) * g
        s *= b2
        s += (1 - b2) * (g * g)
        m_hat = m / (1 - b1**self.t)
        s_hat = s / (1 - b2**self.t)
        p -= self.hyper.learning_rate * m_hat / (np.sqrt(s_hat) + self.hyper.eps)
