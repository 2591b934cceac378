"""Optimizers: the update rules, their validated hyperparameters, and ``build_optimizer``."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, PlainValidator, SerializeAsAny, TypeAdapter
from pydantic_core import PydanticCustomError

from optrun.optim.base import Hyperparameters, Optimizer, flat_buffer
from optrun.optim.registry import BUILT_IN, NotAnOptimizer, optimizer_class, source_digest
from optrun.schema import NonNegativeFloat, PositiveFloat, UnitOpenFloat, describe, validate

OPTIMIZERS: dict[str, type[Optimizer]] = {name: optimizer_class(name) for name in BUILT_IN}
REFERENCE_OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")  # what compare runs by default


def _spec(data: Any) -> Hyperparameters:
    """An ``optimizer:`` mapping validated by the ``Spec`` of the class its ``name`` means."""
    if isinstance(data, Hyperparameters):
        return data
    if not isinstance(data, Mapping):
        got = {"got": describe(data)}
        raise PydanticCustomError("model_type", "must be a mapping of keys to values, got {got}", got)
    name = data.get("name")
    if name is None:
        raise PydanticCustomError("name", "needs a 'name' key", {})
    if not isinstance(name, str):
        raise PydanticCustomError("name", "must be a string, got {got}", {"got": describe(name), "key": "name"})
    try:
        cls = optimizer_class(name)
        data = {**data, "source": source_digest(name, data.get("source"))}
    except NotAnOptimizer as exc:
        raise PydanticCustomError("name", str(exc).replace("{", "{{").replace("}", "}}")) from None
    return cls.Spec.model_validate(cls.Spec.fill_defaults(data))


OptimizerSpec = Annotated[SerializeAsAny[Hyperparameters], PlainValidator(_spec)]
"""The type of a config's ``optimizer:`` section: the hyperparameters of the optimizer its ``name`` means."""
_SPEC = TypeAdapter(OptimizerSpec)


def parse_optimizer_spec(spec: Mapping[str, Any] | BaseModel) -> Hyperparameters:
    """Validate an ``optimizer:`` mapping; raises ConfigError naming the key at fault."""
    if isinstance(spec, BaseModel):
        spec = spec.model_dump()
    return validate(_SPEC, dict(spec), prefix="optimizer")


def build_optimizer(spec: Mapping[str, Any] | BaseModel, params: Sequence[np.ndarray]) -> Optimizer:
    """The optimizer that ``spec`` (the YAML ``optimizer:`` mapping) names, over ``params``.

    ``params`` are updated in place by ``.step(grads)``.
    """
    hyper = parse_optimizer_spec(spec).model_dump()
    return optimizer_class(hyper["name"])(params, **hyper)


COMMON_KEYS = tuple(k for k in Hyperparameters.model_fields if k not in ("name", "learning_rate", "source"))
"""The hyperparameters every optimizer takes besides its learning rate: schedule, clip_norm."""


def update_rule(cls: type[Optimizer]) -> str:
    """The update rule block of an optimizer's docstring (its second paragraph)."""
    paragraphs = inspect.cleandoc(cls.__doc__ or "").split("\n\n")
    return textwrap.dedent(paragraphs[1]).strip() if len(paragraphs) > 1 else "(not documented)"


def optimizer_entry(name: str, cls: type[Optimizer]) -> tuple[str, dict[str, str], str]:
    """An optimizer as ``optrun optimizers`` lists it: its name, its own hyperparameters' defaults (as text),
    and the update rule its docstring states."""
    defaults = cls.Spec.model_validate(cls.Spec.fill_defaults({"name": name}))  # e.g. mu without a mu_schedule
    own = {k: _text(getattr(defaults, k)) for k in cls.Spec.model_fields if k not in ("name", "source", *COMMON_KEYS)}
    return name, own, update_rule(cls)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower()


def optimizers_markdown(rows: Sequence[tuple[str, dict[str, str], str]]) -> str:
    """The table of ``optimizer_entry``'s rows in Markdown."""
    lines = ["| name | hyperparameters (default) | update rule |", "|---|---|---|"]
    for name, defaults, rule in rows:
        hyper = "<br>".join(f"`{k}` = {v}" for k, v in defaults.items())
        lines.append(f"| `{name}` | {hyper} | {'<br>'.join(f'`{line.strip()}`' for line in rule.splitlines())} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "COMMON_KEYS",
    "OPTIMIZERS",
    "REFERENCE_OPTIMIZERS",
    "Hyperparameters",
    "NonNegativeFloat",
    "Optimizer",
    "OptimizerSpec",
    "PositiveFloat",
    "UnitOpenFloat",
    "build_optimizer",
    "flat_buffer",
    "optimizer_entry",
    "optimizers_markdown",
    "parse_optimizer_spec",
    "update_rule",
]
