"""The anytime curve: the series by hand, the section from hand-written trial folders, and on a
real search (its numbers recomputed from Tune's ``result.json``, a replayed search's rank)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from raygym.report import AnytimeRecord, anytime_series, build_report

from . import PNG_MAGIC, leaderboard_column, section_html, write_trial_folders


def _anytime_expected(results: Path, metric: str = "val_mean_iou") -> tuple[int, int, float]:
    """Total epochs, epoch count at which the final best was first reached, and that best,
    recomputed straight from Tune's ``result.json`` files (mode max)."""
    reports: dict[tuple[str, int], tuple[float, float]] = {}
    for rj in sorted((results / "ray" / results.name).glob("*/result.json")):
        for line in rj.read_text().splitlines():
            item = json.loads(line)
            value = item.get(f"best_{metric}", item.get(metric))
            reports[(item.get("trial_id") or rj.parent.name, int(item["epoch"]))] = (
                float(item["timestamp"]), float(value))
    order = sorted(reports, key=lambda k: (reports[k][0], k[0], k[1]))
    best, first = -math.inf, 0
    for x, key in enumerate(order, start=1):
        if reports[key][1] > best:
            best, first = reports[key][1], x
    return len(order), first, best


@pytest.mark.slow
def test_report_anytime_section(search_results: Path, report: Path) -> None:
    """The anytime curve: its PNG, and the paragraph's numbers recomputed from result.json."""
    total, first, best = _anytime_expected(search_results)
    assert total >= 4  # every trial reported at least one epoch
    statuses = leaderboard_column(search_results, "status")
    n_pruned = sum(st not in ("completed", "early-stopped", "failed") for st in statuses)
    assert total == sum(int(row) for row in leaderboard_column(search_results, "epochs"))
    md = (search_results / "report" / "report.md").read_text()
    assert "## Anytime curve of the search" in md and "](anytime.png)" in md
    png = search_results / "report" / "anytime.png"
    assert png.is_file() and png.read_bytes()[:8] == PNG_MAGIC
    section = section_html(report.read_text(), "anytime")
    assert "<img" in section and 'class="note"' not in section
    assert f"The search spent {total} epochs (all trials together)." in section
    assert (f"The final best val_mean_iou {best:.4f} was first reached after {first} epochs"
            in section)
    assert f"{n_pruned} of {len(statuses)} trials were pruned" in section
    assert "Replay" not in section


