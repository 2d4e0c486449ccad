"""The environment section: the machine building the report, and how the search ran."""

from __future__ import annotations

import json
from pathlib import Path

from raygym.report import environment_rows
from raygym.report.document import ReportDocument
from raygym.report.environment import environment_section
from raygym.report.results import load_results


def test_environment_rows_name_versions_and_hardware() -> None:
    rows = dict(environment_rows())
    assert {"raygym", "python", "torch", "ray", "optuna", "numpy", "matplotlib", "platform",
            "CPUs", "GPU"} <= set(rows)
    assert rows["torch"] != "not installed"


def test_search_rows_from_search_json(tmp_path: Path) -> None:
    (tmp_path / "search.json").write_text(json.dumps({
        "name": "rep", "started": "2024-05-01 10:00", "summary": {"wall_s": 61.25},
        "config": {"resources": {"workers_per_trial": 2, "cpus_per_worker": 4,
                                 "gpus_per_worker": 1},
                   "search": {"num_samples": 8, "max_concurrent": 2},
                   "train": {"precision": "bf16-mixed"}}}))
    doc = ReportDocument(tmp_path)
    environment_section(doc, load_results(tmp_path))
    (section,) = doc.sections
    search = dict(next(b.data for b in reversed(section.blocks) if b.kind == "kv"))
    assert search == {"started": "2024-05-01 10:00", "finished": "not finished",
                      "search wall time": "61.2 s", "sum of trial times": "0.0 s",
                      "resources per trial": "2 worker(s) x 4 CPU + 1 GPU",
                      "trials / concurrent": "8 / 2", "precision": "bf16-mixed"}
