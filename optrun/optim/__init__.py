"""Optimizers: the update rules, their validated hyperparameters, and ``build_optimizer``."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, TypeAdapter

from optrun.optim.adaptive import AdaGrad, Adam, AdamW, NAdam, RMSprop
from optrun.optim.base import Hyperparameters, Optimizer, flat_buffer
from optrun.optim.momentum import SGD, Momentum, Nesterov
from optrun.schema import tagged_union, validate

OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam, AdamW, NAdam)
}
REFERENCE_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")  # what compare runs by default

OptimizerSpec = tagged_union((cls.Spec for cls in OPTIMIZERS.values()), "name")
_SPEC = TypeAdapter(OptimizerSpec)


def parse_optimizer_spec(spec: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate an ``optimizer:`` mapping; raises ConfigError naming the key at fault."""
    if isinstance(spec, BaseModel):
        spec = spec.model_dump()
    return validate(_SPEC, dict(spec), prefix="optimizer")


def build_optimizer(spec: Mapping[str, Any] | BaseModel, params: Sequence[np.ndarray]) -> Optimizer:
    """The optimizer that ``spec`` (the YAML ``optimizer:`` mapping) names, over ``params``.

    ``params`` are updated in place by ``.step(grads)``.
    """
    hyper = parse_optimizer_spec(spec).model_dump()
    return OPTIMIZERS[hyper.pop("name")](params, **hyper)


def update_rule(cls: type[Optimizer]) -> str:
    """The update rule block of an optimizer's docstring (its second paragraph)."""
    return textwrap.dedent(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[1]).strip()


__all__ = [
    "OPTIMIZERS",
    "REFERENCE_OPTIMIZERS",
    "Hyperparameters",
    "Optimizer",
    "OptimizerSpec",
    "build_optimizer",
    "flat_buffer",
    "parse_optimizer_spec",
    "update_rule",
]
