"""The ``optrun`` command: parse arguments, call the library, print with rich.

Exit codes: 0 completed, 2 bad config or usage, 3 diverged.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from optrun import config as configs
from optrun.optim import OPTIMIZERS, update_rule
from optrun.runs import RunDirError, run
from optrun.schema import ConfigError
from optrun.train import EpochRecord

EXIT_DIVERGED = 3


class UserError(click.ClickException):
    """One line on stderr (``Error: ...``) and exit code 2."""

    exit_code = 2


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's errors about the user's input into UserError."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (ConfigError, RunDirError) as exc:
            raise UserError(str(exc)) from None

    return wrapper


set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config key by its dotted path, e.g. --set optimizer.mu=0.95 (repeatable; VALUE is YAML).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="optrun")
def cli() -> None:
    """Train vectorized NumPy networks and compare gradient-descent optimizers."""


def _stats(row: EpochRecord) -> str:
    return f"loss {row.train_loss:.4f}  train acc {row.train_accuracy:.2%}  test acc {row.test_accuracy:.2%}"


@contextmanager
def _progress(console: Console, epochs: int, quiet: bool) -> Iterator[Callable[[EpochRecord], None]]:
    """A callback that shows each epoch: a live bar on a terminal, plain lines otherwise."""
    if quiet:
        yield lambda row: None
    elif not console.is_terminal:
        width = len(str(epochs))
        yield lambda row: console.print(f"epoch {row.epoch:>{width}}/{epochs}  {_stats(row)}", highlight=False)
    else:
        columns = (
            TextColumn("epoch"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task("train", total=epochs, stats="evaluating the initial network")
            yield lambda row: bar.update(task, completed=row.epoch, stats=_stats(row))


def _metrics_table(rows: Sequence[EpochRecord], limit: int = 25) -> Table:
    """Per-epoch metrics; long runs show evenly spaced epochs and always the last."""
    if len(rows) > limit:
        step = -(-len(rows) // (limit - 1))
        rows = [*rows[:-1:step], rows[-1]]
    table = Table(title="per-epoch metrics", title_justify="left")
    for name in ("epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r.epoch),
            f"{r.train_loss:.4f}",
            f"{r.train_accuracy:.2%}",
            f"{r.test_loss:.4f}",
            f"{r.test_accuracy:.2%}",
            f"{r.learning_rate:g}",
            f"{r.seconds:.3f}",
        )
    return table


@cli.command(short_help="Train the network a config describes; write a run directory.")
@click.argument("config_path", metavar="CONFIG")
@set_option
@click.option(
    "--runs-dir", default="runs", metavar="DIR", show_default=True, help="Folder in which to create the run directory."
)
@click.option("--smoke", is_flag=True, help="One epoch on at most 256 samples: a quick check that a config runs.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the run directory's path.")
@user_errors
def train(config_path: str, overrides: tuple[str, ...], runs_dir: str, smoke: bool, quiet: bool) -> None:
    """Train the network that CONFIG describes and write a run directory.

    Exits 0 when training completed, 3 when it diverged, 2 for a bad config.
    """
    config = configs.load_config(config_path, overrides)
    if smoke:
        config = configs.smoke(config)
    console = Console(highlight=False, soft_wrap=True)
    with _progress(console, config.train.epochs, quiet) as on_epoch:
        outcome = run(config, runs_dir, on_epoch)
    if quiet:
        click.echo(outcome.path)
    else:
        result, summary = outcome.result, outcome.summary
        if console.is_terminal:
            console.print(_metrics_table(result.records))
        final, best = summary["final"], summary["best"]
        if result.status == "completed":
            console.print(
                f"[green]completed[/] {summary['epochs']} epochs in {summary['wall_seconds']:.1f} s: "
                f"test accuracy {final['test_accuracy']:.2%} "
                f"(best {best['test_accuracy']:.2%} at epoch {best['epoch']}), train loss {final['train_loss']:.4f}"
            )
        else:
            console.print(f"[red]diverged[/]: {result.reason}; metrics.csv keeps epochs 0..{summary['epochs']}")
        console.print(f"run directory: {outcome.path}")
    if outcome.result.status == "diverged":
        sys.exit(EXIT_DIVERGED)


@cli.command(short_help="Check configs without training.")
@click.argument("config_paths", metavar="CONFIG...", nargs=-1, required=True)
@set_option
def validate(config_paths: tuple[str, ...], overrides: tuple[str, ...]) -> None:
    """Check configs without training: one line per file; exit 2 if any is bad."""
    bad = 0
    for path in config_paths:
        try:
            c = configs.load_config(path, overrides)
        except ConfigError as exc:
            bad += 1
            click.echo(f"error: {exc}", err=True)
        else:
            click.echo(f"ok: {path} ({c.optimizer.name} on {c.dataset.name}, {c.model.type}, {c.train.epochs} epochs)")
    if bad:
        sys.exit(2)


@cli.command(short_help="List optimizers, their defaults and update rules.")
def optimizers() -> None:
    """List the optimizers with their hyperparameters, defaults and update rules."""
    table = Table(show_lines=True)
    table.add_column("name", style="bold")
    table.add_column("hyperparameters (default)")
    table.add_column("update rule (g: gradient; t: step, from 1)")
    for name, cls in OPTIMIZERS.items():
        fields = cls.Spec.model_fields
        hyper = "\n".join(
            f"{k} = {f.default:g}" if isinstance(f.default, float) else f"{k} = {str(f.default).lower()}"
            for k, f in fields.items()
            if k != "name"
        )
        table.add_row(name, hyper, update_rule(cls))
    Console(highlight=False).print(table)


def main() -> None:
    cli()
