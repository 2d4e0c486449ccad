"""Summary and leaderboard: every trial listed as written, failures shown, a search without a
leaderboard yet still reported from Tune's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raygym.report import SECTION_TITLES, build_report
from raygym.report.document import ReportDocument
from raygym.report.overview import leaderboard_section, summary_section
from raygym.report.results import load_results

from . import leaderboard_column, parse_page, section_html, write_bare_leaderboard


@pytest.mark.slow
def test_report_leaderboard_lists_every_trial(search_results: Path, report: Path) -> None:
    ids = leaderboard_column(search_results, "trial_id")
    assert len(ids) == 4
    cells = set(parse_page(report).cells)
    assert set(ids) <= cells
    assert {"water", "surf", "wet_sand", "dry_land"} <= cells  # per-class table of the best


@pytest.mark.slow
def test_report_of_unfinished_search(search_results: Path, tmp_path: Path) -> None:
    """A search still running: no leaderboard, no best model yet; curves from Tune's files."""
    copy = tmp_path / "rep"
    shutil.copytree(search_results, copy, ignore=shutil.ignore_patterns("report*", "best",
                                                                        "leaderboard.*"))
    html = build_report(copy).read_text()
    assert "no leaderboard.csv yet" in html and "no exported model" in html
    for trial in leaderboard_column(search_results, "trial_id"):
        assert trial in html
    assert "could not be built" not in html


def test_report_from_a_bare_leaderboard(tmp_path: Path) -> None:
    """Only leaderboard.csv (no search.json, trial folders, study or model): every section
    is there, trial ids that look like numbers stay as written."""
    html = build_report(write_bare_leaderboard(tmp_path))
    page = parse_page(html)
    assert page.h2 == list(SECTION_TITLES.values())
    assert {"01234567", "123e4567", "abcdef12", "deadbeef"} <= set(page.cells)
    text = html.read_text()
    assert "out of memory" in text and "could not be built" not in text
    assert (tmp_path / "report" / "effects.png").is_file()
    anytime = section_html(text, "anytime")
    assert anytime.count('class="note"') == 1 and "no Tune trial folders" in anytime
    assert "<img" not in anytime and not (tmp_path / "report" / "anytime.png").exists()


def test_summary_and_leaderboard_rows(tmp_path: Path) -> None:
    """Counts by status, the best trial and its parameters; row classes best / pruned / failed."""
    res = load_results(write_bare_leaderboard(tmp_path))
    doc = ReportDocument(tmp_path)
    summary_section(doc, res)
    leaderboard_section(doc, res)
    summary = dict(doc.sections[0].blocks[0].data)
    assert summary["trials"] == "4: asha-pruned 1, completed 2, failed 1"
    assert summary["best trial"] == "01234567: val_mean_iou 0.6100 at epoch 3"
    assert summary["best parameters"] == "model.filters=4, loss.name=dice"
    leaderboard, failed = (b.data for b in doc.sections[1].blocks if b.kind == "table")
    cols, _rows, classes = leaderboard
    assert cols[:4] == ["rank", "trial_id", "status", "best_val_mean_iou"]
    assert "filters" in cols and "loss.name" in cols  # "name" alone would say nothing
    assert classes == ["best", "pruned", "", "failed"]
    assert failed[1] == [["deadbeef", "RuntimeError: out of memory"]]
