"""Summary and leaderboard: every trial listed as written, failures shown, a search without a
leaderboard yet still reported from Tune's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raygym.report import SECTION_TITLES, build_report
from raygym.report.document import ReportDocument
from raygym.report.overview import (
    SPEED_HEAD,
    leaderboard_section,
    summary_section,
    throughput_text,
)
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
    assert "filters" in cols and "loss" in cols  # "name" alone would say nothing: its section
    assert classes == ["best", "pruned", "", "failed"]
    assert failed[1] == [["deadbeef", "RuntimeError: out of memory"]]


@pytest.mark.parametrize(("saved", "said"), [
    ({"status": "interrupted"}, "interrupted (Ctrl-C)"),
    ({"status": "stopped", "stopped_by": "search.time_budget 8h"},
     "stopped at its time budget (search.time_budget 8h)")])
def test_an_interrupted_search_is_said_so_and_its_cut_trials_are_not_pruned(
        saved: dict[str, str], said: str, tmp_path: Path) -> None:
    import json

    from . import BARE_COLUMNS, BARE_ROWS, write_leaderboard

    rows = [list(r) for r in BARE_ROWS]
    rows[2][2] = "interrupted"  # cut short by Ctrl-C or the time budget: not a scheduler's stop
    write_leaderboard(tmp_path, BARE_COLUMNS, rows)
    (tmp_path / "search.json").write_text(json.dumps({"name": "bare", **saved}))
    res = load_results(tmp_path)
    doc = ReportDocument(tmp_path)
    summary_section(doc, res)
    leaderboard_section(doc, res)
    notes = [b.data for b in doc.sections[0].blocks if b.kind == "note"]
    assert any(said in n and "--resume" in n for n in notes)
    _cols, _rows, classes = next(b.data for b in doc.sections[1].blocks if b.kind == "table")
    assert classes == ["best", "pruned", "", "failed"]


def test_leaderboard_shows_each_trial_s_throughput(tmp_path: Path) -> None:
    """Trials whose epochs reported GFLOP/s get the median and the peak share; others blank."""
    res = load_results(write_bare_leaderboard(tmp_path))
    res.histories["01234567"] = [{"gflop_per_s": 40.0, "peak_share": 0.2},
                                 {"gflop_per_s": 44.0, "peak_share": 0.22},
                                 {"gflop_per_s": 41.0, "peak_share": 0.21}]
    doc = ReportDocument(tmp_path)
    leaderboard_section(doc, res)
    cols, rows, _ = next(b.data for b in doc.sections[0].blocks if b.kind == "table")
    assert cols[-1] == SPEED_HEAD
    speed = {r[1]: r[-1] for r in rows}
    assert speed["01234567"] == "41.0 (21 %)" and speed["deadbeef"] == ""
    assert throughput_text([]) == "" and throughput_text([{"gflop_per_s": 3.0}]) == "3.0"


def test_leaderboard_without_throughput_has_no_such_column(tmp_path: Path) -> None:
    doc = ReportDocument(tmp_path)
    leaderboard_section(doc, load_results(write_bare_leaderboard(tmp_path)))
    cols, _, _ = next(b.data for b in doc.sections[0].blocks if b.kind == "table")
    assert SPEED_HEAD not in cols


def test_summary_names_the_grace_period_learnt_or_set() -> None:
    from raygym.report.overview import _grace

    assert _grace({"grace_period": 3}, {}) == "3"
    assert _grace({"grace_period": "auto"}, {"learnt_grace": 12}) == "auto: learnt epoch 12"
    assert "not learnt" in _grace({"grace_period": "auto"}, {})


def test_the_evaluations_section_says_how_to_make_one(tmp_path: Path) -> None:
    """No ``evaluation_*.csv`` beside the search: the command that writes one; a damaged one is
    named, not a broken section."""
    from raygym.report.evaluations import evaluations_section

    res = load_results(write_bare_leaderboard(tmp_path))
    doc = ReportDocument(tmp_path)
    evaluations_section(doc, res)
    [note] = [b.data for b in doc.sections[0].blocks if b.kind == "note"]
    assert f"raygym evaluate {tmp_path} --top-k 3" in note and "--ensemble" in note
    (tmp_path / "evaluation_test.csv").write_bytes(b"\xff\xfe\x00bad")
    doc = ReportDocument(tmp_path)
    evaluations_section(doc, res)
    notes = [b.data for b in doc.sections[0].blocks if b.kind == "note"]
    assert notes and notes[0].startswith("evaluation_test.csv could not be read")
