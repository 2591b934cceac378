"""Networks: a stack of layers whose parameters and gradients live in two flat buffers."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from optrun import threads
from optrun.models.conv import Conv, Grid, MaxPool
from optrun.models.layers import ACTIVATIONS, Dense, Layer, Weighted
from optrun.models.loss import cross_entropy_sum_and_correct, decayed, softmax_cross_entropy
from optrun.schema import ConfigError, NonNegativeFloat, NonNegativeInt, PositiveInt, Section, tagged_union

Init = Literal["he", "xavier"]
DType = Literal["float32", "float64"]

EVALUATION_ROWS = 1024
"""The most rows per piece of an evaluation: large enough for BLAS to compute a piece's products at full speed on
one thread, small enough that its activations stay in a core's cache."""
PIECE_FLOATS = 1 << 19
"""Floats of a batch's layers (units and patches, ``Network.sample_floats`` a row) per piece of its training step
(``Network.pieces``): a convolutional network's step is cut in pieces for optrun's threads, an MLP's is not. A
piece this small also keeps its layers in a core's cache: a Fashion-MNIST CNN's step ran 15% faster in pieces of
16 rows than whole, on one thread."""
MAX_PIECES = 8
"""The most pieces a step is cut in: each holds a copy of the gradients."""
EVALUATION_FLOATS = EVALUATION_ROWS * 4096
"""The most floats a piece of an evaluation holds in a layer (its patches, in a convolution): fewer rows for a
network whose samples take more."""


class LogisticSpec(Section):
    """Softmax regression: one Dense layer from the inputs to the class scores."""

    type: Literal["logistic"]
    init: Init = "xavier"
    weight_decay: NonNegativeFloat = 0.0
    dtype: DType = "float32"


class _Activated(Section):
    """What the networks with an activation share."""

    activation: Literal["relu", "tanh", "sigmoid", "leaky_relu"] = "relu"
    init: Init | None = None  # None: he for relu and leaky_relu, xavier for tanh and sigmoid
    weight_decay: NonNegativeFloat = 0.0
    dtype: DType = "float32"

    @model_validator(mode="after")
    def _default_init(self) -> _Activated:
        if self.init is None:
            object.__setattr__(self, "init", "he" if "relu" in self.activation else "xavier")
        return self


class MLPSpec(_Activated):
    """A multilayer perceptron: Dense layers with an activation between them."""

    type: Literal["mlp"]
    hidden: Annotated[list[PositiveInt], Field(min_length=1)] = Field(default_factory=lambda: [64])


class ConvLayerSpec(Section):
    """A convolution layer of ``channels`` filters of ``kernel`` × ``kernel`` taps (``kernel`` taps on a signal),
    taken every ``stride`` positions over the input zero-padded by ``padding`` on each side; then the network's
    activation; then, where ``pool`` is given, max pooling over ``pool`` × ``pool`` windows."""

    channels: PositiveInt
    kernel: PositiveInt
    stride: PositiveInt = 1
    padding: NonNegativeInt = 0
    pool: PositiveInt | None = None


class CNNSpec(_Activated):
    """A convolutional network: convolution layers (2-D on images, 1-D on signals and rows of features), then
    the ``hidden`` Dense layers (none by default), then the output layer, an activation between any two."""

    type: Literal["cnn"]
    conv: Annotated[list[ConvLayerSpec], Field(min_length=1)]
    hidden: list[PositiveInt] = Field(default_factory=list)


