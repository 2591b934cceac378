"""The training loops: a network over epochs of minibatches, or a point over steps on an objective.

No file I/O and no printing here: progress goes out through the ``on_epoch`` callback,
one ``EpochRecord`` per epoch for a network, one ``StepRecord`` per step on an objective,
and the one wait that is not an epoch (compiling the compiled epoch, seconds on a first run)
is told to the ``optrun`` logger at level INFO, which the command line shows.

Fairness: the seed is split into three independent streams (data or the
objective's rotation, initial weights, batch order or gradient noise), none of
which the optimizer touches, so every optimizer given the same seed starts
from the same parameters and sees the same minibatches (the same noise) in the
same order. Reproducibility: a run computes the same numbers on any number of
threads, in any entry point (``optrun.threads`` states the policy that ``fit`` holds).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from optrun import memory, threads
from optrun.config import CompareConfig, Config
from optrun.data import Dataset, check_every_class, load_dataset
from optrun.generated import CompileError
from optrun.models import Activation, Dense, Network, build_model
from optrun.objectives import Objective, build_objective
from optrun.optim import Optimizer, build_optimizer

log = logging.getLogger("optrun")


@dataclass(frozen=True)
class EpochRecord:
    """One row of metrics.csv: evaluation on the full splits after ``epoch`` epochs (0: before training)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    learning_rate: float  # of the epoch's last step (epoch 0: of the first step)
    seconds: float  # wall time of this epoch's optimization steps, evaluation excluded
    mu: float | None = None  # momentum coefficient, where it is scheduled or restarted
    restarts: int | None = None  # momentum restarts so far, where restart is on


@dataclass(frozen=True)
class StepRecord:
    """One row of an objective's metrics.csv: the point after ``step`` steps (0: the start)."""

    step: int
    loss: float  # f at the point (exact, without gradient noise)
    grad_norm: float  # ‖∇f‖ at the point (exact)
    distance_to_minimum: float | None  # None for an objective without a minimum (the saddle)
    learning_rate: float  # of this step (step 0: of the first step)
    x0: float | None = None  # the point, for 2-D objectives
    x1: float | None = None
    mu: float | None = None
    restarts: int | None = None


Record = EpochRecord | StepRecord
COLUMNS = tuple(f.name for f in fields(EpochRecord))[:7]  # in every network's metrics.csv
STEP_COLUMNS = tuple(f.name for f in fields(StepRecord))[:5]  # in every objective's metrics.csv
OPTIONAL_COLUMNS = ("x0", "x1", "mu", "restarts")  # where they apply (2-D objectives; Optimizer.extras)


def columns_of(row: Record) -> tuple[str, ...]:
    """The metrics.csv columns of a run whose rows look like ``row``."""
    base = STEP_COLUMNS if isinstance(row, StepRecord) else COLUMNS
    return base + tuple(c for c in OPTIONAL_COLUMNS if getattr(row, c, None) is not None)


@dataclass
class Experiment:
    """Everything a run needs, built before anything is written."""

    config: Config
    data: Dataset
    model: Network
    optimizer: Optimizer
    batch_order: np.random.Generator
    epoch: int = 0  # epochs already trained (a resumed run starts after them)
    compiled: Any = None  # its CompiledEpoch; False: numpy's epoch (None: not decided yet, see compiled_epoch)
    initial_loss: float | None = None  # the train loss at epoch 0 (None until its row is recorded)


@dataclass
class Landscape:
    """A point on an objective, its optimizer and the gradient noise stream."""

    config: Config
    objective: Objective
    x: np.ndarray  # updated in place by the optimizer
    optimizer: Optimizer
    noise: np.random.Generator


@dataclass
class TrainResult:
    status: str  # "completed" or "diverged" (a comparison adds "failed")
    records: list[Record] = field(default_factory=list)
    reason: str | None = None  # why a diverged run stopped

    @property
    def epochs_completed(self) -> int:
        """Epochs (steps, on an objective) completed."""
        if not self.records:
            return 0
        last = self.records[-1]
        return last.step if isinstance(last, StepRecord) else last.epoch


