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