@pytest.mark.slow
def test_report_anytime_replay(search_results: Path, tmp_path: Path) -> None:
    """A replayed search (``replay`` in search.json): the best configuration's rank among the
    recorded table's, matched by params as the leaderboard wrote them."""
    copy = tmp_path / "rep"
    shutil.copytree(search_results, copy, ignore=shutil.ignore_patterns("report*"))
    info = json.loads((copy / "search.json").read_text())
    keys = [d["path"] for d in info["space"]]
    with (copy / "leaderboard.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the recorded table lists the search's trials in reverse: the search's best ranks last
    ranks = [{"params": {k: _cell(row[k]) for k in keys}, "score": 0.5 + 0.1 * i,
              "rank": len(rows) - i} for i, row in enumerate(rows)]
    info["replay"] = {"grid_best": 0.5 + 0.1 * (len(rows) - 1), "grid_epochs": 48.0,
                      "ranks": ranks, "noise": {"run_sd": 0.03, "mean_se": 0.017,
                                                "split_within": 1 / 3, "split_top3": 0.3}}
    (copy / "search.json").write_text(json.dumps(info))
    section = section_html(build_report(copy).read_text(), "anytime")
    assert "one run spreads 0.030" in section
    assert "within 0.01 of the best by the other half in 33 % of splits, so ranks" in section
    assert (f"configuration (trial {rows[0]['trial_id']}) ranks {len(rows)} of {len(rows)} "
            "configurations of the recorded table" in section)
    assert f"is 0.5000 vs the grid&#x27;s best {0.5 + 0.1 * (len(rows) - 1):.4f}" in section
    assert "Running the whole grid costs 48 epochs" in section
    assert "could not be built" not in section


def _cell(text: str) -> Any:
    """A leaderboard cell as the value a recorded table would hold (int, float or str)."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def test_anytime_series_hand_made() -> None:
    """Order by timestamp, then trial id, then epoch; NaN spends an epoch; min and max."""
    nan = float("nan")
    records: list[AnytimeRecord] = [
        (13.0, "c", 2, 0.4), (10.0, "b", 1, 0.9), (12.0, "c", 1, 0.7), (11.0, "b", 2, nan),
        (10.0, "a", 1, 0.8), (13.0, "a", 3, 0.45), (12.0, "a", 2, 0.5), (14.0, "d", 1, 0.6)]
    # order: a1 b1 b2 a2 c1 a3 c2 d1 -> x = 1..8
    low = anytime_series(records, mode="min")
    assert low.epochs == list(range(1, 9)) and low.total_epochs == 8
    assert low.best == [0.8, 0.8, 0.8, 0.5, 0.5, 0.45, 0.4, 0.4]
    assert low.last_epoch_at == {"a": 6, "b": 3, "c": 7, "d": 8}  # b: the pruned trial
    assert low.best_at(3) == 0.8  # where b's marker sits on the curve
    assert (low.first_best_at, low.final_best, low.best_trial) == (7, 0.4, "c")
    high = anytime_series(records, mode="max")
    assert high.best == [0.8] + [0.9] * 7
    assert (high.first_best_at, high.final_best, high.best_trial) == (2, 0.9, "b")
    assert high.last_epoch_at == low.last_epoch_at
    empty = anytime_series([], mode="max")
    assert empty.total_epochs == 0 and empty.first_best_at is None
    assert math.isnan(empty.final_best)
    only_nan = anytime_series([(1.0, "a", 1, nan), (2.0, "a", 2, nan)])
    assert only_nan.total_epochs == 2 and only_nan.first_best_at is None
    assert only_nan.best_trial is None


def test_report_anytime_from_trial_files(tmp_path: Path) -> None:
    """Hand-written Tune trial folders (result.json lines with ``timestamp``), metric val_loss
    (mode min), one pruned trial, one trial without ``best_val_loss`` (falls back to
    ``val_loss``) and a ``replay`` in search.json: section, PNG and numbers, no Ray needed."""
    ranks = [{"params": {"model.filters": f, "loss.name": lo}, "score": s, "rank": r}
             for r, (f, lo, s) in enumerate([(2, "dice", 0.31), (4, "dice", 0.33),
                                             (4, "cce", 0.5), (2, "cce", 0.6)], start=1)]
    results = write_trial_folders(tmp_path / "rep", {
        "name": "rep", "config": {"name": "rep", "search": {
            "metric": "val_loss", "mode": "min", "scheduler": "asha"}},
        "replay": {"grid_best": 0.31, "grid_epochs": 12.0, "ranks": ranks}})
    html = build_report(results).read_text()
    assert "could not be built" not in html
    section = section_html(html, "anytime")
    # order: t1@100 t2@100 t3@101 t1@103 t3@104 t1@105 -> best 0.9 .8 .7 .6 .4 .4
    assert "The search spent 6 epochs (all trials together)." in section
    assert "The final best val_loss 0.4000 was first reached after 5 epochs (83 %" in section
    assert "by trial t3" in section
    assert "1 of 3 trials were pruned (stopped by the asha scheduler)" in section
    assert ("configuration (trial t3) ranks 2 of 4 configurations of the recorded table; its "
            "ground-truth val_loss is 0.3300 vs the grid&#x27;s best 0.3100" in section)
    assert "Running the whole grid costs 12 epochs; this search spent 6 (50 %)." in section
    assert (results / "report" / "anytime.png").read_bytes()[:8] == PNG_MAGIC
    # a search without a scheduler (raygym record's): no "stopped by the none scheduler"
    info = json.loads((results / "search.json").read_text())
    info["config"]["search"]["scheduler"] = "none"
    (results / "search.json").write_text(json.dumps(info))
    html = build_report(results).read_text()
    assert "No scheduler stopped any trial" in section_html(html, "anytime")
    assert "no scheduler: none was stopped early" in section_html(html, "pruning")
    assert "none scheduler" not in html
    # no timestamps (an old progress.csv): a one-line note, not a broken section
    for rj in (results / "ray" / "rep").glob("*/result.json"):
        rj.write_text("\n".join(json.dumps({k: v for k, v in json.loads(line).items()
                                            if k != "timestamp"})
                                for line in rj.read_text().splitlines()) + "\n")
    section = section_html(build_report(results).read_text(), "anytime")
    assert section.count('class="note"') == 1 and "no timestamp" in section
    assert "<img" not in section


def test_anytime_records_clock_score_and_skips(tmp_path: Path) -> None:
    """A replay's own clock (``replay_wall``) wins over Tune's ``timestamp``; ``best_<metric>``
    over ``<metric>``; an epoch without either clock is counted as skipped."""
    from raygym.report import SearchResults, anytime_records

    histories = {"a": [{"epoch": 1, "timestamp": 50, "replay_wall": 2.0, "val_loss": 0.9,
                        "best_val_loss": 0.7},
                       {"epoch": 2, "val_loss": 0.5}],
                 "b": [{"training_iteration": 1, "timestamp": 40.0, "val_loss": 0.6}]}
    res = SearchResults(tmp_path, {"config": {"search": {"metric": "val_loss"}}}, [], [],
                        histories, {})
    records, skipped = anytime_records(res)
    assert records == [(2.0, "a", 1, 0.7), (40.0, "b", 1, 0.6)]
    assert skipped == 1
