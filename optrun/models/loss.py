"""Softmax cross-entropy, computed stably with log-sum-exp, and accuracy."""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p_k = z_k − max z − log Σ_j exp(z_j − max z): no overflow for any finite z."""
    # The ufuncs' reduce methods: the same reductions as .max() and .sum(), without their Python wrappers.
    shifted = logits - np.maximum.reduce(logits, axis=1, keepdims=True)
    shifted -= np.log(np.add.reduce(np.exp(shifted), axis=1, keepdims=True))
    return shifted


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy L = −(1/N) Σ_n log p_{n, y_n} and its gradient (softmax − onehot) / N."""
    n = len(labels)
    rows = np.arange(n)
    logp = log_softmax(logits)
    loss = -float(np.add.reduce(logp[rows, labels])) / n
    grad = np.exp(logp)
    grad[rows, labels] -= 1
    grad /= n
    return loss, grad


def cross_entropy_sum_and_correct(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Σ_n −log p_{n, y_n} and the number of rows whose arg-max is the label (for chunked evaluation)."""
    logp = log_softmax(logits)
    total = -float(logp[np.arange(len(labels)), labels].sum(dtype=np.float64))
    return total, int(np.count_nonzero(logits.argmax(axis=1) == labels))
