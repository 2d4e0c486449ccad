"""The benches' shared set-up: a pairs.csv manifest with absolute paths (scripts import it as a
sibling module: ``python bench/<script>.py`` puts bench/ on sys.path)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_manifest(source: Path, dest: Path, limit: int | None) -> int:
    """Copy the first ``limit`` rows of ``source`` (pairs.csv) to ``dest`` with absolute paths;
    returns the number of rows."""
    with source.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[:limit] if limit else rows
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: str((source.parent / row[k]).resolve()) for k in ("image", "label")})
    return len(rows)
