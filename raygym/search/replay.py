"""Recorded learning curves: the table, the ground truth it implies, and replayed trials.

A curve table (``raygym record SPACE`` writes them, as does ``bench/record_curves.py``) is a
CSV with one row per (configuration, training seed, epoch): ``config_id``, ``param:<key path>`` columns (the
configuration, as a search space writes its values; a weighted loss as JSON), ``seed``,
``epoch`` (from 1), and the metrics the training loop reports (``val_mean_iou``, ``val_loss``,
``val_iou/<class>``, ``train_loss``, ``lr``, ``seconds`` of wall time for that epoch). Every
run is recorded to the full epoch budget, without early stopping or pruning.

Replaying a configuration at a seed gives the per-epoch results that training would report,
with the training loop's own early stopping (``train.patience`` epochs without improvement of
``train.monitor``, ``val_loss`` by default; the kept epoch's scores as ``best_*``), so a
search driven by them behaves as it would on real training, in a fraction of a second per
trial. A table may be gzipped (``table.csv.gz``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from raygym.errors import ConfigError, DataError
from raygym.train.contract import (
    DIVERGED,
    RUNNING,
    StopReason,
    diverged,
    finished,
    kept_scores,
    monitored_sign,
    rung_scores,
)

if TYPE_CHECKING:
    from raygym.config import ExperimentConfig, SearchConfig
    from raygym.search.space_config import SearchSpace

PARAM_PREFIX = "param:"
# A replayed trial sleeps this fraction of each epoch's recorded ``seconds`` (unset: 0, as
# fast as Tune takes results). An environment variable because Ray's worker processes inherit
# it: bench/bench_scale.py gives each trial a known cost this way, through the real
# ``raygym search --replay`` path.
TIME_SCALE_ENV = "RAYGYM_REPLAY_TIME_SCALE"


def parse_cell(text: str) -> Any:
    """A ``param:`` cell back to its value: numbers and JSON mappings decoded, else the text."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text
    return value if isinstance(value, int | float | dict | list) else text


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@dataclass
class CurveTable:
    """A loaded curve table. ``configs[i]`` is configuration ``i``'s ``{key path: value}``;
    ``curves[(i, seed)]`` its per-epoch columns as float64 arrays of shape (epochs,), shorter
    when the loss became NaN (that run failed there)."""

    path: Path
    param_keys: list[str]
    configs: list[dict[str, Any]]
    seeds: list[int]
    epochs: int
    metrics: list[str]
    curves: dict[tuple[int, int], dict[str, np.ndarray]]

    @classmethod
    def load(cls, path: Path) -> CurveTable:
        import pandas as pd

        path = Path(path)
        if not path.is_file():
            raise DataError("curve table not found", file=path,
                            fix="record one with `raygym record SPACE`, or give its path")
        try:
            frame = pd.read_csv(path, dtype={c: str for c in _header(path)
                                             if c.startswith(PARAM_PREFIX)})
        except Exception as exc:  # noqa: BLE001 - any parse error is the file's fault
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"not a readable CSV curve table ({reason})", file=path,
                            fix="give the curves.csv that `raygym record` wrote") from exc
        needed = {"config_id", "seed", "epoch", "val_loss"}
        param_cols = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
        if missing := sorted(needed - set(frame.columns)) or not param_cols:
            what = ", ".join(missing) if missing else "param:<key> columns"
            raise DataError(f"not a curve table: no {what}", file=path,
                            fix="use a table written by `raygym record`")
        frame = frame.sort_values(["config_id", "seed", "epoch"])
        configs: dict[int, dict[str, Any]] = {}
        for cid, first in frame.groupby("config_id").head(1).set_index("config_id").iterrows():
            configs[int(cid)] = {c.removeprefix(PARAM_PREFIX): parse_cell(first[c])
                                 for c in param_cols}
        if sorted(configs) != list(range(len(configs))):
            missing = sorted(set(range(max(configs) + 1)) - set(configs))
            if min(configs) < 0 or not missing:
                raise DataError("config_id must run 0..N-1", file=path)
            raise DataError(f"config_id must run 0..N-1; configuration(s) {missing[:5]} have "
                            "no rows (trials that failed when the table was recorded)",
                            file=path, fix="record them: raygym record SPACE --resume "
                            "--retry-errored (the line the recording printed)")
        if frame.duplicated(["config_id", "seed", "epoch"]).any():
            raise DataError("an epoch of a run appears twice (rows of one seed written twice)",
                            file=path, fix="record the table again, or drop the repeated rows")
        recorded = _grid_size(path)
        if recorded is not None and recorded != len(configs):
            raise DataError(f"the table holds {len(configs)} of the {recorded} configurations "
                            "of its grid (its card): the others' trials failed when it was "
                            "recorded, and a replay would snap them to a neighbour",
                            file=path, fix="record them: raygym record SPACE --resume "
                            "--retry-errored (the line the recording printed)")
        metrics = [c for c in frame.columns if c not in ("config_id", "seed", "epoch")
                   and not c.startswith(PARAM_PREFIX)]
        curves = {}
        for (cid, seed), group in frame.groupby(["config_id", "seed"]):
            curves[(int(cid), int(seed))] = {m: group[m].to_numpy(dtype=np.float64)
                                             for m in metrics}
        epochs = int(frame["epoch"].max())
        return cls(path=path, param_keys=[c.removeprefix(PARAM_PREFIX) for c in param_cols],
                   configs=[configs[i] for i in range(len(configs))],
                   seeds=sorted(int(s) for s in frame["seed"].unique()), epochs=epochs,
                   metrics=metrics, curves=curves)

    def without_seed(self, seed: int) -> CurveTable:
        """The table with one recorded training seed left out (a fold of seed
        cross-validation: searches replay the rest, the left-out seed judges them)."""
        return dataclasses.replace(
            self, seeds=[s for s in self.seeds if s != seed],
            curves={k: v for k, v in self.curves.items() if k[1] != seed})

    def only_seed(self, seed: int) -> CurveTable:
        """The table with one recorded training seed alone (what a search replays when the
        other seeds judge it, as fresh training noise judges a real search)."""
        return dataclasses.replace(
            self, seeds=[seed], curves={k: v for k, v in self.curves.items() if k[1] == seed})

    def values(self, key: str) -> list[Any]:
        """The distinct values of ``key`` in the table, in first-seen order."""
        out: list[Any] = []
        for cfg in self.configs:
            if not any(_same(cfg[key], v) for v in out):
                out.append(cfg[key])
        return out

    def match(self, params: dict[str, Any]) -> int:
        """The configuration a trial's sampled ``{key path: value}`` replays.

        Keys of the table that the trial did not sample must not vary in the table. Numbers
        snap to the nearest recorded value (on a log scale when all are positive), so a
        continuous range can be rehearsed on a recorded grid; other values must be recorded.
        """
        want: dict[str, Any] = {}
        for key in self.param_keys:
            recorded = self.values(key)
            if key not in params:
                if len(recorded) > 1:
                    raise ConfigError(f"the table varies {key} ({len(recorded)} values) but the "
                                      "search space does not", file=self.path, key=key,
                                      fix="search over it, or record a table without it")
                want[key] = recorded[0]
                continue
            want[key] = _nearest(params[key], recorded, key, self.path)
        for cid, cfg in enumerate(self.configs):
            if all(_same(cfg[k], want[k]) for k in self.param_keys):
                return cid
        raise ConfigError(f"the table has no run of {want}", file=self.path,
                          fix="search only over values the table recorded")

    @property
    def classes(self) -> list[str]:
        """The classes whose IoU the table recorded (its ``val_iou/<class>`` columns)."""
        return [m.removeprefix("val_iou/") for m in self.metrics if m.startswith("val_iou/")]

    def check_space(self, space: Any, max_epochs: int, metric: str,
                    monitor: str = "val_loss", classes: list[str] | None = None) -> None:
        """Refuse (one line, naming the key) a space or config this table cannot replay;
        ``classes``: the config's ``data.classes``, which must be the recorded ones."""
        if classes is not None and self.classes and list(classes) != self.classes:
            raise ConfigError(f"{list(classes)}, but the table recorded the classes "
                              f"{self.classes}: their scores would be missing",
                              key="data.classes", file=self.path,
                              fix=f"set data.classes: [{', '.join(self.classes)}]")
        for d in space:
            if d.path not in self.param_keys:
                raise ConfigError(f"the curve table has no column param:{d.path}; it recorded "
                                  + ", ".join(self.param_keys), key=d.path, file=self.path,
                                  fix="search only over the table's keys")
            for value in d.candidates():
                _nearest(value, self.values(d.path), d.path, self.path)
        missing = [k for k in self.param_keys if k not in space.paths()
                   and len(self.values(k)) > 1]
        if missing:
            raise ConfigError(f"the table varies {missing[0]} but the search space does not",
                              file=self.path, key=missing[0],
                              fix=f"add {missing[0]} to the space as a choice")
        if max_epochs > self.epochs:
            raise ConfigError(f"{max_epochs} epochs per trial, but the table recorded "
                              f"{self.epochs}", key="train.max_epochs", file=self.path,
                              fix=f"set train.max_epochs <= {self.epochs}")
        for key, column in (("search.metric", metric), ("train.monitor", monitor)):
            if column not in self.metrics:
                raise ConfigError(f"the table has no column {column}", key=key,
                                  file=self.path, fix="use one of " + ", ".join(
                                      m for m in self.metrics if m.startswith("val_")))


