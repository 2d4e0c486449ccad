"""``raygym report``: a real small search once per module, then the HTML / Markdown report.

The HTML must be one self-contained file (every image a ``data:`` URI, no external resource),
hold every section, and list every trial of the leaderboard; a missing Optuna study, a deleted
dataset, failed trials or a search without a leaderboard yet become notes, not errors. When
``chromium`` is installed, a headless screenshot checks that the page actually renders.
"""

from __future__ import annotations

import csv
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
from raygym.report import SECTION_TITLES, build_report

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


@pytest.mark.slow
def test_report_is_self_contained_html(search_results: Path, report: Path) -> None:
    assert report == search_results / "report.html"
    page = _parse(report)
    assert page.imgs, "no figures in the report"
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not page.external, f"external resources: {page.external}"
    assert page.h2 == list(SECTION_TITLES.values())
    # effects (+ grouped), curves, pruning, parallel, confusion, samples (+ importances
    # when ASHA left at least 2 complete trials: the search decides, so either is fine)
    assert len(page.imgs) >= 7
    text = report.read_text()
    notes = re.findall(r'class="note">([^<]*)', text)
    assert len(page.imgs) == 8 or any("importances need at least 2 complete trials" in n
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
    assert {"effects.png", "effects_grouped.png", "curves.png", "pruning.png", "parallel.png",
            "confusion.png", "samples.png"} <= set(links)
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
