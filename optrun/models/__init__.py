"""Networks in vectorized NumPy: layers, softmax cross-entropy, and ``build_model``."""

from optrun.models.layers import ACTIVATIONS, Activation, Dense, Layer, ReLU
from optrun.models.loss import log_softmax, softmax_cross_entropy
from optrun.models.network import LogisticSpec, MLPSpec, ModelSpec, Network, build_model, count_parameters, widths

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "Dense",
    "Layer",
    "LogisticSpec",
    "MLPSpec",
    "ModelSpec",
    "Network",
    "ReLU",
    "build_model",
    "count_parameters",
    "log_softmax",
    "softmax_cross_entropy",
    "widths",
]