def _grid_size(path: Path) -> int | None:
    """Configurations of the grid the table's card (``<table>.card.json``, or ``X.card.json``
    beside ``X.csv.gz``) says was recorded; None without a readable card."""
    name = path.name.removesuffix(".gz").removesuffix(".csv")
    try:
        grid = json.loads((path.parent / f"{name}.card.json").read_text()).get("grid")
        return math.prod(len(v) for v in grid.values()) if isinstance(grid, dict) else None
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _header(path: Path) -> list[str]:
    import pandas as pd

    # pandas reads the header of a compressed table too (table.csv.gz, by its suffix)
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def _nearest(value: Any, recorded: list[Any], key: str, path: Path) -> Any:
    numbers = [v for v in recorded if isinstance(v, int | float)]
    if isinstance(value, int | float) and not isinstance(value, bool) and numbers:
        if all(v > 0 for v in numbers) and value > 0:
            return min(numbers, key=lambda v: abs(math.log(v) - math.log(value)))
        return min(numbers, key=lambda v: abs(v - value))
    for v in recorded:
        if _same(v, value):
            return v
    raise ConfigError(f"value {value!r} was not recorded in the table (it has "
                      f"{', '.join(map(str, recorded))})", key=key, file=path,
                      fix="search only over values the table recorded")


