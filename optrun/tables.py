"""Rich tables for the terminal: a run's per-epoch metrics and overview, and a comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table

from optrun.report import Comparison
from optrun.runs import RunRecord
from optrun.stats import LabelStats, LandscapeStats
from optrun.train import OPTIONAL_COLUMNS, Record, StepRecord


def metrics_table(rows: Sequence[Record], limit: int | None = 25) -> Table:
    """Per-epoch (per-step) metrics; beyond ``limit`` rows, evenly spaced rows and always the last."""
    if limit is not None and len(rows) > limit:
        step = -(-len(rows) // (limit - 1))
        rows = [*rows[:-1:step], rows[-1]]
    extras = [c for c in OPTIONAL_COLUMNS if rows and getattr(rows[0], c, None) is not None]
    if rows and isinstance(rows[0], StepRecord):
        table = Table(title="per-step metrics", title_justify="left")
        for name in ("step", "loss", "|grad|", "distance to min", "lr", *extras):
            table.add_column(name, justify="right")
        for r in rows:
            distance = "-" if r.distance_to_minimum is None else f"{r.distance_to_minimum:.4g}"
            table.add_row(
                str(r.step), f"{r.loss:.4g}", f"{r.grad_norm:.3g}", distance, f"{r.learning_rate:g}",
                *(f"{getattr(r, c):.4g}" for c in extras),
            )  # fmt: skip
        return table
    table = Table(title="per-epoch metrics", title_justify="left")
    for name in ("epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds", *extras):
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
            *(f"{getattr(r, c):g}" for c in extras),
        )
    return table


def _settings(section: Mapping[str, Any], skip: str) -> str:
    return " ".join(f"{k}={v}" for k, v in section.items() if k != skip and v is not None)


def result_text(summary: Mapping[str, Any]) -> str:
    """How a finished run ended, in one phrase: accuracy and loss, or loss and distance to the minimum."""
    final, best = summary["final"], summary["best"]
    if "steps" in summary:
        distance = final["distance_to_minimum"]
        return f"loss {final['loss']:.4g} (best {best['loss']:.4g} at step {best['step']})" + (
            "" if distance is None else f", distance to the minimum {distance:.3g}"
        )
    return (
        f"test accuracy {final['test_accuracy']:.2%} (best {best['test_accuracy']:.2%} at epoch {best['epoch']}), "
        f"train loss {final['train_loss']:.4f}"
    )


def run_overview(run: RunRecord) -> Table:
    """What a run trained, how, and how it ended."""
    config, summary = run.config, run.summary
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", str(run.path))
    sections = (("objective", "name"),) if config.get("objective") else (("dataset", "name"), ("model", "type"))
    for key, tag in (*sections, ("optimizer", "name")):
        section = config.get(key) or {}
        table.add_row(key, f"{section.get(tag)}  {_settings(section, tag)}")
    table.add_row("train", f"{_settings(config.get('train') or {}, '')}  seed={config.get('seed')}")
    unit = "steps" if "steps" in summary else "epochs"
    status = f"{summary['status']} after {summary.get(unit)} of {summary.get(f'{unit}_planned')} {unit}"
    if summary.get("reason"):
        status += f": {escape(str(summary['reason']))}"
    table.add_row("status", status)
    if summary.get("final"):
        table.add_row("result", f"{result_text(summary)}, {summary.get('wall_seconds', math.nan):.1f} s")
    return table


def _mean_sd(mean: float | None, sd: float | None, percent: bool) -> str:
    if mean is None:
        return "-"
    if percent:
        return f"{mean * 100:.2f}" + (f" ± {sd * 100:.2f}" if sd is not None else "")
    return f"{mean:.3g}" + (f" ± {sd:.2g}" if sd is not None else "")


def _row(s: LabelStats) -> list[str]:
    return [
        s.label,
        _optimizer_cell(s),
        _mean_sd(s.final_test_accuracy_mean, s.final_test_accuracy_std, percent=True),
        _mean_sd(s.final_train_loss_mean, s.final_train_loss_std, percent=False),
        f"{s.best_test_accuracy * 100:.2f} ({s.best_epoch})" if s.best_test_accuracy is not None else "-",
        str(s.epochs_to_target) if s.epochs_to_target is not None else "-",
        f"{s.seconds_per_epoch:.3f}" if s.seconds_per_epoch is not None else "-",
        _broken_cell(s),
    ]


def comparison_table(comparison: Comparison) -> Table:
    """One row per label, best first."""
    if comparison.rows and isinstance(comparison.rows[0], LandscapeStats):
        return _landscape_table(comparison)
    target = comparison.target
    caption = "test acc %, train loss: final, mean ± sd over the completed seeds; best: of the mean curve (epoch)"
    if target is not None:
        caption += f"\nto target: first epoch the mean test accuracy reaches {target:.2%} ({comparison.target_rule})"
    caption += "\ndiverged: runs that diverged or failed, of all seeds"
    table = _table(comparison, caption, ("test acc %", "train loss", "best (epoch)"), ("to target", "s/epoch"))
    for s in comparison.rows:
        table.add_row(*_row(s))
    return table


def _table(comparison: Comparison, caption: str, wrapping: tuple[str, ...], whole: tuple[str, ...]) -> Table:
    """A comparison table's frame: label, optimizer, the ``wrapping`` columns ("mean ± sd", "best (epoch)": on
    a narrow terminal they wrap at their space, so no number is ever cut), the ``whole`` ones, and diverged."""
    table = Table(
        title=comparison.title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("label", style="bold", no_wrap=True)
    table.add_column("optimizer", min_width=8)
    for name in wrapping:
        table.add_column(name, justify="right", min_width=7)
    for name in (*whole, "diverged"):
        table.add_column(name, justify="right", no_wrap=True)
    return table


def _optimizer_cell(s: LabelStats | LandscapeStats) -> str:
    return s.optimizer if s.learning_rate is None else f"{s.optimizer} lr={s.learning_rate:.4g}"


def _broken_cell(s: LabelStats | LandscapeStats) -> str:
    broken = s.diverged + s.failed
    return f"[red]{broken}/{s.seeds}[/]" if broken else f"0/{s.seeds}"


def _landscape_table(comparison: Comparison) -> Table:
    caption = (
        "loss, distance: final, mean ± sd over the completed seeds; best: of the mean loss curve (step)\n"
        f"to target: first step the mean distance to the minimum is {comparison.target_rule}\n"
        "rate: measured per-step contraction of the distance (theory's where the settings are the theory's)\n"
        "diverged: runs that diverged or failed, of all seeds"
    )
    table = _table(comparison, caption, ("loss", "distance", "best (step)"), ("to target", "rate"))
    for s in comparison.rows:
        rate = "-" if s.rate_measured is None else f"{s.rate_measured:.3f}"
        if s.rate_theory is not None:
            rate += f" ({s.rate_theory:.3f})"
        table.add_row(
            s.label,
            _optimizer_cell(s),
            _mean_sd(s.final_loss_mean, s.final_loss_std, percent=False),
            _mean_sd(s.final_distance_mean, s.final_distance_std, percent=False),
            "-" if s.best_loss is None else f"{s.best_loss:.3g} ({s.best_step})",
            "-" if s.steps_to_target is None else str(s.steps_to_target),
            rate,
            _broken_cell(s),
        )
    return table
