"""Softmax cross-entropy and its gradient, computed stably with log-sum-exp; accuracy; the L2 penalty's gradient.

The elementwise math is stated once, for numbers and arrays alike: ``log_probability`` and ``logit_slope``, given
a row's two reductions (its largest logit m and log Σ_j exp(z_j − m)), and ``decayed``. numpy runs them on whole
arrays here; the compiled epoch compiles the same functions into its loops over a batch's rows
(``optrun.compiled_epoch.compile_loss``), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def log_probability(z: Any, largest: Any, log_total: Any) -> Any:
    """log p_k = z_k − m − log Σ_j exp(z_j − m), where m = max_j z_j and ``log_total`` = log Σ_j exp(z_j − m):
    no overflow for any finite z."""
    return z - largest - log_total


def logit_slope(log_p: Any, hit: Any, count: Any) -> Any:
    """∂L/∂z_k of the mean cross-entropy L = −(1/N) Σ_n log p_{n, y_n} over N = ``count`` rows:
    (p_k − [k = y]) / N, where ``hit`` is [k = y] (1 or 0 in the logits' dtype, or a boolean)."""
    return (np.exp(log_p) - hit) / count


def decayed(g: Any, w: Any, decay: Any) -> Any:
    """∂/∂W of a loss plus the L2 penalty (λ/2)‖W‖², from the loss's own gradient g: g + λ·W."""
    return g + decay * w


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log_probability`` of every row of ``logits``."""
    # The ufuncs' reduce methods: the same reductions as .max() and .sum(), without their Python wrappers.
    largest = np.maximum.reduce(logits, axis=1, keepdims=True)
    log_total = np.log(np.add.reduce(np.exp(logits - largest), axis=1, keepdims=True))
    return log_probability(logits, largest, log_total)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, count: int | None = None) -> tuple[float, np.ndarray]:
    """Mean cross-entropy L = −(1/N) Σ_n log p_{n, y_n} and its gradient, ``logit_slope``; the rows' share of a
    batch of ``count`` rows (N = ``count``, where given), for a batch computed in pieces."""
    n = len(labels)
    count = n if count is None else count
    logp = log_softmax(logits)
    loss = -float(np.add.reduce(logp[np.arange(n), labels])) / count
    hit = labels[:, None] == np.arange(logits.shape[1])
    return loss, logit_slope(logp, hit, count)


def cross_entropy_sum_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Σ_n −log p_{n, y_n} and the number of rows whose arg-max is the label (for chunked evaluation)."""
    logp = log_softmax(logits)
    total = -float(logp[np.arange(len(labels)), labels].sum(dtype=np.float64))
    return total, int(np.count_nonzero(logits.argmax(axis=1) == labels))
