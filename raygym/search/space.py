"""From a :class:`~raygym.search.space_config.SearchSpace` to what Optuna (define-by-run) or
Tune sample.

Parameters are named by their dotted key path (``model.filters``), so a trial's config is a
flat ``{path: value}`` dict applied with :func:`raygym.search.space_config.apply_params`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from raygym.search.space_config import Distribution, SearchSpace, apply_params

if TYPE_CHECKING:
    from raygym.config import ExperimentConfig

_PRIMITIVE = (str, int, float, bool, type(None))
# The key of a trial config that makes it a repeat run of a configuration (value: its run
# index >= 1, added to train.seed); see search.repeat_top.
REPEAT_KEY = "raygym.repeat"
# a run's training seed: searched (or recorded, raygym record) it tells runs of one
# configuration apart, as REPEAT_KEY does
SEED_KEY = "train.seed"


def short_key(key: str, keys: list[str] | tuple[str, ...] = ()) -> str:
    """A searched key's name in tables and legends: its last part (``model.arch`` -> ``arch``),
    the section for a bare ``name`` (``loss.name`` -> ``loss``), the whole key when another
    of ``keys`` would print alike."""
    def short(k: str) -> str:
        parts = k.split(".")
        return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]

    mine = short(key)
    return key if sum(short(k) == mine for k in keys if k != key) else mine


def config_key(params: dict[str, Any]) -> str:
    """One configuration's identity, whatever run of it a trial is."""
    return json.dumps({k: v for k, v in params.items() if k != REPEAT_KEY}, sort_keys=True,
                      default=str)


def runs_key(params: dict[str, Any]) -> str:
    """One configuration's identity across its training runs: :func:`config_key` less
    ``train.seed``, so that a recording's seeds (or a searched seed) are runs of one
    configuration on the leaderboard. Not for the searcher: there a trial at another seed is
    another point of the space."""
    return config_key({k: v for k, v in params.items() if k != SEED_KEY})


def _encode_choices(values: tuple[Any, ...]) -> tuple[list[Any], bool]:
    """Optuna categoricals must be primitives: JSON-encode dicts/lists (e.g. weighted losses)."""
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return list(values), False
    return [json.dumps(v, sort_keys=True) for v in values], True


def decode_value(dist: Distribution, value: Any) -> Any:
    """Undo :func:`_encode_choices` for one sampled value."""
    if dist.kind in ("choice", "grid"):
        choices, encoded = _encode_choices(dist.values)
        # Only Optuna sees encoded strings; random/grid search hands back the raw value
        # (a plain "dice" beside a dict choice is not JSON).
        if encoded and isinstance(value, str) and value in choices:
            return json.loads(value)
    if dist.kind == "int":
        return int(value)
    return value


def condition_met(dist: Distribution, params: dict[str, Any]) -> bool:
    """``when: {key: [values]}``: every named key was sampled and has one of the values."""
    return all(key in params and params[key] in allowed for key, allowed in dist.when.items())


