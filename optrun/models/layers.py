"""Layers with explicit, batch-vectorized forward and backward passes.

Rows of ``x`` are samples. ``apply`` computes a layer's output and keeps nothing, so that
several threads may apply a layer at once (evaluation does); ``forward`` computes the same
output through ``apply`` and keeps what ``backward`` needs; ``backward`` takes dL/dy and
returns dL/dx, writing parameter gradients into the views it was bound to (so the network's
gradients live in one flat buffer).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class Layer:
    """Base class: a layer without parameters."""

    shapes: tuple[tuple[int, ...], ...] = ()

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        """Give the layer its parameter and gradient arrays (views into flat buffers)."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The layer's output y = f(x), keeping nothing."""
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``apply(x)``, keeping what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        raise NotImplementedError


class Weighted(Layer):
    """A layer with a weight matrix W of shape (inputs, outputs) and a bias b per output; ``fan_in`` and
    ``fan_out`` (the units a weight's initial scale is set by) are the matrix's, unless a subclass says."""

    def __init__(self, inputs: int, outputs: int) -> None:
        self.fan_in, self.fan_out = inputs, outputs
        self.shapes = ((inputs, outputs), (outputs,))

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.W, self.b = params
        self.dW, self.db = grads


class Dense(Weighted):
    """Affine map y = x·W + b, with W of shape (fan_in, fan_out)."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.W
        y += self.b
        return y

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return self.apply(x)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        np.matmul(self.x.T, dy, out=self.dW)  # dL/dW = xᵀ·dy
        np.add.reduce(dy, axis=0, out=self.db)  # dL/db = Σ_rows dy
        return dy @ self.W.T if need_dx else None


class Activation(Layer):
    """An elementwise activation y = value(x) whose derivative is a function of its output: dy/dx = slope(y).

    ``value`` and ``slope`` are stated once, for numbers, with ``one`` (1 in the arrays' dtype) and the
    class's ``constants`` (by name, in the arrays' dtype too) the only constants they use: a number written
    in them would be a float64 in compiled code. numpy applies them to whole arrays here; the compiled epoch
    (``optrun.compiled_epoch``) compiles them into its loops.
    """

    constants: ClassVar[dict[str, float]] = {}

    def __init__(self, in_place: bool = False) -> None:
        self.in_place = in_place
        self._typed_by_dtype: dict[np.dtype, dict[str, Any]] = {}

    @staticmethod
    def value(x: Any, one: Any, **constants: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def slope(y: Any, one: Any, **constants: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def arguments(cls) -> dict[str, float]:
        """What ``value`` and ``slope`` take after their number, by name: ``one`` and the constants."""
        return {"one": 1.0, **cls.constants}

    def _typed(self, dtype: np.dtype) -> dict[str, Any]:
        """``arguments()`` in ``dtype``."""
        if dtype not in self._typed_by_dtype:
            self._typed_by_dtype[dtype] = {k: dtype.type(v) for k, v in self.arguments().items()}
        return self._typed_by_dtype[dtype]

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.value(x, **self._typed(x.dtype))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = self.apply(x)
        return self.y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """dy·slope(y); ``in_place`` (a network's activations, whose dy is the next layer's fresh gradient)
        writes it over dy."""
        return np.multiply(dy, self.slope(self.y, **self._typed(dy.dtype)), out=dy if self.in_place else None)


class ReLU(Activation):
    """y = max(x, 0) (NaN stays NaN); dy/dx = [y > 0]."""

    @staticmethod
    def value(x, one):
        return np.maximum(x, one - one)

    @staticmethod
    def slope(y, one):
        return y > one - one  # 1 or 0 as a bool: dy·slope multiplies by it exactly, without a float array


class LeakyReLU(Activation):
    """y = x for x > 0, leak·x otherwise (leak 0.01); dy/dx = 1 for y > 0, leak otherwise."""

    constants: ClassVar[dict[str, float]] = {"leak": 0.01}

    @staticmethod
    def value(x, one, leak):
        return x * _leaky_slope(x, one, leak)

    @staticmethod
    def slope(y, one, leak):
        return _leaky_slope(y, one, leak)  # y > 0 where x > 0


def _leaky_slope(v, one, leak):
    """1 where v > 0, else leak."""
    return np.maximum((v > one - one) * one, leak)


class Tanh(Activation):
    """y = tanh(x); dy/dx = 1 − y²."""

    @staticmethod
    def value(x, one):
        return np.tanh(x)

    @staticmethod
    def slope(y, one):
        return one - y * y


class Sigmoid(Activation):
    """y = 1 / (1 + e^−x), computed as (1 + tanh(x/2)) / 2, which cannot overflow; dy/dx = y(1 − y)."""

    @staticmethod
    def value(x, one):
        half = one / (one + one)
        return half * (one + np.tanh(half * x))

    @staticmethod
    def slope(y, one):
        return y * (one - y)


ACTIVATIONS: dict[str, type[Activation]] = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU}
