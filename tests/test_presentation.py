"""What the tables and figures tell a reader: which rows a thinned table shows, what tells labels apart, what an
interrupted comparison lacks, and figures whose lines stay apart, whose spread is drawn, whose titles line up."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.text import Text
from rich.console import Console
from rich.table import Table

import optrun.compare
from optrun.cli import cli
from optrun.compare import compare
from optrun.config import CompareConfig, parse_config
from optrun.optim import REFERENCE_OPTIMIZERS
from optrun.plots import convergence_figure, curves_figure, landscape_curves_figure, trajectories_figure
from optrun.problems import NETWORK, OBJECTIVE, EpochRecord, StepRecord
from optrun.problems.landscape import objective_of
from optrun.report import build, collect
from optrun.runs import RunInterrupted, read_run
from optrun.stats import optimizer_descriptions
from optrun.tables import _ordinal, comparison_table, metrics_table

DIGITS = {"dataset": {"name": "digits"}, "train": {"epochs": 2, "max_samples": 300}}
VALLEY = {"objective": {"name": "quadratic", "dim": 2, "condition_number": 10}, "train": {"steps": 30}}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def compared(tmp_path: Path, problem: dict, optimizers: dict, seeds: int = 1) -> Path:
    config = parse_config({"name": "p", **problem, "seeds": seeds, "optimizers": optimizers}, schema=CompareConfig)
    return compare(config, tmp_path).path


def rendered(table: Table, width: int = 250) -> str:
    console = Console(record=True, width=width, highlight=False)
    console.print(table)
    return console.export_text()


def title_and_body(text: str) -> tuple[str, list[list[str]]]:
    """A rendered table's title (its lines before the frame, joined) and its body rows' cells."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    body = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    return " ".join(line.strip() for line in lines[:top]), body


