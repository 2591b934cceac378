"""``report.html``: a compare, tune or suite directory as one self-contained page to send to a colleague.

The page holds everything it shows: the styles and a small script inline, the figures as inline SVG (their
element ids prefixed per figure, so that two figures' clip paths and markers never collide; a picture drawn
as PNG alone inline as data). It makes no request to the network or to another file, so it reads the same
opened straight from the file system. It tells what was run (the config, optrun's and numpy's versions, the
machine), the tables the terminal prints (``optrun.tables``, turned into HTML tables that sort by any column
on a click), the pictures, and every run that diverged or failed with its reason. It reads at a laptop's
width and at a phone's: tables scroll sideways in their box, figures scale to the width down to 60% of their
drawn size, below which they scroll too.

``write_page(path)`` builds it from what the directory holds on disk, as ``optrun report`` does: ``optrun
compare``, ``tune`` and ``suite`` write it as they finish, and ``optrun report DIR --html`` rebuilds it.
"""

from __future__ import annotations

import base64
import html
import itertools
import re
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table
from rich.text import Text

from optrun import report as reports
from optrun.runs import read_json, suite_of, tuning_of

PAGE = "report.html"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


_CLASSES = {"red": "bad", "green": "good", "yellow": "warn", "bold": "strong", "dim": "dim"}


def _markup(cell: str | Text) -> str:
    """A cell of a rich table (console markup: ``[red]1/3[/]``) as HTML, its colours as classes."""
    text = cell if isinstance(cell, Text) else Text.from_markup(str(cell))
    plain = text.plain
    cuts = sorted({0, len(plain), *(s.start for s in text.spans), *(s.end for s in text.spans)})
    out = []
    for start, end in itertools.pairwise(cuts):
        words = {w for s in text.spans if s.start <= start and end <= s.end for w in str(s.style).split()}
        piece = _escape(plain[start:end]).replace("\n", "<br>")
        classes = sorted(_CLASSES[w] for w in words if w in _CLASSES)
        out.append(f'<span class="{" ".join(classes)}">{piece}</span>' if classes else piece)
    return "".join(out)


def table_html(table: Table) -> str:
    """A table of ``optrun.tables`` as an HTML table (a click on a header sorts by that column), with its title
    and caption."""
    title = f"<h3>{_markup(table.title)}</h3>" if table.title else ""
    head = "".join(
        f'<th scope="col" aria-sort="none"{" class=num" if c.justify == "right" else ""}>{_markup(c.header)}</th>'
        for c in table.columns
    )
    columns = [list(c.cells) for c in table.columns]
    right = [c.justify == "right" for c in table.columns]
    rows = []
    for cells in zip(*columns, strict=True):
        tds = "".join(
            f"<td{' class=num' if r else ''}>{_markup(cell)}</td>" for cell, r in zip(cells, right, strict=True)
        )
        rows.append(f"<tr>{tds}</tr>")
    caption = f'<p class="caption">{_markup(table.caption)}</p>' if table.caption else ""
    return (
        f'{title}<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>{caption}"
    )


_SVG_START = re.compile(r"^.*?(<svg\b)", re.S)


def svg_html(path: Path, prefix: str, alt: str) -> str:
    """The SVG file at ``path`` inline: its XML prolog dropped, every id prefixed with ``prefix`` (and every
    reference to one), its width the page's, down to 60% of its drawn width (a phone then scrolls it sideways);
    a note where the file is missing."""
    try:
        svg = path.read_text(encoding="utf-8")
    except OSError:
        return f'<p class="warn">{_escape(path.name)} is missing: the picture was not drawn.</p>'
    svg = _SVG_START.sub(r"\1", svg, count=1)
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', svg)
    tag = re.search(r"<svg\b[^>]*>", svg)
    width = re.search(r'\swidth="([\d.]+)pt"', tag.group(0)) if tag else None
    if tag is not None:  # its size is the page's to set
        svg = svg[: tag.start()] + re.sub(r'\s(?:width|height)="[^"]*"', "", tag.group(0)) + svg[tag.end() :]
    # never narrower than 60% of its drawn size (pt: 4/3 px): on a phone a wide figure scrolls, and stays legible
    least = f' style="min-width: {round(float(width.group(1)) * 4 / 3 * 0.6)}px"' if width else ""
    return f'<figure role="img" aria-label="{_escape(alt)}"><div{least}>{svg}</div></figure>'


