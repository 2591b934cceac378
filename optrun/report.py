"""Comparisons: gather runs from run and compare directories, and write the comparison files.

A comparison directory (what ``optrun compare`` writes, and what ``optrun
report`` rebuilds from any mix of directories) holds

- ``comparison.csv``: one row per label (the columns of ``optrun.stats.LabelStats``), best first;
- ``curves.png`` and ``curves.svg``: loss and accuracy curves (``optrun.plots``);
- ``summary.json``: the same figures and where every run lives, for machines.

Both commands compute the figures from the run directories on disk, so a
report of a compare directory reproduces its table exactly.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optrun.config import CompareConfig, parse_config, read_yaml
from optrun.parallel import HeldSignals
from optrun.problems import StatsRow, problem_of
from optrun.runs import (
    RunDirError,
    RunRecord,
    exception_line,
    is_compare_config,
    is_run_dir,
    machine,
    not_a_folder,
    read_json,
    read_run,
    suite_of,
    tuning_of,
    versions,
    write_json,
)
from optrun.schema import ConfigError
from optrun.stats import Group, comparison_target, problem_of_groups, ranked

log = logging.getLogger("optrun")

SEED_DIR = "seed-{}"
RESULT_STATUSES = ("completed", "diverged", "failed")  # a run in one of these has a result; resume skips it


def compare_run_dirs(path: Path) -> list[Path]:
    """The ``<label>/seed-<k>`` run directories of a compare directory (none if it is not one)."""
    return sorted(p.parent for p in path.glob("*/seed-*/metrics.csv"))


@dataclass(frozen=True)
class UnfinishedRun:
    """A planned run of a comparison that has no result: its label, its seed and what became of it."""

    label: str
    seed: int
    state: str  # "not run", "interrupted after 1 of 3 epochs", ...


@dataclass(frozen=True)
class Unfinished:
    """A compare directory whose comparison did not finish (Ctrl-C, SIGTERM, a killed process): what its
    summary.json says, how many runs it planned and which of them have no result. Its table and plots can
    only show the finished runs; ``optrun compare --resume`` runs the others and writes the comparison."""

    path: Path
    reason: str | None  # "interrupted by SIGINT", from its summary.json; None when it wrote none
    planned: int
    runs: list[UnfinishedRun]

    @property
    def resume_command(self) -> str:
        if (suite := suite_of(self.path)) is not None:  # a suite's problem, or a tuned problem's evaluation
            return f"optrun suite --resume {suite}"
        if (tuning := tuning_of(self.path)) is not None:  # a tuning's evaluation
            return f"optrun tune --resume {tuning}"
        return f"optrun compare --resume {self.path}"

    @property
    def headline(self) -> str:
        """``the comparison did not finish (interrupted by SIGINT): 1 of 4 runs have a result``."""
        why = f" ({self.reason})" if self.reason else ""
        if not self.planned:  # its config.yaml is missing or damaged: the runs it planned are unknown
            return f"the comparison did not finish{why}"
        if not self.runs:
            return f"the comparison did not finish{why}: every run has a result, but the comparison was not written"
        done = self.planned - len(self.runs)
        return f"the comparison did not finish{why}: {done} of {self.planned} runs have a result"

    def missing(self, label: str) -> int:
        """How many of ``label``'s seeds have no result."""
        return sum(r.label == label for r in self.runs)

    def runs_text(self) -> list[str]:
        """One line per label lacking results, its seeds grouped by state: ``adam  seed 0 interrupted after 1 of 3
        epochs; seeds 1, 2 not run``."""
        by_label: dict[str, dict[str, list[str]]] = {}
        for run in self.runs:
            by_label.setdefault(run.label, {}).setdefault(run.state, []).append(str(run.seed))
        width = max(map(len, by_label), default=0)
        return [
            f"{label:<{width}}  "
            + "; ".join(f"seed{'s' * (len(s) > 1)} {', '.join(s)} {state}" for state, s in states.items())
            for label, states in by_label.items()
        ]


@dataclass
class Collection:
    """Groups gathered from directories, the problems met on the way, the compare configs read, and the compare
    directories that did not finish."""

    groups: list[Group] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compare_configs: list[Mapping[str, Any]] = field(default_factory=list)
    run_dirs: int = 0  # single run directories given
    unfinished: list[Unfinished] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The comparison's name when it is one compare directory, else ``report``."""
        if len(self.compare_configs) == 1 and not self.run_dirs:
            return str(self.compare_configs[0].get("name") or "report")
        return "report"

    @property
    def target(self) -> float | None:
        """The target accuracy the compare configs set, when they all set the same one (and there is nothing else)."""
        targets = {c.get("target_accuracy") for c in self.compare_configs}
        return targets.pop() if len(targets) == 1 and not self.run_dirs else None


