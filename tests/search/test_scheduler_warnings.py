"""The search warns when its scheduler would judge trials during the LR ramp-up, and says
when a small discrete space, not num_samples, will end it."""

from __future__ import annotations

from pathlib import Path

from raygym.search.run import scheduler_warnings, space_size_note
from raygym.search.space_config import load_experiment

LANDSAT = Path(__file__).parents[2] / "search_spaces" / "landsat.yaml"


def test_landsat_space_judges_trials_after_the_ramp_up() -> None:
    config, space = load_experiment(LANDSAT)
    assert config.search.grace_period == config.train.rampup_epochs + 1 == 2
    assert config.search.scheduler == "asha"
    assert scheduler_warnings(config, space) == []


def test_grace_inside_the_ramp_up_is_named() -> None:
    overrides = {"train.rampup_epochs": 20, "search.grace_period": 10}
    config, space = load_experiment(LANDSAT, overrides=overrides)
    (text,) = scheduler_warnings(config, space)
    assert "search.grace_period 10 <= train.rampup_epochs 20" in text
    config, space = load_experiment(LANDSAT, overrides={"search.grace_period": 1})
    (text,) = scheduler_warnings(config, space)
    assert "search.grace_period 1 <= train.rampup_epochs 1" in text
    # no scheduler, or a schedule without warm-up: nothing to say
    for more in ({"search.scheduler": "none"}, {"train.lr_schedule": "constant"}):
        config, space = load_experiment(LANDSAT, overrides={**overrides, **more})
        assert scheduler_warnings(config, space) == []


def test_a_grace_no_shorter_than_the_trials_is_named() -> None:
    # ASHA with grace 5 over 2-epoch trials ran every trial in full, without a word
    for grace, epochs in ((5, 2), (4, 4)):
        overrides = {"search.grace_period": grace, "train.max_epochs": epochs}
        config, space = load_experiment(LANDSAT, overrides=overrides)
        (text,) = scheduler_warnings(config, space)
        assert f"search.grace_period {grace} >= train.max_epochs {epochs}: the asha" in text
    config, space = load_experiment(LANDSAT, overrides={"search.grace_period": 3,
                                                        "train.max_epochs": 4})
    assert scheduler_warnings(config, space) == []


def test_a_grace_learnt_from_more_trials_than_the_search_runs_is_named() -> None:
    overrides = {"search.grace_period": "auto", "search.num_samples": 8}
    config, space = load_experiment(LANDSAT, overrides=overrides)
    (text,) = scheduler_warnings(config, space)
    assert "first 8 trials (grace_trials), but the search runs 8" in text
    config, space = load_experiment(LANDSAT, overrides={**overrides, "search.grace_trials": 4})
    assert scheduler_warnings(config, space) == []


def test_default_grace_period_is_the_first_epoch_after_the_ramp_up() -> None:
    import yaml

    from raygym.config import validate_experiment

    raw = yaml.safe_load(LANDSAT.read_text())
    raw["search"].pop("grace_period", None)
    for dist in ("model", "loss"):  # fixed values are enough here
        raw[dist] = {k: v for k, v in raw[dist].items() if not isinstance(v, dict)}
    raw["train"].update(max_lr=1e-4, rampup_epochs=20)
    config = validate_experiment(raw)
    assert config.search.grace_period == config.train.rampup_epochs + 1 == 21
    raw["train"]["lr_schedule"] = "cosine"  # its warm-up is rampup_epochs too
    assert validate_experiment(raw).search.grace_period == 21
    raw["train"]["lr_schedule"] = "constant"  # no warm-up: never judged on the first epoch
    assert validate_experiment(raw).search.grace_period == 2
    raw["train"].update(lr_schedule="gym", rampup_epochs=30, max_epochs=30)
    assert validate_experiment(raw).search.grace_period == 30  # never past max_epochs
    # trials that run their whole budget (no early stopping) are judged as early: with the
    # statistics pass their first epochs rank them (the half-budget grace of the previous
    # default lost on unseen seeds)
    raw["train"].update(rampup_epochs=1, max_epochs=30, patience=30)
    assert validate_experiment(raw).search.grace_period == 2


def test_the_search_names_its_scheduler_and_only_the_settings_it_reads() -> None:
    from rich.console import Console

    from raygym.search.run import describe_space

    console = Console(width=200)
    for overrides, expected in (({}, "scheduler asha (grace 2, reduction 3), metric"),
                                ({"search.scheduler": "median"},
                                 "scheduler median (grace 2), metric")):
        config, space = load_experiment(LANDSAT, overrides=overrides)
        with console.capture() as out:
            describe_space(config, space, console)
        assert expected in out.get()


def test_a_discrete_space_smaller_than_the_trials_is_named(tmp_path: Path) -> None:
    """A 4-point space and 20 trials ended after 7 (4 + the leaders' reruns) without a word
    of why; the dry run now says so. Continuous or large spaces: nothing to say."""
    space_file = tmp_path / "small.yaml"
    space_file.write_text(
        "name: small\ndata: {images: i, labels: l, classes: [a, b]}\n"
        "model: {arch: gym_unet, filters: {choice: [2, 4]}}\n"
        "loss: {name: {choice: [dice, cce]}}\nsearch: {num_samples: 20}\n")
    config, space = load_experiment(space_file)
    assert space_size_note(config, space) == (
        "the space holds 4 configurations: the search ends once each has trained (the best 3 "
        "up to 2 runs each), which may be before search.num_samples 20")
    config, space = load_experiment(space_file, overrides={"search.repeat_top": 0})
    assert space_size_note(config, space).endswith("has trained, which may be before "
                                                   "search.num_samples 20")
    for overrides in ({"search.num_samples": 4}, {"search.algorithm": "random"}):
        config, space = load_experiment(space_file, overrides=overrides)
        assert space_size_note(config, space) is None
    config, space = load_experiment(LANDSAT)  # a learning rate drawn from a range
    assert space_size_note(config, space) is None
