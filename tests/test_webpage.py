"""report.html: one self-contained page per compare, tune and suite directory, checked as text and, where
Chromium is installed, in a real headless browser (no console error, no request but the page itself, sorting
by a click, screenshots at a laptop's and a phone's width)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from optrun.cli import cli

PROBLEM = {"dataset": {"name": "digits"}, "model": {"hidden": [8]}, "train": {"epochs": 3, "max_samples": 300}}
OPTIMIZERS = {"sgd": None, "adam": {"learning_rate": 0.01}, "wild": {"name": "sgd", "learning_rate": 1.0e6}}
SUITE = {
    "name": "page",
    "seeds": 2,
    "optimizers": OPTIMIZERS,
    "problems": {
        "digits": PROBLEM,
        "tuned": {**PROBLEM, "tune": {"budget": 3, "space": {"learning_rate": {"log": [0.001, 0.1]}}}},
    },
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("page")
    (folder / "suite.yaml").write_text(yaml.safe_dump(SUITE, sort_keys=False))
    result = invoke("suite", folder / "suite.yaml", "--runs-dir", folder / "runs", "-j", "1", "-q")
    assert result.exit_code == 0, result.output
    return Path(result.output.strip())


class _Page(HTMLParser):
    """What a page refers to and the ids it defines."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.ids: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "poster", "data") and value is not None:
                self.references.append(value)
            if name == "id" and value is not None:
                self.ids.append(value)
        self.tables += tag == "table"


def parsed(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def test_every_compare_tune_and_suite_directory_gets_a_self_contained_page(suite_dir: Path) -> None:
    pages = [suite_dir / "report.html", suite_dir / "digits" / "report.html", suite_dir / "tuned" / "report.html",
             suite_dir / "tuned" / "evaluation" / "report.html"]  # fmt: skip
    for path in pages:
        text, page = parsed(path)
        assert all(ref.startswith(("#", "data:")) for ref in page.references), (
            path,
            page.references,
        )  # nothing fetched
        assert "url(http" not in text and "@import" not in text and "<link" not in text
        assert len(page.ids) == len(set(page.ids)), path  # every figure's ids prefixed apart
        for ref in re.findall(r'(?:href="#|url\(#)([^")]+)', text):
            assert ref in page.ids, (path, ref)  # each reference lands in its own figure
        assert page.tables >= 1 and "<svg" in text and "config.yaml: what was run" in text
    text, _ = parsed(suite_dir / "report.html")
    summary = json.loads((suite_dir / "summary.json").read_text())
    for label in summary["labels"]:
        assert f"{label['score']:.3f}" in text  # the scores as the suite computed them
    assert "Problem: digits" in text and "Problem: tuned" in text and "Evaluation on fresh seeds" in text
    # the broken runs, each with its reason
    assert text.count('<span class="bad">diverged</span> wild seed') >= 2 and "non-finite" in text
    assert summary["machine"]["cores"] and "cores" in text and "numpy" in text


def test_report_html_rebuilds_the_page_and_refuses_what_has_none(suite_dir: Path, tmp_path) -> None:
    page = suite_dir / "digits" / "report.html"
    page.unlink()
    result = invoke("report", suite_dir / "digits", "--html", "-q")
    assert result.exit_code == 0 and Path(result.output.strip()) == page and page.is_file(), result.output
    for args, says in [
        ((suite_dir / "digits" / "sgd" / "seed-0", "--html"), "a run directory"),
        ((suite_dir / "digits", suite_dir / "tuned", "--html"), "give one"),
        ((suite_dir / "digits", "--html", "--out", tmp_path / "x"), "without --out"),
        ((tmp_path, "--html"), "no config.yaml"),
    ]:
        result = invoke("report", *args)
        assert result.exit_code == 2 and says in result.output and len(result.output.splitlines()) == 1, result.output


def test_a_report_folder_gets_a_page_of_its_sources_at_their_target(suite_dir: Path, tmp_path) -> None:
    sources = [suite_dir / "digits", suite_dir / "tuned" / "evaluation"]
    result = invoke("report", *sources, "--out", tmp_path / "both", "-q")
    assert result.exit_code == 0, result.output
    text, page = parsed(tmp_path / "both" / "report.html")
    assert all(f"<li>{source}</li>" in text for source in sources)  # what it was made from
    assert "95% of the best mean final test accuracy" in text and "set explicitly" not in text
    assert "status unknown" not in text and page.tables == 1
    (tmp_path / "both" / "report.html").unlink()
    again = invoke("report", tmp_path / "both", "--html", "-q")
    assert again.exit_code == 0 and (tmp_path / "both" / "report.html").is_file(), again.output


def _chromium(*args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_the_page_in_a_headless_browser(suite_dir: Path, tmp_path) -> None:
    page = suite_dir / "report.html"
    opened = _chromium("--enable-logging=stderr", "--v=1", "--dump-dom", page.as_uri())
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert "Performance profiles" in opened.stdout
    console = [line for line in opened.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no error, no message at all
    loaded = re.findall(r"FileURLLoader::Start: (\S+)", opened.stderr)
    assert loaded == [page.as_uri()], loaded  # no file but the page (and, parsed above, no address at all)
    # a click on the 'score' header sorts the table by score, ascending: read back through a copy of the page
    # with a line of script that clicks it and leaves the first label in the title
    probe = tmp_path / "probe.html"
    click = (
        "<script>var th = [].find.call(document.querySelectorAll('th'), h => h.textContent === 'score'); th.click();"
        "document.title = th.closest('table').tBodies[0].rows[0].cells[0].textContent;</script>"
    )
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", click + "</body>"), encoding="utf-8")
    sorted_page = _chromium("--dump-dom", probe.as_uri()).stdout
    worst = min(json.loads((suite_dir / "summary.json").read_text())["labels"], key=lambda x: x["score"])["label"]
    assert re.search(rf"<title>{worst}</title>", sorted_page), re.search(r"<title>.*?</title>", sorted_page)
    for width in (1280, 400):
        shot = tmp_path / f"page-{width}.png"
        taken = _chromium(f"--window-size={width},2400", f"--screenshot={shot}", page.as_uri())
        assert taken.returncode == 0 and shot.stat().st_size > 20_000, taken.stderr[-2000:]
