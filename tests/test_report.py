"""``raygym report``: a real small search once per module, then the HTML / Markdown report.

The HTML must be one self-contained file (every image a ``data:`` URI, no external resource),
hold every section, and list every trial of the leaderboard; a missing Optuna study, a deleted
dataset, failed trials or a search without a leaderboard yet become notes, not errors. When
``chromium`` is installed, a headless screenshot checks that the page actually renders.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raygym.errors import DataError
from raygym.report import SECTION_TITLES, AnytimeRecord, anytime_series, build_report

N_SCENES = 30


class _Page(HTMLParser):
    """Collects headings, image sources, table cells and any external resource reference."""

    def __init__(self) -> None:
        super().__init__()
        self.h2: list[str] = []
        self.imgs: list[str] = []
        self.cells: list[str] = []
        self.external: list[str] = []
        self._tag: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        for key in ("src", "href"):
            value = a.get(key) or ""
            if tag != "a" and value and not value.startswith("data:"):
                self.external.append(f"<{tag} {key}={value[:60]}>")
        if tag in ("h2", "td"):
            self._tag, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._tag:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == self._tag:
            (self.h2 if tag == "h2" else self.cells).append("".join(self._text).strip())
            self._tag = None


def _parse(html_path: Path) -> _Page:
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    page.close()
    return page


@pytest.fixture(scope="module")
def search_results(tmp_path_factory: pytest.TempPathFactory,
                   s2_subset: Callable[[Path, int], list[str]], ray_session: None) -> Path:
    """A real 4-trial Optuna + ASHA search over arch x filters x loss x max_lr (3 epochs)."""
    import yaml

    from raygym.cli import main

    root = tmp_path_factory.mktemp("report")
    s2_subset(root / "s2", N_SCENES)
    s2 = root / "s2"
    space = dict(
        name="rep",
        data={
            "images": str(s2 / "images"),
            "extra_bands": [{"folder": str(s2 / "nir"), "key": r"^(.*)_ir(-\d+)$"}],
            "labels": str(s2 / "labels"),
            "classes": ["water", "surf", "wet_sand", "dry_land"],
            "remap": {1: 0, 2: 1, 3: 2, 4: 3},
            "unknown_labels": "ignore",
            "target_size": [64, 64],
            "split": {"val": 0.2, "test": 0.1},
            "augment": {"copies": 1, "hflip": True},
            "prepared": str(root / "ds"),
        },
        model={"arch": {"choice": ["gym_unet", "gym_resunet"]}, "filters": {"choice": [2, 4]},
               "kernel": 3},
        loss={"name": {"choice": ["dice", "cce"]}},
        train={"batch_size": 8, "max_epochs": 3, "patience": 5,
               "max_lr": {"loguniform": [1.0e-3, 3.0e-3]}, "rampup_epochs": 1,
               "precision": "fp32"},
        search={"num_samples": 4, "max_concurrent": 2, "grace_period": 1,
                "reduction_factor": 2, "results_dir": str(root / "results")},
    )
    cfg = root / "space.yaml"
    cfg.write_text(yaml.safe_dump(space, sort_keys=False))
    assert main(["search", str(cfg)]) == 0
    return root / "results" / "rep"


@pytest.fixture(scope="module")
def report(search_results: Path) -> Path:
    return build_report(search_results)


def _trial_ids(results: Path) -> list[str]:
    with (results / "leaderboard.csv").open(newline="") as fh:
        return [row["trial_id"] for row in csv.DictReader(fh)]


def _section(html: str, sid: str) -> str:
    """The HTML of one report section (``<section id=sid>`` .. ``</section>``)."""
    found = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert found, f"no section {sid}"
    return found.group(1)


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
def test_report_is_self_contained_html(search_results: Path, report: Path) -> None:
    assert report == search_results / "report.html"
    page = _parse(report)
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
def test_report_leaderboard_lists_every_trial(search_results: Path, report: Path) -> None:
    ids = _trial_ids(search_results)
    assert len(ids) == 4
    cells = set(_parse(report).cells)
    assert set(ids) <= cells
    assert {"water", "surf", "wet_sand", "dry_land"} <= cells  # per-class table of the best


@pytest.mark.slow
def test_report_markdown_and_pngs(search_results: Path, report: Path) -> None:
    md_dir = search_results / "report"
    md = (md_dir / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"effects.png", "effects_grouped.png", "curves.png", "pruning.png", "anytime.png",
            "parallel.png", "confusion.png", "samples.png"} <= set(links)
    for link in links:
        png = md_dir / link
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    for title in SECTION_TITLES.values():
        assert f"## {title}" in md
    for trial in _trial_ids(search_results):
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
    """No optuna.db, a failed trial, the dataset moved away: still a complete report."""
    copy = tmp_path / "rep"
    shutil.copytree(search_results, copy, ignore=shutil.ignore_patterns("report*"))
    (copy / "optuna.db").unlink()
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
    page = _parse(copy / "report.html")
    assert page.h2 == list(SECTION_TITLES.values())
    assert "no optuna.db" in html
    assert "is gone" in html
    assert "boom in trial" in html
    assert "could not be built" not in html


@pytest.mark.slow
def test_report_of_unfinished_search(search_results: Path, tmp_path: Path) -> None:
    """A search still running: no leaderboard, no best model yet; curves from Tune's files."""
    copy = tmp_path / "rep"
    shutil.copytree(search_results, copy, ignore=shutil.ignore_patterns("report*", "best",
                                                                        "leaderboard.*"))
    html = build_report(copy).read_text()
    assert "no leaderboard.csv yet" in html and "no exported model" in html
    for trial in _trial_ids(search_results):
        assert trial in html
    assert "could not be built" not in html


