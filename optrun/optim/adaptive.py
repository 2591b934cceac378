"""Per-parameter step sizes from running gradient statistics: AdaGrad, RMSprop, Adam and its relatives."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from optrun.optim import kernels
from optrun.optim.base import Hyperparameters, KernelCall, Optimizer
from optrun.schema import NonNegativeFloat, PositiveFloat, UnitOpenFloat

EPS = 1e-8  # one documented default for every optimizer (the reference code mixes 1e-8 and 1e-4)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi, Hazan and Singer, 2011): the sum of squared gradients scales each step.

        c ← c + g²
        θ ← θ − lr·g / (√c + eps)

    Operations are elementwise; c starts at ``initial_accumulator`` (0 by
    default; TensorFlow uses 0.1) and only grows, so steps shrink.
    """

    name = "adagrad"
    state_names = ("cache",)

    class Spec(Hyperparameters):
        name: Literal["adagrad"]
        learning_rate: PositiveFloat = 0.03
        eps: PositiveFloat = EPS
        initial_accumulator: NonNegativeFloat = 0.0

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        super().__init__(params, **hyperparameters)
        for state in self._state:
            state["cache"].fill(self.hyper.initial_accumulator)

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        c, a, b = state["cache"], state["_a"], state["_b"]
        c += np.multiply(g, g, out=a)
        np.sqrt(c, out=a)
        a += self.hyper.eps
        np.multiply(g, self.lr, out=b)
        b /= a
        p -= b  # θ ← θ − lr·g / (√c + eps)

    def _kernel_call(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> KernelCall:
        f = p.dtype.type
        return kernels.adagrad, (g, state["cache"], f(self.lr), f(self.hyper.eps))


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

    name = "rmsprop"

    class Spec(Hyperparameters):
        name: Literal["rmsprop"]
        learning_rate: PositiveFloat = 0.001
        decay_rate: UnitOpenFloat = 0.9
        eps: PositiveFloat = EPS
        centered: bool = False
        momentum: UnitOpenFloat = 0.0

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        h = self.hyper
        return ("cache", *(("grad_avg",) if h.centered else ()), *(("buffer",) if h.momentum else ()))

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        rho, c, h, a, b = self.hyper.decay_rate, state["cache"], self.hyper, state["_a"], state["_b"]
        c *= rho
        np.multiply(g, g, out=a)
        a *= 1 - rho
        c += a
        if h.centered:
            g_avg = state["grad_avg"]
            g_avg *= rho
            g_avg += np.multiply(g, 1 - rho, out=a)
            np.multiply(g_avg, g_avg, out=a)
            np.subtract(c, a, out=a)
            np.sqrt(a, out=a)
        else:
            np.sqrt(c, out=a)
        a += h.eps  # a: the denominator
        if h.momentum:
            buffer = state["buffer"]
            buffer *= h.momentum
            buffer += np.divide(g, a, out=b)
            p -= np.multiply(buffer, self.lr, out=b)
        else:
            np.multiply(g, self.lr, out=b)
            b /= a
            p -= b

    def _kernel_call(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> KernelCall:
        f, h, rho = p.dtype.type, self.hyper, self.hyper.decay_rate
        g_avg, buffer = state.get("grad_avg", p[:0]), state.get("buffer", p[:0])  # empty: unused
        return kernels.rmsprop, (
            g, state["cache"], g_avg, buffer,
            f(rho), f(1 - rho), f(h.eps), f(self.lr), f(h.momentum), h.centered, bool(h.momentum),
        )  # fmt: skip


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

    name = "adam"

    class Spec(Hyperparameters):
        name: Literal["adam"]
        learning_rate: PositiveFloat = 0.003
        beta1: UnitOpenFloat = 0.9
        beta2: UnitOpenFloat = 0.999
        eps: PositiveFloat = EPS
        amsgrad: bool = False

    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("m", "s", "s_max") if self.hyper.amsgrad else ("m", "s")

    def _moments(self, g: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Update m and s; return m and the s the denominator uses (s_max with amsgrad)."""
        b1, b2, m, s, a = self.hyper.beta1, self.hyper.beta2, state["m"], state["s"], state["_a"]
        m *= b1
        m += np.multiply(g, 1 - b1, out=a)
        s *= b2
        np.multiply(g, g, out=a)
        a *= 1 - b2
        s += a
        if self.hyper.amsgrad:
            np.maximum(state["s_max"], s, out=state["s_max"])
            return m, state["s_max"]
        return m, s

    def _denominator(self, s: np.ndarray, out: np.ndarray) -> np.ndarray:
        """√ŝ + eps into ``out``, computed as √s · (1/√(1 − β2ᵗ)) + eps: one square root, no division."""
        np.sqrt(s, out=out)
        out *= 1 / math.sqrt(1 - self.hyper.beta2**self.t)
        out += self.hyper.eps
        return out

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        m, s = self._moments(g, state)
        step = np.multiply(m, self.lr / (1 - self.hyper.beta1**self.t), out=state["_b"])  # lr·m̂
        step /= self._denominator(s, state["_a"])
        p -= step

    def _kernel_call(
        self,
        p: np.ndarray,
        g: np.ndarray,
        state: dict[str, np.ndarray],
        decay: float = 1.0,
        look_ahead: tuple[float, float] | None = None,
    ) -> KernelCall:
        """Adam's kernel; AdamW passes its ``decay``, NAdam its ``look_ahead`` coefficients (k1, k2)."""
        f, h, t = p.dtype.type, self.hyper, self.t
        k1, k2 = look_ahead or (0.0, 0.0)
        return kernels.adam, (
            g, state["m"], state["s"], state.get("s_max", p[:0]),
            f(h.beta1), f(1 - h.beta1), f(h.beta2), f(1 - h.beta2),
            f(self.lr / (1 - h.beta1**t)), f(1 / math.sqrt(1 - h.beta2**t)),
            f(self.lr), f(h.eps), f(decay), h.amsgrad, look_ahead is not None, f(k1), f(k2),
        )  # fmt: skip


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019): Adam with weight decay decoupled from the gradient.

        θ ← θ − lr·wd·θ
        then the Adam step (m, s, m̂, ŝ as in adam): θ ← θ − lr·m̂ / (√ŝ + eps)

    The decay shrinks every parameter (biases too) by lr·wd per step and never
    enters m or s, unlike an L2 penalty in the loss (``model.weight_decay``),
    whose gradient Adam would rescale. lr·wd follows PyTorch (the paper scales
    wd by the schedule multiplier alone).
    """

    name = "adamw"

    class Spec(Adam.Spec):
        name: Literal["adamw"]  # type: ignore[assignment]
        weight_decay: NonNegativeFloat = 0.01

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        p *= 1 - self.lr * self.hyper.weight_decay
        super()._update(p, g, state)

    def _kernel_call(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], **_: object) -> KernelCall:
        return super()._kernel_call(p, g, state, decay=1 - self.lr * self.hyper.weight_decay)


class NAdam(Adam):
    """NAdam (Dozat, 2016): Adam with Nesterov's look-ahead on the first moment.

        m ← β1·m + (1 − β1)·g
        s ← β2·s + (1 − β2)·g²
        m̄ = β1·m / (1 − β1ᵗ⁺¹) + (1 − β1)·g / (1 − β1ᵗ)
        θ ← θ − lr·m̄ / (√ŝ + eps),  ŝ = s / (1 − β2ᵗ)

    With a constant β1, as in Optax's ``nadam`` (PyTorch adds a β1 schedule).
    """

    name = "nadam"

    class Spec(Adam.Spec):
        name: Literal["nadam"]  # type: ignore[assignment]
        learning_rate: PositiveFloat = 0.003

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray]) -> None:
        b1, t, a, b = self.hyper.beta1, self.t, state["_a"], state["_b"]
        m, s = self._moments(g, state)
        np.multiply(m, b1 / (1 - b1 ** (t + 1)), out=b)
        b += np.multiply(g, (1 - b1) / (1 - b1**t), out=a)  # b: m̄
        b *= self.lr
        b /= self._denominator(s, a)
        p -= b

    def _kernel_call(self, p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], **_: object) -> KernelCall:
        b1, t = self.hyper.beta1, self.t
        return super()._kernel_call(p, g, state, look_ahead=(b1 / (1 - b1 ** (t + 1)), (1 - b1) / (1 - b1**t)))
