"""optrun: train vectorized NumPy networks and compare gradient-descent optimizers.

The library a notebook imports; the ``optrun`` command is a thin layer over it.
"""

from optrun import startup  # noqa: F401  first: a Ctrl-C while the command imports exits quietly
from optrun.config import CompareConfig, Config, SuiteConfig, TuneConfig, load_config, parse_config
from optrun.optim import OPTIMIZERS, Optimizer, build_optimizer
from optrun.problems import EpochRecord, StepRecord, TrainResult
from optrun.runs import run
from optrun.train import train

__all__ = [
    "OPTIMIZERS",
    "CompareConfig",
    "Config",
    "EpochRecord",
    "Optimizer",
    "StepRecord",
    "SuiteConfig",
    "TrainResult",
    "TuneConfig",
    "build_optimizer",
    "load_config",
    "parse_config",
    "run",
    "train",
]