@pytest.mark.slow
def test_report_anytime_section(search_results: Path, report: Path) -> None:
    """The anytime curve: its PNG, and the paragraph's numbers recomputed from result.json."""
    total, first, best = _anytime_expected(search_results)
    assert total >= 4  # every trial reported at least one epoch
    with (search_results / "leaderboard.csv").open(newline="") as fh:
        statuses = [row["status"] for row in csv.DictReader(fh)]
    n_pruned = sum(st not in ("completed", "early-stopped", "failed") for st in statuses)
    assert total == sum(int(row) for row in _leaderboard_column(search_results, "epochs"))
    md = (search_results / "report" / "report.md").read_text()
    assert "## Anytime curve of the search" in md and "](anytime.png)" in md
    png = search_results / "report" / "anytime.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = _section(report.read_text(), "anytime")
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
                      "ranks": ranks}
    (copy / "search.json").write_text(json.dumps(info))
    section = _section(build_report(copy).read_text(), "anytime")
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


def _leaderboard_column(results: Path, column: str) -> list[str]:
    with (results / "leaderboard.csv").open(newline="") as fh:
        return [row[column] for row in csv.DictReader(fh)]


def test_report_from_a_bare_leaderboard(tmp_path: Path) -> None:
    """Only leaderboard.csv (no search.json, trial folders, study or model): every section
    is there, trial ids that look like numbers stay as written."""
    cols = ["rank", "trial_id", "status", "best_val_mean_iou", "iou/water", "iou/land",
            "best_epoch", "epochs", "val_loss", "wall_s", "node_id", "model.filters",
            "loss.name", "error"]
    rows = [[1, "01234567", "completed", 0.61, 0.7, 0.52, 3, 3, 0.4, 10.0, "n", 4, "dice", ""],
            [2, "123e4567", "asha-pruned", 0.32, 0.4, 0.24, 1, 1, 0.9, 3.0, "n", 2, "cce", ""],
            [3, "abcdef12", "completed", 0.25, 0.3, 0.2, 3, 3, 1.0, 9.0, "n", 2, "dice", ""],
            [4, "deadbeef", "failed", "", "", "", "", "", "", "", "", 4, "cce",
             "RuntimeError: out of memory"]]
    with (tmp_path / "leaderboard.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        writer.writerows(rows)
    html = build_report(tmp_path)
    page = _parse(html)
    assert page.h2 == list(SECTION_TITLES.values())
    assert {"01234567", "123e4567", "abcdef12", "deadbeef"} <= set(page.cells)
    text = html.read_text()
    assert "out of memory" in text and "could not be built" not in text
    assert (tmp_path / "report" / "effects.png").is_file()
    anytime = _section(text, "anytime")
    assert anytime.count('class="note"') == 1 and "no Tune trial folders" in anytime
    assert "<img" not in anytime and not (tmp_path / "report" / "anytime.png").exists()


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
    results = tmp_path / "rep"
    trials = {  # trial -> (status, filters, loss, [(timestamp, best_val_loss or None, val_loss)])
        "t1": ("completed", 2, "dice", [(100, 0.9, 0.9), (103, 0.6, 0.6), (105, 0.5, 0.55)]),
        "t2": ("asha-pruned", 4, "cce", [(100, 0.8, 0.8)]),
        "t3": ("early-stopped", 4, "dice", [(101, None, 0.7), (104, None, 0.4)]),
    }
    cols = ["rank", "trial_id", "status", "best_val_loss", "best_epoch", "epochs", "val_loss",
            "wall_s", "node_id", "model.filters", "loss.name", "error"]
    rows = [[1, "t3", "early-stopped", 0.4, 2, 2, 0.4, 5.0, "n", 4, "dice", ""],
            [2, "t1", "completed", 0.5, 3, 3, 0.5, 6.0, "n", 2, "dice", ""],
            [3, "t2", "asha-pruned", 0.8, 1, 1, 0.8, 2.0, "n", 4, "cce", ""]]
    results.mkdir()
    with (results / "leaderboard.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        writer.writerows(rows)
    for tid, (_st, filters, loss, epochs) in trials.items():
        d = results / "ray" / "rep" / tid
        d.mkdir(parents=True)
        lines = []
        for e, (ts, best, val) in enumerate(epochs, start=1):
            item: dict[str, Any] = {"trial_id": tid, "epoch": e, "timestamp": ts,
                                    "val_loss": val}
            if best is not None:
                item["best_val_loss"] = best
            lines.append(json.dumps(item))
        (d / "result.json").write_text("\n".join(lines) + "\n")
        (d / "params.json").write_text(json.dumps({"model.filters": filters,
                                                   "loss.name": loss}))
    ranks = [{"params": {"model.filters": f, "loss.name": lo}, "score": s, "rank": r}
             for r, (f, lo, s) in enumerate([(2, "dice", 0.31), (4, "dice", 0.33),
                                             (4, "cce", 0.5), (2, "cce", 0.6)], start=1)]
    (results / "search.json").write_text(json.dumps({
        "name": "rep", "config": {"name": "rep", "search": {
            "metric": "val_loss", "mode": "min", "scheduler": "asha"}},
        "replay": {"grid_best": 0.31, "grid_epochs": 12.0, "ranks": ranks}}))
    html = build_report(results).read_text()
    assert "could not be built" not in html
    section = _section(html, "anytime")
    # order: t1@100 t2@100 t3@101 t1@103 t3@104 t1@105 -> best 0.9 .8 .7 .6 .4 .4
    assert "The search spent 6 epochs (all trials together)." in section
    assert "The final best val_loss 0.4000 was first reached after 5 epochs (83 %" in section
    assert "by trial t3" in section
    assert "1 of 3 trials were pruned (stopped by the asha scheduler)" in section
    assert ("configuration (trial t3) ranks 2 of 4 configurations of the recorded table; its "
            "ground-truth val_loss is 0.3300 vs the grid&#x27;s best 0.3100" in section)
    assert "Running the whole grid costs 12 epochs; this search spent 6 (50 %)." in section
    assert (results / "report" / "anytime.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # no timestamps (an old progress.csv): a one-line note, not a broken section
    for rj in (results / "ray" / "rep").glob("*/result.json"):
        rj.write_text("\n".join(json.dumps({k: v for k, v in json.loads(line).items()
                                            if k != "timestamp"})
                                for line in rj.read_text().splitlines()) + "\n")
    section = _section(build_report(results).read_text(), "anytime")
    assert section.count('class="note"') == 1 and "no timestamp" in section
    assert "<img" not in section


def test_report_refuses_non_results_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a raygym search results folder"):
        build_report(tmp_path)
    with pytest.raises(DataError, match="not found"):
        build_report(tmp_path / "missing")


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