def _streams(seed: int) -> list[np.random.Generator]:
    """The seed's three independent streams: data (or the objective), initial weights, batch order (or noise)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def objective_of(config: Config) -> Objective:
    """The objective of ``config`` as its runs see it (the quadratic's rotation comes from the seed)."""
    if config.objective is None:
        raise ValueError(f"{config.name} trains a network, not an objective")
    return build_objective(config.objective, _streams(config.seed)[0])


def prepare(config: Config) -> Experiment | Landscape:
    """Load the data, initialise the network and build the optimizer for ``config`` (or place the
    start point on its objective); ConfigError first if the run cannot fit in memory (``optrun.memory``)."""
    memory.check(config)  # before anything is allocated
    data_rng, init_rng, order_rng = _streams(config.seed)
    if config.objective is not None:
        objective = objective_of(config)
        x = objective.start.copy()
        return Landscape(config, objective, x, build_optimizer(config.optimizer, [x]), order_rng)
    data = load_dataset(config.dataset, data_rng, dtype=config.model.dtype)
    if (n := config.train.max_samples) is not None and n < max(len(data.y_train), len(data.y_test)):
        data = data.subsample(n)
        check_every_class(data.y_train, data.y_test, data.n_classes, f"train.max_samples: {n}")
    model = build_model(config.model, data.n_features, data.n_classes, init_rng)
    return Experiment(config, data, model, build_optimizer(config.optimizer, model.params), order_rng)


CHECK_DATA_BELOW = 1 << 30
"""``check`` makes and splits a config's data where it takes less than this (1 GiB), as a run would."""


def check(config: Config | CompareConfig) -> memory.Estimate:
    """What would refuse a run of ``config`` before it trains, checked without training: its memory (each label's,
    in a comparison) and, where its data takes less than ``CHECK_DATA_BELOW``, its data and split (the first
    run's: a split's counts do not depend on the seed). The largest run's estimate; ConfigError otherwise."""
    need = memory.check_each(config)
    if need.data < CHECK_DATA_BELOW:
        compared = isinstance(config, CompareConfig)
        prepare(config.run_config(next(iter(config.optimizers)), config.seed_list[0]) if compared else config)
    return need


def _evaluate(exp: Experiment, epoch: int, seconds: float) -> EpochRecord:
    train_loss, train_acc = exp.model.evaluate(exp.data.x_train, exp.data.y_train)
    test_loss, test_acc = exp.model.evaluate(exp.data.x_test, exp.data.y_test)
    extras = exp.optimizer.extras()
    return EpochRecord(
        epoch, train_loss, train_acc, test_loss, test_acc, exp.optimizer.learning_rate, seconds, **extras
    )


def _blown_up(config: Config, loss: float, initial: float | None, when: str) -> str | None:
    """Why a finite loss counts as diverged (``train.divergence_factor`` times the initial loss), or None."""
    factor = config.train.divergence_factor
    if factor is None or initial is None or initial <= 0 or loss <= factor * initial:
        return None
    return f"loss {loss:.4g} after {when} exceeds divergence_factor {factor:g} × the initial loss {initial:.4g}"


COMPILING = "compiling the epoch (about 3 s, this once: it is cached for later runs)"


def compiled_epoch(exp: Experiment) -> Any:
    """The experiment's ``optrun.compiled_epoch.CompiledEpoch``, made (and compiled) at the first call, or
    False where its epochs run in numpy: the network is not Dense layers with activations between them, the
    optimizer's steps are not exactly its kernel's (``Optimizer.kernel_only``: too few parameters for the
    kernels, clipping, momentum restarts), numpy's BLAS is not one it can call, or an activation does not
    compile (with a warning)."""
    if exp.compiled is None:
        exp.compiled = False
        layers, opt = exp.model.layers, exp.optimizer
        dense_net = all(isinstance(layer, Dense) for layer in layers[::2]) and all(
            isinstance(layer, Activation) for layer in layers[1::2]
        )
        if dense_net and len(layers) % 2 and opt.kernel_only:
            from optrun import compiled_epoch as ce

            blas = ce.find_blas()
            if blas is not None:
                if not ce.cached():
                    log.info(COMPILING)
                batch = min(exp.config.train.batch_size, len(exp.data.y_train))
                try:
                    exp.compiled = ce.CompiledEpoch(exp.model, opt, batch, blas, threads.count())
                except CompileError as exc:
                    log.warning(f"the compiled epoch does not compile ({exc}); epochs run in numpy")
                    return exp.compiled
                exp.compiled.run(exp.data.x_train, exp.data.y_train, np.arange(0))  # compiles: no steps
    return exp.compiled


def _run_epoch(exp: Experiment, epoch: int) -> str | None:
    """One pass over the train split in a fresh random order; the reason if it diverged."""
    x, y = exp.data.x_train, exp.data.y_train
    batch = min(exp.config.train.batch_size, len(y))
    order = exp.batch_order.permutation(len(y))
    compiled = compiled_epoch(exp)
    if compiled:
        done = compiled.run(x, y, order)
        return None if done * batch >= len(y) else f"non-finite minibatch loss at epoch {epoch}, step {done + 1}"
    x_buf, y_buf = np.empty((batch, x.shape[1]), dtype=x.dtype), np.empty(batch, dtype=y.dtype)
    for step, start in enumerate(range(0, len(y), batch), start=1):
        idx = order[start : start + batch]  # the last batch may be smaller: it is kept
        xb = x.take(idx, axis=0, out=x_buf[: len(idx)], mode="clip")
        yb = y.take(idx, out=y_buf[: len(idx)], mode="clip")
        loss = exp.model.loss_and_grad(xb, yb)
        if not math.isfinite(loss):
            return f"non-finite minibatch loss at epoch {epoch}, step {step}"
        exp.optimizer.step(exp.model.grads, loss)
    return None


def fit(exp: Experiment | Landscape, on_epoch: Callable[[Record], None] | None = None) -> TrainResult:
    """Train for ``config.train.epochs`` epochs, evaluating before the first and after every epoch
    (on an objective: ``config.train.steps`` steps, recording the start and every step).

    A non-finite minibatch loss ends the run as diverged, keeping the rows of the
    epochs before it; a non-finite evaluation or parameter ends it after that row.
    An experiment restored from a checkpoint (its ``initial_loss`` set from row 0) continues after ``exp.epoch``.
    numpy's BLAS computes on one thread meanwhile (``optrun.threads``): the numbers are the same
    on any number of threads.
    """
    with threads.one_blas_thread():
        return _descend(exp, on_epoch) if isinstance(exp, Landscape) else _epochs(exp, on_epoch)


def _epochs(exp: Experiment, on_epoch: Callable[[Record], None] | None) -> TrainResult:
    """``fit`` on a network."""
    result = TrainResult(status="completed")
    exp.optimizer.warm_up()  # before the timed epochs
    compiled_epoch(exp)

    def record(row: EpochRecord) -> bool:
        result.records.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if row.epoch == 0:
            exp.initial_loss = row.train_loss
        if not (math.isfinite(row.train_loss) and math.isfinite(row.test_loss)):
            result.reason = f"non-finite loss after epoch {row.epoch}"
        elif not np.isfinite(exp.model.flat_params).all():
            result.reason = f"non-finite parameters after epoch {row.epoch}"
        else:
            result.reason = _blown_up(exp.config, row.train_loss, exp.initial_loss, f"epoch {row.epoch}")
        return result.reason is None

    with np.errstate(all="ignore"):  # overflow is detected and reported as divergence, not warned about
        healthy = record(_evaluate(exp, 0, 0.0)) if exp.initial_loss is None else True  # a resumed run has row 0
        for epoch in range(exp.epoch + 1, exp.config.train.epochs + 1):
            if not healthy:
                break
            start = time.perf_counter()
            result.reason = _run_epoch(exp, epoch)
            if result.reason is not None:
                break
            exp.epoch = epoch
            healthy = record(_evaluate(exp, epoch, time.perf_counter() - start))
    if result.reason is not None:
        result.status = "diverged"
    return result


def _point(exp: Landscape, step: int) -> tuple[StepRecord, np.ndarray]:
    """The row for the current point, and the exact gradient there."""
    f, x = exp.objective, exp.x
    gradient = f.gradient(x)
    distance = None if f.minimum is None else float(np.linalg.norm(x - f.minimum))
    coordinates = {"x0": float(x[0]), "x1": float(x[1])} if x.size == 2 else {}
    row = StepRecord(
        step,
        float(f.value(x)),
        float(np.linalg.norm(gradient)),
        distance,
        exp.optimizer.learning_rate,
        **coordinates,
        **exp.optimizer.extras(),
    )
    return row, gradient


def _descend(exp: Landscape, on_step: Callable[[Record], None] | None) -> TrainResult:
    """``train.steps`` optimizer steps from the start point; a non-finite loss or point ends it as diverged."""
    result = TrainResult(status="completed")
    noise = exp.config.objective.noise if exp.config.objective is not None else 0.0

    def record(row: StepRecord) -> bool:
        result.records.append(row)
        if on_step is not None:
            on_step(row)
        if not (math.isfinite(row.loss) and np.isfinite(exp.x).all()):
            result.reason = f"non-finite loss or point after step {row.step}"
        else:
            result.reason = _blown_up(exp.config, row.loss, result.records[0].loss, f"step {row.step}")
        if result.reason is not None:
            result.status = "diverged"
        return result.reason is None

    with np.errstate(all="ignore"):
        row, gradient = _point(exp, 0)
        healthy = record(row)
        for step in range(1, exp.config.train.steps + 1):
            if not healthy:
                break
            seen = gradient + noise * exp.noise.standard_normal(gradient.shape) if noise else gradient
            exp.optimizer.step([seen], loss=row.loss)
            row, gradient = _point(exp, step)
            healthy = record(row)
    return result


def train(config: Config, on_epoch: Callable[[Record], None] | None = None) -> TrainResult:
    """``fit(prepare(config))``: the whole run, in memory."""
    return fit(prepare(config), on_epoch)
