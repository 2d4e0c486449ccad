"""Helpers shared by the ``raygym report`` tests: read the HTML page back, cut out one section,
write hand-made results folders (leaderboard, Tune trial folders) that need no Ray."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
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


def parse_page(html_path: Path) -> Page:
    page = Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    page.close()
    return page


def section_html(html: str, sid: str) -> str:
    """The HTML of one report section (``<section id=sid>`` .. ``</section>``)."""
    found = re.search(rf'<section id="{sid}">(.*?)</section>', html, re.S)
    assert found, f"no section {sid}"
    return found.group(1)


def leaderboard_column(results: Path, column: str) -> list[str]:
    with (results / "leaderboard.csv").open(newline="") as fh:
        return [row[column] for row in csv.DictReader(fh)]


def write_leaderboard(results: Path, cols: list[str], rows: list[list[Any]]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    with (results / "leaderboard.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(cols)
        writer.writerows(rows)


BARE_COLUMNS = ["rank", "trial_id", "status", "best_val_mean_iou", "iou/water", "iou/land",
                "best_epoch", "epochs", "val_loss", "wall_s", "node_id", "model.filters",
                "loss.name", "error"]
BARE_ROWS = [
    [1, "01234567", "completed", 0.61, 0.7, 0.52, 3, 3, 0.4, 10.0, "n", 4, "dice", ""],
    [2, "123e4567", "asha-pruned", 0.32, 0.4, 0.24, 1, 1, 0.9, 3.0, "n", 2, "cce", ""],
    [3, "abcdef12", "completed", 0.25, 0.3, 0.2, 3, 3, 1.0, 9.0, "n", 2, "dice", ""],
    [4, "deadbeef", "failed", "", "", "", "", "", "", "", "", 4, "cce",
     "RuntimeError: out of memory"]]
"""A leaderboard of four trials (one pruned, one failed) over filters x loss, metric
val_mean_iou; trial ids that look like numbers."""


def write_bare_leaderboard(results: Path) -> Path:
    """Only ``leaderboard.csv`` (no search.json, trial folders, study or model)."""
    write_leaderboard(results, BARE_COLUMNS, BARE_ROWS)
    return results


TRIAL_EPOCHS = {  # trial -> (status, filters, loss, [(timestamp, best_val_loss or None, val_loss)])
    "t1": ("completed", 2, "dice", [(100, 0.9, 0.9), (103, 0.6, 0.6), (105, 0.5, 0.55)]),
    "t2": ("asha-pruned", 4, "cce", [(100, 0.8, 0.8)]),
    "t3": ("early-stopped", 4, "dice", [(101, None, 0.7), (104, None, 0.4)]),
}
"""Three trials of a val_loss (min) search: t2 pruned after 1 epoch, t3 without
``best_val_loss`` (the report falls back to ``val_loss``)."""


def write_trial_folders(results: Path, search_json: dict[str, Any]) -> Path:
    """``results/`` with a leaderboard, Tune trial folders ``ray/rep/<trial>`` (``result.json``
    lines with ``timestamp``, ``params.json``) for :data:`TRIAL_EPOCHS`, and ``search_json``."""
    write_leaderboard(results, [
        "rank", "trial_id", "status", "best_val_loss", "best_epoch", "epochs", "val_loss",
        "wall_s", "node_id", "model.filters", "loss.name", "error"], [
        [1, "t3", "early-stopped", 0.4, 2, 2, 0.4, 5.0, "n", 4, "dice", ""],
        [2, "t1", "completed", 0.5, 3, 3, 0.5, 6.0, "n", 2, "dice", ""],
        [3, "t2", "asha-pruned", 0.8, 1, 1, 0.8, 2.0, "n", 4, "cce", ""]])
    for tid, (_st, filters, loss, epochs) in TRIAL_EPOCHS.items():
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
    (results / "search.json").write_text(json.dumps(search_json))
    return results


VAL_LOSS_SEARCH = {"name": "rep", "config": {"name": "rep", "search": {
    "metric": "val_loss", "mode": "min", "scheduler": "asha"}}}
"""``search.json`` of the hand-made val_loss search (no ``replay``)."""
