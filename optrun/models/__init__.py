"""Networks in vectorized NumPy: layers, softmax cross-entropy, and ``build_model``."""

from optrun.models.conv import Conv, MaxPool
from optrun.models.layers import ACTIVATIONS, Activation, Dense, Layer, ReLU, Weighted
from optrun.models.loss import log_softmax, softmax_cross_entropy
from optrun.models.network import (
    CNNSpec,
    LogisticSpec,
    MLPSpec,
    ModelSpec,
    Network,
    build_model,
    count_parameters,
    layers_of,
)

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "CNNSpec",
    "Conv",
    "Dense",
    "Layer",
    "LogisticSpec",
    "MLPSpec",
    "MaxPool",
    "ModelSpec",
    "Network",
    "ReLU",
    "Weighted",
    "build_model",
    "count_parameters",
    "layers_of",
    "log_softmax",
    "softmax_cross_entropy",
]