@functools.lru_cache(maxsize=4)
def load_table(path: str) -> CurveTable:
    """One parsed copy per process (trials of a search share it)."""
    return CurveTable.load(Path(path))


# ------------------------------------------------------------------------------ ground truth
def stopping_steps(val_loss: np.ndarray, patience: int, max_epochs: int,
                   watched: np.ndarray | None = None, sign: float = 1.0
                   ) -> Iterator[tuple[int, int, StopReason | Literal[""]]]:
    """The training loop's early stopping, one ``(epoch, kept epoch, stop reason)`` per epoch
    run (epochs from 1; kept epoch 0: none yet; reason ``""`` while training goes on).

    An epoch improves when ``sign * watched`` (``train.monitor``'s curve; ``val_loss`` when
    None; ``sign`` from :func:`~raygym.train.contract.monitored_sign`) is below the best so
    far; training stops after ``patience`` epochs without improvement, at ``max_epochs``, or
    at a NaN loss (reason ``nan``, that epoch's kept epoch the one before).
    """
    watched = val_loss if watched is None else watched
    best, best_epoch, bad = math.inf, 0, 0
    for i in range(min(max_epochs, len(val_loss))):
        if float(val_loss[i]) != float(val_loss[i]):  # NaN: the loop stops here
            yield i + 1, best_epoch, DIVERGED
            return
        if sign * float(watched[i]) < best - 1e-12:  # a NaN score never improves
            best, best_epoch, bad = sign * float(watched[i]), i + 1, 0
        else:
            bad += 1
        reason: StopReason | Literal[""] = ("early-stopped" if bad >= patience else
                                            "completed" if i + 1 >= max_epochs else RUNNING)
        yield i + 1, best_epoch, reason
        if bad >= patience:
            return


