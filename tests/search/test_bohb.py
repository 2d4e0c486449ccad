"""BOHB (``search.algorithm: bohb``, the bohb extra): its config without the extra, its
configuration space, and its searches simulated and replayed through real Tune."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from raygym.errors import ConfigError
from raygym.search.replay import CurveTable
from raygym.search.simulate import simulate
from raygym.search.space_config import load_experiment

from . import run_cli, write_space
from .curve_tables import FILTERS, LOSSES, SPACE, load_space


# ---------------------------------------------------------------------- BOHB (bohb extra)
def _bohb_installed() -> bool:
    from raygym.search.bohb import bohb_installed

    return bohb_installed()


needs_bohb = pytest.mark.skipif(not _bohb_installed(), reason="needs the bohb extra")


def test_a_bohb_config_loads_without_the_extra(tmp_path: Path) -> None:
    """A model artifact's config.yaml carries its search section: it must load anywhere."""
    config, _ = load_space(tmp_path, algorithm="bohb")
    assert config.search.algorithm == "bohb"


@pytest.mark.skipif(_bohb_installed(), reason="the bohb extra is installed: nothing is missing")
def test_bohb_without_the_extra_is_one_line_before_ray(grid_table: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(algorithm="bohb", results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, err = run_cli(["search", str(space_file), "--replay", str(grid_table)], capsys)
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(line) == 1 and "raygym[bohb]" in line[0], err
    assert "search.algorithm" in line[0] and "Traceback" not in err
    assert not (tmp_path / "results").exists()


@needs_bohb
def test_config_space_keeps_types_choices_and_conditions(tmp_path: Path) -> None:
    from raygym.search.space import active_params, config_space, from_config_space

    sections = json.loads(json.dumps(SPACE))
    sections["train"]["max_lr"] = {"loguniform": [1e-4, 1e-2]}
    sections["model"]["kernel"] = {"int": [3, 7], "when": {"model.arch": ["gym_resunet"]}}
    config, space = load_experiment(write_space(tmp_path / "space.yaml", sections))
    cs = config_space(space, seed=0)
    assert sorted(cs.keys()) == sorted(space.paths())
    seen_kernel = {True: 0, False: 0}
    for sampled in cs.sample_configuration(200):
        params = from_config_space(space, dict(sampled))
        has_kernel = "model.kernel" in params
        # the conditional key comes exactly when its condition holds
        assert has_kernel == (params["model.arch"] == "gym_resunet")
        seen_kernel[has_kernel] += 1
        assert params["loss.name"] in LOSSES  # the weighted loss decoded back to a dict
        assert type(params["model.filters"]) is int and params["model.filters"] in FILTERS
        assert 1e-4 <= params["train.max_lr"] <= 1e-2 and type(params["train.max_lr"]) is float
        if has_kernel:
            assert type(params["model.kernel"]) is int and 3 <= params["model.kernel"] <= 7
        assert active_params(space, params) == params
    assert min(seen_kernel.values()) > 50


@needs_bohb
def test_bohb_never_suggests_a_configuration_twice(tmp_path: Path) -> None:
    from ray.tune.search import Searcher

    from raygym.search.bohb import BohbSearch
    from raygym.search.space import config_key

    config, space = load_space(tmp_path)
    searcher = BohbSearch(space, metric="val_mean_iou", mode="max", seed=0, max_concurrent=0)
    keys = []
    for i in range(24):
        params = searcher.suggest(f"t{i}")
        assert isinstance(params, dict)
        keys.append(config_key(params))
        searcher.on_trial_result(f"t{i}", {"val_mean_iou": 0.1 * (i % 5), "training_iteration": 1,
                                           "hyperband_info": {"budget": 1}})
        searcher.on_trial_complete(f"t{i}")
    assert len(set(keys)) == 24  # every point of the 24-point space, once
    assert searcher.suggest("t24") == Searcher.FINISHED


@needs_bohb
def test_simulated_bohb_pauses_halves_and_is_seeded(grid_table: Path, tmp_path: Path) -> None:
    """HyperBandForBOHB through the simulator: trials pause at rungs and the worse are
    stopped there (pruned), fewer epochs than the grid, same seed same search."""
    table = CurveTable.load(grid_table)
    # patience 8: trials run to their rungs (early-stopped trials would leave the brackets)
    config, space = load_space(tmp_path, algorithm="bohb", repeat_top=0)
    config = config.model_copy(update={"train": config.train.model_copy(
        update={"patience": 8})})
    first = simulate(config, space, table, seed=2, max_epochs_spent=math.inf)
    again = simulate(config, space, table, seed=2, max_epochs_spent=math.inf)
    assert first.order == again.order and list(first.chosen) == list(again.chosen)
    assert len(set(first.order)) == len(first.order) == 24
    assert first.pruned > 0 and first.epochs[-1] < 24 * 8


def test_bohb_refuses_another_scheduler(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="search.scheduler.*bohb"):
        load_space(tmp_path, algorithm="bohb", scheduler="median", repeat_top=0)


@pytest.mark.slow
@needs_bohb
def test_replayed_bohb_search_through_tune_resumes_paused_trials(
        grid_table: Path, tmp_path: Path, ray_session: None,
        capsys: pytest.CaptureFixture) -> None:
    """Real Tune pauses replayed trials at HyperBand's rungs and resumes them from their
    checkpoint: each trial's epochs run 1, 2, ... without a gap or a restart."""
    sections = json.loads(json.dumps(SPACE))
    sections["train"]["patience"] = 8
    sections["search"].update(num_samples=12, algorithm="bohb", repeat_top=0,
                              results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    code, _ = run_cli(["search", str(space_file), "--replay", str(grid_table)], capsys)
    assert code == 0
    out = tmp_path / "results" / "replay-replay"
    progress = sorted((out / "ray").rglob("progress.csv"))
    assert len(progress) == 12
    lengths = []
    for path in progress:
        with path.open(newline="") as fh:
            epochs = [int(r["epoch"]) for r in csv.DictReader(fh)]
        assert epochs == list(range(1, len(epochs) + 1))
        lengths.append(len(epochs))
    assert min(lengths) < 8 <= max(lengths)  # some stopped at a rung, some ran the budget


@pytest.mark.slow
@needs_bohb
def test_a_small_bohb_search_finishes_and_resumes_as_finished(
        grid_table: Path, tmp_path: Path, ray_session: None,
        capsys: pytest.CaptureFixture) -> None:
    """4 trials: HyperBand stops three of them while they are paused at a rung. The search
    ends finished (Tune's snapshot once kept them PAUSED: exit 130, "interrupted", and a
    resume crashed inside Tune on trials BOHB no longer knew)."""
    sections = json.loads(json.dumps(SPACE))
    sections["search"].update(num_samples=4, algorithm="bohb", repeat_top=0,
                              results_dir=str(tmp_path / "results"))
    space_file = write_space(tmp_path / "space.yaml", sections)
    argv = ["search", str(space_file), "--replay", str(grid_table)]
    assert run_cli(argv, capsys)[0] == 0
    out = tmp_path / "results" / "replay-replay"
    assert json.loads((out / "search.json").read_text())["status"] == "finished"
    with (out / "leaderboard.csv").open(newline="") as fh:
        assert "interrupted" not in {r["status"] for r in csv.DictReader(fh)}
    assert run_cli([*argv, "--resume"], capsys)[0] == 0  # nothing left to run
