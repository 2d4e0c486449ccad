"""``raygym search SPACE``: Ray Tune + Optuna (TPE) + ASHA; leaderboard and best models out.

Outputs in ``results/<experiment>/``: ``search.json`` (space, budget, summary),
``leaderboard.csv``/``.md``, ``best/rank<N>_<trial>/`` (model artifacts), ``optuna.journal``
(the study, Optuna's journal file: ``optuna-dashboard .../optuna.journal``) and ``ray/<experiment>/`` (Tune's trial
folders with ``result.json`` and TensorBoard event files) unless ``search.storage_path`` puts
Tune's files elsewhere (a shared folder or ``s3://``).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from raygym.atomic import write_text_atomic
from raygym.config import ExperimentConfig
from raygym.config.run import duration_text
from raygym.errors import EXIT_INTERRUPTED, ConfigError, DataError, RaygymError, RunFailedError
from raygym.search.noise import noise_line
from raygym.search.resume import (
    SEARCH_JSON,
    cannot_grow,
    check_resume,
    read_search_json,
    resume_fingerprint,
)
from raygym.search.space_config import SearchSpace
from raygym.search.time_budget import TimeBudget, check_time_budget
from raygym.train.contract import LOWER_IS_BETTER, metric_names


def results_dir(config: ExperimentConfig) -> Path:
    return (config.search.results_dir / config.name).resolve()


def search_config(config: ExperimentConfig, *, smoke_test: bool = False,
                  replay: bool = False) -> ExperimentConfig:
    """The config ``raygym search`` runs: a smoke test's (:func:`smoke_config`, named
    ``<name>-smoke``), a rehearsal's (``--replay``) named ``<name>-replay``, so that neither
    occupies the real search's folder (:func:`results_dir`)."""
    if smoke_test:
        config = smoke_config(config)
    return config.model_copy(update={"name": f"{config.name}-replay"}) if replay else config


