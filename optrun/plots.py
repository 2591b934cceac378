"""Figures of a comparison, drawn with matplotlib's object API (no pyplot, no display needed).

``curves``: train loss (log scale) and test accuracy against epoch, one colour
per label; the mean over the completed seeds as a line, min..max over them as a
band, every diverged or failed run as a thin dashed line ending in a cross. A
third panel zooms in on the mean test accuracy of the second half of training,
where optimizers that all end near the top differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from optrun.stats import Group, curves
from optrun.train import EpochRecord

_STYLES = ("-", "--", ":", "-.")  # after the ten colours of tab10, labels differ by line style too


def _legend_label(group: Group) -> str:
    n, broken = len(group.runs), len(group.runs) - len(group.completed)
    seeds = f"{n} seed{'s' if n > 1 else ''}"
    return f"{group.label} ({seeds}, {broken} diverged)" if broken else f"{group.label} ({seeds})"


def _mean_and_band(ax: Axes, epochs: np.ndarray, values: np.ndarray, colour: str, style: str) -> None:
    ax.plot(epochs, values.mean(axis=0), color=colour, linestyle=style, linewidth=1.8)
    if len(values) > 1:
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=colour, alpha=0.18, linewidth=0)


def curves_figure(groups: list[Group], target: float | None = None, title: str = "") -> Figure:
    """Train loss, test accuracy, and test accuracy over the second half of training, for every group."""
    fig = Figure(figsize=(16, 4.8), layout="constrained")
    loss_ax, acc_ax, zoom_ax = fig.subplots(1, 3)
    last = max((r.records[-1].epoch for g in groups for r in g.runs if r.records), default=1) or 1
    zoom_from = last // 2
    window: list[np.ndarray] = []  # the accuracies the zoomed panel shows, to fit its limits
    handles = []
    for i, group in enumerate(groups):
        colour, style = f"C{i % 10}", _STYLES[(i // 10) % len(_STYLES)]
        c = curves(group)
        if c is not None:
            _mean_and_band(loss_ax, c.x, c["train_loss"], colour, style)
            _mean_and_band(acc_ax, c.x, c["test_accuracy"], colour, style)
            mean_accuracy = c["test_accuracy"].mean(axis=0)  # zoomed in, bands of many labels would hide the lines
            zoom_ax.plot(c.x, mean_accuracy, color=colour, linestyle=style, linewidth=1.8)
            if c.x[-1] >= zoom_from:
                window.append(mean_accuracy[c.x >= zoom_from])
        for run in group.runs:
            if run.status != "completed" and run.records:
                _plot_broken(loss_ax, acc_ax, run.records, colour)
        handles.append(Line2D([], [], color=colour, linestyle=style, linewidth=1.8, label=_legend_label(group)))
    if any(len(g.completed) < len(g.runs) for g in groups):
        handles.append(
            Line2D([], [], color="0.3", linestyle="--", marker="x", lw=0.9, label="diverged run (last point)")
        )
    if target is not None:
        for ax in (acc_ax, zoom_ax):
            ax.axhline(target, color="0.45", linestyle=":", linewidth=1)
        handles.append(Line2D([], [], color="0.45", linestyle=":", lw=1, label=f"target accuracy {target:.1%}"))

    loss_ax.set_yscale("log")
    loss_ax.set(title="Training loss", ylabel="train loss (log scale)", xlim=(0, last))
    acc_ax.set(title="Test accuracy", ylabel="test accuracy", xlim=(0, last))
    zoom_ax.set(title=f"Test accuracy, epochs {zoom_from}-{last} (zoomed, means)", ylabel="test accuracy")
    if window and last > zoom_from:
        lo, hi = min(float(w.min()) for w in window), max(float(w.max()) for w in window)
        pad = max(0.1 * (hi - lo), 0.002)
        zoom_ax.set(xlim=(zoom_from, last), ylim=(lo - pad, hi + pad))
    for ax in (acc_ax, zoom_ax):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    for ax in (loss_ax, acc_ax, zoom_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    return fig


def _plot_broken(loss_ax: Axes, acc_ax: Axes, records: list[EpochRecord], colour: str) -> None:
    """A diverged or failed run: its finite points, dashed, and a cross at the last one."""
    epochs = np.array([r.epoch for r in records])
    for ax, values in (
        (loss_ax, np.array([r.train_loss for r in records])),
        (acc_ax, np.array([r.test_accuracy for r in records])),
    ):
        ok = np.isfinite(values) & ((values > 0) if ax is loss_ax else True)
        if ok.any():
            ax.plot(epochs[ok], values[ok], color=colour, linestyle="--", linewidth=0.9, alpha=0.8)
            ax.plot(epochs[ok][-1], values[ok][-1], color=colour, marker="x", markersize=8, mew=2, clip_on=False)


def save_curves(fig: Figure, out_dir: Path) -> list[Path]:
    """Write ``curves.png`` and ``curves.svg`` into ``out_dir``; the SVG carries no date, so it is reproducible."""
    paths = [out_dir / "curves.png", out_dir / "curves.svg"]
    fig.get_layout_engine().execute(fig)  # lay out once, the costliest step, and keep that layout for both files
    fig.set_layout_engine("none")
    fig.savefig(paths[0], dpi=150)
    with rc_context({"svg.hashsalt": "optrun"}):  # fixed element ids instead of random ones
        fig.savefig(paths[1], metadata={"Date": None})
    return paths