ModelSpec = tagged_union((LogisticSpec, MLPSpec, CNNSpec), "type")


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
        size = parameter_count(layers)
        self.flat_params = np.zeros(size, dtype=self.dtype)
        self.flat_grads = np.zeros(size, dtype=self.dtype)
        self.params, self.grads = _bind(layers, self.flat_params, self.flat_grads)
        self.dense = [layer for layer in layers if isinstance(layer, Dense)]
        self.weighted = [layer for layer in layers if isinstance(layer, Weighted)]
        self.evaluation_rows = evaluation_rows(layers)
        self.sample_floats = sample_floats(layers)
        self._copies_made: tuple[list[list[Layer]], np.ndarray] = ([], np.zeros((0, size), self.dtype))

    @property
    def n_params(self) -> int:
        return self.flat_params.size

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The logits of the rows of ``x``, keeping nothing: several threads may call it at once."""
        for layer in self.layers:
            x = layer.apply(x)
        return x

    def penalty(self) -> float:
        """(λ/2) Σ_W ‖W‖²."""
        if not self.weight_decay:
            return 0.0
        return 0.5 * self.weight_decay * sum(float(np.vdot(d.W, d.W)) for d in self.weighted)

    def warm_up(self, x: np.ndarray, y: np.ndarray) -> None:
        """Load (numba compiles them, the first time) the compiled passes of its convolutions and pools, by a
        step on the first row of (x, y) whose gradients the next step overwrites: before any timed epoch."""
        if any(isinstance(layer, (Conv, MaxPool)) for layer in self.layers):
            _backpropagate(self.layers, x[:1], y[:1], 1)

    def pieces(self, rows: int) -> int:
        """Pieces a batch of ``rows`` rows is computed in (``loss_and_grad``): one per ``PIECE_FLOATS`` floats its
        layers hold, at most ``MAX_PIECES``; the shapes alone decide, never the threads there are."""
        return pieces(rows, self.sample_floats)

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> float:
        """J on the batch (x, y); fills ``grads`` with ∂J/∂θ.

        A batch whose layers hold many floats (a convolutional network's) is cut into ``pieces`` of rows that
        optrun's threads compute at once, each through its own copy of the layers (sharing the parameters,
        each with its own gradients); the pieces' gradients are then added in order. A piece's numbers do not
        depend on the thread that computes it, so J and ∂J/∂θ are the same on one thread or many."""
        k = self.pieces(len(y))
        if k == 1:
            loss = _backpropagate(self.layers, x, y, len(y))
        else:
            size = -(-len(y) // k)
            k = -(-len(y) // size)
            copies, grads = self._copies(k)
            losses = [0.0] * k

            def piece(i: int) -> None:
                rows = slice(i * size, (i + 1) * size)
                losses[i] = _backpropagate(copies[i], x[rows], y[rows], len(y))

            threads.run_pieces(piece, k)
            np.add.reduce(grads[:k], axis=0, out=self.flat_grads)
            loss = math.fsum(losses)
        if self.weight_decay:
            for d in self.weighted:
                d.dW[...] = decayed(d.dW, d.W, self.weight_decay)
        return loss + self.penalty()

    def _copies(self, k: int) -> tuple[list[list[Layer]], np.ndarray]:
        """``k`` copies of the layers (made once), bound to the parameters and each to its own row of gradients."""
        if len(self._copies_made[0]) < k:
            grads = np.zeros((k, self.n_params), self.dtype)
            copies = [[copy.copy(layer) for layer in self.layers] for _ in range(k)]
            for layers, row in zip(copies, grads, strict=True):
                _bind(layers, self.flat_params, row)
            self._copies_made = (copies, grads)
        return self._copies_made

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(J, accuracy) on a whole set, computed in pieces of ``evaluation_rows`` rows (``EVALUATION_ROWS``, fewer
        where a layer would hold more than ``EVALUATION_FLOATS`` floats) on optrun's threads (``optrun.threads``):
        memory stays bounded, and the pieces, their sums and the order in which they are added do not depend on
        the number of threads, so neither does J to the last bit."""
        size = self.evaluation_rows
        pieces = -(-len(y) // size)
        totals, correct = np.zeros(pieces), np.zeros(pieces, np.int64)

        def piece(i: int) -> None:
            rows = slice(i * size, (i + 1) * size)
            totals[i], correct[i] = cross_entropy_sum_and_correct(self.scores(x[rows]), y[rows])

        threads.run_pieces(piece, pieces)
        return float(np.add.reduce(totals)) / len(y) + self.penalty(), int(np.add.reduce(correct)) / len(y)


def _bind(layers: list[Layer], flat_params: np.ndarray, flat_grads: np.ndarray) -> tuple[list[np.ndarray], ...]:
    """Bind each layer to its views of the flat buffers, in order; the views, as (params, grads)."""
    params: list[np.ndarray] = []
    grads: list[np.ndarray] = []
    offset = 0
    for layer in layers:
        ps, gs = [], []
        for shape in layer.shapes:
            size = math.prod(shape)
            ps.append(flat_params[offset : offset + size].reshape(shape))
            gs.append(flat_grads[offset : offset + size].reshape(shape))
            offset += size
        layer.bind(ps, gs)
        params += ps
        grads += gs
    return params, grads


def _backpropagate(layers: list[Layer], x: np.ndarray, y: np.ndarray, count: int) -> float:
    """The rows' share of the mean cross-entropy of a batch of ``count`` rows; their gradients into the layers'."""
    for layer in layers:
        x = layer.forward(x)
    loss, dy = softmax_cross_entropy(x, y, count)
    for i, layer in enumerate(reversed(layers)):
        dy = layer.backward(dy, need_dx=i < len(layers) - 1)
    return loss


def units(layers: list[Layer]) -> list[int]:
    """Floats per sample of the input and of the output of every Dense, convolution and pooling layer."""
    first = layers[0]
    inputs = math.prod(first.grid) if isinstance(first, (Conv, MaxPool)) else first.fan_in  # type: ignore[attr-defined]
    outputs = [
        math.prod(c.out_grid) if isinstance(c, (Conv, MaxPool)) else c.fan_out
        for c in layers
        if isinstance(c, (Weighted, MaxPool))
    ]
    return [inputs, *outputs]


def sample_floats(layers: list[Layer]) -> int:
    """Floats a sample takes in the layers: its units (``units``) and its patches in every convolution."""
    return sum(units(layers)) + sum(c.patch_floats for c in layers if isinstance(c, Conv))


def pieces(rows: int, floats: int) -> int:
    """Pieces a step on ``rows`` rows of ``floats`` floats each (``sample_floats``) is cut in (``Network.pieces``)."""
    return max(1, min(MAX_PIECES, rows * floats // PIECE_FLOATS))


def evaluation_rows(layers: list[Layer]) -> int:
    """Rows per piece of an evaluation: ``EVALUATION_ROWS``, fewer where a layer's units or patches would take more
    than ``EVALUATION_FLOATS`` floats."""
    patches = [c.patch_floats for c in layers if isinstance(c, Conv)]
    return max(1, min(EVALUATION_ROWS, EVALUATION_FLOATS // max(*units(layers), *patches)))


def _init_weights(net: Network, scheme: str, rng: np.random.Generator) -> None:
    """Weights ~ N(0, σ²): he σ² = 2/fan_in, xavier σ² = 2/(fan_in + fan_out); biases 0."""
    for d in net.weighted:
        var = 2.0 / d.fan_in if scheme == "he" else 2.0 / (d.fan_in + d.fan_out)
        d.W[...] = rng.standard_normal(d.W.shape) * np.sqrt(var)


def layers_of(spec: Any, inputs: int | Grid, n_classes: int) -> list[Layer]:
    """The layers, without their parameters, of the network a model spec describes on samples of ``inputs``
    features, or laid out as the grid ``inputs`` (height, width, channels: ``optrun.data.grid``); ConfigError
    where a convolution or a pool does not fit its input. A grid of height 1 (as a number of features is) is a
    signal: its kernels, strides, padding and pools run along it alone."""
    grid = (1, inputs, 1) if isinstance(inputs, int) else inputs
    layers: list[Layer] = []
    activation = ACTIVATIONS[getattr(spec, "activation", "relu")]
    units = math.prod(grid)
    if spec.type == "cnn":
        line = grid[0] == 1

        def pair(value: int, across: int) -> tuple[int, int]:
            return (across, value) if line else (value, value)

        def refuse(i: int, what: str, size: tuple[int, ...], fix: str) -> ConfigError:
            shown = " × ".join(map(str, size[line:]))
            return ConfigError(f"model.conv[{i}]: a {what} does not fit its input, {shown}; {fix}")

        for i, conv in enumerate(spec.conv):
            kernel, padding = pair(conv.kernel, 1), pair(conv.padding, 0)
            padded = (grid[0] + 2 * padding[0], grid[1] + 2 * padding[1])
            if any(k > size for k, size in zip(kernel, padded, strict=True)):
                fix = "use a smaller kernel, more padding, or less stride and pooling before it"
                raise refuse(i, f"kernel of {conv.kernel}", padded, f"{fix} (the size shown is padded)")
            layers += [
                Conv(grid, conv.channels, kernel, pair(conv.stride, 1), padding),
                activation(in_place=True),  # its dy is the next layer's own
            ]
            grid = layers[-2].out_grid
            if conv.pool is not None:
                if any(w > size for w, size in zip(pair(conv.pool, 1), grid[:2], strict=True)):
                    raise refuse(i, f"pool of {conv.pool}", grid[:2], "use a smaller pool, or less stride before it")
                layers.append(MaxPool(grid, pair(conv.pool, 1)))
                grid = layers[-1].out_grid
        units = math.prod(grid)
    hidden = [] if spec.type == "logistic" else spec.hidden
    for fan_in, fan_out in itertools.pairwise([units, *hidden, n_classes]):
        if layers and isinstance(layers[-1], Dense):  # an activation between two Dense layers
            layers.append(activation(in_place=True))
        layers.append(Dense(fan_in, fan_out))
    return layers


def parameter_count(layers: list[Layer]) -> int:
    """The weights and biases of the layers."""
    return sum(math.prod(shape) for layer in layers for shape in layer.shapes)


def count_parameters(spec: Any, inputs: int | Grid, n_classes: int) -> int:
    """The weights and biases of the network a model spec describes (``layers_of``)."""
    return parameter_count(layers_of(spec, inputs, n_classes))


def build_model(spec: Any, inputs: int | Grid, n_classes: int, rng: np.random.Generator) -> Network:
    """The network a validated model spec describes on ``inputs`` (features, or a grid: ``layers_of``),
    initialised from ``rng``."""
    net = Network(layers_of(spec, inputs, n_classes), dtype=spec.dtype, weight_decay=spec.weight_decay)
    _init_weights(net, spec.init, rng)
    return net