def smoke_config(config: ExperimentConfig) -> ExperimentConfig:
    """Same code path, tiny sizes: 4 trials, 3 epochs, ~64 px, 1 augmented copy."""
    raw = config.to_yaml_dict()
    prepared = Path(raw["data"]["prepared"])
    raw["name"] = f"{config.name}-smoke"
    # ~64 px on the short side, keeping the aspect ratio, in multiples of 32 (every model);
    # not for chips: smaller chips of the same scenes would be more of them, not fewer pixels
    h, w = config.data.target_size
    scale = 64 / min(h, w)
    if config.data.chips is None:
        raw["data"]["target_size"] = [max(32, -(-round(h * scale) // 32) * 32),
                                      max(32, -(-round(w * scale) // 32) * 32)]
    raw["data"]["prepared"] = str(prepared.with_name(prepared.name + "-smoke"))
    raw["data"]["augment"]["copies"] = min(1, raw["data"]["augment"]["copies"])
    raw["train"]["max_epochs"] = min(3, raw["train"]["max_epochs"])
    raw["train"]["rampup_epochs"] = min(1, raw["train"]["rampup_epochs"])
    raw["search"]["num_samples"] = min(4, raw["search"]["num_samples"])
    raw["search"]["grace_period"] = 2  # the first epoch after the 1-epoch warm-up
    from raygym.config import validate_experiment

    return validate_experiment(raw, "<smoke-test>")


# what a search writes in its results folder (raygym report / evaluate add the last ones)
_RESULTS_ENTRIES = frozenset({SEARCH_JSON, "leaderboard.csv", "leaderboard.md", "best", "ray",
                              "optuna.journal", "optuna.journal.lock", "report", "report.html"})
# raygym's own temp / moved-aside names (raygym.atomic), and evaluate --top-k's tables and
# --ensemble's reports
_RESULTS_PATTERN = re.compile(r"\..+\.(tmp|old)-\d+.*|evaluation_[\w.-]+\.csv"
                              r"|evaluation_[\w.-]+_top\d+_ensemble")


def _scratch_results_kept(out: Path) -> list[str] | None:
    """Whether ``out`` holds scratch results (a ``--smoke-test`` search's or a ``--replay``
    rehearsal's) that a new one may replace: None when it does not (its ``search.json`` does
    not say so), else what raygym did not write there and would lose (empty: nothing, it may
    be replaced): entries a search never writes, or a ``best/`` holding more than exported
    models."""
    from raygym.inference.export import is_best_dir

    try:
        saved = read_search_json(out)
    except RaygymError:
        return None
    if saved.get("smoke_test") is not True and not saved.get("replay_table"):
        return None
    kept = sorted(p.name for p in out.iterdir()
                  if not (p.name in _RESULTS_ENTRIES or _RESULTS_PATTERN.fullmatch(p.name)))
    if (out / "best").exists() and not is_best_dir(out / "best"):
        kept.append("best/ (holds more than exported models)")
    return kept


def check_metric(config: ExperimentConfig, file: str | Path | None = None) -> None:
    """Refuse a ``search.metric`` that training never reports, or a ``search.mode`` that
    would optimise it the wrong way (one line naming ``file`` and the key)."""
    valid = metric_names(config.data.classes)
    if config.search.metric not in valid:
        import difflib

        hint = difflib.get_close_matches(config.search.metric, valid, n=1)
        did = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"training never reports '{config.search.metric}'{did}; valid: "
                          + ", ".join(valid), file=file, key="search.metric")
    lower_better = config.search.metric in LOWER_IS_BETTER
    if lower_better != (config.search.mode == "min"):
        want = "min" if lower_better else "max"
        raise ConfigError(f"mode '{config.search.mode}' would optimise "
                          f"{config.search.metric} the wrong way", file=file, key="search.mode",
                          fix=f"use mode: {want}")


def check_space(config: ExperimentConfig, space: SearchSpace, file: str) -> None:
    if ("repeat_top" in config.search.model_fields_set and config.search.repeat_top
            and (config.search.algorithm != "optuna" or config.search.scheduler == "pbt")):
        raise ConfigError("repeats of the leading configurations come from raygym's Optuna "
                          "searcher", key="search.repeat_top", file=file,
                          fix="use algorithm: optuna (not with PBT), or repeat_top: 0")
    if not space:
        raise ConfigError("the search space is empty: no key is a distribution", file=file,
                          fix="make at least one value a distribution, e.g. "
                          "`filters: {choice: [4, 8]}`")
    if config.train.init_weights is not None:
        from raygym.train.init_weights import SHAPE_FREE_PARAMS

        shaped = [d.path for d in space if d.path.startswith("model.")
                  and d.path.removeprefix("model.") not in SHAPE_FREE_PARAMS]
        if shaped:
            raise ConfigError("cannot vary with train.init_weights: it changes the network's "
                              "layers, and every trial starts from that one network",
                              key=shaped[0], file=file,
                              fix=f"give {shaped[0]} the starting model's value, or remove "
                              "train.init_weights")
    if config.search.scheduler == "pbt":
        bad = [d.path for d in space if not d.path.startswith("train.")
               or d.kind not in ("uniform", "loguniform")]
        if config.resources.workers_per_trial > 1:
            raise ConfigError("PBT needs Tune checkpoints, which multi-worker trials do not "
                              "hand to Tune (it would silently do nothing)",
                              key="search.scheduler", fix="use asha, or workers_per_trial: 1")
        if bad:
            raise ConfigError(f"PBT can only mutate continuous train.* keys; {bad[0]} would "
                              "change the network under a restored checkpoint",
                              key="search.scheduler", fix="use asha or median")


def describe_space(config: ExperimentConfig, space: SearchSpace, console: Console) -> None:
    from raygym.search.space import budget

    s = config.search
    table = Table(title=f"search space of {config.name}")
    table.add_column("key")
    table.add_column("distribution")
    for d in space:
        table.add_row(d.path, d.describe())
    console.print(table)
    b = budget(space, s.num_samples, config.train.max_epochs, s.algorithm)
    console.print(
        f"algorithm {'random (PBT)' if s.scheduler == 'pbt' else s.algorithm}, "
        f"scheduler {s.scheduler} (grace "
        + (f"learnt from the first {s.grace_trials} trials" if s.grace_period == "auto"
           else f"{s.grace_period}")
        + (f", reduction {s.reduction_factor:g}" if s.scheduler in ("asha", "patient") else "")
        + f"), metric {s.metric} ({s.mode})\n"
        f"budget: {b['trials']} trials x up to {b['max_epochs_per_trial']} epochs = at most "
        f"{b['max_total_epochs']} epochs; {s.max_concurrent} concurrent; per trial "
        f"{config.resources.workers_per_trial} worker(s) x {config.resources.cpus_per_worker:g} "
        f"CPU" + (f" + {config.resources.gpus_per_worker:g} GPU"
                  if config.resources.gpus_per_worker else ""))
    if (text := space_size_note(config, space)) is not None:
        console.print(text)
    for text in scheduler_warnings(config, space):
        console.print(f"[yellow]note:[/] {text}")


def _starting_weights_line(config: ExperimentConfig) -> str:
    """A dry run's word on ``train.init_weights``: checked against the prepared dataset where
    it is on disk (a one-line error if they do not fit), else named."""
    from raygym.data.dataset import read_card
    from raygym.train.init_weights import check_init_weights

    if (config.data.prepared / "card.json").exists():
        return str(check_init_weights(config, read_card(config.data.prepared)))
    return (f"trials start from the weights of {config.train.init_weights} (checked against "
            "the dataset once it is prepared)")


def space_size_note(config: ExperimentConfig, space: SearchSpace) -> str | None:
    """What ends a TPE search of a discrete space smaller than ``num_samples``: the searcher
    trains no configuration twice but for the leaders' reruns, so it runs out first."""
    from raygym.search.space import enumerate_points

    s = config.search
    if s.algorithm != "optuna" or s.scheduler == "pbt":
        return None
    points = enumerate_points(space, limit=s.num_samples)
    if points is None or len(points) >= s.num_samples:
        return None
    reruns = f" (the best {s.repeat_top} up to {s.repeat_runs} runs each)" if s.repeat_top else ""
    return (f"the space holds {len(points)} configurations: the search ends once each has "
            f"trained{reruns}, which may be before search.num_samples {s.num_samples}")


def scheduler_warnings(config: ExperimentConfig, space: SearchSpace) -> list[str]:
    """Settings that make the early-stopping scheduler judge trials on noise."""
    s, t = config.search, config.train
    rampup_searched = any(d.path == "train.rampup_epochs" for d in space)
    longest = max([int(v) for d in space if d.path == "train.max_epochs"
                   for v in d.candidates()] or [t.max_epochs])
    if (s.scheduler in ("asha", "median", "patient") and isinstance(s.grace_period, int)
            and s.grace_period >= longest):
        return [f"search.grace_period {s.grace_period} >= train.max_epochs {longest}: the "
                f"{s.scheduler} scheduler judges no trial before it ends, so it stops none "
                "early (fix: a grace_period below max_epochs, or scheduler: none)"]
    if (s.scheduler in ("asha", "median") and isinstance(s.grace_period, int)
            and t.lr_schedule in ("gym", "cosine")
            and not rampup_searched and t.rampup_epochs and s.grace_period <= t.rampup_epochs
            and s.grace_period < t.max_epochs):
        return [f"search.grace_period {s.grace_period} <= train.rampup_epochs "
                f"{t.rampup_epochs}: the scheduler stops trials while their learning rate is "
                "still ramping up, when scores say little about the final model (see "
                "bench/RESULTS.md, bench_simulate); consider grace_period "
                f"{t.rampup_epochs + 1} (the default) or a shorter warm-up"]
    if (s.grace_period == "auto" and s.scheduler in ("asha", "median", "patient")
            and s.grace_trials >= s.num_samples):
        return [f"search.grace_period auto learns from the first {s.grace_trials} trials "
                f"(grace_trials), but the search runs {s.num_samples}: no trial will be "
                "stopped early (fix: fewer grace_trials, or more num_samples)"]
    return []


def _ensure_dataset(config: ExperimentConfig, space: SearchSpace, console: Console) -> None:
    """Prepare the dataset on first use, so the main job is one command, then check it as
    ``raygym train`` does (settings, val rows, every batch size the space can sample)."""
    from raygym.data.prepare import prepare_if_missing
    from raygym.train.run import check_dataset

    prepare_if_missing(config, log=console.print)
    batch = next((d for d in space if d.path == "train.batch_size"), None)
    dataset = check_dataset(config, [int(b) for b in batch.candidates()] if batch else ())
    from raygym.train.init_weights import check_init_weights

    if starting := check_init_weights(config, dataset.card):
        console.print(starting)


def search_experiment(config: ExperimentConfig, space: SearchSpace, *, space_file: Path,
                      dry_run: bool = False, resume: bool = False, retry_errored: bool = False,
                      smoke_test: bool = False, replay: Path | None = None,
                      searches: int | None = None, console: Console | None = None,
                      on_grid: Callable[[Any], None] | None = None,
                      command: str | None = None) -> int:
    """Run (or resume) the search; returns the CLI exit code.

    ``replay``: a recorded curve table; trials replay its learning curves instead of
    training (a rehearsal of the search settings: no data, no models exported).
    ``searches``: with ``replay``, that many searches in simulated time instead of one through
    Ray Tune, beside raygym's defaults, random search and the grid
    (:mod:`raygym.search.rehearse`; nothing is written).
    ``on_grid``: called with Tune's ``ResultGrid`` once the search is written out
    (``raygym record`` makes its table from it).
    ``command``: the command line that ran it (the CLI's, ``--set`` and all), for the line
    that says how to go on after a Ctrl-C; default ``raygym search SPACE``.
    """
    console = console or Console()
    config = search_config(config, smoke_test=smoke_test, replay=replay is not None)
    check_space(config, space, str(space_file))
    table = None
    if replay is not None:
        table = replay_table(config, space, replay)
        if searches is not None:
            return _rehearse(config, space, table, searches, resume=resume, dry_run=dry_run,
                             console=console)
    else:
        if searches is not None:
            raise ConfigError("--searches rehearses on a recorded table",
                              fix="add --replay TABLE (a table from `raygym record`)")
        check_metric(config, space_file)
    check_time_budget(config, space_file)
    out = results_dir(config)
    saved: dict[str, Any] = {}
    growth = None
    if resume:
        saved, growth = check_resume(config, space, out, table)
    if dry_run:
        describe_space(config, space, console)
        if growth is not None:
            console.print(f"would go on: {growth.line()}")
        if config.search.time_budget is not None:
            console.print(f"would stop after {duration_text(config.search.time_budget)} "
                          "(search.time_budget); --resume would go on from there")
        if table is None and config.train.init_weights is not None:
            console.print(_starting_weights_line(config))
        console.print(f"results would go to {out}")
        return 0
    time_budget = (TimeBudget(config.search.time_budget)  # it counts from here
                   if config.search.time_budget is not None else None)
    # a smoke test's or a rehearsal's results are scratch: running it again replaces them
    # (once the new one has passed every check below)
    scratch = "smoke test" if smoke_test else "rehearsal" if table is not None else None
    kept = (_scratch_results_kept(out) if not resume and scratch
            and (out / SEARCH_JSON).exists() else None)
    replace_scratch = kept == []
    if kept:
        raise DataError(f"the last {scratch}'s results hold what raygym did not write there "
                        f"({', '.join(kept[:3])}{', ...' if len(kept) > 3 else ''}), so they are "
                        "not replaced", file=out, fix="move those out, or remove the folder")
    if not resume and (out / SEARCH_JSON).exists() and not replace_scratch:
        raise DataError("a search with this name already exists", file=out,
                        fix="pass --resume to continue it" + _growth_hint(out, config, space)
                        + ", or change `name` in the space file")
    if table is None and not (config.data.prepared / "card.json").exists():
        from raygym.data.pairing import find_pairs

        find_pairs(config.data)  # missing/unpaired data fails here, before Ray starts
    from raygym.ray_runtime import ensure_ray
    from raygym.search.tracking import check_tracking

    check_tracking(config, replay=table)  # mlflow.enabled: the extra, the store
    if config.search.algorithm == "bohb":
        from raygym.search.bohb import require_bohb

        require_bohb()  # the extra, before Ray starts
    _pin_local_ray_address(config)
    ensure_ray(config.resources, dashboard=config.resources.address is None,
               trial_slots=config.search.max_concurrent)
    from raygym.train.ray_train import check_resources

    r = config.resources
    check_resources(r.workers_per_trial, r.cpus_per_worker, r.gpus_per_worker)
    if table is None:
        _ensure_dataset(config, space, console)
    if replace_scratch:
        console.print(f"replacing the earlier {scratch}'s results at {out}")
        old = out.with_name(f".{out.name}.old-{time.time_ns()}")
        out.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / SEARCH_JSON, {
        "name": config.name, "space_file": str(space_file),
        "space": [d.model_dump(mode="json") for d in space],
        "space_fingerprint": space.fingerprint(), "config_fingerprint": resume_fingerprint(config),
        "config": config.to_yaml_dict(), "status": "running", "smoke_test": smoke_test,
        **({"replay_table": str(table.path)} if table is not None else {}),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"grown": growth.record(saved)} if growth is not None else
           {"grown": saved["grown"]} if "grown" in saved else {}),
    })
    describe_space(config, space, console)
    if growth is not None:
        console.print(growth.line())
    from raygym.search.tune import run_tune

    started = time.perf_counter()
    learnt: dict[str, Any] = {}
    grid = run_tune(config, space, out, resume=resume, retry_errored=retry_errored,
                    console=console, replay=table, learnt=learnt, grow=growth is not None,
                    time_budget=time_budget)
    wall = time.perf_counter() - started
    from raygym.inference.export import export_top_models
    from raygym.search.driver_state import unfinished_trials
    from raygym.search.leaderboard import build_leaderboard, print_summary
    from raygym.search.tune import experiment_path

    # Tune catches the first Ctrl-C, saves its state and returns as if the search were done;
    # the time budget stops it the same way
    interrupted = unfinished_trials(experiment_path(config, out))
    board = build_leaderboard(grid, config, space, interrupted)
    n = config.search.num_samples
    # (a budget spent as the last trial ended stopped nothing)
    out_of_time = (time_budget is not None and time_budget.reached
                   and (bool(interrupted) or len(board.rows) < n))
    stopped = bool(learnt.pop("interrupted", False)) or (  # also between trials
        bool(interrupted) and not out_of_time)
    board.write(out)
    exported = export_top_models(board, config, out) if table is None else []
    summary = board.summary(wall)
    saved = json.loads((out / SEARCH_JSON).read_text())
    saved.update(status="interrupted" if stopped else "stopped" if out_of_time else "finished",
                 finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                 summary=summary, exported=[str(p) for p in exported], **learnt)
    if out_of_time:
        saved["stopped_by"] = f"search.time_budget {time_budget.text()}"
    if table is not None:
        from raygym.search.replay import replay_verdict

        saved["replay"] = replay_verdict(table, config, grid)
    _write_json(out / SEARCH_JSON, saved)
    if table is None:
        from raygym.search.tracking import log_search_summary

        log_search_summary(config, out, summary, exported, interrupted, stopped or out_of_time)
    print_summary(board, exported, out, summary, console)
    if on_grid is not None:
        on_grid(grid)
    if table is not None:
        _print_replay(saved["replay"], console)
    if (not stopped and not out_of_time and not smoke_test and len(board.rows) >= n
            and cannot_grow(config, n) is None):
        console.print("more trials, going on from what this search learnt: "
                      f"{rerun_command(command, 'search', space_file, '--resume')} "
                      f"--set search.num_samples={2 * n}")
    if stopped:
        console.print(f"interrupted: {len(interrupted)} trial(s) cut short, {len(board.rows)} of "
                      f"at most {config.search.num_samples} started; the leaderboard and models "
                      f"above are the best so far; continue with the same command and --resume "
                      f"({rerun_command(command, 'search', space_file, '--resume')})")
        return EXIT_INTERRUPTED
    if out_of_time:  # an end the user asked for
        console.print(f"time budget {time_budget.text()} spent: {len(interrupted)} trial(s) "
                      f"cut short, {len(board.rows)} of at most {n} started; the leaderboard "
                      "and models above are the best so far; go on with the same command and "
                      f"--resume ({rerun_command(command, 'search', space_file, '--resume')}), "
                      "which has a budget of its own")
        return 0
    if not board.rows or all(r["status"] == "failed" for r in board.rows):
        raise RunFailedError("every trial failed; see the error column of "
                          f"{out / 'leaderboard.csv'}")
    return 0


def _growth_hint(out: Path, config: ExperimentConfig, space: SearchSpace) -> str:
    """How ``--resume`` would grow the search saved in ``out`` ("" if it would not)."""
    from raygym.search.resume import growth_hint

    try:
        return growth_hint(read_search_json(out), config, space)
    except DataError:
        return ""


def rerun_command(command: str | None, verb: str, space_file: Path, *flags: str) -> str:
    """``command`` (the user's command line; else ``raygym VERB SPACE``) with those of
    ``flags`` it lacks added: the line to copy to go on with a search or a recording."""
    line = command or shlex.join(["raygym", verb, str(space_file)])
    have = set(shlex.split(line))
    return " ".join([line, *(flag for flag in flags if flag not in have)])


def replay_table(config: ExperimentConfig, space: SearchSpace, path: Path) -> Any:
    """The curve table at ``path``, checked against the space and config that will replay
    it (one line naming the key where it cannot)."""
    from raygym.search.replay import load_table

    if config.search.scheduler == "pbt":
        raise ConfigError("a replayed search has no checkpoints for PBT to exploit",
                          key="search.scheduler", fix="use asha, median or none")
    table = load_table(str(Path(path).resolve()))
    table.check_space(space, config.train.max_epochs, config.search.metric,
                      config.train.monitor, list(config.data.classes))
    s = config.search
    if s.repeat_top and s.repeat_runs > len(table.seeds):
        # a further run would replay a seed again: the same curve, a mean that only looks firmer
        raise ConfigError(f"is {s.repeat_runs}, but the table recorded "
                          f"{len(table.seeds)} training seeds", key="search.repeat_runs",
                          file=table.path, fix=f"set search.repeat_runs <= {len(table.seeds)}")
    return table


def _rehearse(config: ExperimentConfig, space: SearchSpace, table: Any, searches: int, *,
              resume: bool, dry_run: bool, console: Console) -> int:
    """``--replay TABLE --searches N``: N simulated searches per row, printed side by side."""
    from raygym.search.rehearse import print_rehearsal, rehearsal_rows, rehearse

    if resume:
        raise ConfigError("--searches runs in seconds and writes nothing; there is nothing "
                          "to resume", fix="drop --resume")
    if config.search.algorithm == "bohb":
        from raygym.search.bohb import require_bohb

        require_bohb()
    rows = rehearsal_rows(config, table)
    if dry_run:
        describe_space(config, space, console)
        console.print(f"would rehearse {searches} searches per row, search seeds "
                      f"{config.search.seed}-{config.search.seed + searches - 1}: "
                      + "; ".join(r.name for r in rows))
        return 0
    console.print(f"rehearsing {searches} searches per row in simulated time ("
                  + "; ".join(r.name for r in rows) + ") ...")
    result = rehearse(config, space, table, searches=searches,
                      on_row=lambda row: console.print(f"  {row['name']}: done"))
    print_rehearsal(result, console)
    return 0


def _print_replay(verdict: dict[str, Any], console: Console) -> None:
    found = verdict.get("found")
    console.print(
        f"[bold]replay[/] of {verdict['table']}: the grid of {verdict['configurations']} "
        f"configurations costs {verdict['grid_epochs']:.0f} epochs to early stopping, best "
        f"{verdict['grid_best']:.4f}; this search spent {verdict['epochs']} epochs "
        f"({verdict['epochs'] / verdict['grid_epochs']:.0%})"
        + (f" and handed back a configuration of rank {found['rank']} "
           f"(ground truth {found['score']:.4f})" if found else " and found nothing")
        + (f"; within 0.01 of the grid's best after {verdict['epochs_to_best']} "
           f"epoch{'' if verdict['epochs_to_best'] == 1 else 's'} "
           f"({verdict['epochs_to_best'] / verdict['grid_epochs']:.0%})"
           if verdict.get("epochs_to_best") is not None else "; never within 0.01 of it"))
    if noise := verdict.get("noise"):
        console.print(noise_line(noise))


def _pin_local_ray_address(config: ExperimentConfig) -> None:
    """Give the local Ray this search starts a known GCS port, exported for its processes.

    Ray Train's PlacementGroupCleaner (one per multi-worker trial) finds its cluster through
    the state API's auto-detection, which fails as soon as a second Ray runs on the host
    ("Found multiple active Ray instances"); the cleaner then dies, and the workers of every
    trial that ASHA stops keep their CPUs: the next trial waits forever. Ray's processes
    inherit the variables set here (``RAY_API_SERVER_ADDRESS`` is read first by the state
    API; ``RAY_ADDRESS`` is left alone: raygym would join it).
    """
    import os
    import socket

    import ray

    if (config.resources.address is not None or ray.is_initialized()
            or os.environ.get("RAY_ADDRESS") or os.environ.get("RAY_API_SERVER_ADDRESS")):
        return
    port = os.environ.get("RAY_GCS_SERVER_PORT")
    if not port:
        with socket.socket() as sock:
            sock.bind(("", 0))
            port = str(sock.getsockname()[1])
        os.environ["RAY_GCS_SERVER_PORT"] = port
    os.environ["RAY_API_SERVER_ADDRESS"] = f"127.0.0.1:{port}"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write; NaN/inf become null so other tools can read it."""
    from raygym.train.metrics import json_safe

    write_text_atomic(path, json.dumps(json_safe(data), indent=2))
