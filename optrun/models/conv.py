"""Convolution and max pooling over a grid of positions (``optrun.data.grid``), in matrix products.

A sample's row holds a grid of H × W positions of C channels, channel after channel within each position; a
signal is a grid of height 1. A layer's output is such a row again, so layers stack as ``Dense`` ones do, and
the last grid is its row of features to the ``Dense`` layers after it (flattening costs nothing).

The convolution gathers the patch under each position of its kernel into a row of a matrix (im2col), so that
the layer is one matrix product over all the batch's positions; its backward pass is two more products and the
patches' gradients added back onto the grid (col2im). Gathering, adding back and pooling are compiled passes
over the grid (``optrun.models.grid_passes``); the products are numpy's.
"""

from __future__ import annotations

import numpy as np

from optrun.models.layers import Layer, Weighted

Grid = tuple[int, int, int]
"""(height, width, channels) of a sample's row."""
Pair = tuple[int, int]
"""A size along the height and along the width."""


def out_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Positions a kernel takes along an axis of ``size`` padded by ``padding`` each side: ⌊(size + 2p − k)/s⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


class Conv(Weighted):
    """A convolution (cross-correlation, as in every deep-learning library) of C_out filters:

        y[n, i, j, o] = b[o] + Σ_{a, b, c} x̃[n, s_h·i + a, s_w·j + b, c] · W[a, b, c, o]

    where x̃ is the input grid zero-padded by p_h rows and p_w columns on each side, (a, b) runs over the
    k_h × k_w taps of the kernel and c over the input channels. W is kept as the (k_h·k_w·C) × C_out matrix
    that multiplies the patches: its fan-in is k_h·k_w·C, its fan-out k_h·k_w·C_out.
    """

    def __init__(self, grid: Grid, channels: int, kernel: Pair, stride: Pair, padding: Pair) -> None:
        self.grid, self.kernel, self.stride, self.padding = grid, kernel, stride, padding
        height, width, c = grid
        self.out_grid = (
            out_size(height, kernel[0], stride[0], padding[0]),
            out_size(width, kernel[1], stride[1], padding[1]),
            channels,
        )
        taps = kernel[0] * kernel[1]
        super().__init__(taps * c, channels)
        self.fan_out = taps * channels

    @property
    def patch_floats(self) -> int:
        """Floats of a sample's patches, which ``forward`` keeps for the backward pass."""
        return self.out_grid[0] * self.out_grid[1] * self.fan_in

    def _patches(self, x: np.ndarray) -> np.ndarray:
        """Every patch of every sample of ``x``, a row each: (N·H_out·W_out) × (k_h·k_w·C)."""
        from optrun.models.grid_passes import gather_patches  # here: numba takes half a second to import

        n, (h_out, w_out, _) = len(x), self.out_grid
        patches = np.empty((n, h_out, w_out, *self.kernel, self.grid[2]), x.dtype)
        gather_patches(x.reshape(n, *self.grid), *self.kernel, *self.stride, *self.padding, patches)
        return patches.reshape(n * h_out * w_out, self.fan_in)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self._product(self._patches(x), len(x))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.patches = self._patches(x)
        return self._product(self.patches, len(x))

    def _product(self, patches: np.ndarray, n: int) -> np.ndarray:
        y = patches @ self.W
        y += self.b
        return y.reshape(n, -1)

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        """dL/dW = Pᵀ·dY and dL/db = Σ dY over the patches P; dL/dx adds each patch's gradient dY·Wᵀ back onto
        the positions the patch was taken from."""
        n = len(dy)
        dy = dy.reshape(-1, self.out_grid[2])
        np.matmul(self.patches.T, dy, out=self.dW)
        np.matmul(np.ones(len(dy), dy.dtype), dy, out=self.db)  # a product: numpy's sum down a column is slower
        if not need_dx:
            return None
        from optrun.models.grid_passes import add_patches

        d_patches = (dy @ self.W.T).reshape(n, *self.out_grid[:2], *self.kernel, self.grid[2])
        dx = np.zeros((n, *self.grid), dy.dtype)
        add_patches(d_patches, *self.stride, *self.padding, dx)
        return dx.reshape(n, -1)


class MaxPool(Layer):
    """Max pooling over non-overlapping k_h × k_w windows (stride = window, as PyTorch's default; positions
    past the last whole window are dropped):

        y[n, i, j, c] = max_{a < k_h, b < k_w} x[n, k_h·i + a, k_w·j + b, c]

    Its gradient goes to the window's first largest input (taps in row-major order, as PyTorch's), none to
    the others. Both passes are compiled (``optrun.models.grid_passes``).
    """

    def __init__(self, grid: Grid, window: Pair) -> None:
        self.grid, self.window = grid, window
        height, width, c = grid
        self.out_grid = (height // window[0], width // window[1], c)

    def _pool(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from optrun.models.grid_passes import pool_forward  # here: numba takes half a second to import

        y = np.empty((len(x), *self.out_grid), x.dtype)
        first = np.empty(y.shape, np.int32)
        pool_forward(x.reshape(len(x), *self.grid), *self.window, y, first)
        return y.reshape(len(x), -1), first

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self._pool(x)[0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        y, self.first = self._pool(x)
        return y

    def backward(self, dy: np.ndarray, need_dx: bool = True) -> np.ndarray | None:
        from optrun.models.grid_passes import pool_backward

        if not need_dx:
            return None
        dx = np.zeros((len(dy), *self.grid), dy.dtype)
        pool_backward(dy.reshape(self.first.shape), self.first, *self.window, dx)
        return dx.reshape(len(dy), -1)
