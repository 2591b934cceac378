"""Rich tables for the terminal: a run's per-epoch metrics and overview, and a comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from optrun.report import Comparison, Unfinished
from optrun.runs import RunRecord
from optrun.stats import LabelStats, LandscapeStats, optimizer_descriptions
from optrun.train import OPTIONAL_COLUMNS, Record, StepRecord


def metrics_table(rows: Sequence[Record], limit: int | None = 25) -> Table:
    """Per-epoch (per-step) metrics; beyond ``limit`` rows, evenly spaced rows and always the last, and the title
    says which (the whole table is in metrics.csv)."""
    shown, stride = _thinned(rows, limit)
    extras = [c for c in OPTIONAL_COLUMNS if rows and getattr(rows[0], c, None) is not None]
    if rows and isinstance(rows[0], StepRecord):
        table = Table(title=_metrics_title("step", stride, len(rows)), title_justify="left")
        for name in ("step", "loss", "|grad|", "distance to min", "lr", *extras):
            table.add_column(name, justify="right")
        for r in shown:
            distance = "-" if r.distance_to_minimum is None else f"{r.distance_to_minimum:.4g}"
            table.add_row(
                str(r.step), f"{r.loss:.4g}", f"{r.grad_norm:.3g}", distance, f"{r.learning_rate:g}",
                *(f"{getattr(r, c):.4g}" for c in extras),
            )  # fmt: skip
        return table
    table = Table(title=_metrics_title("epoch", stride, len(rows)), title_justify="left")
    for name in ("epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds", *extras):
        table.add_column(name, justify="right")
    for r in shown:
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


def _thinned(rows: Sequence[Record], limit: int | None) -> tuple[Sequence[Record], int]:
    """At most ``limit`` of ``rows``: every ``stride``-th from the first, and the last; and that stride (1: all)."""
    if limit is None or len(rows) <= limit:
        return rows, 1
    stride = -(-len(rows) // (limit - 1))
    return [*rows[:-1:stride], rows[-1]], stride


def _metrics_title(unit: str, stride: int, total: int) -> str:
    """``per-epoch metrics``, or, for a thinned table, which rows it shows: ``per-epoch metrics: every 3rd epoch
    and the last (metrics.csv has all 62 rows)``, so that no one takes the rows shown for the whole run."""
    title = f"per-{unit} metrics"
    if stride == 1:
        return title
    which = f"every {_ordinal(stride)} {unit}" + ("" if (total - 1) % stride == 0 else " and the last")
    return f"{title}: {which} (metrics.csv has all {total} rows)"


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


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


def _row(s: LabelStats, optimizer: str, seeds: str) -> list[str]:
    return [
        s.label,
        optimizer,
        _mean_sd(s.final_test_accuracy_mean, s.final_test_accuracy_std, percent=True),
        _mean_sd(s.final_train_loss_mean, s.final_train_loss_std, percent=False),
        f"{s.best_test_accuracy * 100:.2f} ({s.best_epoch})" if s.best_test_accuracy is not None else "-",
        str(s.epochs_to_target) if s.epochs_to_target is not None else "-",
        f"{s.seconds_per_epoch:.3f}" if s.seconds_per_epoch is not None else "-",
        seeds,
    ]


def comparison_table(comparison: Comparison, unfinished: Sequence[Unfinished] = ()) -> Table:
    """One row per label, best first. ``unfinished``: what the comparison's directories lack
    (``Collection.unfinished``), counted in each label's seeds apart from the broken ones."""
    if comparison.rows and isinstance(comparison.rows[0], LandscapeStats):
        return _landscape_table(comparison, unfinished)
    target = comparison.target
    caption = "test acc %, train loss: final, mean ± sd over the completed seeds; best: of the mean curve (epoch)"
    if target is not None:
        caption += f"\nto target: first epoch the mean test accuracy reaches {target:.2%} ({comparison.target_rule})"
    caption += "\n" + _seeds_caption(unfinished)
    table = _table(comparison, caption, ("test acc %", "train loss", "best (epoch)"), ("to target", "s/epoch"))
    optimizers, seeds = _optimizer_cells(comparison), _seeds_cells(comparison, unfinished)
    for s in comparison.rows:
        table.add_row(*_row(s, optimizers[s.label], seeds[s.label]))
    return table