def table_rows(text: str) -> dict[str, list[str]]:
    """A rendered comparison table's rows by label (lines under the header's rule, up to the blank line that ends
    the table), their cells split where two spaces or more part them; a row's continuation lines are left out."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "───" in line) + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start:end] if re.match(r"  \S", line)]
    return {cells[0]: cells[1:] for cells in rows}


# --- 8: a thinned table says which rows it shows -------------------------------------------------------------------


def epochs(n: int) -> list[EpochRecord]:
    return [EpochRecord(e, 1 / (e + 1), 0.5, 1 / (e + 2), 0.5, 0.1, 0.01) for e in range(n)]


def test_ordinals() -> None:
    numbers = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112]
    expected = ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th"]
    assert [_ordinal(n) for n in numbers] == expected


@pytest.mark.parametrize("n", [61, 62, 200])
def test_a_thinned_epoch_table_says_which_epochs_it_shows(n: int) -> None:
    title, body = title_and_body(rendered(metrics_table(NETWORK, epochs(n))))
    shown = [int(cells[0]) for cells in body]
    stride = shown[1] - shown[0]
    assert stride > 1 and shown[-1] == n - 1
    assert shown[:-1] == list(range(0, n - 1, stride))  # every stride-th epoch from 0, and the last
    last_on_stride = (n - 1) % stride == 0
    assert title == (
        f"per-epoch metrics: every {_ordinal(stride)} epoch{'' if last_on_stride else ' and the last'} "
        f"(metrics.csv has all {n} rows)"
    )


def test_a_thinned_step_table_says_so_and_a_whole_table_keeps_the_plain_title() -> None:
    steps = [StepRecord(s, 1 / (s + 1), 0.5, 0.1, 0.01) for s in range(501)]
    title, body = title_and_body(rendered(metrics_table(OBJECTIVE, steps)))
    stride = int(body[1][0]) - int(body[0][0])
    assert title.startswith(f"per-step metrics: every {_ordinal(stride)} step") and "all 501 rows" in title
    for rows in (epochs(25), epochs(61)):
        title, body = title_and_body(rendered(metrics_table(NETWORK, rows, limit=None if len(rows) > 25 else 25)))
        assert title == "per-epoch metrics" and len(body) == len(rows)


# --- 9: the optimizer column tells labels of one optimizer apart ---------------------------------------------------

SWEEP = {
    "m5": {"name": "momentum", "learning_rate": 0.01, "mu": 0.5},
    "m9": {"name": "momentum", "learning_rate": 0.01, "mu": 0.9},
    "m9-cosine": {
        "name": "momentum",
        "learning_rate": 0.01,
        "mu": 0.9,
        "schedule": {"name": "cosine", "steps": 30, "warmup": 2},
    },
    "sgd": {"learning_rate": 0.1},
}


@pytest.mark.parametrize("problem", [DIGITS, VALLEY], ids=["network", "objective"])
def test_the_optimizer_column_shows_the_settings_that_differ(tmp_path, problem: dict) -> None:
    path = compared(tmp_path, problem, SWEEP)
    comparison = build(collect([path]).groups, "p")
    cells = {label: row[0] for label, row in table_rows(rendered(comparison_table(comparison))).items()}
    assert cells["m5"] == "momentum lr=0.01 mu=0.5"
    assert cells["m9"] == "momentum lr=0.01 mu=0.9"
    # a schedule reads as a call, its unset keys (None) left out; mu, shared by the momentum labels, is kept
    assert cells["m9-cosine"].startswith("momentum lr=0.01 mu=0.9 schedule=cosine(")
    assert "steps=30" in cells["m9-cosine"] and "warmup=2" in cells["m9-cosine"]
    assert "None" not in cells["m9-cosine"] and "{" not in cells["m9-cosine"]
    assert cells["sgd"] == "sgd lr=0.1"  # keys sgd does not have are not its business
    assert len(set(cells.values())) == len(cells)


def test_the_six_reference_optimizers_need_only_their_names_and_rates() -> None:
    config = parse_config({"dataset": {"name": "digits"}}, schema=CompareConfig)
    specs = [config.run_config(label, 0).to_dict()["optimizer"] for label in REFERENCE_OPTIMIZERS]
    texts = optimizer_descriptions(specs)
    assert texts == [f"{s['name']} lr={s['learning_rate']:.4g}" for s in specs]


def test_rates_that_differ_beyond_four_digits_are_written_in_full(tmp_path) -> None:
    rates = {"a": {"name": "sgd", "learning_rate": 0.01}, "b": {"name": "sgd", "learning_rate": 0.010001}}
    comparison = build(collect([compared(tmp_path, VALLEY, rates)]).groups, "p")
    cells = {label: row[0] for label, row in table_rows(rendered(comparison_table(comparison))).items()}
    assert cells == {label: f"sgd lr={spec['learning_rate']!r}" for label, spec in rates.items()}


# --- 10: an interrupted comparison says so, which runs lack a result, and how to finish it ----------------------------

CUT = {**DIGITS, "optimizers": {"sgd": {"learning_rate": 0.1}, "adam": {"learning_rate": 0.003}}}


def interrupted(tmp_path: Path, monkeypatch, stop_run: int) -> Path:
    """A comparison of 2 labels x 2 seeds stopped by Ctrl-C in the ``stop_run``-th run (from 1) after its epoch 1:
    the runs before it complete, it keeps one epoch as 'interrupted', the ones after it never start."""
    real_fit, calls = optrun.compare.fit, []

    def fit(exp, on_epoch=None):
        calls.append(1)
        if len(calls) != stop_run:
            return real_fit(exp, on_epoch)

        def stop(row):
            on_epoch(row)
            if row.epoch == 1:
                raise KeyboardInterrupt

        return real_fit(exp, stop)

    monkeypatch.setattr(optrun.compare, "fit", fit)
    config = parse_config({"name": "cut", **CUT, "seeds": 2}, schema=CompareConfig)
    with pytest.raises(RunInterrupted) as stopped:
        compare(config, tmp_path)
    return stopped.value.path


def test_show_says_a_comparison_is_interrupted_and_which_runs_are_missing(tmp_path, monkeypatch) -> None:
    path = interrupted(tmp_path, monkeypatch, stop_run=2)  # the plan is seed-major: sgd 0, adam 0, sgd 1, adam 1
    assert read_run(path / "adam" / "seed-0").status == "interrupted"
    assert not (path / "sgd" / "seed-1").exists() and not (path / "adam" / "seed-1").exists()
    result = invoke("show", path)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "did not finish (interrupted by SIGINT): 1 of 4 runs have a result" in text
    notice = text.splitlines()[text.splitlines().index(next(x for x in text.splitlines() if "did not finish" in x)) :]
    assert notice[1:] == [
        "  adam  seed 0 interrupted after 1 of 2 epochs; seed 1 not run",
        "  sgd   seed 1 not run",
        f"finish it with: optrun compare --resume {path}",
    ]
    rows = table_rows(text)
    assert list(rows) == ["sgd"]  # adam has no result: no row of dashes
    assert rows["sgd"][-1] == "0/1"  # one seed with a result, not broken; the other is missing, not broken
    assert "+1 missing" in text and "of the seeds with a result" in text


def test_the_interrupted_run_is_not_compared_and_report_warns(tmp_path, monkeypatch) -> None:
    path = interrupted(tmp_path, monkeypatch, stop_run=2)
    collection = collect([path])
    assert [(g.label, [r.config["seed"] for r in g.runs]) for g in collection.groups] == [("sgd", [0])]
    (gap,) = collection.unfinished
    assert [(r.label, r.seed) for r in gap.runs] == [("adam", 0), ("sgd", 1), ("adam", 1)]
    assert any(f"optrun compare --resume {path}" in w for w in collection.warnings)
    legend = [t.get_text() for t in curves_figure(collection.groups).legends[0].get_texts()]
    assert not any("diverged" in text for text in legend)  # an interrupted run is not drawn as a diverged one


def test_show_on_a_comparison_with_no_result_yet(tmp_path, monkeypatch) -> None:
    path = interrupted(tmp_path, monkeypatch, stop_run=1)
    result = invoke("show", path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "the comparison did not finish (interrupted by SIGINT): 0 of 4 runs have a result",
        "  sgd   seed 0 interrupted after 1 of 2 epochs; seed 1 not run",
        "  adam  seeds 0, 1 not run",
        f"finish it with: optrun compare --resume {path}",
    ]


def test_a_finished_comparison_shows_nothing_missing(tmp_path) -> None:
    path = compared(tmp_path, DIGITS, CUT["optimizers"])
    assert collect([path]).unfinished == []
    text = invoke("show", path).output
    assert "missing" not in text and "did not finish" not in text and "--resume" not in text


# --- 11: figures ---------------------------------------------------------------------------------------------------


def test_the_zoomed_panel_draws_each_labels_spread_over_seeds(tmp_path) -> None:
    path = compared(tmp_path, {**DIGITS, "train": {"epochs": 4, "max_samples": 300}}, CUT["optimizers"], seeds=3)
    groups = collect([path]).groups
    zoom_ax = curves_figure(groups).axes[2]
    bands = [c for c in zoom_ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(groups)
    lo_ylim, hi_ylim = zoom_ax.get_ylim()
    for band, group in zip(bands, groups, strict=True):
        accuracy = np.array([[row.test_accuracy for row in r.records if row.epoch >= 2] for r in group.runs])
        y = band.get_paths()[0].vertices[:, 1]
        assert (y.min(), y.max()) == (accuracy.min(), accuracy.max())  # min..max over the seeds
        assert lo_ylim <= accuracy.min() and accuracy.max() <= hi_ylim  # the axis shows the whole spread


def test_every_label_has_its_own_line_style_and_marker(tmp_path) -> None:
    optimizers = {name: None for name in REFERENCE_OPTIMIZERS}
    groups = collect([compared(tmp_path, DIGITS, optimizers)]).groups
    for ax in curves_figure(groups).axes:
        lines = ax.lines[: len(groups)]  # the means, in label order
        looks = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}
        assert len({look[1:] for look in looks}) == len(groups)  # apart even without colour
        assert len(looks) == len(groups)


@pytest.mark.parametrize("problem", [DIGITS, VALLEY], ids=["network", "objective"])
def test_a_line_exactly_under_another_still_shows(tmp_path, problem: dict) -> None:
    twins = {"a": {"name": "sgd", "learning_rate": 0.01}, "b": {"name": "sgd", "learning_rate": 0.01}}
    groups = collect([compared(tmp_path, problem, twins)]).groups
    fig = (curves_figure if problem is DIGITS else landscape_curves_figure)(groups)
    for ax in fig.axes:
        under, over = ax.lines[:2]
        np.testing.assert_array_equal(under.get_ydata(), over.get_ydata())  # the same run twice
        assert under.get_linewidth() > over.get_linewidth()  # the lower line is wider: its edges show
        assert under.get_linestyle() != over.get_linestyle()  # and through the upper one's gaps
        assert under.get_marker() != over.get_marker() and under.get_markersize() > over.get_markersize()
        if len(under.get_xdata()) > 6:  # a long line has markers every few points, the two labels' at other ones
            every = np.arange(len(under.get_xdata()))
            marked = [set(every[line.get_markevery()[0] :: line.get_markevery()[1]]) for line in (under, over)]
            assert not marked[0] & marked[1]


def text_box(fig: Figure, text: str):
    (artist,) = [t for t in fig.findobj(Text) if t.get_text() == text and t.get_visible()]
    return artist.get_window_extent()


def test_the_convergence_title_and_subtitle_are_centred_on_the_panel(tmp_path) -> None:
    optimizers = {"gd": {"name": "sgd", "learning_rate": "theory"}, "slow": {"name": "sgd", "learning_rate": 0.01}}
    path = compared(tmp_path, VALLEY, optimizers)
    groups = collect([path]).groups
    fig = convergence_figure(groups, build(groups, "p").rows, title="the valley")
    fig.draw_without_rendering()
    (ax,) = fig.axes
    title, subtitle, panel = text_box(fig, "the valley"), text_box(fig, ax.get_title()), ax.get_window_extent()
    centre = (panel.x0 + panel.x1) / 2
    assert abs((title.x0 + title.x1) / 2 - centre) < 1 and abs((subtitle.x0 + subtitle.x1) / 2 - centre) < 1
    assert title.y0 >= subtitle.y1 and title.y1 <= fig.bbox.y1  # above the subtitle, inside the figure
    legend = fig.legends[0].get_window_extent()
    assert title.x1 < legend.x0  # clear of the legend


def test_a_single_runs_legend_names_its_optimizer(tmp_path) -> None:
    config = tmp_path / "valley.yaml"
    spec = {"name": "adam", "learning_rate": 0.05}
    config.write_text(yaml.safe_dump({"name": "my-run", **VALLEY, "optimizer": spec}))
    result = invoke("train", config, "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output
    groups = collect([result.output.strip()]).groups
    objective = objective_of(parse_config(groups[0].runs[0].config))
    for fig in (landscape_curves_figure(groups), trajectories_figure(groups, objective)):
        names = [t.get_text() for t in fig.legends[0].get_texts()]
        assert names[0] == f"adam lr={spec['learning_rate']}" and not any("my-run" in name for name in names)


# --- 12: a diverged run leaves the loss panel through its top edge, instead of stretching it ------------------------

BLOW_UP = {"ok": {"name": "sgd", "learning_rate": 0.1}, "bad": {"name": "sgd", "learning_rate": 10.0}}
# the bad label's loss, at its last row: about 2e15 after epoch 1 on the digits, 4e7 at step 4 on the valley
BLOWING_UP = {
    "network": ({**DIGITS, "train": {**DIGITS["train"], "divergence_factor": 10}}, "epoch", "train_loss"),
    "objective": ({**VALLEY, "train": {**VALLEY["train"], "divergence_factor": 1e6}}, "step", "loss"),
}


def loss_panel(groups) -> Axes:
    return (landscape_curves_figure if groups[0].problem is OBJECTIVE else curves_figure)(groups).axes[0]


def points(run, x: str, y: str) -> list[tuple[float, float]]:
    return [(getattr(row, x), getattr(row, y)) for row in run.records]


@pytest.mark.parametrize("case", list(BLOWING_UP))
def test_a_diverged_run_leaves_the_loss_panel_through_its_top_edge_and_its_end_shows_there(tmp_path, case) -> None:
    problem, x, y = BLOWING_UP[case]
    groups = {g.label: g for g in collect([compared(tmp_path, problem, BLOW_UP, seeds=2)]).groups}
    ax = loss_panel(list(groups.values()))
    healthy = [value for run in groups["ok"].runs for _, value in points(run, x, y)]
    assert [run.status for run in groups["bad"].runs] == ["diverged", "diverged"]
    lo, hi = ax.get_ylim()
    assert ax.get_yscale() == "log"
    # the completed runs fill the panel (their bands and means lie within their points), with a margin...
    assert lo < min(healthy) and max(healthy) < hi
    assert min(healthy) / lo < 3 and hi / max(healthy) < 3
    for run in groups["bad"].runs:
        (_, y0), *_, (end_x, end_y) = points(run, x, y)
        assert lo < y0 < hi  # ... and so does where the diverged run started
        assert end_y > 1e3 * hi  # while its end lies far above: its line leaves through the top edge, clipped
        (line,) = [line for line in ax.lines if line.get_linestyle() == "--" and end_y in line.get_ydata()]
        assert line.get_clip_on()
        # its end is marked on the top edge, above its last epoch, unclipped so that it shows
        marks = [m for m in ax.lines if list(m.get_xdata()) == [end_x] and list(m.get_ydata()) == [hi]]
        assert marks and all(not m.get_clip_on() and m.get_marker() not in ("", "None", None) for m in marks)


def test_when_every_run_diverged_the_loss_panel_shows_them_whole(tmp_path) -> None:
    problem, x, y = BLOWING_UP["objective"]
    (group,) = collect([compared(tmp_path, problem, {"bad": BLOW_UP["bad"]}, seeds=2)]).groups
    ax = loss_panel([group])
    lo, hi = ax.get_ylim()
    for run in group.runs:
        assert run.status == "diverged"
        values = [value for _, value in points(run, x, y)]
        assert lo <= min(values) and max(values) <= hi  # nothing to fit instead: all of it shows
        end_x, end_y = points(run, x, y)[-1]
        crosses = [m for m in ax.lines if list(m.get_xdata()) == [end_x] and list(m.get_ydata()) == [end_y]]
        assert crosses and crosses[0].get_marker() == "x"  # its end, where it is


# --- 13: report lists what an interrupted comparison lacks, as show does; show on a file says it is one -------------


def test_report_on_an_interrupted_comparison_lists_the_runs_without_a_result(tmp_path, monkeypatch) -> None:
    path = interrupted(tmp_path, monkeypatch, stop_run=2)
    out_dir = tmp_path / "report"
    result = invoke("report", path, "--out", out_dir)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    listing = [
        "the comparison did not finish (interrupted by SIGINT): 1 of 4 runs have a result",
        "  adam  seed 0 interrupted after 1 of 2 epochs; seed 1 not run",
        "  sgd   seed 1 not run",
        f"finish it with: optrun compare --resume {path}",
    ]
    start = lines.index(listing[0])
    assert lines[start:] == [*listing, f"report directory: {out_dir}"]  # after the table, before where it went
    assert invoke("show", path).output.splitlines()[-len(listing) :] == listing  # as show lists it
    rows = table_rows(result.stdout)
    assert list(rows) == ["sgd"] and rows["sgd"][-1] == "0/1"
    assert "+1 missing" in result.stdout and "of the seeds with a result" in result.stdout


def test_show_and_report_on_a_file_say_it_is_a_file(tmp_path) -> None:
    path = compared(tmp_path, VALLEY, {"a": {"name": "sgd", "learning_rate": 0.1}})
    stray = tmp_path / "notes.txt"
    stray.write_text("not a run\n")
    hints = {
        stray: "",
        path / "a" / "seed-0" / "metrics.csv": f"; its folder {path / 'a' / 'seed-0'} is a run directory",
        path / "summary.json": f"; its folder {path} is a compare directory",
    }
    for file, hint in hints.items():
        for command in ("show", "report"):
            result = invoke(command, file, *(("--out", tmp_path / "r") if command == "report" else ()))
            assert result.exit_code == 2
            assert result.output.strip() == f"Error: {file}: is a file, not a run or compare directory{hint}"
    assert not (tmp_path / "r").exists()
    missing = tmp_path / "nowhere"
    assert invoke("show", missing).output.strip() == f"Error: {missing}: no such directory"


# --- 14: the optimizer column shows what a label sets away from its optimizer's defaults ----------------------------


def test_the_optimizer_column_shows_settings_away_from_their_defaults_that_no_other_label_has(tmp_path) -> None:
    optimizers = {
        "hb-restart": {"name": "momentum", "learning_rate": 0.005, "restart": {"every": 50}},
        "adam": {"name": "adam"},
        "adam-fast": {"name": "adam", "learning_rate": 0.01, "beta1": 0.9},  # beta1 at its default
        "adamw-0": {"name": "adamw", "weight_decay": 0},
    }
    comparison = build(collect([compared(tmp_path, VALLEY, optimizers)]).groups, "p")
    cells = {label: row[0] for label, row in table_rows(rendered(comparison_table(comparison))).items()}
    assert cells == {
        "hb-restart": "momentum lr=0.005 restart=(every=50)",
        "adam": "adam lr=0.01",
        "adam-fast": "adam lr=0.01",
        "adamw-0": "adamw lr=0.01 weight_decay=0",
    }
