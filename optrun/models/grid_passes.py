"""The grid layers' passes that move data, compiled: gathering a convolution's patches (im2col) and adding their
gradients back (col2im), max pooling and its gradient. Each is one pass over the grid, where numpy's strided views
take several and iterate a few channels at a time. The products stay numpy's (BLAS). Imported with numba, by
``optrun.models.conv`` when a layer first computes.

A grid is an (N, H, W, C) array (``optrun.data.grid``); the channels are the innermost loop, so that it
vectorizes.
"""

from __future__ import annotations

from numba import njit


@njit(nogil=True, cache=True, error_model="numpy")
def pool_forward(x, kh, kw, y, first):  # pragma: no cover - compiled
    """y[n, i, j, c] = max over the window of x; ``first`` the window's tap (a·k_w + b, row-major) that holds
    it first. A NaN is the largest (it propagates, as in numpy's maximum)."""
    n, h_out, w_out, channels = y.shape
    for s in range(n):
        for i in range(h_out):
            for j in range(w_out):
                for c in range(channels):  # the channels innermost: contiguous, the loops vectorize
                    y[s, i, j, c] = x[s, i * kh, j * kw, c]
                    first[s, i, j, c] = 0
                for a in range(kh):
                    for b in range(kw):
                        for c in range(channels):
                            v, best = x[s, i * kh + a, j * kw + b, c], y[s, i, j, c]
                            if v > best or (v != v and best == best):
                                y[s, i, j, c] = v
                                first[s, i, j, c] = a * kw + b


@njit(nogil=True, cache=True, error_model="numpy")
def pool_backward(dy, first, kh, kw, dx):  # pragma: no cover - compiled
    """dx (zeros, and as many positions as the windows cover) gets each window's dy at its ``first`` tap."""
    n, h_out, w_out, channels = dy.shape
    for s in range(n):
        for i in range(h_out):
            for j in range(w_out):
                for c in range(channels):
                    at = first[s, i, j, c]
                    dx[s, i * kh + at // kw, j * kw + at % kw, c] = dy[s, i, j, c]


@njit(nogil=True, cache=True, error_model="numpy")
def gather_patches(x, kh, kw, sh, sw, ph, pw, patches):  # pragma: no cover - compiled
    """patches[n, i, j, a, b, c] = x̃[n, s_h·i + a, s_w·j + b, c], where x̃ is x zero-padded by p_h rows and p_w
    columns on each side. Copied a kernel's row at a time: its k_w·C values are contiguous in x and in the
    patch."""
    n, h_out, w_out = patches.shape[:3]
    height, width, channels = x.shape[1:]
    run = kw * channels
    rows = x.reshape(n, height, width * channels)
    out = patches.reshape(n, h_out, w_out, kh, run)
    for s in range(n):
        for i in range(h_out):
            for j in range(w_out):
                start = (j * sw - pw) * channels  # where the run begins in its row of x (negative: in the padding)
                inside = start >= 0 and start + run <= width * channels
                for a in range(kh):
                    r = i * sh + a - ph
                    if inside and 0 <= r < height:
                        for t in range(run):
                            out[s, i, j, a, t] = rows[s, r, start + t]
                    else:
                        for t in range(run):
                            column = start + t
                            inner = 0 <= r < height and 0 <= column < width * channels
                            out[s, i, j, a, t] = rows[s, r, column] if inner else 0


@njit(nogil=True, cache=True, error_model="numpy")
def add_patches(d_patches, sh, sw, ph, pw, dx):  # pragma: no cover - compiled
    """dx (zeros) += each patch's gradient at the positions ``gather_patches`` took it from (none from the
    padding), patch after patch in order."""
    n, h_out, w_out, kh, kw = d_patches.shape[:5]
    height, width, channels = dx.shape[1:]
    for s in range(n):
        for i in range(h_out):
            for j in range(w_out):
                for a in range(kh):
                    r = i * sh + a - ph
                    for b in range(kw):
                        q = j * sw + b - pw
                        if 0 <= r < height and 0 <= q < width:
                            for c in range(channels):
                                dx[s, r, q, c] += d_patches[s, i, j, a, b, c]
