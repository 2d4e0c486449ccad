"""``raygym search SPACE --resume``: what may change when a search goes on, and growing it.

A search resumes only with the space and config it started with (resources may change:
another cluster, the same search). One change is allowed: a larger ``search.num_samples``
grows the search. The trials run so far stay; the same Optuna study, the same scheduler (its
rungs keep the results already judged) and the same Tune experiment go on to the new count,
so TPE proposes the next trials from everything it has seen, and the leaderboard, the
exported models and the report cover them all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygym.config import ExperimentConfig
from raygym.errors import ConfigError, DataError
from raygym.search.space_config import SearchSpace

SEARCH_JSON = "search.json"


@dataclass(frozen=True)
class Growth:
    """A resumed search asked for more trials: ``search.num_samples`` was ``before``, is
    ``after``."""

    before: int
    after: int
    trials_run: int = 0  # trials on the leaderboard when it grew (search.json's summary)
    epochs_spent: int = 0  # their epochs, all together

    def line(self) -> str:
        run = f"{self.trials_run} trial(s)" if self.trials_run else "trials"
        return (f"growing the search from {self.before} to {self.after} trials: the {run} run "
                "so far stay, and the search goes on from them")

    def record(self, saved: dict[str, Any]) -> list[dict[str, Any]]:
        """search.json's ``grown`` list with this growth added (the report marks each on the
        anytime curve at ``epochs_before``)."""
        return [*saved.get("grown", []), {
            "from": self.before, "to": self.after, "trials_before": self.trials_run,
            "epochs_before": self.epochs_spent, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]


def check_resume(config: ExperimentConfig, space: SearchSpace, out: Path,
                 table: Any) -> tuple[dict[str, Any], Growth | None]:
    """Before ``--resume`` touches anything: the saved ``search.json`` and the growth asked
    for (None: the same count). Refused with one line: no search to resume, a rehearsal
    resumed as a search (or the reverse), another space or config, a count that shrinks or
    a search that cannot grow, Tune state that would not load."""
    if not (out / SEARCH_JSON).exists():
        raise DataError("nothing to resume: no search.json", file=out,
                        fix="run without --resume to start the search")
    saved = read_search_json(out)
    if bool(saved.get("replay_table")) != (table is not None):
        # Tune would refuse the other trainable with a traceback from inside Ray
        raise DataError("this results folder holds a " + (
            "rehearsal on a recorded table; resume it with --replay "
            f"{saved['replay_table']}" if saved.get("replay_table") else
            "search that trained; a rehearsal (--replay) cannot resume it"), file=out,
            fix="resume it as it was started, or start without --resume")
    growth = growth_asked(saved, config, space)
    if growth is None and not same_search(saved, config, space):
        changes = resume_changes(saved, config, space)
        raise DataError("this results folder holds a search of a different space/config"
                        + (f" ({changes})" if changes else "") + "; refusing to resume into "
                        "it", file=out, fix="resume with the SPACE file and --set values it "
                        "started with (search.num_samples may grow), or change `name`")
    from raygym.search.driver_state import check_driver_state
    from raygym.search.tune import experiment_path

    check_driver_state(experiment_path(config, out))  # else Tune would start over
    if growth is not None:
        check_growth(config, growth, out)
        # what the leaderboard held when the search last stopped (none: a killed driver)
        summary = saved.get("summary") or {}
        growth = Growth(growth.before, growth.after, trials_run=int(summary.get("trials") or 0),
                        epochs_spent=int(summary.get("total_epochs") or 0))
    return saved, growth


def same_search(saved: dict[str, Any], config: ExperimentConfig, space: SearchSpace,
                num_samples: int | None = None) -> bool:
    """Whether ``saved`` (a search.json) records this space and config (with
    ``search.num_samples`` taken as ``num_samples`` where given)."""
    return (saved.get("space_fingerprint") == space.fingerprint()
            and saved.get("config_fingerprint") == resume_fingerprint(config, num_samples))


def growth_asked(saved: dict[str, Any], config: ExperimentConfig,
                 space: SearchSpace) -> Growth | None:
    """The growth of a search whose only change is ``search.num_samples``; None otherwise
    (the same search, or another one)."""
    before = (saved.get("config") or {}).get("search", {}).get("num_samples")
    if (not isinstance(before, int) or before == config.search.num_samples
            or not same_search(saved, config, space, num_samples=before)):
        return None
    return Growth(before=before, after=config.search.num_samples)


def check_growth(config: ExperimentConfig, growth: Growth, out: Path) -> None:
    """Refuse, with one line, a growth the search cannot take."""
    if growth.after < growth.before:
        raise ConfigError(f"is {growth.after}, but the search at {out} asked for "
                          f"{growth.before} trials; a resumed search can grow, not shrink",
                          key="search.num_samples",
                          fix=f"resume with {growth.before} or more; to end a search sooner, "
                          "stop it with Ctrl-C: its results so far are kept")
    if (refusal := cannot_grow(config, growth.before)) is not None:
        raise refusal


def cannot_grow(config: ExperimentConfig, before: int) -> ConfigError | None:
    """Why a search of ``config`` (started with ``before`` trials) cannot grow, as the error to
    raise; None where it can."""
    s = config.search
    if s.algorithm == "grid":
        return ConfigError("grid search runs every point of the space num_samples times; "
                           "more would train the same points again", key="search.algorithm",
                           fix=f"resume with search.num_samples {before}, or start "
                           "a new search (another `name`) with algorithm optuna")
    if s.algorithm == "bohb":
        # seen: a grown BOHB search's new trials paused at a rung of the restored brackets and
        # waited for ever (ray 2.60)
        return ConfigError("BOHB's HyperBand brackets do not take new trials once restored (its "
                           "new trials would wait at a rung for ever)", key="search.algorithm",
                           fix=f"resume with search.num_samples {before}, or start a "
                           "larger search under another `name`")
    if config.resources.through_ray_client:
        return ConfigError("a search run through Ray Client cannot grow (its Tuner runs on the "
                           "cluster, out of raygym's reach)", key="resources.address",
                           fix="resume from a driver on a cluster node (address: auto), or "
                           f"with search.num_samples {before}")
    if s.scheduler == "pbt":
        return ConfigError("PBT's population is fixed when it starts", key="search.scheduler",
                           fix=f"resume with search.num_samples {before}, or start "
                           "a larger population under another `name`")
    return None


def growth_hint(saved: dict[str, Any], config: ExperimentConfig, space: SearchSpace) -> str:
    """For a search started again without ``--resume``: how ``--resume`` would grow it (or
    "")."""
    growth = growth_asked(saved, config, space)
    if growth is None or growth.after <= growth.before:
        return ""
    return f" and grow it from {growth.before} to {growth.after} trials"


def read_search_json(out: Path) -> dict[str, Any]:
    """The ``search.json`` of the results folder ``out``; a damaged one (a truncated write, an
    edit) is refused with one line, before anything is changed."""
    path = out / SEARCH_JSON
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        saved = err
    if not isinstance(saved, dict) or not isinstance(saved.get("space_fingerprint"), str):
        what = f"{type(saved).__name__}: {saved}" if isinstance(saved, Exception) else (
            "no space fingerprint in it")
        raise DataError(f"cannot resume: the search record is damaged ({what})", file=path,
                        fix="restore search.json from a backup, or start a new search under "
                        "another `name` (this folder is left as it is)")
    return saved


def resume_changes(saved: dict[str, Any], config: ExperimentConfig, space: SearchSpace,
                   most: int = 3) -> str:
    """Where ``config`` / ``space`` differ from the search recorded in ``saved`` (its
    search.json), for the refusal to resume: ``loss.name "dice" -> "cce"`` (the first
    ``most``; "" when the record cannot tell)."""
    from raygym.config import changed_values, dotted
    from raygym.search.space_config import Distribution

    sections = ("name", "data", "model", "loss", "train", "search")
    if not isinstance(saved.get("config"), dict) or not isinstance(saved.get("space"), list):
        return ""
    try:
        searched_then = [Distribution(**d) for d in saved["space"]]
    except (KeyError, TypeError, ValueError):
        return ""

    def shown(sections_now: dict[str, Any], dists: list[Distribution]) -> dict[str, str]:
        # a searched key shows its distribution, not the first candidate the config holds
        values = {k: v for k, v in dotted({k: sections_now.get(k) for k in sections}).items()
                  if k not in PER_RUN_KEYS}
        return ({k: json.dumps(v) for k, v in values.items()}
                | {d.path: d.describe() for d in dists})

    return changed_values(shown(saved["config"], searched_then),
                          shown(config.to_yaml_dict(), list(space)), most)


# settings of one run of the command, not of the search: each --resume may give its own
PER_RUN_KEYS = ("search.time_budget",)
# settings added since searches were first resumable, hashed as if absent at their defaults,
# so a search started before them resumes under the version that added them
ADDED_DEFAULTS = {"train.encoder_lr_scale": 1.0, "train.encoder_lr_epochs": None}


def resume_fingerprint(config: ExperimentConfig, num_samples: int | None = None) -> str:
    """What must not change across ``--resume`` (resources may: another cluster, same
    search; nor do :data:`PER_RUN_KEYS`); ``num_samples``: the fingerprint as if
    ``search.num_samples`` were that."""
    if num_samples is not None:
        config = config.model_copy(update={"search": config.search.model_copy(
            update={"num_samples": num_samples})})
    from raygym.config import ANY_VALUE

    return config.fingerprint("name", "data", "model", "loss", "train", "search",
                              leaving_out={**dict.fromkeys(PER_RUN_KEYS, ANY_VALUE),
                                           **ADDED_DEFAULTS})
