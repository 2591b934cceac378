"""How optrun's default learning rates were chosen.

For each optimizer, train the default digits MLP (hidden [64], relu, batch 32,
20 epochs) at learning rates on a log grid, over seeds 0, 1, 2, and print the
mean final test accuracy / test loss. The default is the rate with the lowest
mean test loss (accuracy saturates near 97% and separates the rates less).

    python benchmarks/lr_sweep.py
"""

from __future__ import annotations

import numpy as np

from optrun.config import parse_config
from optrun.optim import OPTIMIZERS
from optrun.train import train

GRID = [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3]
SEEDS = range(3)


def final(name: str, lr: float, seed: int) -> tuple[float, float]:
    config = parse_config(
        {"seed": seed, "dataset": {"name": "digits"}, "optimizer": {"name": name, "learning_rate": lr}}
    )
    result = train(config)
    last = result.records[-1]
    return (last.test_accuracy, last.test_loss) if result.status == "completed" else (np.nan, np.nan)


def main() -> None:
    print(f"{'optimizer':10} " + " ".join(f"{lr:>13g}" for lr in GRID) + "   best (lowest test loss)")
    for name in OPTIMIZERS:
        scores = np.array([[final(name, lr, seed) for seed in SEEDS] for lr in GRID]).mean(axis=1)
        cells = " ".join(f"{acc:6.3f}/{loss:6.3f}" if loss < 100 else f"{acc:6.3f}/  huge" for acc, loss in scores)
        print(f"{name:10} {cells}   {GRID[int(np.nanargmin(scores[:, 1]))]:g}")


if __name__ == "__main__":
    main()