def _seed_of(run_dir: Path) -> int:
    suffix = run_dir.name.removeprefix("seed-")
    return int(suffix) if suffix.isdigit() else -1


def is_compare_dir(path: Path) -> bool:
    """Whether ``path`` is a compare directory: it holds ``<label>/seed-<k>`` run directories, or, stopped before
    its first run finished, the resolved compare config (with its labels) that ``optrun compare`` wrote first."""
    if compare_run_dirs(path):
        return True
    return (path / "config.yaml").is_file() and is_compare_config(read_yaml(path / "config.yaml"))


def _run_state(run_dir: Path, unit: str) -> str | None:
    """What became of a planned run: None when it has a result, else ``not run`` or how far it got (in
    ``unit``s: epochs, steps)."""
    if not run_dir.is_dir():
        return "not run"
    summary = read_json(run_dir / "summary.json")
    if summary.get("status") in RESULT_STATUSES:
        return None
    if summary.get("status") == "interrupted":
        return f"interrupted after {summary.get(unit)} of {summary.get(f'{unit}_planned')} {unit}"
    return "unfinished (no summary.json)"


def unfinished(path: Path, config: Mapping[str, Any]) -> Unfinished | None:
    """What the compare directory ``path``, whose resolved compare config is ``config``, lacks: None when every
    planned run (each label with each seed) has a result and the comparison was written."""
    summary = read_json(path / "summary.json")
    try:
        compare_config = parse_config(dict(config), str(path / "config.yaml"), CompareConfig)
        planned = [(label, seed) for seed in compare_config.seed_list for label in compare_config.optimizers]
    except ConfigError:
        planned = []  # without its config the runs planned are unknown; its summary.json still tells
    unit = f"{problem_of(config).unit}s"
    states = [(label, seed, _run_state(path / label / SEED_DIR.format(seed), unit)) for label, seed in planned]
    runs = [UnfinishedRun(label, seed, state) for label, seed, state in states if state is not None]
    written = summary.get("status") == "completed" or (
        "status" not in summary and (path / "comparison.csv").is_file()  # written before summaries had a status
    )
    if written and not runs:
        return None
    return Unfinished(path, summary.get("reason"), len(planned), runs)


def _read_compare_dir(path: Path, out: Collection) -> None:
    """Group the runs with a result in compare directory ``path`` by label; note what it lacks, if anything.
    An interrupted run is left out: its rows are not a result, and counting it would make its label look broken."""
    config = read_yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {}
    config = config if isinstance(config, Mapping) else {}
    out.compare_configs.append(config)
    by_label: dict[str, list[RunRecord]] = {label: [] for label in config.get("optimizers") or {}}
    for run_dir in sorted(compare_run_dirs(path), key=lambda p: (p.parent.name, _seed_of(p))):
        try:
            run = read_run(run_dir)
        except RunDirError as exc:
            out.warnings.append(f"skipped {exc}")
            continue
        if run.status in RESULT_STATUSES:
            by_label.setdefault(run_dir.parent.name, []).append(run)
    out.groups += [Group(label, runs, path) for label, runs in by_label.items() if runs]
    if (gap := unfinished(path, config)) is not None:
        out.unfinished.append(gap)
        out.warnings.append(f"{path}: {gap.headline}; only those are compared. Finish it with: {gap.resume_command}")


def _folder_hint(file: Path) -> str:
    """``; its folder runs/x is a run directory``, when the file given lies in one (its metrics.csv, say)."""
    folder = file.parent
    if is_run_dir(folder):
        return f"; its folder {folder} is a run directory"
    if is_compare_dir(folder):
        return f"; its folder {folder} is a compare directory"
    return ""


