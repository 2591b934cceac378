"""Lion: the sign of an interpolated momentum."""

from __future__ import annotations

import numpy as np

from optrun.optim.base import Hyperparameters, Optimizer
from optrun.schema import NonNegativeFloat, PositiveFloat, UnitOpenFloat


class Lion(Optimizer):
    """Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms"): every step has the same
    size in every coordinate, lr, in the direction of the sign of an interpolation of momentum and gradient.

        c = β1·m + (1 − β1)·g
        θ ← θ − lr·(sign(c) + λ·θ)
        m ← β2·m + (1 − β2)·g

    m starts at zero; λ is the decoupled ``weight_decay``. The paper's defaults: β1 = 0.9, β2 = 0.99, and
    a learning rate 3–10 times smaller than AdamW's.
    """

    state = ("m",)

    class Spec(Hyperparameters):
        learning_rate: PositiveFloat = 3.16e-4
        beta1: UnitOpenFloat = 0.9
        beta2: UnitOpenFloat = 0.99
        weight_decay: NonNegativeFloat = 0.0

    def scalars(self) -> dict[str, float | bool]:
        h = self.hyper
        return {"b1": h.beta1, "c1": 1 - h.beta1, "b2": h.beta2, "c2": 1 - h.beta2, "lr": self.lr, "wd": h.weight_decay}

    @staticmethod
    def rule(p, g, m, b1, c1, b2, c2, lr, wd):
        c = m * b1 + g * c1
        return p - (np.sign(c) + p * wd) * lr, m * b2 + g * c2
