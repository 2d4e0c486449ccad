"""The document model: one content, two renderings (HTML with inlined figures, Markdown with
linked PNGs), text escaped in both."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from raygym.report.document import SECTION_TITLES, ReportDocument, cell_text, one_line

from . import PNG_MAGIC, parse_page


def _doc(tmp_path: Path) -> ReportDocument:
    from raygym.report.figures import pyplot

    doc = ReportDocument(tmp_path)
    doc.section("summary")
    doc.text("a <b> & c")
    doc.kv([("key|1", 0.123456), ("none", None)])
    doc.section("leaderboard")
    doc.heading("Trials")
    doc.table(["trial", "score"], [["t1", 0.5], ["t|2", float("nan")]], ["best", "failed"])
    doc.note("still running")
    fig, ax = pyplot().subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    doc.figure(fig, "line", "a line")
    return doc


def test_html_rendering(tmp_path: Path) -> None:
    page_html = _doc(tmp_path).to_html("Title <x>", "sub")
    (tmp_path / "page.html").write_text(page_html)
    page = parse_page(tmp_path / "page.html")
    assert page.h2 == [SECTION_TITLES["summary"], SECTION_TITLES["leaderboard"]]
    assert "<p>a &lt;b&gt; &amp; c</p>" in page_html
    assert "<title>Title &lt;x&gt;</title>" in page_html
    assert '<tr class="best"><td>t1</td><td>0.5</td></tr>' in page_html
    assert '<tr class="failed"><td>t|2</td><td></td></tr>' in page_html  # NaN: an empty cell
    assert '<p class="note">still running</p>' in page_html
    assert '<a href="#summary">Summary</a>' in page_html and not page.external
    (src,) = page.imgs
    assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == PNG_MAGIC


def test_markdown_rendering(tmp_path: Path) -> None:
    md = _doc(tmp_path).to_markdown("Title", "sub")
    assert md.startswith("# Title\n\nsub\n\n## Summary\n\na <b> & c\n")
    assert "| **key\\|1** | 0.1235 |" in md
    assert "### Trials" in md and "| trial | score |\n|---|---|\n| t1 | 0.5 |" in md
    assert "| t\\|2 |  |" in md
    assert "> still running" in md
    assert "![line](line.png)\n\n*a line*" in md
    assert (tmp_path / "line.png").read_bytes()[:8] == PNG_MAGIC


def test_figure_file_and_unknown_section(tmp_path: Path) -> None:
    doc = ReportDocument(tmp_path)
    doc.section("best")
    doc.figure_file(tmp_path / "made.png", "made elsewhere")
    assert "![made](made.png)" in doc.to_markdown("t", "s")
    with pytest.raises(KeyError):
        doc.section("nonsense")


def test_cell_text_and_one_line() -> None:
    assert [cell_text(v) for v in (None, float("nan"), 0.123456, 12345678.0, 3, "x")] == [
        "", "", "0.1235", "1.235e+07", "3", "x"]
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert len(one_line(RuntimeError("x" * 1000))) == 300