_STYLE = """
:root { color-scheme: light; --fg: #1d2127; --muted: #5b6470; --line: #d9dde3; --head: #f3f5f8; --accent: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
header, main { max-width: 1440px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 20px; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.6em; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 1.25em; margin: 28px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 14px; }
.scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
table { font-size: 0.93em; }
th.num { text-align: right; }
th { background: var(--head); cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
th:hover { color: var(--accent); }
th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 0.7em; }
th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 0.7em; }
td.num { text-align: right; white-space: nowrap; }
tbody tr:hover { background: #f8f9fb; }
.caption { color: var(--muted); font-size: 0.88em; white-space: pre-line; margin: 6px 0 0; }
figure { margin: 10px 0; overflow-x: auto; }
figure svg, figure img { width: 100%; height: auto; display: block; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--head); padding: 10px; overflow-x: auto; font-size: 0.85em; border-radius: 6px; }
.bad { color: #b42318; } .good { color: #067647; } .warn { color: #9a6700; } .strong { font-weight: 600; }
.dim { color: var(--muted); }
ul.broken li { margin: 2px 0; word-break: break-word; }
footer { max-width: 1440px; margin: 30px auto; padding: 0 16px; color: var(--muted); font-size: 0.85em; }
@media (max-width: 600px) {
  body { font-size: 14px; }
  th, td { padding: 4px 6px; }
  h1 { font-size: 1.3em; }
}
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  function key(cell) {
    var text = cell.textContent.trim().replace(/^\\[/, "");  // an interval sorts by its low end
    var match = text.match(/^[-+\\u2212]?\\d[\\d.,]*(e[-+]?\\d+)?/i);
    return match ? parseFloat(match[0].replace("\\u2212", "-").replace(/,/g, "")) : text.toLowerCase();
  }
  Array.prototype.forEach.call(heads, function (th, column) {
    th.addEventListener("click", function () {
      var down = th.getAttribute("aria-sort") === "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.setAttribute("aria-sort", "none"); });
      th.setAttribute("aria-sort", down ? "descending" : "ascending");
      var rows = Array.prototype.slice.call(table.tBodies[0].rows);
      rows.sort(function (a, b) {
        var x = key(a.cells[column]), y = key(b.cells[column]);
        var xn = typeof x === "number", yn = typeof y === "number";
        var order = xn && yn ? x - y : xn ? -1 : yn ? 1 : x < y ? -1 : x > y ? 1 : 0;
        return down && (xn === yn) ? -order : order;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
});
"""


def _page(title: str, meta: str, sections: Iterable[str]) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_escape(title)} · optrun</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f'<header><h1>{_escape(title)}</h1><p class="meta">{meta}</p></header>\n<main>\n'
        + "\n".join(sections)
        + "\n</main>\n<footer>Written by optrun. Click a column's header to sort by it.</footer>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


def _meta(path: Path, kind: str) -> str:
    """The line under the title: the kind, status and date of the work, the versions and the machine."""
    summary = read_json(path / "summary.json")
    parts = [kind, *([str(summary["status"])] if summary.get("status") else [])]
    if match := re.search(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})(\d{2})", path.name):
        y, m, d, hh, mm, _ = match.groups()
        parts.append(f"started {y}-{m}-{d} {hh}:{mm}")
    versions = summary.get("versions") or {}
    if versions:
        parts.append(", ".join(f"{name} {value}" for name, value in versions.items()))
    machine = summary.get("machine") or {}
    if machine:
        described = [machine.get("processor"), machine.get("cores") and f"{machine['cores']} cores",
                     machine.get("memory_gib") and f"{machine['memory_gib']} GiB", machine.get("system")]  # fmt: skip
        parts.append(", ".join(str(x) for x in described if x))
    return " · ".join(_escape(p) for p in parts)


def _config(path: Path) -> str:
    if sources := reports.report_sources(path):  # optrun report's folder: what it was made from
        items = "".join(f"<li>{_escape(s)}</li>" for s in sources)
        return f"<p>The runs of these directories, each compared as its own config says:</p><ul>{items}</ul>"
    try:
        text = (path / "config.yaml").read_text(encoding="utf-8")
    except OSError:
        return ""
    return f"<details><summary>config.yaml: what was run</summary><pre>{_escape(text)}</pre></details>"


def _broken_runs(comparison: reports.Comparison, base: Path) -> str:
    """Every run that diverged or failed, with its reason and its folder."""
    items = []
    for group in comparison.groups:
        for run in group.runs:
            if run.status in ("diverged", "failed"):
                where = _escape(str(run.path.relative_to(base)) if run.path.is_relative_to(base) else str(run.path))
                reason = _escape(str(run.summary.get("reason") or "no reason recorded"))
                items.append(f'<li><span class="bad">{run.status}</span> {_escape(group.label)} seed '
                             f"{run.config.get('seed')}: {reason} <span class=dim>({where})</span></li>")  # fmt: skip
    if not items:
        return "<p>No run diverged or failed.</p>"
    return f'<ul class="broken">{"".join(items)}</ul>'


