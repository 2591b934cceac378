"""Rich tables for the terminal: a run's per-epoch metrics and overview, and a comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from optrun.problems import Problem, Record, problem_of
from optrun.report import Comparison, Unfinished
from optrun.runs import RunRecord
from optrun.stats import optimizer_descriptions, problem_of_groups

if TYPE_CHECKING:
    from optrun.config import TuneConfig
    from optrun.suite import Scores
    from optrun.tune import Choice


def metrics_table(problem: Problem, rows: Sequence[Record], limit: int | None = 25) -> Table:
    """Per-epoch (per-step) metrics (``Problem.metrics_columns``); beyond ``limit`` rows, evenly spaced rows and
    always the last, and the title says which (the whole table is in metrics.csv)."""
    shown, stride = _thinned(rows, limit)
    columns = problem.metrics_columns(rows)
    table = Table(title=_metrics_title(problem.unit, stride, len(rows)), title_justify="left")
    for header, _ in columns:
        table.add_column(header, justify="right")
    for row in shown:
        table.add_row(*(cell(row) for _, cell in columns))
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
    """``key=value`` for each setting but ``skip``, a list of settings (a CNN's layers) as ``[a=1 b=2, ...]``;
    escaped for rich, whose markup a ``[...]`` would otherwise be."""

    def plain(section: Mapping[str, Any]) -> str:
        return " ".join(f"{k}={shown(v)}" for k, v in section.items() if k != skip and v is not None)

    def shown(value: Any) -> str:
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            return f"[{', '.join(plain(v) for v in value)}]"
        return str(value)

    return escape(plain(section))


def run_overview(run: RunRecord) -> Table:
    """What a run trained, how, and how it ended."""
    config, summary, problem = run.config, run.summary, problem_of(run.config)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("run", str(run.path))
    for key, tag in (*problem.sections, ("optimizer", "name")):
        section = config.get(key) or {}
        table.add_row(key, f"{section.get(tag)}  {_settings(section, tag)}")
    table.add_row("train", f"{_settings(config.get('train') or {}, '')}  seed={config.get('seed')}")
    unit = f"{problem.unit}s"
    status = f"{summary['status']} after {summary.get(unit)} of {summary.get(f'{unit}_planned')} {unit}"
    if summary.get("reason"):
        status += f": {escape(str(summary['reason']))}"
    table.add_row("status", status)
    if summary.get("final"):
        table.add_row("result", f"{problem.result(summary)}, {summary.get('wall_seconds', math.nan):.1f} s")
    return table


def comparison_table(comparison: Comparison, unfinished: Sequence[Unfinished] = ()) -> Table:
    """One row per label, best first. ``unfinished``: what the comparison's directories lack
    (``Collection.unfinished``), counted in each label's seeds apart from the broken ones."""
    spec = problem_of_groups(comparison.groups).table(comparison)
    caption = f"{spec.caption}\n{_seeds_caption(unfinished)}"
    table = Table(
        title=comparison.title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("label", style="bold", no_wrap=True)
    optimizers, seeds = _optimizer_cells(comparison), _seeds_cells(comparison, unfinished)
    words = max((len(word) for cell in optimizers.values() for word in cell.split()), default=9)
    table.add_column("optimizer", min_width=min(max(words, 9), 24), overflow="fold")  # wraps between settings
    for name in spec.wrapping:  # "mean ± sd", "best (epoch)": on a narrow terminal they wrap at their space
        table.add_column(name, justify="right", min_width=7)
    for name in (*spec.whole, "diverged"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in comparison.rows:
        table.add_row(row.label, optimizers[row.label], *spec.cells(row), seeds[row.label])
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


def unfinished_notice(gap: Unfinished) -> Text:
    """What an unfinished comparison lacks, under its table: the headline, one line per label with the seeds that
    have no result and how far each got, and the command that finishes it."""
    text = Text()
    text.append(gap.headline, style="yellow")
    for line in gap.runs_text():
        text.append(f"\n  {line}")
    text.append(f"\nfinish it with: {gap.resume_command}")
    return text


def tuning_table(config: TuneConfig, choices: Mapping[str, Choice]) -> Table:
    """Each label's chosen setting and its score on the validation split, best first; a range whose chosen value
    is the lowest or highest tried is flagged, for the best may lie beyond it."""
    tune = config.tune
    metric = tune.metric.replace("_", " ")
    caption = (
        f"{metric}: at the {tune.at} epoch, the mean over the tuning seeds {config.tuning_seeds}; "
        f"{tune.budget} settings per label ({tune.search} search)\n"
        "diverged: settings that diverged or failed on a tuning seed, of all tried\n"
        "at edge: the chosen value is the lowest or highest tried; widen the range that way"
    )
    table = Table(title=f"{config.name}: tuning", title_justify="left", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    table.add_column("label", style="bold", no_wrap=True)
    table.add_column("chosen setting", overflow="fold")
    table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("diverged", justify="right", no_wrap=True)
    table.add_column("at edge", overflow="fold")
    sign = 1.0 if tune.maximize else -1.0
    ranked = sorted(choices.values(), key=lambda c: -sign * c.setting.score if c.setting else math.inf)
    for choice in ranked:
        setting = choice.setting
        values = setting and " ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.values.items()
        )
        score = "-" if setting is None else f"{setting.score:.2%}" if tune.maximize else f"{setting.score:.4f}"
        broken = f"[red]{choice.broken}/{len(choice.settings)}[/]" if choice.broken else f"0/{len(choice.settings)}"
        edges = ", ".join(f"{name} ({side})" for name, side in choice.edges.items())
        if len(choice.settings) < tune.budget:  # an unfinished tuning's
            seeds = len(config.tuning_seeds)
            tried = "tried" if seeds == 1 else f"tried on all {seeds} tuning seeds"
            chosen, score = f"[yellow]not chosen yet: {len(choice.settings)} of {tune.budget} settings {tried}[/]", "-"
        elif setting is not None:
            chosen = escape(values)
        else:
            chosen = "[red]none: every setting broke[/]"
        table.add_row(choice.label, chosen, score, broken, f"[yellow]{edges}[/]" if edges else "")
    return table


def suite_tables(name: str, found: Scores) -> list[Table]:
    """A suite's labels on each problem (time to its target, and rank), and their profile scores, best first."""
    order, unit = found.order(), "epochs" if found.measure == "epochs" else "s"
    curve = "the mean test-accuracy curve"
    if found.stepped:
        curve += "; on an objective, the mean distance to the minimum"
    times = Table(title=f"{name}: {found.unit} to each problem's target (rank)", title_justify="left",
                  caption=f"-: never reached the target ({curve}); tied times share their mean rank",
                  caption_justify="left", box=box.SIMPLE_HEAD)  # fmt: skip
    times.add_column("problem", style="bold", no_wrap=True)
    times.add_column("target", justify="right", no_wrap=True)
    for s in order:
        times.add_column(escape(found.labels[s]), justify="right", no_wrap=True)
    ranks = found.ranks
    for p, problem in enumerate(found.problems):
        target = found.targets[p]
        cells = []
        for s in order:
            t = found.times[p, s]
            text = "-" if not math.isfinite(t) else f"{t:.0f}" if unit == "epochs" else f"{t:.3g} s"
            best = math.isfinite(t) and ranks[p, s] == ranks[p].min()
            cells.append(f"{'[green]' if best else ''}{text} ({ranks[p, s]:g}){'[/]' if best else ''}")
        times.add_row(escape(problem), "-" if target is None else f"{target:.2%}", *cells)
    caption = (
        f"score: the area under the label's performance profile for tau from 1 to {found.tau_max:g}, normalised "
        "(1: the fastest on every problem)\nreached: the problems on which it reached the target"
    )
    if unreached := [p for p, row in zip(found.problems, found.times, strict=True) if not np.isfinite(row).any()]:
        caption += f"\n[yellow]no label reached the target on {', '.join(unreached)}: no label scores there[/]"
    scores = Table(title=f"{name}: performance profiles", title_justify="left", caption=caption,
                   caption_justify="left", box=box.SIMPLE_HEAD)  # fmt: skip
    scores.add_column("label", style="bold", no_wrap=True)
    for header in ("score", "mean rank", "reached"):
        scores.add_column(header, justify="right", no_wrap=True)
    mean_rank = ranks.mean(axis=0)
    for s in order:
        scores.add_row(escape(found.labels[s]), f"{found.scores[s]:.3f}", f"{mean_rank[s]:.2f}",
                       f"{found.reached[s]} of {len(found.problems)}")  # fmt: skip
    return [times, scores]
