"""Per-parameter step sizes from running gradient statistics: AdaGrad, RMSprop, Adam and its relatives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from optrun.optim.base import Hyperparameters, Optimizer
from optrun.schema import NonNegativeFloat, PositiveFloat, UnitOpenFloat

EPS = 1e-8  # one documented default for every optimizer (the reference code mixes 1e-8 and 1e-4)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan and Singer, 2011): the sum of squared gradients scales each step.

        c ← c + g²
        θ ← θ − lr·g / (√c + eps)

    Operations are elementwise; c starts at ``initial_accumulator`` (0 by
    default; TensorFlow uses 0.1) and only grows, so steps shrink.
    """

    state = ("cache",)

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 0.0316
        eps: PositiveFloat = EPS
        initial_accumulator: NonNegativeFloat = 0.0

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        super().__init__(params, **hyperparameters)
        for state in self._state:
            state["cache"].fill(self.hyper.initial_accumulator)

    def scalars(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "eps": self.hyper.eps}

    @staticmethod
    def rule(p, g, cache, lr, eps):
        cache = cache + g * g
        return p - g * lr / (np.sqrt(cache) + eps), cache


class RMSprop(Optimizer):
    """RMSprop (Tieleman and Hinton, 2012): a decaying average of squared gradients scales each step.

        c ← decay_rate·c + (1 − decay_rate)·g²
        θ ← θ − lr·g / (√c + eps)
        with centered: ḡ ← decay_rate·ḡ + (1 − decay_rate)·g and √c becomes √(c − ḡ²)
        with momentum: b ← momentum·b + g / (√c + eps); θ ← θ − lr·b

    Operations are elementwise; c, ḡ and b start at zero. ``centered``
    (Graves, 2013) divides by an estimate of the gradient's standard deviation
    instead of its root mean square. ``momentum`` follows PyTorch: the learning
    rate multiplies the buffer b, outside it.
    """

    state = ("cache", "grad_avg", "buffer")

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 0.001
        decay_rate: UnitOpenFloat = 0.9
        eps: PositiveFloat = EPS
        centered: bool = False
        momentum: UnitOpenFloat = 0.0

    @property
    def state_names(self) -> tuple[str, ...]:
        h = self.hyper
        return ("cache", *(("grad_avg",) if h.centered else ()), *(("buffer",) if h.momentum else ()))

    def scalars(self) -> dict[str, float | bool]:
        h = self.hyper
        return {"rho": h.decay_rate, "one_minus_rho": 1 - h.decay_rate, "eps": h.eps, "lr": self.lr,
                "momentum": h.momentum, "centered": h.centered, "with_momentum": bool(h.momentum)}  # fmt: skip

    @staticmethod
    def rule(p, g, cache, grad_avg, buffer, rho, one_minus_rho, eps, lr, momentum, centered, with_momentum):
        cache = cache * rho + g * g * one_minus_rho
        if centered:
            grad_avg = grad_avg * rho + g * one_minus_rho
            d = np.sqrt(cache - grad_avg * grad_avg) + eps
        else:
            d = np.sqrt(cache) + eps
        if with_momentum:
            buffer = buffer * momentum + g / d
            return p - buffer * lr, cache, grad_avg, buffer
        return p - g * lr / d, cache, grad_avg, buffer


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015): momentum on the gradient and on its square, bias-corrected.

        m ← β1·m + (1 − β1)·g
        s ← β2·s + (1 − β2)·g²
        m̂ = m / (1 − β1ᵗ),  ŝ = s / (1 − β2ᵗ)
        θ ← θ − lr·m̂ / (√ŝ + eps)
        with amsgrad: s_max ← max(s_max, s) and ŝ = s_max / (1 − β2ᵗ)

    Operations are elementwise; m, s and s_max start at zero and t counts steps
    from 1 over the whole run (never reset between epochs). eps is added
    outside the square root, as in the paper. AMSGrad (Reddi, Kale and Kumar,
    2018) never lets the denominator shrink; the bias correction of s_max
    follows PyTorch. The corrections are folded into two scalars, lr/(1 − β1ᵗ)
    and 1/√(1 − β2ᵗ), so each element costs one square root and one division.
    """

    state = ("m", "s", "s_max")

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 0.01
        beta1: UnitOpenFloat = 0.9
        beta2: UnitOpenFloat = 0.999
        eps: PositiveFloat = EPS
        amsgrad: bool = False

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("m", "s", "s_max") if self.hyper.amsgrad else ("m", "s")

    def scalars(self) -> dict[str, float | bool]:
        h, t = self.hyper, self.t
        return {
            "b1": h.beta1, "c1": 1 - h.beta1, "b2": h.beta2, "c2": 1 - h.beta2, "eps": h.eps, "amsgrad": h.amsgrad,
            "step": self.lr / (1 - h.beta1**t),  # lr·m̂ = step·m
            "root": 1 / math.sqrt(1 - h.beta2**t),  # √ŝ = root·√s
        }  # fmt: skip

    @staticmethod
    def rule(p, g, m, s, s_max, b1, c1, b2, c2, step, root, eps, amsgrad):
        m, s, s_max, d = moments(g, m, s, s_max, b1, c1, b2, c2, root, eps, amsgrad)
        return p - m * step / d, m, s, s_max


def moments(g, m, s, s_max, b1, c1, b2, c2, root, eps, amsgrad):
    """Adam's moments and denominator, which its relatives share: m ← β1·m + (1 − β1)·g;
    s ← β2·s + (1 − β2)·g²; with amsgrad s_max ← max(s_max, s), used for s below;
    d = √s · root + eps (√ŝ + eps, with ŝ = s / (1 − β2ᵗ))."""
    m = m * b1 + g * c1
    s = s * b2 + g * g * c2
    if amsgrad:
        s_max = np.maximum(s_max, s)
        return m, s, s_max, np.sqrt(s_max) * root + eps
    return m, s, s_max, np.sqrt(s) * root + eps


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019): Adam with weight decay decoupled from the gradient.

        θ ← θ − lr·wd·θ
        then the Adam step (m, s, m̂, ŝ as in adam): θ ← θ − lr·m̂ / (√ŝ + eps)

    The decay shrinks every parameter (biases too) by lr·wd per step and never
    enters m or s, unlike an L2 penalty in the loss (``model.weight_decay``),
    whose gradient Adam would rescale. lr·wd follows PyTorch (the paper scales
    wd by the schedule multiplier alone).
    """

    class Spec(Adam.Spec):
        weight_decay: NonNegativeFloat = 0.01

    def scalars(self) -> dict[str, float | bool]:
        return {**super().scalars(), "decay": 1 - self.lr * self.hyper.weight_decay}

    @staticmethod
    def rule(p, g, m, s, s_max, b1, c1, b2, c2, step, root, eps, amsgrad, decay):
        m, s, s_max, d = moments(g, m, s, s_max, b1, c1, b2, c2, root, eps, amsgrad)
        return p * decay - m * step / d, m, s, s_max  # decay = 1 − lr·wd


class NAdam(Adam):
    """NAdam (Dozat, 2016): Adam with Nesterov's look-ahead on the first moment.

        m ← β1·m + (1 − β1)·g
        s ← β2·s + (1 − β2)·g²
        m̄ = β1·m / (1 − β1ᵗ⁺¹) + (1 − β1)·g / (1 − β1ᵗ)
        θ ← θ − lr·m̄ / (√ŝ + eps),  ŝ = s / (1 − β2ᵗ)

    With a constant β1, as in Optax's ``nadam`` (PyTorch adds a β1 schedule).
    """

    def scalars(self) -> dict[str, float | bool]:
        b1, t = self.hyper.beta1, self.t
        return {**super().scalars(), "lr": self.lr, "k1": b1 / (1 - b1 ** (t + 1)), "k2": (1 - b1) / (1 - b1**t)}

    @staticmethod
    def rule(p, g, m, s, s_max, b1, c1, b2, c2, step, root, eps, amsgrad, lr, k1, k2):
        m, s, s_max, d = moments(g, m, s, s_max, b1, c1, b2, c2, root, eps, amsgrad)
        return p - (m * k1 + g * k2) * lr / d, m, s, s_max  # m·k1 + g·k2 = m̄