def early_stopping(val_loss: np.ndarray, patience: int, max_epochs: int,
                   watched: np.ndarray | None = None, sign: float = 1.0) -> tuple[int, int]:
    """(epochs run, kept epoch) under :func:`stopping_steps` (kept epoch 0: none, the run
    failed at its first epoch)."""
    last = (0, 0)
    for epoch, kept, _ in stopping_steps(val_loss, patience, max_epochs, watched, sign):
        last = (epoch, kept)
    return last


def curve_stopping(curve: dict[str, np.ndarray], patience: int, max_epochs: int,
                   monitor: str = "val_loss") -> tuple[int, int]:
    """:func:`early_stopping` of one recorded run, watching ``monitor``."""
    return early_stopping(curve["val_loss"], patience, max_epochs, curve[monitor],
                          monitored_sign(monitor))


@dataclass
class GroundTruth:
    """What the grid of a table yields under early stopping, per configuration (shape (N,)).

    ``scores``: the metric at the kept epoch, averaged over training seeds (NaN: every seed
    failed); ``epochs``: epochs early stopping runs, averaged over seeds; ``ranks``: 1 = best;
    ``best``: the grid's best score; ``grid_epochs``: the grid's cost (sum of ``epochs``);
    ``per_seed``: shape (N, S), each training seed's kept score (NaN: failed or missing).
    """

    scores: np.ndarray
    epochs: np.ndarray
    ranks: np.ndarray
    best: float
    grid_epochs: float
    mode: str
    per_seed: np.ndarray | None = None

    def reached(self, config_id: int, tolerance: float = 0.01) -> bool:
        """Configuration's score within ``tolerance`` of the grid's best."""
        s = self.scores[config_id]
        if s != s:
            return False
        return s >= self.best - tolerance if self.mode == "max" else s <= self.best + tolerance


def ground_truth(table: CurveTable, *, patience: int, max_epochs: int, metric: str = "val_mean_iou",
                 mode: str = "max", monitor: str = "val_loss") -> GroundTruth:
    n = len(table.configs)
    scores, epochs = np.full(n, np.nan), np.zeros(n)
    per_seed = np.full((n, len(table.seeds)), np.nan)
    for cid in range(n):
        ran = []
        for j, seed in enumerate(table.seeds):
            curve = table.curves.get((cid, seed))
            if curve is None:
                continue
            run, best_epoch = curve_stopping(curve, patience, max_epochs, monitor)
            ran.append(run)
            per_seed[cid, j] = curve[metric][best_epoch - 1] if best_epoch else np.nan
        epochs[cid] = float(np.mean(ran)) if ran else 0.0
        kept_arr = per_seed[cid]
        scores[cid] = float(np.nanmean(kept_arr)) if np.isfinite(kept_arr).any() else np.nan
    sign = 1.0 if mode == "max" else -1.0
    order = np.argsort(np.where(np.isnan(scores), np.inf, -sign * scores), kind="stable")
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(1, n + 1)
    best = float(scores[order[0]])
    return GroundTruth(scores=scores, epochs=epochs, ranks=ranks, best=best,
                       grid_epochs=float(epochs.sum()), mode=mode, per_seed=per_seed)


