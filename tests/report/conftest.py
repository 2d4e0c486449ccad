"""One real small search per test package run (slow tests only), and its report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

N_SCENES = 30


@pytest.fixture(scope="package")
def search_results(tmp_path_factory: pytest.TempPathFactory,
                   s2_subset: Callable[[Path, int], list[str]], ray_session: None) -> Path:
    """A real 4-trial Optuna + ASHA search over arch x filters x loss x max_lr (3 epochs).

    Package-scoped: every test module under ``tests/report`` reads the same search.
    """
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


@pytest.fixture(scope="package")
def report(search_results: Path) -> Path:
    """``report.html`` of :func:`search_results`, built once."""
    from raygym.report import build_report

    return build_report(search_results)
