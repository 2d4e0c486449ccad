"""``build_report``: one self-contained HTML file holding every section, the same content as
Markdown + PNGs beside it, atomic rewrites, and notes instead of errors when inputs are missing
or a section breaks. When ``chromium`` is installed, a headless screenshot checks that the page
actually renders."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raygym.report import SECTION_TITLES, build_report
from raygym.report import build as build_module

from . import PNG_MAGIC, leaderboard_column, parse_page, section_html, write_bare_leaderboard


@pytest.mark.slow
def test_report_is_self_contained_html(search_results: Path, report: Path) -> None:
    assert report == search_results / "report.html"
    page = parse_page(report)
    assert page.imgs, "no figures in the report"
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not page.external, f"external resources: {page.external}"
    assert page.h2 == list(SECTION_TITLES.values())
    # effects (+ grouped), curves, pruning, anytime, parallel, confusion, samples
    # (+ importances when ASHA left at least 2 complete trials: the search decides, so either
    # is fine)
    assert len(page.imgs) >= 8
    text = report.read_text()
    notes = re.findall(r'class="note">([^<]*)', text)
    assert len(page.imgs) == 9 or any("importances need at least 2 complete trials" in n
                                      or "importances could not be computed" in n
                                      for n in notes), notes
    assert "could not be built" not in text
    assert "evaluating the best model failed" not in text


@pytest.mark.slow
def test_report_markdown_and_pngs(search_results: Path, report: Path) -> None:
    md_dir = search_results / "report"
    md = (md_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"effects.png", "effects_grouped.png", "curves.png", "pruning.png", "anytime.png",
            "parallel.png", "confusion.png", "samples.png"} <= set(links)
    for link in links:
        png = md_dir / link
        assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC, link
    for title in SECTION_TITLES.values():
        assert f"## {title}" in md
    for trial in leaderboard_column(search_results, "trial_id"):
        assert trial in md
    assert not list(search_results.glob(".report*")), "temp files left behind"


@pytest.mark.slow
def test_report_rebuild_and_custom_out(search_results: Path, tmp_path: Path) -> None:
    out = build_report(search_results, out=tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html" and out.is_file()
    assert (tmp_path / "elsewhere" / "r" / "report.md").is_file()
    again = build_report(search_results, out=out)  # overwrite in place
    assert again == out and not list(out.parent.glob(".r*"))


@pytest.mark.slow
def test_report_degrades_to_notes(search_results: Path, tmp_path: Path) -> None:
    """No study file, a failed trial, the dataset moved away: still a complete report."""
    copy = tmp_path / "rep"
    shutil.copytree(search_results, copy, ignore=shutil.ignore_patterns("report*"))
    (copy / "optuna.journal").unlink()
    with (copy / "leaderboard.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols, rows = list(reader.fieldnames or []), list(reader)
    rows[-1].update(status="failed", error="ValueError: boom in trial")
    with (copy / "leaderboard.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    dataset = search_results.parent.parent / "ds"
    moved = dataset.with_name("ds-moved")
    dataset.rename(moved)
    try:
        html = build_report(copy).read_text()
    finally:
        moved.rename(dataset)
    page = parse_page(copy / "report.html")
    assert page.h2 == list(SECTION_TITLES.values())
    assert "no Optuna study (optuna.journal" in html
    assert "is gone" in html
    assert "boom in trial" in html
    assert "could not be built" not in html


def test_a_broken_section_becomes_a_note(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A section that raises halfway loses what it wrote, keeps its heading and says why;
    the sections after it are still built."""
    def broken(doc: Any, res: Any) -> None:
        doc.section("effects")
        doc.text("half written")
        raise ValueError("boom\nin  effects")

    builders = tuple((sid, broken if sid == "effects" else build)
                     for sid, build in build_module.SECTION_BUILDERS)
    monkeypatch.setattr(build_module, "SECTION_BUILDERS", builders)
    html = build_report(write_bare_leaderboard(tmp_path / "rep")).read_text()
    effects = section_html(html, "effects")
    assert "this section could not be built: ValueError: boom in effects" in effects
    assert "half written" not in html
    assert parse_page(tmp_path / "rep" / "report.html").h2 == list(SECTION_TITLES.values())
    assert "<img" in section_html(html, "optuna")  # parallel coordinates, after the break


def test_report_out_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``out``: a folder gets ``report.html`` inside; another suffix becomes ``.html``, and
    the command says where both the HTML and the Markdown went."""
    from raygym.cli import main

    results = write_bare_leaderboard(tmp_path / "rep")
    (tmp_path / "folder").mkdir()
    assert build_report(results, out=tmp_path / "folder") == tmp_path / "folder" / "report.html"
    assert (tmp_path / "folder" / "report" / "report.md").is_file()
    assert build_report(results, out=tmp_path / "r.txt") == tmp_path / "r.html"
    capsys.readouterr()
    assert main(["report", str(results), "--out", str(tmp_path / "notes.md")]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"report written: {tmp_path / 'notes.html'} " in said
    assert f"Markdown + figures: {tmp_path / 'notes' / 'report.md'}" in said
    assert (tmp_path / "notes" / "report.md").is_file()


def test_report_never_replaces_what_it_did_not_write(tmp_path: Path) -> None:
    """``--out .`` beside a ``report/`` folder of the user's, or an HTML file of theirs:
    refused before anything is written; a raygym report is rewritten in place."""
    from raygym.errors import DataError

    results = write_bare_leaderboard(tmp_path / "rep")
    here = tmp_path / "here"
    (here / "report").mkdir(parents=True)
    (here / "report" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a raygym report"):
        build_report(results, out=here)
    assert (here / "report" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in here.iterdir()) == ["report"], "nothing written"
    (tmp_path / "page.html").write_text("<html><title>my page</title></html>")
    with pytest.raises(DataError, match="not a raygym report"):
        build_report(results, out=tmp_path / "page.html")
    assert "my page" in (tmp_path / "page.html").read_text()
    fresh = build_report(results, out=tmp_path / "mine.html")
    assert build_report(results, out=fresh) == fresh  # its own report: replaced


def _chromium() -> str | None:
    for name in ("chromium", "chromium-headless-shell", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture
def chromium() -> Iterator[str]:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no screenshot test")
    yield exe


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report: Path, chromium: str,
                                             tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    cmd: list[Any] = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                      "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
                      f"--screenshot={shot}", "--window-size=1200,2000",
                      report.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot: {done.stderr[-800:]}"
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1200)
    colours = np.unique(img.reshape(-1, 3)[::37], axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) a single colour"
    assert img.std() > 20