def _comparison_sections(
    path: Path, base: Path, prefix: str, heading: str = "h2", sources: list[str] | None = None
) -> list[str]:
    """A compare directory's table, pictures and broken runs (``base``: the folder paths are shown from); of a
    report folder (``optrun report``'s), the comparison of its ``sources`` at its target."""
    from optrun.tables import comparison_table, unfinished_notice

    collection = reports.collect(sources or [path])
    if not collection.groups:
        return [f"<p class=warn>{_escape(str(path))}: no run has a result yet.</p>"]
    summary = read_json(path / "summary.json")
    given = sources and summary.get("target_rule") == "set explicitly"  # else derived again, as it was
    target = summary.get("target_accuracy") if given else collection.target
    comparison = reports.build(collection.groups, collection.name, target)
    out = [table_html(comparison_table(comparison, collection.unfinished))]
    out += [f'<p class="warn">{_markup(unfinished_notice(gap))}</p>' for gap in collection.unfinished]
    pictures = sorted(path.glob("*.svg"))
    for svg in pictures:
        out.append(svg_html(svg, f"{prefix}-{svg.stem}", f"{comparison.title}: {svg.stem}"))
    for png in sorted(set(path.glob("*.png")) - {p.with_suffix(".png") for p in pictures}):  # drawn as PNG alone
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{_escape(f"{comparison.title}: {png.stem}")}" '
                   f'src="data:image/png;base64,{data}"></figure>')  # fmt: skip
    out.append(f"<{heading}>Diverged and failed runs</{heading}>{_broken_runs(comparison, base)}")
    return out


def _tuning_sections(path: Path, base: Path, prefix: str) -> list[str]:
    from optrun.tables import tuning_table
    from optrun.tune import EVALUATION, read_tuning

    tuning = read_tuning(path)
    out = [table_html(tuning_table(tuning.config, tuning.choices))]
    out.append(svg_html(path / "sensitivity.svg", f"{prefix}-sensitivity", "validation metric against each "
                        "tuned hyperparameter"))  # fmt: skip
    if reports.is_compare_dir(path / EVALUATION) and reports.compare_run_dirs(path / EVALUATION):
        out.append("<h3>Evaluation on fresh seeds (test split)</h3>")
        out += _comparison_sections(path / EVALUATION, base, f"{prefix}-eval", "h3")
    return out


def _suite_sections(path: Path) -> list[str]:
    from optrun.suite import read_suite
    from optrun.tables import suite_tables

    record = read_suite(path)
    out = ["<h2>Performance profiles</h2>"]
    if record.scores is not None:
        out += [table_html(t) for t in reversed(suite_tables(record.config.name, record.scores))]
        out.append(svg_html(path / "profiles.svg", "profiles", "performance profiles of the optimizers"))
    missing = [name for name in record.config.configs if name not in record.completed]
    if missing:
        out.append(f'<p class="warn">Not completed: {_escape(", ".join(missing))}. Finish it with: optrun suite '
                   f"--resume {_escape(str(path))}</p>")  # fmt: skip
    for k, name in enumerate(record.config.configs):
        where = path / name
        if not where.is_dir():
            continue
        out.append(f"<h2>Problem: {_escape(name)}</h2>")
        if tuning_of(where) == where:
            out += _tuning_sections(where, path, f"p{k}")
        else:
            out += _comparison_sections(where, path, f"p{k}", "h3")
    return out


def page(path: Path) -> str:
    """The report page of the compare, tune or suite directory ``path``."""
    name = str(read_json(path / "summary.json").get("name") or path.name)
    if suite_of(path) == path:
        kind, sections = "suite", _suite_sections(path)
    elif sources := reports.report_sources(path):
        kind, sections = "report", ["<h2>Results</h2>", *_comparison_sections(path, Path.cwd(), "r", sources=sources)]
    elif tuning_of(path) == path:
        kind, sections = "tuning", ["<h2>Results</h2>", *_tuning_sections(path, path, "t")]
    else:
        kind, sections = "comparison", ["<h2>Results</h2>", *_comparison_sections(path, path, "c")]
    return _page(name, _meta(path, kind), [*sections, "<h2>What was run</h2>", _config(path)])


def write_page(path: Path) -> Path:
    """Write ``report.html`` into the compare, tune or suite directory ``path`` (whole or not at all)."""
    out = path / PAGE
    tmp = out.with_name(f".{PAGE}.tmp")
    tmp.write_text(page(path), encoding="utf-8")
    tmp.replace(out)
    return out
