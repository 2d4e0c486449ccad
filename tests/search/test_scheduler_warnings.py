"""The search warns when its scheduler would judge trials during the LR ramp-up."""

from __future__ import annotations

from pathlib import Path

from raygym.config import load_experiment
from raygym.search.run import scheduler_warnings

LANDSAT = Path(__file__).parents[2] / "search_spaces" / "landsat.yaml"


def test_landsat_space_judges_trials_after_the_ramp_up() -> None:
    config, space = load_experiment(LANDSAT)
    assert config.search.grace_period >= config.train.rampup_epochs
    assert scheduler_warnings(config, space) == []


def test_grace_inside_the_ramp_up_is_named() -> None:
    config, space = load_experiment(LANDSAT, overrides={"search.grace_period": 10})
    (text,) = scheduler_warnings(config, space)
    assert "search.grace_period 10 < train.rampup_epochs 20" in text
    # no scheduler, or another schedule: nothing to say
    for overrides in ({"search.scheduler": "none"}, {"train.lr_schedule": "cosine"}):
        config, space = load_experiment(LANDSAT, overrides={"search.grace_period": 10,
                                                            **overrides})
        assert scheduler_warnings(config, space) == []


def test_default_grace_period_is_the_ramp_up() -> None:
    import yaml

    from raygym.config import validate_experiment

    raw = yaml.safe_load(LANDSAT.read_text())
    del raw["search"]["grace_period"]
    for dist in ("model", "loss"):  # fixed values are enough here
        raw[dist] = {k: v for k, v in raw[dist].items() if not isinstance(v, dict)}
    raw["train"]["max_lr"] = 1e-4
    config = validate_experiment(raw)
    assert config.search.grace_period == config.train.rampup_epochs == 20
    raw["train"]["lr_schedule"] = "cosine"
    assert validate_experiment(raw).search.grace_period == 2
    raw["train"].update(lr_schedule="gym", rampup_epochs=50, max_epochs=30)
    assert validate_experiment(raw).search.grace_period == 30  # never past max_epochs