def config_truth(config: ExperimentConfig, table: CurveTable) -> GroundTruth:
    """The table's ground truth under a search config's early stopping (``train.patience``,
    ``max_epochs``, ``monitor``) and metric, as its searches are judged."""
    s, t = config.search, config.train
    return ground_truth(table, patience=t.patience, max_epochs=t.max_epochs, metric=s.metric,
                        mode=s.mode, monitor=t.monitor)


# ----------------------------------------------------------------------------------- replay
SeedDraw = Literal["shared", "per_trial"]


def replay_seed_index(n_seeds: int, config_id: int, search_seed: int, run: int = 0,
                      draw: SeedDraw = "shared") -> int:
    """Which of a table's ``n_seeds`` recorded seeds run ``run`` of a configuration replays in
    the search seeded ``search_seed``: the ``run``-th of a permutation of the seeds drawn per
    search seed, so repeats replay different seeds and each search seed draws its own.

    ``shared`` (raygym's own training): one permutation for every configuration, since a
    search trains every trial with ``train.seed`` (+ the repeat's index), so all first runs
    share a seed's data order and, per architecture and width, its initial weights; a table
    records exactly those runs. ``per_trial``: a permutation per configuration too, for
    trainings that draw a seed per run (e.g. Gym's unseeded Keras grid)."""
    key = (search_seed % 2**32,) if draw == "shared" else (search_seed % 2**32, config_id)
    return int(np.random.default_rng(key).permutation(n_seeds)[run % n_seeds])


def replay_seed(table: CurveTable, config_id: int, search_seed: int, run: int = 0,
                draw: SeedDraw = "shared") -> int:
    """The training seed whose curve run ``run`` of a configuration replays
    (:func:`replay_seed_index`)."""
    return table.seeds[replay_seed_index(len(table.seeds), config_id, search_seed, run, draw)]


def replay_results(table: CurveTable, config_id: int, seed: int, *, patience: int,
                   max_epochs: int, metric: str, search: SearchConfig | None = None,
                   monitor: str = "val_loss") -> Iterator[dict[str, Any]]:
    """The per-epoch results training would report (the loop's keys and early stopping on
    ``monitor``, :mod:`raygym.train.contract`); with ``search`` also the value its scheduler
    judges."""
    curve = table.curves[(config_id, seed)]
    best_loss = math.inf
    best: dict[str, float] = {}  # the kept epoch's validation scores
    for epoch, kept, stop in stopping_steps(curve["val_loss"], patience, max_epochs,
                                            curve[monitor], monitored_sign(monitor)):
        if stop == DIVERGED:
            yield {"epoch": epoch, "training_iteration": epoch, "stop_reason": DIVERGED,
                   "val_loss": math.nan, "train_loss": math.nan}
            return
        row = {m: float(curve[m][epoch - 1]) for m in table.metrics}
        if kept == epoch:
            best_loss, best = row["val_loss"], {k: v for k, v in row.items()
                                                if k.startswith("val_")}
        out = {k: v for k, v in row.items() if k != "seconds"}
        out.update(epoch=epoch, training_iteration=epoch, epoch_seconds=row.get("seconds", 0.0),
                   best_epoch=kept, best_val_loss=best_loss, stop_reason=stop,
                   replay_config_id=config_id, replay_seed=seed)
        out.update(kept_scores(best, metric))
        if search is not None:
            out.update(rung_scores(search, [float(v) for v in curve[metric][:epoch]]))
        yield out


