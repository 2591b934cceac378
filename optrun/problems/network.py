"""A network trained on a dataset: epochs of minibatches, a row of metrics per epoch, and everything a run
and a comparison of such runs show.

No file I/O and no printing in the training loop: progress goes out through the ``on_row`` callback, one
``EpochRecord`` per epoch, and the one wait that is not an epoch (compiling the compiled epoch, seconds on a
first run) is told to the ``optrun`` logger at level INFO, which the command line shows.

Fairness: the seed's streams (``base.streams``) give every optimizer the same data, initial weights and batch
order. Reproducibility: a run computes the same numbers on any number of threads, in any entry point
(``optrun.threads`` states the policy that ``fit`` holds).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from optrun import bootstrap, memory, threads
from optrun.config import Config
from optrun.data import Dataset, check_every_class, grid, load_dataset
from optrun.generated import CompileError
from optrun.models import Activation, Conv, Dense, Network, build_model, layers_of
from optrun.models.network import evaluation_rows, parameter_count, pieces, sample_floats, units
from optrun.optim import Optimizer, build_optimizer
from optrun.problems.base import (
    Column,
    Problem,
    Row,
    StatsRow,
    TableSpec,
    TrainResult,
    blown_up,
    count_text,
    mean_sd_text,
    mean_std,
    streams,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from optrun.report import Comparison
    from optrun.stats import Curves, Group

log = logging.getLogger("optrun")


@dataclass(frozen=True)
class EpochRecord(Row):
    """One row of metrics.csv: evaluation on the full splits after ``epoch`` epochs (0: before training)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    validation_loss: float | None = field(default=None, kw_only=True)  # where the dataset holds out a validation
    validation_accuracy: float | None = field(default=None, kw_only=True)  # split (dataset.validation_fraction)
    learning_rate: float  # of the epoch's last step (epoch 0: of the first step)
    seconds: float  # wall time of this epoch's optimization steps, evaluation excluded
    mu: float | None = None  # momentum coefficient, where it is scheduled or restarted
    restarts: int | None = None  # momentum restarts so far, where restart is on


@dataclass
class Experiment:
    """Everything a network's run needs, built before anything is written."""

    config: Config
    data: Dataset
    model: Network
    optimizer: Optimizer
    batch_order: np.random.Generator
    epoch: int = 0  # epochs already trained (a resumed run starts after them)
    compiled: Any = None  # its CompiledEpoch; False: numpy's epoch (None: not decided yet, see compiled_epoch)
    initial_loss: float | None = None  # the train loss at epoch 0 (None until its row is recorded)


@dataclass(frozen=True)
class LabelStats(StatsRow):
    """One row of comparison.csv (None: empty, no value)."""

    final_test_accuracy_mean: float | None
    final_test_accuracy_std: float | None
    test_accuracy_ci_low: float | None  # the bootstrap interval of the mean (optrun.bootstrap), 3 seeds or more
    test_accuracy_ci_high: float | None
    final_train_loss_mean: float | None
    final_train_loss_std: float | None
    train_loss_ci_low: float | None
    train_loss_ci_high: float | None
    diff_to_best: float | None  # final test accuracy against the best label's, seed by seed (None: the best)
    diff_ci_low: float | None
    diff_ci_high: float | None
    win_rate: float | None  # the share of the common seeds on which it beat the best label
    best_test_accuracy: float | None  # the mean test accuracy at the best epoch
    best_epoch: int | None
    best_chosen_on: str | None  # the mean curve the best epoch maximizes: validation_accuracy, else test_accuracy
    target_accuracy: float | None
    epochs_to_target: int | None
    seconds_to_target: float | None  # the mean over the completed seeds of their training seconds until then
    seconds_per_epoch: float | None
    diverged: int
    failed: int


DEFAULT_TARGET_FRACTION = 0.95  # target accuracy: this fraction of the best mean final test accuracy

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
            from optrun import compiled_epoch as ce  # here: numba takes half a second to import

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


