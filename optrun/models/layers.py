"""Layers with explicit, batch-vectorized forward and backward passes.

Rows of ``x`` are samples. ``apply`` computes a layer's output and keeps nothing, so that
several threads may apply a layer at once (evaluation does); ``forward`` computes the same
output through ``apply`` and keeps what ``backward`` needs; ``backward`` takes dL/dy and
returns dL/dx, writing parameter gradients into the views it was bound to (so the network's
gradients live in one flat buffer).
"""

from __future__ import annotations

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


class Dense(Layer):
    """Affine map y = x·W + b, with W of shape (fan_in, fan_out)."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        self.fan_in, self.fan_out = fan_in, fan_out
        self.shapes = ((fan_in, fan_out), (fan_out,))

    def bind(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.W, self.b = params
        self.dW, self.db = grads

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


class ReLU(Layer):
    """y = max(x, 0).

    ``in_place``: overwrite the input with the output and the incoming gradient
    with the outgoing one, saving two allocations and passes per call. Networks
    use it, since their activations only ever see the previous layer's fresh
    output and the next layer's fresh gradient; a layer used on its own does not.
    """

    def __init__(self, in_place: bool = False) -> None:
        self.in_place = in_place

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0, out=x if self.in_place else None)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.active = x > 0
        return self.apply(x)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return np.multiply(dy, self.active, out=dy if self.in_place else None)


class LeakyReLU(Layer):
    """y = x for x > 0, slope·x otherwise (slope 0.01)."""

    def __init__(self, slope: float = 0.01) -> None:
        self.slope = slope

    def _factor(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, 1, self.slope).astype(x.dtype, copy=False)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return x * self._factor(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.factor = self._factor(x)
        return x * self.factor

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy * self.factor


class Tanh(Layer):
    """y = tanh(x); dy/dx = 1 − y²."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = self.apply(x)
        return self.y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy * (1 - self.y * self.y)


class Sigmoid(Layer):
    """y = 1 / (1 + e^−x), computed as (1 + tanh(x/2)) / 2, which cannot overflow; dy/dx = y(1 − y)."""

    def apply(self, x: np.ndarray) -> np.ndarray:
        return 0.5 * (1 + np.tanh(0.5 * x))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.y = self.apply(x)
        return self.y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        return dy * self.y * (1 - self.y)


ACTIVATIONS: dict[str, type[Layer]] = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid, "leaky_relu": LeakyReLU}