def replay_trial(params: dict[str, Any], *, config: ExperimentConfig, space: SearchSpace,
                 table_path: str, time_scale: float | None = None) -> None:
    """Tune function for ``raygym search SPACE --replay TABLE``: reports a recorded curve.

    ``time_scale`` > 0 sleeps that fraction of each epoch's recorded seconds, so trials
    finish in the order they would have (0: as fast as Tune takes results; None: from
    ``$RAYGYM_REPLAY_TIME_SCALE``, else 0).
    """
    import ray
    from ray import tune

    from raygym.search.space import REPEAT_KEY, trial_config
    from raygym.train.contract import NonFiniteLossError

    if time_scale is None:
        time_scale = float(os.environ.get(TIME_SCALE_ENV) or 0.0)
    config, active = trial_config(params, config, space)
    node_id = ray.get_runtime_context().get_node_id()
    table = load_table(table_path)
    cid = table.match(active)
    # search.seed, not train.seed, draws the recorded seed all first runs share, so that
    # replays of one space with different search seeds see different training noise
    seed = replay_seed(table, cid, config.search.seed, int(params.get(REPEAT_KEY, 0)))
    # BOHB's HyperBand pauses trials at its rungs and resumes some later: a replayed trial
    # then checkpoints its epoch, as a training trial checkpoints its weights
    pausing = config.search.algorithm == "bohb"
    checkpoint = tune.get_checkpoint() if pausing else None
    done_epochs = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            done_epochs = int(json.loads((Path(folder) / "replay.json").read_text())["epoch"])
    for result in replay_results(table, cid, seed, patience=config.train.patience,
                                 max_epochs=config.train.max_epochs,
                                 metric=config.search.metric, search=config.search,
                                 monitor=config.train.monitor):
        if result["epoch"] <= done_epochs:
            continue
        if diverged(result):
            raise NonFiniteLossError(f"the recorded run (config {cid}, seed {seed}) became NaN "
                                     f"at epoch {result['epoch']}")
        if time_scale > 0:
            time.sleep(result["epoch_seconds"] * time_scale)
        if finished(result):
            result["done"] = True
        # node_id as training reports it: the leaderboard shows where each trial ran
        report = {**result, "replay_wall": time.time(), "node_id": node_id}
        if not pausing:
            tune.report(report)
            continue
        import tempfile

        with tempfile.TemporaryDirectory(prefix="raygym-replay-") as tmp:
            (Path(tmp) / "replay.json").write_text(json.dumps({"epoch": result["epoch"]}))
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(tmp))


def replay_verdict(table: CurveTable, config: Any, grid: Any) -> dict[str, Any]:
    """How a replayed search did against the table's grid (written to ``search.json``).

    ``grid``: Tune's ``ResultGrid``; each trial's per-epoch results carry ``replay_wall``
    (when they were reported), ``replay_config_id`` and ``best_<metric>``, which give the
    order in which the search spent its epochs and what it would have handed back after each.
    """
    from raygym.search.noise import table_noise

    s = config.search
    truth = config_truth(config, table)
    records = []
    for result in grid:
        frame = result.metrics_dataframe
        if frame is None or "replay_wall" not in frame:
            continue
        trial = Path(result.path).name
        for row in frame.to_dict("records"):
            records.append((row["replay_wall"], trial, int(row["replay_config_id"]),
                            row.get(f"best_{s.metric}", math.nan)))
    records.sort(key=lambda r: r[0])
    sign = 1.0 if s.mode == "max" else -1.0
    runs: dict[int, dict[str, float]] = {}  # ranked by their mean, as the leaderboard
    chosen, to_best = -1, None
    for spent, (_, trial, cid, value) in enumerate(records, start=1):
        if value == value:
            runs.setdefault(cid, {})[trial] = sign * value
            means = {c: sum(v.values()) / len(v) for c, v in runs.items()}
            chosen = max(means, key=lambda c: means[c])
        if to_best is None and chosen >= 0 and truth.reached(chosen):
            to_best = spent
    return {
        "table": str(table.path), "configurations": len(table.configs),
        "grid_best": truth.best, "grid_epochs": truth.grid_epochs, "epochs": len(records),
        "epochs_to_best": to_best,
        "found": ({"params": table.configs[chosen], "rank": int(truth.ranks[chosen]),
                   "score": float(truth.scores[chosen])} if chosen >= 0 else None),
        "ranks": [{"params": cfg, "score": float(truth.scores[i]), "rank": int(truth.ranks[i])}
                  for i, cfg in enumerate(table.configs)],
        "noise": table_noise(truth),
    }