def _evaluate(exp: Experiment, epoch: int, seconds: float) -> EpochRecord:
    data = exp.data
    train_loss, train_acc = exp.model.evaluate(data.x_train, data.y_train)
    test_loss, test_acc = exp.model.evaluate(data.x_test, data.y_test)
    extras = exp.optimizer.extras()
    if data.x_val is not None and data.y_val is not None:
        extras["validation_loss"], extras["validation_accuracy"] = exp.model.evaluate(data.x_val, data.y_val)
    return EpochRecord(
        epoch, train_loss, train_acc, test_loss, test_acc, exp.optimizer.learning_rate, seconds, **extras
    )


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


class NetworkProblem(Problem):
    """A network on a dataset (the config's ``dataset`` and ``model``), trained for ``train.epochs`` epochs."""

    name, unit, record = "network", "epoch", EpochRecord
    keeps_checkpoints, draws_each_run = True, True
    sections = (("dataset", "name"), ("model", "type"))

    def planned(self, config: Config) -> int:
        return config.train.epochs

    def estimate(self, config: Config) -> memory.Estimate:
        """The data (twice: as loaded, and split), the parameters and their copies (``optrun.memory``) and the
        gradients of each piece of a step (``Network.pieces``), and a step's floats: three per unit of every
        layer (its output, kept, its gradient, and a temporary) and the convolutions' patches, once for the batch
        and, for each thread, three times for a piece of an evaluation."""
        itemsize = np.dtype(config.model.dtype).itemsize
        n_samples, shape, n_classes = config.dataset.size  # train.max_samples cuts the set once it is made
        data = 2 * n_samples * math.prod(shape) * itemsize + memory.PER_SAMPLE_BYTES * n_samples
        layers = layers_of(config.model, grid(shape), n_classes)
        parameters = parameter_count(layers)
        states = len(build_optimizer(config.optimizer, [np.zeros(1, config.model.dtype)]).state_names)
        batch = min(config.train.batch_size, n_samples)
        copies = 2 + states + 2 + states + 1  # see optrun.memory's docstring
        pieces_made = pieces(batch, sample_floats(layers))
        per_sample = units(layers)
        model = parameters * itemsize * (copies + (pieces_made if pieces_made > 1 else 0))
        patches = [c.patch_floats for c in layers if isinstance(c, Conv)]
        evaluation = threads.count() * min(evaluation_rows(layers), n_samples) * 3 * max(*per_sample, *patches)
        activations = (batch * (3 * sum(per_sample) + sum(patches)) + evaluation) * itemsize
        return memory.Estimate(data, model, activations, memory.PER_ROW_BYTES * (config.train.epochs + 1))

    def load(self, config: Config) -> Dataset:
        """The config's data, as its seed splits it and ``train.max_samples`` cuts it."""
        data = load_dataset(config.dataset, streams(config.seed)[0], dtype=config.model.dtype)
        if (n := config.train.max_samples) is not None and n < max(len(data.y_train), len(data.y_test)):
            data = data.subsample(n)
            check_every_class(data.y_train, data.y_test, data.n_classes, f"train.max_samples: {n}")
        return data

    def prepare(self, config: Config, data: Dataset | None = None) -> Experiment:
        """Load the data (unless given: ``load``'s, as a trial of a tuning reuses it), initialise the network and
        build the optimizer."""
        memory.check(self.estimate(config))  # before anything is allocated
        _, init_rng, order_rng = streams(config.seed)
        data = self.load(config) if data is None else data
        model = build_model(config.model, grid(data.sample_shape), data.n_classes, init_rng)
        return Experiment(config, data, model, build_optimizer(config.optimizer, model.params), order_rng)

    def fit(self, exp: Experiment, on_row: Callable[[Any], None] | None) -> TrainResult:
        """Train for ``train.epochs`` epochs, evaluating before the first and after every epoch.

        A non-finite minibatch loss ends the run as diverged, keeping the rows of the epochs before it; a
        non-finite evaluation or parameter ends it after that row. An experiment restored from a checkpoint
        (its ``initial_loss`` set from row 0) continues after ``exp.epoch``."""
        result = TrainResult(status="completed")
        exp.optimizer.warm_up()  # before the timed epochs
        if not compiled_epoch(exp):
            exp.model.warm_up(exp.data.x_train, exp.data.y_train)

        def record(row: EpochRecord) -> bool:
            result.records.append(row)
            if on_row is not None:
                on_row(row)
            if row.epoch == 0:
                exp.initial_loss = row.train_loss
            if not (math.isfinite(row.train_loss) and math.isfinite(row.test_loss)):
                result.reason = f"non-finite loss after epoch {row.epoch}"
            elif not np.isfinite(exp.model.flat_params).all():
                result.reason = f"non-finite parameters after epoch {row.epoch}"
            else:
                result.reason = blown_up(exp.config, row.train_loss, exp.initial_loss, f"epoch {row.epoch}")
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

    def summary(self, config: Config, rows: Sequence[EpochRecord]) -> dict[str, Any]:
        final = best = None
        if rows:
            final = {k: getattr(rows[-1], k) for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")}
            if rows[-1].validation_accuracy is not None:
                final |= {k: getattr(rows[-1], k) for k in ("validation_loss", "validation_accuracy")}
            chosen_on = "validation_accuracy" if rows[-1].validation_accuracy is not None else "test_accuracy"
            top = max(rows, key=lambda r: (getattr(r, chosen_on), -r.epoch))  # the earliest epoch reaching the best
            best = {"test_accuracy": top.test_accuracy, "epoch": top.epoch, "chosen_on": chosen_on}
        on = {"dataset": config.dataset.name if config.dataset else None, "model": config.model.type}
        return {"final": final, "best": best, **on}

    def describe(self, config: Config) -> str:
        epochs = config.train.epochs
        return f"{config.dataset.name}, {config.model.type}, {count_text(epochs, 'epoch')}"

    def describe_parts(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        model, train = config.get("model") or {}, config.get("train") or {}
        conv = [layer.get("channels") for layer in model.get("conv") or [] if isinstance(layer, Mapping)]
        parts = (model.get("type"), conv and f"conv {conv}", model.get("hidden") or None, model.get("activation"))
        net = " ".join(str(x) for x in parts if x)
        return [
            (str((config.get("dataset") or {}).get("name", "?")), "dataset"),
            (net, "model"),
            (f"{count_text(train.get('epochs'), 'epoch')}, batch {train.get('batch_size')}", "train"),
        ]

    def progress(self, row: EpochRecord) -> str:
        return f"loss {row.train_loss:.4f}  train acc {row.train_accuracy:.2%}  test acc {row.test_accuracy:.2%}"

    def result(self, summary: Mapping[str, Any]) -> str:
        final, best = summary["final"], summary["best"]
        on = "validation" if best.get("chosen_on") == "validation_accuracy" else "test"
        return (
            f"test accuracy {final['test_accuracy']:.2%} (best epoch on {on}: {best['epoch']}, test accuracy "
            f"{best['test_accuracy']:.2%}), train loss {final['train_loss']:.4f}"
        )

    def metrics_columns(self, rows: Sequence[EpochRecord]) -> list[Column]:
        extras = [c for c in ("mu", "restarts") if rows and getattr(rows[0], c, None) is not None]
        validation: list[Column] = []
        if rows and rows[0].validation_accuracy is not None:
            validation = [
                ("val loss", lambda r: f"{r.validation_loss:.4f}"),
                ("val acc", lambda r: f"{r.validation_accuracy:.2%}"),
            ]
        return [
            ("epoch", lambda r: str(r.epoch)),
            ("train loss", lambda r: f"{r.train_loss:.4f}"),
            ("train acc", lambda r: f"{r.train_accuracy:.2%}"),
            ("test loss", lambda r: f"{r.test_loss:.4f}"),
            ("test acc", lambda r: f"{r.test_accuracy:.2%}"),
            *validation,
            ("lr", lambda r: f"{r.learning_rate:g}"),
            ("seconds", lambda r: f"{r.seconds:.3f}"),
            *((c, lambda r, c=c: f"{getattr(r, c):g}") for c in extras),
        ]

    def curve_names(self, row: EpochRecord) -> list[str]:
        """Train loss, test accuracy and the epochs' seconds; the validation accuracy where there is a validation
        split (the best epoch is chosen on it)."""
        return [
            "train_loss",
            "test_accuracy",
            "seconds",
            *(["validation_accuracy"] if row.validation_accuracy is not None else []),
        ]

    def target(self, curves: Sequence[Curves | None], given: float | None) -> tuple[float | None, str]:
        """The accuracy for "epochs to target": ``given``, or 95% of the best mean final test accuracy among the
        groups (None when no run completed)."""
        if given is not None:
            return given, "set explicitly"
        finals = [c["test_accuracy"][:, -1].mean() for c in curves if c is not None]
        target = DEFAULT_TARGET_FRACTION * float(max(finals)) if finals else None
        return target, f"{DEFAULT_TARGET_FRACTION:.0%} of the best mean final test accuracy"

    def stats(self, group: Group, curves: Curves | None, target: float | None) -> LabelStats:
        """Final test accuracy and train loss (mean and sd over the completed seeds, and their bootstrap
        intervals); the best epoch, the earliest maximum of the mean validation-accuracy curve where there is a
        validation split (else of the mean test-accuracy curve: a figure read off the test data, which the table
        says), and the mean test accuracy there; the first epoch the mean test-accuracy curve reaches ``target``,
        and the mean seconds of training up to it; the mean seconds of every trained epoch of every run."""
        acc_mean = acc_std = loss_mean = loss_std = best = best_epoch = reach = reach_seconds = None
        acc_ci = loss_ci = chosen_on = None
        if curves is not None:
            acc_mean, acc_std = mean_std(curves["test_accuracy"][:, -1])
            loss_mean, loss_std = mean_std(curves["train_loss"][:, -1])
            acc_ci, loss_ci = (
                bootstrap.interval(curves["test_accuracy"][:, -1]),
                bootstrap.interval(curves["train_loss"][:, -1]),
            )
            mean_curve = curves["test_accuracy"].mean(axis=0)
            chosen_on = "validation_accuracy" if "validation_accuracy" in curves.values else "test_accuracy"
            top = int(np.argmax(curves[chosen_on].mean(axis=0)))  # the first maximum
            best, best_epoch = float(mean_curve[top]), int(curves.x[top])
            if target is not None and (hits := np.flatnonzero(mean_curve >= target)).size:
                reach = int(curves.x[hits[0]])
                reach_seconds = float(curves["seconds"][:, : hits[0] + 1].sum(axis=1).mean())
        seconds = [row.seconds for r in group.runs for row in r.records if row.epoch > 0]
        return LabelStats(
            **group.shared_figures(),
            final_test_accuracy_mean=acc_mean,
            final_test_accuracy_std=acc_std,
            test_accuracy_ci_low=acc_ci and acc_ci[0],
            test_accuracy_ci_high=acc_ci and acc_ci[1],
            final_train_loss_mean=loss_mean,
            final_train_loss_std=loss_std,
            train_loss_ci_low=loss_ci and loss_ci[0],
            train_loss_ci_high=loss_ci and loss_ci[1],
            diff_to_best=None,
            diff_ci_low=None,
            diff_ci_high=None,
            win_rate=None,
            best_test_accuracy=best,
            best_epoch=best_epoch,
            best_chosen_on=chosen_on,
            target_accuracy=target,
            epochs_to_target=reach,
            seconds_to_target=reach_seconds,
            seconds_per_epoch=float(np.mean(seconds)) if seconds else None,
        )

    def against_best(self, row: LabelStats, group: Group, best: Group) -> LabelStats:
        """The paired figures of final test accuracy against ``best`` on the seeds both completed: the mean
        difference, its bootstrap interval and the share of those seeds won (``optrun.bootstrap.paired``)."""
        if group is best:
            return row
        mine, theirs = _final_accuracy_by_seed(group), _final_accuracy_by_seed(best)
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            return row
        pair = bootstrap.paired(np.array([mine[s] for s in seeds]), np.array([theirs[s] for s in seeds]))
        low, high = pair.interval or (None, None)
        return dataclasses.replace(
            row, diff_to_best=pair.difference, diff_ci_low=low, diff_ci_high=high, win_rate=pair.win_rate
        )

    def rank(self, row: LabelStats) -> tuple[Any, ...]:
        """Best mean final test accuracy first; ties: lower train loss first."""
        return (
            row.final_test_accuracy_mean is None,
            -round(row.final_test_accuracy_mean or 0.0, 12),  # equal means of k/n accuracies tie exactly
            row.final_train_loss_mean if row.final_train_loss_mean is not None else 0.0,
        )

    def table(self, comparison: Comparison) -> TableSpec:
        target = comparison.target
        caption = "test acc %, train loss: final, mean ± sd over the completed seeds"
        if {row.best_chosen_on for row in comparison.rows if row.best_chosen_on} == {"validation_accuracy"}:
            caption += "\nbest (epoch): the mean test accuracy at the epoch the mean validation accuracy peaks"
        else:
            caption += (
                "\nbest (epoch): the peak of the mean test accuracy, read off the test data (no validation split)"
            )
        caption += (
            f"\n95% CI: of the mean test accuracy, bootstrap over the seeds (at least {bootstrap.MIN_SEEDS} completed)"
        )
        caption += "\nvs best: test acc against the first row's, seed by seed: mean difference [95% CI], seeds won"
        if target is not None:
            rule = comparison.target_rule
            caption += f"\nto target: first epoch the mean test accuracy reaches {target:.2%} ({rule}), and the seconds"

        def cells(s: LabelStats) -> list[str]:
            return [
                mean_sd_text(s.final_test_accuracy_mean, s.final_test_accuracy_std, percent=True),
                _interval_text(s.test_accuracy_ci_low, s.test_accuracy_ci_high),
                _against_best_text(s),
                mean_sd_text(s.final_train_loss_mean, s.final_train_loss_std, percent=False),
                f"{s.best_test_accuracy * 100:.2f} ({s.best_epoch})" if s.best_test_accuracy is not None else "-",
                f"{s.epochs_to_target} ({s.seconds_to_target:.2g} s)" if s.epochs_to_target is not None else "-",
                f"{s.seconds_per_epoch:.3f}" if s.seconds_per_epoch is not None else "-",
            ]

        wrapping = ("test acc %", "95% CI", "vs best", "train loss", "best (epoch)")
        return TableSpec(caption, wrapping, ("to target", "s/epoch"), cells)

    def figures(self, comparison: Comparison) -> dict[str, Figure]:
        from optrun import plots  # here: matplotlib takes 0.4 s to import, and workers never need it

        return {"curves": plots.curves_figure(comparison.groups, comparison.target, comparison.title)}

    def run_figures(self, comparison: Comparison) -> dict[str, Figure]:
        """One run's loss and accuracy on each of its splits (``plots.run_curves_figure``)."""
        from optrun import plots

        run = comparison.groups[0].runs[0]
        end = "" if run.status == "completed" else f"{run.status}: {run.summary.get('reason') or 'no reason recorded'}"
        return {"curves": plots.run_curves_figure(run.records, comparison.title, end)}


def _interval_text(low: float | None, high: float | None) -> str:
    """``[90.1, 92.4]`` in percent; ``-`` for none (fewer than ``bootstrap.MIN_SEEDS`` seeds)."""
    return "-" if low is None or high is None else f"[{low * 100:.1f}, {high * 100:.1f}]"


def _against_best_text(s: LabelStats) -> str:
    """``-1.2 [-2.1, -0.4] 20%``: the paired difference in percent points, its interval, the share of the common
    seeds won; ``-`` for the best row itself and a row with no seed in common with it."""
    if s.diff_to_best is None or s.win_rate is None:
        return "-"
    interval = f" {_interval_text(s.diff_ci_low, s.diff_ci_high)}" if s.diff_ci_low is not None else ""
    return f"{s.diff_to_best * 100:+.1f}{interval} {s.win_rate:.0%}"


def _final_accuracy_by_seed(group: Group) -> dict[int, float]:
    """The final test accuracy of each completed run of ``group``, by its seed."""
    return {int(r.config.get("seed", 0)): r.records[-1].test_accuracy for r in group.completed}


NETWORK = NetworkProblem()