def collect(paths: Iterable[str | Path]) -> Collection:
    """The groups in ``paths``: each compare directory gives one group per label, each run directory one group.

    Labels that clash (the same label in two comparisons) are qualified by the directory they come from.
    """
    out = Collection()
    given: dict[Path, Path] = {}
    for raw in paths:  # a folder given twice (or by two names) counts once
        given.setdefault(Path(raw).resolve(), Path(raw))
    for path in given.values():
        if suite_of(path) == path:
            raise RunDirError(
                f"{path}: a suite directory, whose problems are compared each in its own folder; optrun show {path} "
                f"prints its tables, optrun report {path} --html writes its page again"
            )
        if tuning_of(path) == path:  # a tuning: its evaluation is its comparison
            if not is_compare_dir(path / "evaluation"):
                raise RunDirError(
                    f"{path}: a tune directory with no evaluation yet; finish it with optrun tune --resume {path}"
                )
            path = path / "evaluation"
        if is_run_dir(path):
            run = read_run(path)
            out.run_dirs += 1
            out.groups.append(Group(str(run.config.get("name") or path.name), [run], path))
        elif is_compare_dir(path):
            _read_compare_dir(path, out)
        elif path.is_dir() and (sources := report_sources(path)) is not None:
            made = f"{', '.join(sources[:3])}{', ...' if len(sources) > 3 else ''}"
            raise RunDirError(
                f"{path}: a report (its table is comparison.csv); give the directories it was made from: {made}"
            )
        elif path.is_dir():
            raise RunDirError(f"{path}: neither a run directory (no metrics.csv) nor a compare directory")
        elif path.exists():
            raise RunDirError(f"{path}: is a file, not a run or compare directory{_folder_hint(path)}")
        else:
            raise RunDirError(f"{path}: no such directory")
    clashes = Counter(g.label for g in out.groups)
    for g in out.groups:
        if clashes[g.label] > 1:  # a tuning's evaluation is named by its tuning
            source = tuning_of(g.source) or g.source
            g.label = g.source.name if is_run_dir(g.source) else f"{source.name}/{g.label}"
    return out


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_unchanged(path: Path, now: Mapping[str, Any], what: str) -> None:
    """RunDirError where ``now``, the resolved config in the config.yaml of the work at ``path`` (``what``: "the
    tuning", "the suite"), differs from the one its summary.json says it began with: what it finished would be
    set beside what it runs now for another problem or protocol. The message names the first key that changed."""
    began = read_json(path / "summary.json").get("config")
    if not isinstance(began, dict):
        return
    kept, new = flatten(began), flatten(now)
    if differ := [key for key in dict.fromkeys([*kept, *new]) if kept.get(key) != new.get(key)]:
        key = differ[0]
        raise RunDirError(
            f"{path}: {what} began with {key}: {kept.get(key)}, and its config.yaml now says {new.get(key)}; "
            "put config.yaml back, or start anew"
        )


def problem_differences(groups: list[Group]) -> list[str]:
    """Config keys, other than name, seed and optimizer, whose values differ between the runs: unfair comparisons."""
    configs = [
        flatten({k: v for k, v in r.config.items() if k not in ("name", "seed", "optimizer")})
        for g in groups
        for r in g.runs
    ]
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def describe_problem(groups: list[Group]) -> str:
    """``digits · mlp [64] relu · 20 epochs, batch 32`` or ``quadratic dim=2 condition_number=100 · 300 steps``,
    or what the runs share when they differ."""
    if not groups:
        return ""
    parts = groups[0].problem.describe_parts(groups[0].runs[0].config)
    differ = {k.split(".")[0] for k in problem_differences(groups)}
    return " · ".join(part for part, key in parts if key not in differ)


@dataclass
class Comparison:
    """The figures of a comparison, ranked best first."""

    name: str
    groups: list[Group]
    target: float | None
    target_rule: str
    rows: list[StatsRow]

    @property
    def title(self) -> str:
        problem = describe_problem(self.groups)
        if not problem or problem.startswith(f"{self.name} ·"):  # "digits: digits · mlp ..." says it twice
            return problem or self.name
        return f"{self.name}: {problem}"


def build(groups: list[Group], name: str, target: float | None = None) -> Comparison:
    """Rank ``groups``; ``target``: the accuracy for "epochs to target" (None: 95% of the best final mean)."""
    target, rule = comparison_target(groups, target)  # RunDirError for no runs, or a mix of kinds
    return Comparison(name, groups, target, rule, ranked(groups, target))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _figures(comparison: Comparison) -> dict[str, Any]:
    """The comparison's figures by file name (``Problem.figures``)."""
    return problem_of_groups(comparison.groups).figures(comparison)