def _table(comparison: Comparison, caption: str, wrapping: tuple[str, ...], whole: tuple[str, ...]) -> Table:
    """A comparison table's frame: label, optimizer, the ``wrapping`` columns ("mean ± sd", "best (epoch)": on
    a narrow terminal they wrap at their space, so no number is ever cut), the ``whole`` ones, and diverged."""
    table = Table(
        title=comparison.title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("label", style="bold", no_wrap=True)
    table.add_column("optimizer", min_width=9, overflow="fold")  # long settings wrap, never cut
    for name in wrapping:
        table.add_column(name, justify="right", min_width=7)
    for name in (*whole, "diverged"):
        table.add_column(name, justify="right", no_wrap=True)
    return table


def _optimizer_cells(comparison: Comparison) -> dict[str, str]:
    """Each label's optimizer: its name, learning rate and every setting whose value differs between the labels
    (``momentum lr=0.01 mu=0.5``), so that labels of one optimizer never read the same."""
    groups = comparison.groups
    texts = optimizer_descriptions([g.optimizer for g in groups])
    return {g.label: escape(text) for g, text in zip(groups, texts, strict=True)}


def _seeds_cells(comparison: Comparison, unfinished: Sequence[Unfinished]) -> dict[str, str]:
    """Each label's ``broken/seeds`` over its seeds with a result, red when any broke, and below it ``+k missing``
    for seeds interrupted or never run: those have no result, and are not broken."""
    groups = {g.label: g for g in comparison.groups}
    cells = {}
    for row in comparison.rows:
        broken = row.diverged + row.failed
        cell = f"[red]{broken}/{row.seeds}[/]" if broken else f"0/{row.seeds}"
        group = groups[row.label]
        label = group.runs[0].path.parent.name  # as its compare directory names it (row.label may be qualified)
        missing = sum(gap.missing(label) for gap in unfinished if gap.path == group.source)
        cells[row.label] = cell + (f"\n[yellow]+{missing} missing[/]" if missing else "")
    return cells


def _seeds_caption(unfinished: Sequence[Unfinished]) -> str:
    if not any(gap.runs for gap in unfinished):
        return "diverged: runs that diverged or failed, of all seeds"
    return (
        "diverged: runs that diverged or failed, of the seeds with a result; "
        "+k missing: seeds without a result, interrupted or not run (listed below)"
    )


def _landscape_table(comparison: Comparison, unfinished: Sequence[Unfinished]) -> Table:
    caption = (
        "loss, distance: final, mean ± sd over the completed seeds; best: of the mean loss curve (step)\n"
        f"to target: first step the mean distance to the minimum is {comparison.target_rule}\n"
        "rate: measured per-step contraction of the distance (theory's where the settings are the theory's)\n"
        + _seeds_caption(unfinished)
    )
    table = _table(comparison, caption, ("loss", "distance", "best (step)"), ("to target", "rate"))
    optimizers, seeds = _optimizer_cells(comparison), _seeds_cells(comparison, unfinished)
    for s in comparison.rows:
        rate = "-" if s.rate_measured is None else f"{s.rate_measured:.3f}"
        if s.rate_theory is not None:
            rate += f" ({s.rate_theory:.3f})"
        table.add_row(
            s.label,
            optimizers[s.label],
            _mean_sd(s.final_loss_mean, s.final_loss_std, percent=False),
            _mean_sd(s.final_distance_mean, s.final_distance_std, percent=False),
            "-" if s.best_loss is None else f"{s.best_loss:.3g} ({s.best_step})",
            "-" if s.steps_to_target is None else str(s.steps_to_target),
            rate,
            seeds[s.label],
        )
    return table


def unfinished_notice(gap: Unfinished) -> Text:
    """What an unfinished comparison lacks, under its table: the headline, one line per label with the seeds that
    have no result and how far each got, and the command that finishes it."""
    text = Text()
    text.append(gap.headline, style="yellow")
    for line in gap.runs_text():
        text.append(f"\n  {line}")
    text.append(f"\nfinish it with: {gap.resume_command}")
    return text
