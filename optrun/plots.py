"""Figures of a comparison, drawn with matplotlib's object API (no pyplot, no display needed).

``curves``: train loss (log scale) and test accuracy against epoch, one colour,
line style and marker per label; the mean over the completed seeds as a line,
min..max over them as a band, every diverged or failed run as a thin dashed
line ending in a cross. A third panel zooms in on the test accuracy of the
second half of training, where optimizers that all end near the top differ:
there too each mean has its band, so a gap smaller than the spread over seeds
does not look like a difference.

A log-scale loss panel fits the completed runs (and where the broken ones
started), not the broken runs' blow-up: a diverged run's line leaves through
the panel's top edge, and its end is marked there by a triangle pointing the
way it went, so that one run heading for 1e35 does not squash every healthy
curve flat at the bottom. When no run completed, the panel fits what there is.

The legend names each comparison's labels; a run directory of its own (what
``optrun train`` draws) is named by its optimizer and the settings that tell it
from the others'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from optrun.objectives import Objective
from optrun.problems import LandscapeStats, Record
from optrun.profiles import profile
from optrun.search import Choices, Range, value_text
from optrun.stats import Group, curves, optimizer_descriptions

if TYPE_CHECKING:
    from optrun.search import Space
    from optrun.suite import Scores
    from optrun.tune import Choice

_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_MARKS_PER_LINE = 6  # markers along each line: enough to follow it, few enough not to clutter
_PLOTTABLE = 1e100  # larger values (a run on its way to overflow) would break log axes: they are left out


@dataclass(frozen=True)
class _Style:
    """How the ``index``-th of ``count`` labels is drawn. Colour, line style and marker all change from label to
    label (the three repeat together only after 20 labels), so that lines lying on one another stay apart; the
    markers of different labels sit at different points, and a label drawn earlier, hence lower, is drawn wider,
    so that a line exactly under another still shows at its edges, its gaps and its markers."""

    index: int
    count: int

    @property
    def colour(self) -> str:
        return f"C{self.index % 10}"

    def handle(self) -> dict[str, Any]:
        """The line's properties, without where its markers go: for legend entries."""
        width = 2.4 - 1.0 * self.index / (self.count - 1) if self.count > 1 else 1.8
        return {
            "color": self.colour,
            "linestyle": _LINESTYLES[self.index % len(_LINESTYLES)],
            "linewidth": width,
            "marker": _MARKERS[self.index % len(_MARKERS)],
            "markersize": 2 + 1.75 * width,  # 6.2 down to 4.5: a lower marker's rim shows around an upper one
        }

    def line(self, points: int) -> dict[str, Any]:
        """The line's properties for a line of ``points`` points: a marker every few points, from a point that
        differs between neighbouring labels."""
        every = max(1, -(-points // _MARKS_PER_LINE))
        return {**self.handle(), "markevery": (self.index % every, every)}


def _lone_run(group: Group) -> bool:
    """Whether ``group`` is a run directory of its own (``optrun train``, or one given to ``optrun report``)."""
    return len(group.runs) == 1 and group.runs[0].path == group.source


def _names(groups: Sequence[Group]) -> list[str]:
    """What the legend calls each group: its label in a comparison; a run directory of its own by its optimizer
    and the settings that tell it from the others' (``adam lr=0.02``), beside its name when there are several."""
    descriptions = optimizer_descriptions([g.optimizer for g in groups])
    return [
        (text if len(groups) == 1 else f"{g.label}: {text}") if _lone_run(g) else g.label
        for g, text in zip(groups, descriptions, strict=True)
    ]


def _legend_label(group: Group, name: str) -> str:
    """``name (3 seeds, 1 diverged)``; a lone run is one seed, so only its end is said, if it broke."""
    broken = len(group.runs) - len(group.completed)
    if _lone_run(group):
        return f"{name} ({group.runs[0].status})" if broken else name
    n = len(group.runs)
    seeds = f"{n} seed{'s' if n > 1 else ''}"
    return f"{name} ({seeds}, {broken} diverged)" if broken else f"{name} ({seeds})"


def _mean_and_band(
    ax: Axes, x: np.ndarray, values: np.ndarray, style: _Style, band_alpha: float = 0.18, clip: bool = True
) -> None:
    """The mean over seeds as a line and, with several seeds, their min..max as a band."""
    ax.plot(x, values.mean(axis=0), **style.line(len(x)), clip_on=clip)
    if len(values) > 1:
        ax.fill_between(x, values.min(axis=0), values.max(axis=0), color=style.colour, alpha=band_alpha, linewidth=0)


def curves_figure(groups: list[Group], target: float | None = None, title: str = "") -> Figure:
    """Train loss, test accuracy, and test accuracy over the second half of training, for every group."""
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    loss_ax, acc_ax, zoom_ax = fig.subplots(1, 3)
    last = max((r.records[-1].epoch for g in groups for r in g.runs if r.records), default=1) or 1
    zoom_from = last // 2
    window: list[np.ndarray] = []  # the accuracies the zoomed panel shows, bands included, to fit its limits
    fitted: list[np.ndarray] = []  # the completed runs' train losses, to fit the loss panel's limits
    loss_ends: list[_Broken | None] = []  # each broken run in each panel, to fit and mark once the limits are set
    acc_ends: list[_Broken | None] = []
    handles = []
    for i, (group, name) in enumerate(zip(groups, _names(groups), strict=True)):
        style = _Style(i, len(groups))
        c = curves(group)
        if c is not None:
            _mean_and_band(loss_ax, c.x, c["train_loss"], style)
            _mean_and_band(acc_ax, c.x, c["test_accuracy"], style)
            # only the window's points, so that no segment from an earlier epoch crosses the panel's left edge;
            # fainter bands than in the other panels, as here they overlap more
            shown = c.x >= zoom_from
            if shown.any():
                accuracy = c["test_accuracy"][:, shown]
                window.append(accuracy)
                _mean_and_band(zoom_ax, c.x[shown], accuracy, style, band_alpha=0.1, clip=False)
            fitted.append(c["train_loss"])
        for run in group.runs:
            if run.status != "completed" and run.records:
                loss_ends.append(_plot_broken(loss_ax, run.records, "epoch", "train_loss", style.colour, positive=True))
                acc_ends.append(_plot_broken(acc_ax, run.records, "epoch", "test_accuracy", style.colour))
        handles.append(Line2D([], [], **style.handle(), label=_legend_label(group, name)))
    loss_ax.set_yscale("log")
    _fit_log_panel(loss_ax, fitted, loss_ends)
    handles += _broken_handles(_mark_ends(loss_ax, loss_ends) | _mark_ends(acc_ax, acc_ends))
    if target is not None:
        for ax in (acc_ax, zoom_ax):
            ax.axhline(target, color="0.45", linestyle=":", linewidth=1)
        handles.append(Line2D([], [], color="0.45", linestyle=":", lw=1, label=f"target accuracy {target:.1%}"))

    loss_ax.set(title="Training loss", ylabel="train loss (log scale)", xlim=(0, last))
    acc_ax.set(title="Test accuracy", ylabel="test accuracy", xlim=(0, last))
    zoom_ax.set(title=f"Test accuracy, epochs {zoom_from}-{last} (zoomed)", ylabel="test accuracy")
    if window and last > zoom_from:
        lo, hi = min(float(w.min()) for w in window), max(float(w.max()) for w in window)
        pad = max(0.1 * (hi - lo), 0.002)
        # accuracy lies in [0, 1]: the axis stops there (the means are not clipped, so one at 100% shows whole)
        zoom_ax.set(xlim=(zoom_from, last), ylim=(max(lo - pad, 0.0), min(hi + pad, 1.0)))
    for ax in (acc_ax, zoom_ax):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return _finish(fig, (loss_ax, acc_ax, zoom_ax), "epoch", title, handles)


def run_curves_figure(records: Sequence[Record], title: str = "", end: str = "") -> Figure:
    """One network run (``optrun train``'s): the loss (log scale) and the accuracy against epoch on the training
    split, the validation split where one is held out, and the test split. A run that diverged ends where its
    values stop being numbers; ``end`` (``diverged in epoch 2``), under the title, says how it ended. The loss is
    on a log scale where it spans more than a decade."""
    fig = Figure(figsize=(11, 4.4), layout="constrained")
    loss_ax, accuracy_ax = fig.subplots(1, 2)
    epochs = np.array([r.epoch for r in records], dtype=np.float64)
    splits = [s for s in ("train", "validation", "test") if getattr(records[0], f"{s}_loss", None) is not None]
    handles = []
    for index, split in enumerate(splits):
        style = _Style(index, len(splits))
        for ax, metric in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
            values = np.array([getattr(r, f"{split}_{metric}") for r in records], dtype=np.float64)
            shown = np.isfinite(values) & (np.abs(values) < _PLOTTABLE) & ((values > 0) if metric == "loss" else True)
            ax.plot(epochs[shown], values[shown], **style.line(int(shown.sum())))
        handles.append(Line2D([], [], **style.handle(), label=split))
    shown = np.concatenate([line.get_ydata() for line in loss_ax.get_lines()] or [np.ones(1)])
    log = shown.size > 0 and shown.max() > 10 * shown.min()  # a log scale where the loss spans a decade
    if log:
        loss_ax.set_yscale("log")
    loss_ax.set(title="Loss", ylabel=f"cross-entropy{' (log scale)' if log else ''}")
    accuracy_ax.set(title="Accuracy", ylabel="accuracy")
    accuracy_ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in (loss_ax, accuracy_ax):  # a run that broke in its first epoch still spans an epoch
        ax.set_xlim(0, max(1.0, float(epochs.max())))
    return _finish(fig, [loss_ax, accuracy_ax], "epoch", f"{title}\n{end}" if end else title, handles)


def _finish(fig: Figure, axes: Sequence[Axes], x: str, title: str, handles: list[Line2D]) -> Figure:
    """What every figure has: integer ``x`` ticks, a light grid, the title above, the legend at the right."""
    for ax in axes:
        ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    _title(fig, axes, title)
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def _title(fig: Figure, axes: Sequence[Axes], title: str) -> None:
    """The figure's title: above several panels, centred on the figure; above one, centred on that panel and
    stacked over its own title (a subtitle), so the two line up; centred on the figure, the legend beside the
    panel would push it aside."""
    if not title:
        return
    if len(axes) > 1:
        fig.suptitle(title)
        return
    ax = axes[0]
    if not ax.get_title():
        ax.set_title(title, fontsize="large")
        return
    ax.title.set_fontsize("medium")
    ax.annotate(title, xy=(0.5, 1), xycoords=ax.title, xytext=(0, 4), textcoords="offset points", ha="center",
                va="bottom", fontsize="large")  # fmt: skip


@dataclass(frozen=True)
class _Broken:
    """A diverged or failed run's line in one panel: its first and last plottable points, and its colour."""

    first: float  # y of the first point
    end: tuple[float, float]  # (x, y) of the last point
    colour: str


def _plot_broken(
    ax: Axes, records: list[Record], x: str, y: str, colour: str, positive: bool = False
) -> _Broken | None:
    """A diverged or failed run's ``y`` against ``x``: its plottable points, dashed (clipped at the panel's edges).
    Its end is marked by ``_mark_ends`` once the panel's limits are set; None when no point is plottable."""
    xs = np.array([getattr(r, x) for r in records])
    values = np.array([getattr(r, y) for r in records], dtype=np.float64)
    ok = np.isfinite(values) & (np.abs(values) < _PLOTTABLE) & ((values > 0) if positive else True)
    if not ok.any():
        return None
    ax.plot(xs[ok], values[ok], color=colour, linestyle="--", linewidth=0.9, alpha=0.8)
    return _Broken(float(values[ok][0]), (float(xs[ok][-1]), float(values[ok][-1])), colour)


_LOG_MARGIN = 0.05  # a fitted log panel's margin on each side: this fraction of the decades it spans ...
_LOG_MARGIN_MIN = 0.05  # ... and at least this many decades (a factor of 1.12), so a flat curve has room


def _fit_log_panel(ax: Axes, completed: Sequence[np.ndarray], broken: Sequence[_Broken | None]) -> None:
    """Fit a log-scale panel's y-limits to the completed runs' values (their bands and means lie within them) and
    the first point of each broken run, with a margin: a broken run's blow-up leaves through the top edge instead
    of stretching the axis. Without a completed run the panel keeps matplotlib's fit of what there is."""
    values = np.concatenate([np.ravel(a) for a in completed]) if completed else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return
    starts = [b.first for b in broken if b is not None and b.first > 0]
    lo, hi = np.log10(min([values.min(), *starts])), np.log10(max([values.max(), *starts]))
    pad = max(_LOG_MARGIN * (hi - lo), _LOG_MARGIN_MIN)
    ax.set_ylim(10 ** (lo - pad), 10 ** (hi + pad))


_EDGE_LOOK = {"markersize": 9, "markeredgecolor": "black", "markeredgewidth": 0.6}  # an end beyond the panel


def _mark_ends(ax: Axes, broken: Sequence[_Broken | None]) -> set[str]:
    """Mark where each broken run ended: a cross at its last point; a triangle on the panel's edge, pointing out,
    when that point lies beyond it (not clipped, so it shows). The kinds of mark drawn: ``inside``, ``edge``."""
    lo, hi = sorted(ax.get_ylim())
    kinds = set()
    for b in broken:
        if b is None:
            continue
        x, y = b.end
        if lo <= y <= hi:
            ax.plot(x, y, color=b.colour, marker="x", markersize=8, mew=2, clip_on=False)
            kinds.add("inside")
            continue
        edge, marker = (hi, "^") if y > hi else (lo, "v")
        ax.plot(x, edge, color=b.colour, marker=marker, **_EDGE_LOOK, clip_on=False, zorder=5)
        kinds.add("edge")
    return kinds


def _broken_handles(kinds: set[str]) -> list[Line2D]:
    """Legend entries for the kinds of broken runs' ends drawn (``_mark_ends``)."""
    handles = []
    if "inside" in kinds:
        label = "diverged run (last point)"
        handles.append(Line2D([], [], color="0.3", linestyle="--", marker="x", lw=0.9, label=label))
    if "edge" in kinds:
        label = "diverged run, off the scale\n(last point, at the edge)"
        handles.append(Line2D([], [], color="0.6", linestyle="--", lw=0.9, marker="^", **_EDGE_LOOK, label=label))
    return handles


def save_figure(fig: Figure, out_dir: Path, name: str = "curves", svg: bool = True) -> list[Path]:
    """Write ``<name>.png`` (and ``<name>.svg``) into ``out_dir``, each whole or not at all (written beside and
    renamed: a Ctrl-C while it is drawn leaves no half a file); the SVG carries no date, so it is reproducible."""
    paths = [out_dir / f"{name}.png", *([out_dir / f"{name}.svg"] if svg else [])]
    fig.get_layout_engine().execute(fig)  # lay out once, the costliest step, and keep that layout for both files
    fig.set_layout_engine("none")
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            if path.suffix == ".png":
                fig.savefig(tmp, dpi=150, format="png")
            else:
                with rc_context({"svg.hashsalt": "optrun"}):  # fixed element ids instead of random ones
                    fig.savefig(tmp, metadata={"Date": None}, format="svg")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, path)
    return paths


# --- tuning -----------------------------------------------------------------------------------------------------


def sensitivity_figure(
    choices: Mapping[str, Choice], spaces: Mapping[str, Space], metric: str, at: str, title: str = ""
) -> Figure:
    """The tuning's metric against each tuned hyperparameter, a panel per hyperparameter and a line per label.

    Every scored setting is a faint point; the line joins, at each value of the hyperparameter, the best
    score over the label's other hyperparameters (its profile); the chosen setting is a large star; a
    setting that diverged or failed is a cross at the panel's worst edge (the foot for an accuracy, the top
    for a loss), each label's at its own height. Numbers
    lie on a number axis, a log one where a label searches a log range (or a list of numbers spans more than
    two decades); other values (true, false, names) are evenly spaced in the order listed."""
    names = list(dict.fromkeys(name for space in spaces.values() for name in space))
    fig = Figure(figsize=(4 + 5 * len(names), 5), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    maximize = metric.endswith("accuracy")
    labels = list(choices)
    scored_anywhere = False
    for ax, name in zip(axes, names, strict=True):
        dims = [spaces[label][name] for label in labels if name in spaces[label]]
        tried = [s.values[name] for label in labels if name in spaces[label] for s in choices[label].settings]
        x_of = _sensitivity_axis(ax, dims, tried)
        for index, label in enumerate(labels):
            if name not in spaces[label]:
                continue
            style, choice = _Style(index, len(labels)), choices[label]
            scored = [(x_of(s.values[name]), s.score) for s in choice.settings if s.score is not None]
            if scored:
                scored_anywhere = True
                xs, ys = np.array(scored).T
                ax.scatter(xs, ys, color=style.colour, s=12, alpha=0.35, linewidths=0)
                profile = {x: (max if maximize else min)(ys[xs == x]) for x in np.unique(xs)}
                ax.plot(list(profile), list(profile.values()), **{**style.handle(), "markersize": 4})
            if broken := [x_of(s.values[name]) for s in choice.settings if s.score is None]:
                # at the worst end of the axis, each label's at its own height (crosses at one value stay apart)
                height = 0.02 + 0.03 * index if maximize else 0.98 - 0.03 * index
                ax.plot(broken, [height] * len(broken), "x", color=style.colour, transform=ax.get_xaxis_transform(),
                        markersize=7, clip_on=False)  # fmt: skip
            if choice.setting is not None:
                best = (x_of(choice.setting.values[name]), choice.setting.score)
                ax.plot(*best, marker="*", markersize=16, color=style.colour, markeredgecolor="black", zorder=5)
        ax.set_xlabel(name)
        ax.grid(True, alpha=0.3)
    if maximize:
        axes[0].yaxis.set_major_formatter(PercentFormatter(1.0))
    elif scored_anywhere:
        axes[0].set_yscale("log")
    if not scored_anywhere:  # every setting broke: an empty axis, not one around nothing
        axes[0].set_ylim(0, 1)
        axes[0].text(0.5, 0.5, "every setting diverged or failed", transform=axes[0].transAxes, ha="center")
    handles = [Line2D([], [], **_Style(i, len(labels)).handle(), label=label) for i, label in enumerate(labels)]
    handles.append(Line2D([], [], linestyle="", marker="*", markersize=12, color="0.6", markeredgecolor="black",
                          label="chosen setting"))  # fmt: skip
    if any(choice.broken for choice in choices.values()):
        handles.append(Line2D([], [], linestyle="", marker="x", color="0.3", label="diverged or failed"))
    axes[0].set_ylabel(f"{metric.replace('_', ' ')} ({at} epoch)")
    _title(fig, axes, title)
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def _sensitivity_axis(ax: Axes, dims: Sequence[Range | Choices], tried: Sequence[Any]) -> Any:
    """Set up ``ax``'s x axis for a hyperparameter searched over ``dims`` (one per label), ``tried`` its values
    tried; where a value goes. Numbers alone lie on a number axis; with other values (none, true, a name) every
    value tried is a tick of its own, those others first, then the numbers in order."""
    ends = [v for d in dims for v in (d.values if isinstance(d, Choices) else (d.low, d.high))]
    if all(_number(v) for v in ends):
        positive = min(ends) > 0
        logs = any(isinstance(d, Range) and d.scale == "log" for d in dims)
        if positive and (logs or (not any(isinstance(d, Range) for d in dims) and max(ends) >= 100 * min(ends))):
            ax.set_xscale("log")
        return float
    values = list(dict.fromkeys([*ends, *tried]))
    ticks = [v for v in values if not _number(v)] + sorted(v for v in values if _number(v))
    ax.set_xticks(range(len(ticks)), [value_text(v) for v in ticks])
    ax.set_xlim(-0.5, len(ticks) - 0.5)
    return lambda value: float(ticks.index(value))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- suites ------------------------------------------------------------------------------------------------------


def profiles_figure(found: Scores, title: str = "") -> Figure:
    """Each label's performance profile (``optrun.profiles``): the share of the suite's problems on which its time
    to the target is within a factor tau of the best label's, a step line from tau = 1 to ``tau_max``, its
    score in the legend; labels best first."""
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    ratios, order, n = found.ratios, found.order(), len(found.problems)
    steps = np.unique(np.concatenate([[1.0, found.tau_max], ratios[np.isfinite(ratios) & (ratios <= found.tau_max)]]))
    rho = profile(ratios, steps)
    handles = []
    for rank, s in enumerate(order):  # best first, so lowest: the widest, as a line under another must be
        # each label's colour, line style and marker as its problems' curves draw it (its place in the config)
        look = {
            **_Style(s, len(order)).handle(),
            **{k: _Style(rank, len(order)).handle()[k] for k in ("linewidth", "markersize")},
        }
        ax.step(steps, rho[s], where="post", **{**look, "marker": None})
        jumps = np.unique(np.concatenate([[1.0], ratios[:, s][ratios[:, s] <= found.tau_max]]))  # its own steps
        ax.plot(jumps, profile(ratios[:, s : s + 1], jumps)[0], **{**look, "linestyle": ""})
        handles.append(Line2D([], [], **look, label=f"{found.labels[s]} (score {found.scores[s]:.3f})"))
    ax.set_xlim(1.0, found.tau_max)
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    unit = found.unit
    ax.set_xlabel(f"τ: {unit} to the target within τ × the best label's")
    ax.set_ylabel(f"share of the {n} problem{'s' * (n > 1)}")
    ax.grid(True, alpha=0.3)
    title = title or f"Performance profiles ({unit} to each problem's target)"
    if unreached := [p for p, row in zip(found.problems, found.times, strict=True) if not np.isfinite(row).any()]:
        title += f"\nno label reached the target on: {', '.join(unreached)}"
    ax.set_title(title)
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


# --- objectives --------------------------------------------------------------------------------------------------


def landscape_curves_figure(groups: list[Group], title: str = "") -> Figure:
    """Loss and distance to the minimum against step (log scales), mean over seeds with a min..max band."""
    with_distance = any((c := curves(g)) is not None and "distance_to_minimum" in c.values for g in groups)
    fig = Figure(figsize=(12 if with_distance else 7, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if with_distance else 1, squeeze=False)[0]
    handles = []
    losses = [c["loss"] for g in groups if (c := curves(g)) is not None]
    positive = all(bool((loss > 0).all()) for loss in losses)  # a log scale, else a symmetric log one
    ends: list[_Broken | None] = []
    for i, (group, name) in enumerate(zip(groups, _names(groups), strict=True)):
        style = _Style(i, len(groups))
        c = curves(group)
        if c is not None:
            _mean_and_band(axes[0], c.x, c["loss"], style)
            if with_distance and "distance_to_minimum" in c.values:
                _mean_and_band(axes[1], c.x, c["distance_to_minimum"], style)
        for run in group.runs:
            if run.status != "completed" and run.records:
                ends.append(_plot_broken(axes[0], run.records, "step", "loss", style.colour, positive=positive))
        handles.append(Line2D([], [], **style.handle(), label=_legend_label(group, name)))
    axes[0].set_yscale("log" if positive else "symlog")
    if positive:
        _fit_log_panel(axes[0], losses, ends)
    handles += _broken_handles(_mark_ends(axes[0], ends))
    axes[0].set(title="Loss", ylabel=f"f(x) ({'log' if positive else 'symmetric log'} scale)")
    if with_distance:  # a log scale, unless every run sat on the minimum throughout (a start there)
        distances = [c["distance_to_minimum"] for g in groups if (c := curves(g)) and "distance_to_minimum" in c.values]
        scale = "log" if any(bool((d > 0).any()) for d in distances) else "linear"
        axes[1].set_yscale(scale)
        axes[1].set(title="Distance to the minimum", ylabel=f"‖x − x*‖{' (log scale)' if scale == 'log' else ''}")
    return _finish(fig, axes, "step", title, handles)


def trajectories_figure(groups: list[Group], objective: Objective, title: str = "") -> Figure:
    """Contours of a 2-D objective (log-spaced levels) and each label's path from its first seed's run."""
    paths = {g.label: np.array([[r.x0, r.x1] for r in g.runs[0].records]) for g in groups if g.runs[0].records}
    anchors = [objective.start] + ([objective.minimum] if objective.minimum is not None else [])
    span = np.ptp(np.array(anchors), axis=0).max() if len(anchors) > 1 else 1.0
    points = np.vstack([*anchors, *(p[np.isfinite(p).all(axis=1)] for p in paths.values())])
    centre = np.array(anchors).mean(axis=0)
    points = np.clip(points, centre - 3 * span - 1, centre + 3 * span + 1)  # runaway paths leave the frame
    lo, hi = points.min(axis=0), points.max(axis=0)
    half = np.maximum(0.62 * (hi - lo), 0.5)  # a margin of 12%; at least a unit square (a start at the minimum)
    lo, hi = (lo + hi) / 2 - half, (lo + hi) / 2 + half
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
    values = objective.value(np.stack([gx, gy], axis=-1))
    fig = Figure(figsize=(9, 7), layout="constrained")
    ax = fig.add_subplot()
    levels = _levels(float(values.min()), float(values.max()))
    ax.contourf(gx, gy, values, levels=levels, cmap="Blues_r", alpha=0.35, norm=_norm(levels), extend="both")
    ax.contour(gx, gy, values, levels=levels, cmap="Blues_r", linewidths=0.6, norm=_norm(levels))
    handles = []
    for i, (group, name) in enumerate(zip(groups, _names(groups), strict=True)):
        if group.label not in paths:
            continue
        style = _Style(i, len(groups))
        path = paths[group.label]
        # the label's marker every few steps shows the speed without hiding the path
        look = {**style.handle(), "linewidth": style.handle()["linewidth"] * 0.6, "markersize": 3.5}
        ax.plot(path[:, 0], path[:, 1], **look, markevery=max(1, len(path) // 40))
        end = path[np.isfinite(path).all(axis=1)][-1]
        ax.plot(*end, color=style.colour, marker="o", markersize=8, markeredgecolor="black", zorder=5)
        handles.append(Line2D([], [], **look, label=name))
    ax.plot(*objective.start, marker="s", color="black", markersize=8, zorder=6)
    handles.append(Line2D([], [], color="black", marker="s", linestyle="none", label="start"))
    handles.append(Line2D([], [], color="0.5", marker="o", markeredgecolor="black", linestyle="none", label="end"))
    if objective.minimum is not None:
        ax.plot(*objective.minimum, marker="*", color="gold", markeredgecolor="black", markersize=16, zorder=6)
        handles.append(Line2D([], [], color="gold", marker="*", markeredgecolor="black", linestyle="none", ms=12,
                              label="minimum"))  # fmt: skip
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="x0", ylabel="x1")
    _title(fig, [ax], title or objective.name)
    fig.legend(handles=handles, loc="outside right center", frameon=False)
    return fig


def _levels(low: float, high: float) -> np.ndarray:
    """25 contour levels from ``low`` to ``high``: log-spaced where the values are positive (they show both a
    valley's floor and its walls), evenly spaced otherwise; increasing even where the values are all one."""
    floor = max(low, 1e-3 * high, 1e-12)
    if low >= 0 and high > floor:
        return np.logspace(np.log10(floor), np.log10(high), 25)
    return np.linspace(low, max(high, low + 1e-12 * max(1.0, abs(low))), 25)


def _norm(levels: np.ndarray) -> Normalize:
    """Colours spread evenly over the levels, log-spaced or not."""
    return LogNorm(levels[0], levels[-1]) if levels[0] > 0 else Normalize(levels[0], levels[-1])


def convergence_figure(groups: list[Group], rows: list[LandscapeStats], title: str = "") -> Figure:
    """Distance to the minimum against step (log scale): each label's mean over seeds, and beside it,
    dashed, the theoretical rate d₀·rᵗ where the settings are the theory's."""
    by_label = {s.label: s for s in rows}
    fig = Figure(figsize=(10, 5.5), layout="constrained")
    ax = fig.add_subplot()
    handles = []
    for i, (group, name) in enumerate(zip(groups, _names(groups), strict=True)):
        c = curves(group)
        if c is None or "distance_to_minimum" not in c.values:
            continue
        style = _Style(i, len(groups))
        measured_look = {**style.handle(), "linestyle": "-"}  # solid: here the dashes mean theory
        mean = c["distance_to_minimum"].mean(axis=0)
        ax.plot(c.x, mean, **measured_look, markevery=style.line(len(c.x))["markevery"])
        stats = by_label[group.label]
        measured = f"measured rate {stats.rate_measured:.3f}" if stats.rate_measured is not None else "no rate"
        handles.append(Line2D([], [], **measured_look, label=f"{name}: {measured}"))
        if stats.rate_theory is not None:
            # white gaps: on its measured line (a rate the theory predicts exactly), the dashes still show
            theory_look = {"color": style.colour, "linestyle": "--", "linewidth": 1, "gapcolor": "white"}
            ax.plot(c.x, mean[0] * stats.rate_theory ** c.x.astype(float), **theory_look)
            handles.append(Line2D([], [], **theory_look, label=f"{name}: theory {stats.rate_theory:.3f}"))
    ax.set_yscale("log")
    floor = [line.get_ydata()[np.isfinite(line.get_ydata())].min() for line in ax.lines if len(line.get_ydata())]
    if floor:
        ax.set_ylim(bottom=max(min(floor), 1e-16))
    theory = any(line.get_linestyle() == "--" for line in ax.lines)
    subtitle = "measured (solid), and the theoretical rate d₀·rᵗ (dashed)"
    if not theory:
        subtitle = "measured (no label uses the theory's settings)"
    ax.set(ylabel="‖x − x*‖ (log scale)", title=subtitle)
    return _finish(fig, [ax], "step", title, handles)
