"""Networks: a stack of layers whose parameters and gradients live in two flat buffers."""

from __future__ import annotations

import itertools
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from optrun import threads
from optrun.models.layers import ACTIVATIONS, Dense, Layer
from optrun.models.loss import cross_entropy_sum_and_correct, decayed, softmax_cross_entropy
from optrun.schema import NonNegativeFloat, PositiveInt, Section, tagged_union

Init = Literal["he", "xavier"]
DType = Literal["float32", "float64"]

EVALUATION_ROWS = 1024
"""Rows per piece of an evaluation: large enough for BLAS to compute a piece's products at full speed on one
thread, small enough that its activations stay in a core's cache."""


class LogisticSpec(Section):
    """Softmax regression: one Dense layer from the inputs to the class scores."""

    type: Literal["logistic"]
    init: Init = "xavier"
    weight_decay: NonNegativeFloat = 0.0
    dtype: DType = "float32"


class MLPSpec(Section):
    """A multilayer perceptron: Dense layers with an activation between them."""

    type: Literal["mlp"]
    hidden: Annotated[list[PositiveInt], Field(min_length=1)] = Field(default_factory=lambda: [64])
    activation: Literal["relu", "tanh", "sigmoid", "leaky_relu"] = "relu"
    init: Init | None = None  # None: he for relu and leaky_relu, xavier for tanh and sigmoid
    weight_decay: NonNegativeFloat = 0.0
    dtype: DType = "float32"

    @model_validator(mode="after")
    def _default_init(self) -> MLPSpec:
        if self.init is None:
            object.__setattr__(self, "init", "he" if "relu" in self.activation else "xavier")
        return self


ModelSpec = tagged_union((LogisticSpec, MLPSpec), "type")


class Network:
    """Layers applied in order to a batch of rows, ending in class scores (logits).

    The training objective is J(θ) = (1/N) Σ_n −log softmax(f(x_n; θ))_{y_n} + (λ/2) Σ_W ‖W‖²,
    the L2 penalty (``weight_decay`` λ) taken over weight matrices, not biases.
    ``params`` and ``grads`` are lists of views into one flat buffer each.
    """

    def __init__(self, layers: list[Layer], dtype: str = "float32", weight_decay: float = 0.0) -> None:
        self.layers = layers
        self.dtype = np.dtype(dtype)
        self.weight_decay = weight_decay
        shapes = [s for layer in layers for s in layer.shapes]
        sizes = [int(np.prod(s)) for s in shapes]
        self.flat_params = np.zeros(sum(sizes), dtype=self.dtype)
        self.flat_grads = np.zeros(sum(sizes), dtype=self.dtype)
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        offset = 0
        for layer in layers:
            ps, gs = [], []
            for shape in layer.shapes:
                size = int(np.prod(shape))
                ps.append(self.flat_params[offset : offset + size].reshape(shape))
                gs.append(self.flat_grads[offset : offset + size].reshape(shape))
                offset += size
            layer.bind(ps, gs)
            self.params += ps
            self.grads += gs
        self.dense = [layer for layer in layers if isinstance(layer, Dense)]

    @property
    def n_params(self) -> int:
        return self.flat_params.size

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The logits of the rows of ``x``, keeping what ``loss_and_grad``'s backward pass needs."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The logits of the rows of ``x``, keeping nothing: several threads may call it at once."""
        for layer in self.layers:
            x = layer.apply(x)
        return x

    def penalty(self) -> float:
        """(λ/2) Σ_W ‖W‖²."""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float(np.vdot(d.W, d.W)) for d in self.dense)

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """J on the batch (x, y); fills ``grads`` with ∂J/∂θ."""
        loss, dy = softmax_cross_entropy(self.forward(x), y)
        for i, layer in enumerate(reversed(self.layers)):
            dy = layer.backward(dy, need_dx=i < len(self.layers) - 1)
        if self.weight_decay:
            for d in self.dense:
                d.dW[...] = decayed(d.dW, d.W, self.weight_decay)
        return loss + self.penalty()

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(J, accuracy) on a whole set, computed in pieces of ``EVALUATION_ROWS`` rows on optrun's threads
        (``optrun.threads``): memory stays bounded, and the pieces, their sums and the order in which they
        are added do not depend on the number of threads, so neither does J to the last bit."""
        pieces = -(-len(y) // EVALUATION_ROWS)
        totals, correct = np.zeros(pieces), np.zeros(pieces, np.int64)

        def piece(i: int) -> None:
            rows = slice(i * EVALUATION_ROWS, (i + 1) * EVALUATION_ROWS)
            totals[i], correct[i] = cross_entropy_sum_and_correct(self.scores(x[rows]), y[rows])

        threads.run_pieces(piece, pieces)
        return float(np.add.reduce(totals)) / len(y) + self.penalty(), int(np.add.reduce(correct)) / len(y)


def _init_weights(net: Network, scheme: str, rng: np.random.Generator) -> None:
    """Weights ~ N(0, σ²): he σ² = 2/fan_in, xavier σ² = 2/(fan_in + fan_out); biases 0."""
    for d in net.dense:
        var = 2.0 / d.fan_in if scheme == "he" else 2.0 / (d.fan_in + d.fan_out)
        d.W[...] = rng.standard_normal(d.W.shape) * np.sqrt(var)


def widths(spec: Any, n_features: int, n_classes: int) -> list[int]:
    """The widths of the network's layers of units, from its inputs to its class scores."""
    return [n_features, *([] if spec.type == "logistic" else spec.hidden), n_classes]


def count_parameters(spec: Any, n_features: int, n_classes: int) -> int:
    """The weights and biases of the network a model spec describes: Σ (fan_in + 1)·fan_out over its layers."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(widths(spec, n_features, n_classes)))


def build_model(spec: Any, n_features: int, n_classes: int, rng: np.random.Generator) -> Network:
    """The network a validated model spec describes, initialised from ``rng``."""
    layers: list[Layer] = []
    for fan_in, fan_out in itertools.pairwise(widths(spec, n_features, n_classes)):
        if layers:  # an activation between two Dense layers
            layers.append(ACTIVATIONS[spec.activation](in_place=True))  # its dy is the next layer's own
        layers.append(Dense(fan_in, fan_out))
    net = Network(layers, dtype=spec.dtype, weight_decay=spec.weight_decay)
    _init_weights(net, spec.init, rng)
    return net
