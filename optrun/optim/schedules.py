"""Learning-rate schedules and the momentum schedule, as functions of the step t = 1, 2, ...

Learning rate (``schedule:`` on any optimizer; lr is the optimizer's ``learning_rate``):

    constant:     lr_t = lr
    step:         lr_t = lr · factor^⌊(t − 1) / every⌋
    exponential:  lr_t = lr · decay^(t − 1)
    cosine:       lr_t = min + (lr − min) · (1 + cos(π · min((t − 1) / steps, 1))) / 2

With ``warmup: W`` (any schedule), the first W steps ramp up linearly,
lr_t = lr · t / W for t ≤ W, and the schedule then runs from its start:
lr_t = schedule(t − W) for t > W.

Momentum (``mu_schedule:`` on momentum and nesterov), the reference texts'
schedule with its end capped below 1 (at mu = 1 the ball never stops):

    linear:       mu_t = start + (end − start) · min((t − 1) / steps, 1)

so the first step uses ``start`` and every step after ``steps`` uses ``end``.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from optrun.schema import Fraction, NonNegativeFloat, NonNegativeInt, PositiveInt, Section, UnitOpenFloat, tagged_union


class _Schedule(Section):
    name: str  # each schedule narrows it to its own
    warmup: NonNegativeInt = 0  # steps of linear warm-up before the schedule starts

    def __call__(self, lr: float, t: int) -> float:
        """The learning rate for step ``t`` (from 1) of a base rate ``lr``."""
        if t <= self.warmup:
            return lr * t / self.warmup
        return self._rate(lr, t - self.warmup)

    def _rate(self, lr: float, t: int) -> float:
        raise NotImplementedError


class Constant(_Schedule):
    name: Literal["constant"]

    def _rate(self, lr: float, t: int) -> float:
        return lr


class Step(_Schedule):
    name: Literal["step"]
    every: PositiveInt
    factor: Fraction = 0.1

    def _rate(self, lr: float, t: int) -> float:
        return lr * self.factor ** ((t - 1) // self.every)


class Exponential(_Schedule):
    name: Literal["exponential"]
    decay: Fraction

    def _rate(self, lr: float, t: int) -> float:
        return lr * self.decay ** (t - 1)


class Cosine(_Schedule):
    name: Literal["cosine"]
    steps: PositiveInt
    min: NonNegativeFloat = 0.0

    def _rate(self, lr: float, t: int) -> float:
        progress = min((t - 1) / self.steps, 1.0)
        return self.min + (lr - self.min) * (1 + math.cos(math.pi * progress)) / 2


ScheduleSpec = tagged_union((Constant, Step, Exponential, Cosine), "name")


class LinearMomentum(Section):
    """mu_t = start + (end − start) · min((t − 1) / steps, 1)."""

    name: Literal["linear"]
    start: UnitOpenFloat
    end: UnitOpenFloat
    steps: PositiveInt

    def __call__(self, t: int) -> float:
        return self.start + (self.end - self.start) * min((t - 1) / self.steps, 1.0)


MomentumScheduleSpec = tagged_union((LinearMomentum,), "name")


class Restart(Section):
    """Momentum restart: the velocity is set to zero ``every`` k steps, or ``when`` it points uphill
    (``gradient``: g·v < 0, with θ ← θ − v) or the minibatch loss rose (``loss``)."""

    every: PositiveInt | None = None
    when: Literal["gradient", "loss"] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Restart:
        if (self.every is None) == (self.when is None):
            raise PydanticCustomError("restart", "give exactly one of 'every' (steps) or 'when' (gradient or loss)")
        return self
