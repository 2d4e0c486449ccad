"""BOHB for ``search.algorithm: bohb``: Ray Tune's ``TuneBOHB`` + ``HyperBandForBOHB``.

BOHB (Falkner et al. 2018, hpbandster) samples configurations from kernel density models fitted
on the results of the largest budget (epochs) with enough of them, and runs them in HyperBand
brackets: each bracket starts n trials at r epochs, pauses each at its rung, and resumes the
best 1/eta of them for eta times as long. Needs the ``bohb`` extra (``pip install
'raygym[bohb]'``: hpbandster, ConfigSpace; hpbandster ships as a source archive and its
dependency netifaces is a C extension, so installing it needs a C compiler).

What raygym adds to Ray's classes (nothing private of Ray's is touched):
- the space is raygym's own, conditions included (:func:`raygym.search.space.config_space`),
  and a sampled configuration comes back as plain Python values (numpy scalars and
  JSON-encoded choices decoded), as every other searcher hands them to a trial;
- on a discrete space no configuration is suggested twice (hpbandster's density model often
  lands on one it ran: without this, 72 trials on the 72-point tables of ``bench/curves``
  ran only 27-30 distinct configurations); when the model keeps repeating, an untried point
  is drawn at random, and an exhausted space ends the search;
- the model learns from what the scheduler judges at each rung (``search.judged``).

Two properties of Ray's classes that decide how BOHB does here (``bench/RESULTS.md``,
bench_simulate): ``TuneBOHB`` learns only from results at a rung's budget (a trial that ends
by its own early stopping teaches it nothing), and ``HyperBandForBOHB`` counts a bracket as
full by its *live* trials, so when trials early-stop, the last bracket (run to ``max_t``)
never fills and takes every later trial unpruned. ``repeat_top`` (a feature of raygym's
Optuna searcher) does not apply.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ray.tune.search.bohb import TuneBOHB  # imports without hpbandster (BOHB is then None)

from raygym.errors import ConfigError
from raygym.search.space import config_key, config_space, from_config_space
from raygym.search.space_config import SearchSpace


def bohb_installed() -> bool:
    """hpbandster and ConfigSpace can be imported (checked without importing them)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("hpbandster", "ConfigSpace"))
    except ValueError:  # a module set to None in sys.modules: unimportable
        return False


def require_bohb() -> None:
    if not bohb_installed():
        raise ConfigError("BOHB needs hpbandster and ConfigSpace, which are not installed",
                          key="search.algorithm",
                          fix="pip install 'raygym[bohb]', or use algorithm: optuna")


# hpbandster samples its next configuration this many times before raygym takes an untried one
MAX_ASKS = 10


class BohbSearch(TuneBOHB):
    """TuneBOHB whose suggestions are plain ``{key path: value}`` and, on a discrete space,
    never a configuration already asked for (see module docstring).

    Module-level (not a closure): Tune pickles the searcher with the experiment state."""

    def __init__(self, space: SearchSpace, **kwargs: Any) -> None:
        require_bohb()
        import logging

        # hpbandster logs every candidate whose expected improvement is not finite (a
        # categorical value its "bad" density never saw: expected on small discrete spaces)
        logging.getLogger("hpbandster").setLevel(logging.ERROR)
        self.raygym_space = space
        self.asked: set[str] = set()  # configuration keys of every trial suggested
        import warnings

        with warnings.catch_warnings():  # hpbandster on ConfigSpace >= 1.0 (see suggest)
            warnings.simplefilter("ignore", DeprecationWarning)
            super().__init__(config_space(space, kwargs.get("seed")), **kwargs)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        import warnings

        with warnings.catch_warnings():
            # statsmodels' KDE, through pandas: a FutureWarning about numpy's generator;
            # hpbandster calls ConfigSpace methods deprecated since ConfigSpace 1.0
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        import warnings

        with warnings.catch_warnings():  # hpbandster refits its KDE here (as above)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            super().on_trial_result(trial_id, result)

    def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        import numpy as np
        from ray.tune.search import Searcher

        from raygym.search.space import decode_value, enumerate_points

        params: dict[str, Any] | None = None
        for _ in range(MAX_ASKS):
            config = super().suggest(trial_id)
            if config is None:
                return None
            params = from_config_space(self.raygym_space, config)
            if config_key(params) not in self.asked:
                break
            # hpbandster's KDE often lands on a configuration it ran: ask again
            self.trial_to_params.pop(trial_id, None)
            self.running.discard(trial_id)
            params = None
        if params is None:
            points = enumerate_points(self.raygym_space)
            if points is None:  # a continuous space: its repeats are not worth refusing
                params = from_config_space(self.raygym_space, config)
                self.trial_to_params[trial_id] = config
                self.running.add(trial_id)
            else:
                by_path = {d.path: d for d in self.raygym_space}
                untried = [p for p in points if config_key(
                    {k: decode_value(by_path[k], v) for k, v in p.items()}) not in self.asked]
                if not untried:
                    return Searcher.FINISHED
                point = untried[np.random.randint(len(untried))]  # hpbandster's generator
                self.trial_to_params[trial_id] = dict(point)
                self.running.add(trial_id)
                params = from_config_space(self.raygym_space, point)
        self.asked.add(config_key(params))
        return params