def draw(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write the comparison's pictures into ``out_dir``: curves.png and .svg, and on an objective
    trajectories.png (2-D) and convergence.png (the quadratic)."""
    return _save(_figures(comparison), out_dir)


def draw_run(path: Path) -> list[Path]:
    """Write the pictures ``optrun train`` draws of the run directory ``path`` (``Problem.run_figures``)."""
    groups = collect([path]).groups
    comparison = build(groups, groups[0].label)  # a run directory's group: named by its run
    return _save(problem_of_groups(comparison.groups).run_figures(comparison), path)


def _save(figures: Mapping[str, Any], out_dir: Path) -> list[Path]:
    from optrun.plots import save_figure

    return [p for name, figure in figures.items() for p in save_figure(figure, out_dir, name, svg=name == "curves")]


def report_dir(path: str | Path) -> Path:
    """``path`` as the folder for a report's files (``optrun report --out``): a new or empty folder, or one an
    earlier report wrote (rewritten). RunDirError when a file is in the way, or the folder holds anything else:
    a run, a comparison, other files, which the report would overwrite or mix with its own."""
    path = Path(path)
    if (blocker := not_a_folder(path)) is not None:
        what = "is a file" if blocker == path else f"cannot be made: {blocker} is a file"
        raise RunDirError(f"{path}: {what}, not a folder for the report")
    if path.is_symlink() and not path.exists():
        raise RunDirError(f"{path}: a link to nothing, not a folder for the report")
    if path.is_dir() and any(path.iterdir()) and "sources" not in read_json(path / "summary.json"):
        raise RunDirError(
            f"{path}: holds files that are not an earlier report's (a run, a comparison?); "
            "--out takes a new or empty folder, or a report's to rewrite"
        )
    return path


def write(
    comparison: Comparison, out_dir: Path, extra: Mapping[str, Any] | None = None, final: Path | None = None
) -> None:
    """Write comparison.csv, the pictures (``draw``) and summary.json into ``out_dir``, which names each run by its
    path from ``final`` (the folder the files end up in: ``out_dir`` itself unless given)."""
    figures = _figures(comparison)  # any failure to draw comes before a file is written
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(type(comparison.rows[0]).__dataclass_fields__)
    with (out_dir / "comparison.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(getattr(row, c)) for c in columns] for row in comparison.rows)
    _save(figures, out_dir)
    by_label = {g.label: g for g in comparison.groups}
    labels = []
    for row in comparison.rows:
        runs = [
            {
                "seed": r.config.get("seed"),
                "status": r.status,
                "reason": r.summary.get("reason"),
                "path": os.path.relpath(r.path, final or out_dir),
            }
            for r in by_label[row.label].runs
        ]
        labels.append({**row.as_dict(), "runs": runs})
    summary = {
        "kind": "comparison",
        "name": comparison.name,
        "problem": describe_problem(comparison.groups),
        "target_accuracy": comparison.target,
        "target_rule": comparison.target_rule,
        "labels": labels,
        **(extra or {}),
        "versions": versions(),
        "machine": machine(),
    }
    write_json(out_dir / "summary.json", summary)


def write_page(path: Path) -> None:
    """Write report.html into the compare, tune or suite directory ``path`` (``optrun.webpage``, imported here:
    it presents the tables of the terminal, a layer above); a page that cannot be written is a warning, and
    loses nothing else."""
    from optrun import webpage

    try:
        webpage.write_page(path)
    except Exception as exc:
        log.warning(f"{path / webpage.PAGE} was not written: {exception_line(exc)}")


def report_sources(path: Path) -> list[str] | None:
    """The directories a report folder (``write_report``'s) was made from; None for any other folder."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sources = summary.get("sources") if isinstance(summary, dict) else None
    return [str(s) for s in sources] if isinstance(sources, list) and sources else None


def write_report(comparison: Comparison, out_dir: Path, extra: Mapping[str, Any] | None = None) -> None:
    """``write`` for ``optrun report``: into a folder beside ``out_dir``, which then takes its place (an earlier
    report's files go with the folder they were in), so that a report interrupted or failed leaves ``out_dir`` as
    it was; RunDirError, in one line, where the folder cannot be written."""
    partial, earlier = (out_dir.with_name(f".{out_dir.name}.{what}-{os.getpid()}") for what in ("partial", "earlier"))
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        write(comparison, partial, extra, final=out_dir)
        held = HeldSignals()  # the folder is swapped whole: a Ctrl-C waits for it
        try:
            if out_dir.exists():  # an earlier report's, or an empty folder
                os.rename(out_dir, earlier)
            os.rename(partial, out_dir)
        except OSError:
            if earlier.exists() and not out_dir.exists():
                os.rename(earlier, out_dir)
            raise
        finally:
            held.deliver()
    except OSError as exc:
        raise RunDirError(f"{out_dir}: cannot write the report ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(earlier, ignore_errors=True)