class OptunaDefineByRun:
    """Define-by-run space for ``OptunaSearch``; conditional keys are simply not sampled.

    A module-level class (not a closure) because Tune pickles the searcher with plain pickle
    when it saves experiment state.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        params: dict[str, Any] = {}
        for d in self.space:
            if not condition_met(d, params):
                continue
            if d.kind in ("choice", "grid"):
                choices, _ = _encode_choices(d.values)
                params[d.path] = decode_value(d, trial.suggest_categorical(d.path, choices))
            elif d.kind == "int":
                params[d.path] = trial.suggest_int(d.path, int(d.low or 0), int(d.high or 0))
            else:
                params[d.path] = trial.suggest_float(d.path, float(d.low or 0.0),
                                                     float(d.high or 0.0),
                                                     log=d.kind == "loguniform")
        return None  # Tune reads the sampled values back from trial.params


def enumerate_points(space: SearchSpace, limit: int = 100_000) -> list[dict[str, Any]] | None:
    """Every point of a discrete space as Optuna records its params (choices encoded as in
    :class:`OptunaDefineByRun`, conditions applied in the same order); None when a key is
    continuous or there are more than ``limit`` points."""
    points: list[tuple[dict[str, Any], dict[str, Any]]] = [({}, {})]  # (decoded, as Optuna)
    for d in space:
        if d.kind in ("choice", "grid"):
            encoded, _ = _encode_choices(d.values)
            values = list(zip(d.values, encoded, strict=True))
        elif d.kind == "int":
            values = [(v, v) for v in range(int(d.low or 0), int(d.high or 0) + 1)]
        else:
            return None
        grown = []
        for decoded, recorded in points:
            if not condition_met(d, decoded):
                grown.append((decoded, recorded))
                continue
            grown += [({**decoded, d.path: a}, {**recorded, d.path: b}) for a, b in values]
        points = grown
        if len(points) > limit:
            return None
    return [recorded for _, recorded in points]


def tune_param_space(space: SearchSpace, *, exhaustive_grid: bool) -> dict[str, Any]:
    """Tune domains for the random / grid generators (BasicVariantGenerator).

    ``grid`` keys become ``tune.grid_search`` when ``exhaustive_grid``; ``choice`` keys too, so
    a factorial grid can be written with either. Conditional keys are sampled but dropped by
    :func:`active_params` when their condition does not hold.
    """
    from ray import tune

    out: dict[str, Any] = {}
    for d in space:
        if d.kind in ("choice", "grid"):
            values = list(d.values)
            out[d.path] = tune.grid_search(values) if exhaustive_grid else tune.choice(values)
        elif d.kind == "int":
            out[d.path] = tune.randint(int(d.low or 0), int(d.high or 0) + 1)
        elif d.kind == "loguniform":
            out[d.path] = tune.loguniform(float(d.low or 0), float(d.high or 0))
        else:
            out[d.path] = tune.uniform(float(d.low or 0), float(d.high or 0))
    return out


def active_params(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """Keep only keys of the space whose ``when`` conditions hold, in file order."""
    kept: dict[str, Any] = {}
    for d in space:
        if d.path in params and condition_met(d, kept):
            kept[d.path] = decode_value(d, params[d.path])
    return kept


def trial_config(params: dict[str, Any], config: ExperimentConfig, space: SearchSpace
                 ) -> tuple[ExperimentConfig, dict[str, Any]]:
    """(the trial's validated config, its active sampled params).

    ``params``: what the searcher sampled (Optuna's encoded choices, keys whose ``when``
    does not hold); they are decoded and filtered once here and set on the search's
    validated ``config``. A repeat run of a configuration (``REPEAT_KEY``: its run index)
    trains with ``train.seed`` (the searched one, if searched) + that index.
    """
    active = active_params(space, params)
    run = int(params.get(REPEAT_KEY, 0))
    # a repeat of a trial at a searched seed trains at that seed + its run index
    seed = {SEED_KEY: int(active.get(SEED_KEY, config.train.seed)) + run} if run else {}
    return apply_params(config, {**active, **seed}), active


def budget(space: SearchSpace, num_samples: int, max_epochs: int, algorithm: str) -> dict[str, Any]:
    """Trial count and the epoch budget before any early stopping."""
    trials = num_samples * (_grid_points(space) if algorithm == "grid" else 1)
    return {"trials": int(trials), "max_epochs_per_trial": max_epochs,
            "max_total_epochs": int(trials * max_epochs)}


def _grid_points(space: SearchSpace) -> int:
    n = 1
    for d in space:
        if d.kind in ("choice", "grid"):
            n *= len(d.values)
    return n


def config_space(space: SearchSpace, seed: int | None = None) -> Any:
    """The space as a ``ConfigSpace.ConfigurationSpace`` for BOHB (``search.algorithm: bohb``).

    Choices become categoricals (dicts JSON-encoded as for Optuna, decoded again by
    :class:`BohbSearch`), ranges uniform (``log`` for loguniform) and ``int`` integer
    hyperparameters; ``when: {key: [values]}`` becomes an ``InCondition`` on that key (several
    keys: their conjunction), so BOHB samples a conditional key only where it applies, as
    Optuna does.
    """
    import ConfigSpace as CS

    cs = CS.ConfigurationSpace(seed=seed)
    hps: dict[str, Any] = {}
    by_path = {d.path: d for d in space}
    for d in space:
        if d.kind in ("choice", "grid"):
            hp: Any = CS.CategoricalHyperparameter(d.path, _encode_choices(d.values)[0])
        elif d.kind == "int":
            hp = CS.UniformIntegerHyperparameter(d.path, int(d.low or 0), int(d.high or 0))
        else:
            hp = CS.UniformFloatHyperparameter(d.path, float(d.low or 0.0),
                                               float(d.high or 0.0),
                                               log=d.kind == "loguniform")
        hps[d.path] = hp
        cs.add(hp)
    for d in space:
        conditions = []
        for key, allowed in d.when.items():
            parent = by_path[key]
            encoded, is_json = _encode_choices(parent.values)
            values = [encoded[parent.values.index(v)] if is_json else v for v in allowed
                      if v in parent.values]
            conditions.append(CS.InCondition(hps[d.path], hps[key], values))
        if len(conditions) == 1:
            cs.add(conditions[0])
        elif conditions:
            cs.add(CS.AndConjunction(*conditions))
    return cs


def from_config_space(space: SearchSpace, sampled: dict[str, Any]) -> dict[str, Any]:
    """A configuration BOHB sampled (numpy scalars, JSON-encoded choices) as the plain
    ``{key path: value}`` that trials take."""
    by_path = {d.path: d for d in space}
    out: dict[str, Any] = {}
    for key, value in sampled.items():
        plain = value.item() if hasattr(value, "item") else value
        out[key] = decode_value(by_path[key], plain) if key in by_path else plain
    return out
