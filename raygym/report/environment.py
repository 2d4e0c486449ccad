"""The environment section: versions and hardware of the machine building the report, and how
the search ran (start and end, wall time, resources per trial, Ray nodes, precision)."""

from __future__ import annotations

import os
import platform
from typing import Any

from raygym.report.document import ReportDocument
from raygym.report.results import SearchResults


def environment_rows() -> list[tuple[str, str]]:
    """Versions and hardware of the machine building the report."""
    from importlib import metadata

    import raygym

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    rows = [("raygym", raygym.__version__), ("python", platform.python_version())]
    rows += [(d, version(d)) for d in ("torch", "ray", "optuna", "optuna-dashboard",
                                        "numpy", "matplotlib")]
    rows += [("platform", platform.platform()), ("CPUs", str(os.cpu_count()))]
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i)
                            for i in range(torch.cuda.device_count()))
    except Exception:  # a broken CUDA install must not sink the report
        gpu = "unknown"
    rows.append(("GPU", gpu))
    return rows


def environment_section(doc: ReportDocument, res: SearchResults) -> None:
    """:func:`environment_rows`, then the search's times, resources and precision."""
    doc.section("environment")
    doc.heading("Report built with")
    doc.kv(environment_rows())
    info = res.info
    summary = info.get("summary") or {}
    rows: list[tuple[str, Any]] = [("started", info.get("started", "?")),
                                   ("finished", info.get("finished", "not finished"))]
    if summary.get("wall_s") is not None:
        rows.append(("search wall time", f"{summary['wall_s']:.1f} s"))
        rows.append(("sum of trial times", f"{summary.get('sum_trial_s') or 0:.1f} s"))
    r = res.config.get("resources") or {}
    if r:
        rows.append(("resources per trial", f"{r.get('workers_per_trial', 1)} worker(s) x "
                     f"{r.get('cpus_per_worker', '?')} CPU"
                     + (f" + {r.get('gpus_per_worker')} GPU" if r.get("gpus_per_worker")
                        else "")))
    s = res.search_cfg
    if s:
        rows.append(("trials / concurrent", f"{s.get('num_samples')} / "
                                            f"{s.get('max_concurrent')}"))
    nodes = {row.get("node_id") for row in res.rows if row.get("node_id")}
    if nodes:
        rows.append(("Ray nodes used", str(len(nodes))))
    train = res.config.get("train") or {}
    if train.get("precision"):
        rows.append(("precision", str(train["precision"])))
    doc.heading("Search")
    doc.kv(rows)
    doc.text("The versions above are those of the machine that built this report; the search "
             "may have run elsewhere (a Ray cluster).")


