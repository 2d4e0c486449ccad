"""``raygym record SPACE``: learning-curve tables of your own data, to rehearse searches on.

Every configuration of the space's grid is trained at each of ``seeds`` to the full
``train.max_epochs``: no scheduler, no early stopping. Choices and grids keep their values;
numeric ranges are recorded at ``points`` values (log-spaced for ``loguniform``), which a
replayed search snaps to. It runs as a Tune grid search through ``raygym search``'s own path
(local Ray or a cluster, ``--resume``, leaderboard and best models in
``results/<name>-record/``), and then writes every trial's every epoch to one CSV row in the
format :mod:`raygym.search.replay` reads (``raygym search SPACE --replay TABLE``), with a card
beside it (``<table>.card.json``: data, sizes, seeds, grid, command, date, cost).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import math
import platform
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from raygym.atomic import write_text_atomic
from raygym.config import ExperimentConfig, validate_experiment
from raygym.errors import ConfigError
from raygym.search.space import SEED_KEY
from raygym.search.space_config import Distribution, SearchSpace
from raygym.train.contract import METRICS

TABLE_NAME = "curves.csv"


def grid_values(dist: Distribution, points: int) -> list[Any]:
    """The values ``dist`` is recorded at: its choices, or ``points`` values spanning a range
    (ends included; log-spaced for ``loguniform``; distinct integers for ``int``), rounded to
    6 significant digits so that the table reads back the numbers it was given."""
    if dist.kind in ("choice", "grid"):
        return list(dist.values)
    low, high = float(dist.low or 0.0), float(dist.high or 0.0)
    if dist.kind == "int":
        return sorted({int(round(v)) for v in np.linspace(low, high, points)})
    spaced = np.geomspace(low, high, points) if dist.kind == "loguniform" else np.linspace(
        low, high, points)
    return [float(f"{v:.6g}") for v in spaced]


def recording_space(space: SearchSpace, seeds: list[int], points: int, file: str
                    ) -> SearchSpace:
    """The space as an exhaustive grid, with ``train.seed`` as its last key.

    Conditional keys are refused: a replayed search matches every trial to a row with a
    value for every recorded key, which a conditional key does not have.
    """
    for d in space:
        if d.when:
            raise ConfigError("`raygym record` records a full grid; a conditional key "
                              "(`when`) has no value in the trials where it does not apply",
                              file=file, key=d.path,
                              fix="record one table per branch: fix the parent key and drop "
                              "`when`")
        if d.path == SEED_KEY:
            raise ConfigError("the recording's seeds are its runs, not a searched key",
                              file=file, key=d.path,
                              fix="give one train.seed and the seeds with --seeds")
    dists = [Distribution(path=d.path, kind="grid", values=tuple(grid_values(d, points)))
             for d in space]
    return SearchSpace(dists=[*dists, Distribution(path=SEED_KEY, kind="grid",
                                                   values=tuple(seeds))])


def recording_config(config: ExperimentConfig, suffix: str = "") -> ExperimentConfig:
    """``config`` as a recording: its own name (``<name>-record<suffix>``), a grid searched
    once, no scheduler, no early stopping, no repeats."""
    raw = config.to_yaml_dict()
    raw["name"] = f"{config.name}-record{suffix}"
    raw["train"]["patience"] = config.train.max_epochs + 1
    raw["search"].update(algorithm="grid", scheduler="none", num_samples=1, repeat_top=0,
                         points_to_evaluate=[])
    return validate_experiment(raw, "<record>")


def encode_cell(value: Any) -> str:
    """A parameter value as a table cell that :func:`raygym.search.replay.parse_cell` reads
    back: text as it is, anything else as JSON (a weighted loss, true/false, numbers)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def table_header(space: SearchSpace, classes: list[str]) -> list[str]:
    """The columns of a recording of ``space`` (its keys but the seed, in file order)."""
    keys = [d.path for d in space if d.path != SEED_KEY]
    return ["config_id", *(f"param:{k}" for k in keys), "seed", "epoch", *METRICS,
            *(f"val_iou/{c}" for c in classes), "lr", "seconds"]


def table_rows(grid: Any, space: SearchSpace, classes: list[str]
               ) -> tuple[list[str], list[dict[str, Any]], int]:
    """(header, rows, trials left out) of a recording's ``ResultGrid``.

    ``config_id`` numbers the configurations in the grid's factorial order (the space's keys
    in file order), seeds excluded. A trial that raised is left out (its curve is not
    whole); one whose loss became NaN keeps its rows up to that epoch.
    """
    from raygym.search.space import config_key

    keys = [d.path for d in space if d.path != SEED_KEY]
    values = [list(d.values) for d in space if d.path != SEED_KEY]
    ids = {config_key(dict(zip(keys, combo, strict=True))): i
           for i, combo in enumerate(itertools.product(*values))}
    metrics = [*METRICS, *(f"val_iou/{c}" for c in classes)]
    header = table_header(space, classes)
    rows: list[dict[str, Any]] = []
    left_out = 0
    for result in grid:
        history = result.metrics_dataframe
        if result.error is not None or history is None or "epoch" not in history:
            left_out += 1
            continue
        params = dict(result.config or {})
        cid = ids[config_key({k: params[k] for k in keys})]
        cells = {f"param:{k}": encode_cell(params[k]) for k in keys}
        # a trial resumed from its checkpoint may report an epoch twice: the later one stands
        epochs = history.drop_duplicates("epoch", keep="last").sort_values("epoch")
        for epoch in epochs.to_dict("records"):
            rows.append({"config_id": cid, **cells, "seed": params[SEED_KEY],
                         "epoch": int(epoch["epoch"]),
                         **{m: epoch.get(m, math.nan) for m in metrics},
                         "lr": epoch.get("lr", math.nan),
                         "seconds": round(float(epoch.get("epoch_seconds", math.nan)), 3)})
    rows.sort(key=lambda r: (r["config_id"], r["seed"], r["epoch"]))
    return header, rows, left_out


def write_table(path: Path, header: list[str], rows: list[dict[str, Any]]) -> None:
    """The CSV, written whole beside ``path`` and then moved over it."""
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text.getvalue())


def record_experiment(config: ExperimentConfig, space: SearchSpace, *, space_file: Path,
                      seeds: list[int], points: int = 3, out: Path | None = None,
                      resume: bool = False, retry_errored: bool = False, dry_run: bool = False,
                      add: bool = False, console: Console | None = None,
                      command: str | None = None) -> int:
    """Record the curve table of ``space`` (see the module); returns the CLI exit code.
    ``add``: record only the ``seeds`` an existing table lacks, in a recording of their own
    (``results/<name>-record-add-<seeds>/``), and add their rows to it (:func:`add_seeds`).
    ``command``: the command line that ran it (the CLI's), for the table's card and the
    line that says how to go on."""
    from raygym.search.run import rerun_command, results_dir, search_experiment

    console = console or Console()
    file = str(space_file)
    if config.search.time_budget is not None:
        raise ConfigError("a recording trains every curve to its end", file=file,
                          key="search.time_budget", fix="remove it (a Ctrl-C stops a "
                          "recording, and --resume goes on with it)")
    seeds = list(dict.fromkeys(seeds))  # a seed given twice is one run, not two
    rec = recording_config(config)
    table = Path(out).resolve() if out is not None else results_dir(rec) / TABLE_NAME
    if add:
        seeds, have = _seeds_to_add(table, rec, space, seeds, points, file)
        console.print(f"adding seed(s) {', '.join(map(str, seeds))} to {table} (it holds "
                      f"{', '.join(map(str, have))})")
        rec = recording_config(config, suffix="-add-" + "-".join(map(str, seeds)))
    elif table.exists() and not resume:
        raise ConfigError("the curve table already exists", file=table, key="--out",
                          fix="pass --resume to finish that recording, --add with new --seeds "
                          "to add runs to it, or give another --out")
    grid_space = recording_space(space, seeds, points, file)
    started = time.perf_counter()
    grids: list[Any] = []
    code = search_experiment(rec, grid_space, space_file=space_file, dry_run=dry_run,
                             resume=resume, retry_errored=retry_errored, console=console,
                             on_grid=grids.append, command=command)
    if dry_run:
        console.print(f"the curve table would go to {table}")
        return code
    classes = list(rec.data.classes)
    header, rows, left_out = table_rows(grids[0], grid_space, classes)
    wall_s = time.perf_counter() - started
    # the card says how the table was made: the user's command (its --set values), less
    # the flags that only said how to go on
    made_by = (shlex.join([w for w in shlex.split(command)
                           if w not in ("--resume", "--retry-errored")]) if command
               else f"raygym record {space_file} --seeds {' '.join(map(str, seeds))} "
                    f"--points {points}" + (f" --out {out}" if out is not None else ""))
    rerun = rerun_command(command, "record", space_file, "--resume", "--retry-errored")
    if add and left_out:  # a seed goes in whole or not at all: --resume finds it missing
        console.print(f"{left_out} trial(s) failed: {table} is left as it was; {rerun} runs "
                      "them again, then adds the seeds")
        return code or 1
    if add:
        new_card, rows = add_seeds(table, header, rows, seeds, made_by, wall_s)
        seeds = new_card["seeds"]
    else:
        card = _card(rec, grid_space, table, rows, made_by, wall_s)
        if table.exists():  # a resume: seeds added to the table since (--add) are kept
            added = [r for r in _read_rows(table)[1] if int(r["seed"]) not in seeds]
            rows = _in_table_order([*rows, *added])
            with contextlib.suppress(ConfigError):
                card["added"] = _read_card(table).get("added", [])
            seeds = card["seeds"] = _seeds_of(rows)
        write_table(table, header, rows)
        write_text_atomic(table.with_suffix(".card.json"), json.dumps(card, indent=2))
    configs = len({int(r["config_id"]) for r in rows})
    console.print(f"[bold]curve table[/] {table}: {configs} configurations x {len(seeds)} "
                  f"seed(s) x {rec.train.max_epochs} epochs, {len(rows)} rows"
                  + (f"; {left_out} trial(s) failed and are left out ({rerun} runs them "
                     "again)" if left_out else ""))
    console.print(seed_noise_text(config, table, len(seeds), left_out))
    console.print(f"rehearse search settings on it: {rehearse_command(command, space_file, table)}")
    return code


# settings of a recording that do not change what its runs train (where files go, threads;
# the seed is each run's own)
_NOT_TRAINING = {"train.output_dir", "train.seed", "train.checkpoint_keep", "train.num_threads"}


def _read_rows(table: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of a curve table as written (cells as text)."""
    with table.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _seeds_of(rows: list[dict[str, Any]]) -> list[int]:
    return sorted({int(r["seed"]) for r in rows})


def _in_table_order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by configuration, seed, epoch (kept rows hold text, new ones numbers)."""
    return sorted(rows, key=lambda r: (int(r["config_id"]), int(r["seed"]), int(r["epoch"])))


def _read_card(table: Path) -> dict[str, Any]:
    card_file = table.with_suffix(".card.json")
    try:
        card = json.loads(card_file.read_text())
    except (OSError, ValueError):
        card = None
    if not isinstance(card, dict):
        raise ConfigError("the table's card is missing or unreadable", file=card_file,
                          key="--add", fix="--add needs the card `raygym record` wrote beside "
                          "the table; record a new table (another --out)")
    return card


def _settings_differ(card: dict[str, Any], rec: ExperimentConfig, grid: dict[str, Any],
                     header: list[str], expected: list[str]) -> list[str]:
    """What differs between the table's recording and ``rec``: ``the grid``, dotted keys of
    the data / model / loss / training settings (keys one side lacks, from another raygym's
    schema, are not compared), ``the columns``."""
    differs = [] if card.get("grid") == json.loads(json.dumps(grid)) else ["the grid"]
    now = rec.to_yaml_dict()
    for section in ("data", "model", "loss", "train"):
        old = card.get(section) or {}
        differs += [f"{section}.{k}" for k in sorted(set(old) & set(now[section]))
                    if f"{section}.{k}" not in _NOT_TRAINING and old[k] != now[section][k]]
    return differs + ([] if header == expected else ["the columns"])


def _seeds_to_add(table: Path, rec: ExperimentConfig, space: SearchSpace, seeds: list[int],
                  points: int, file: str) -> tuple[list[int], list[int]]:
    """(the seeds ``table`` lacks, those it holds), after checking that it was recorded from
    the same grid with the same training: runs from another set-up would be averaged as if
    they were more seeds of the same configurations. The table's rows, not its card, say
    which seeds it holds."""
    if table.suffix == ".gz":
        raise ConfigError("--add writes a plain CSV table; this one is gzipped", file=table,
                          key="--out", fix="gunzip it and give the .csv")
    if not table.exists():
        raise ConfigError("--add adds runs to an existing curve table; none here", file=table,
                          key="--add", fix="record the table first (drop --add), or point "
                          "--out at it")
    card = _read_card(table)
    one_seed = recording_space(space, [0], points, file)
    header, kept = _read_rows(table)
    differs = _settings_differ(card, rec, {d.path: list(d.values) for d in one_seed
                                           if d.path != SEED_KEY},
                               header, table_header(one_seed, list(rec.data.classes)))
    if differs:
        verb = "differs" if len(differs) == 1 else "differ"
        raise ConfigError(f"the table was recorded with other settings ({', '.join(differs)} "
                          f"{verb}), so new runs would not be more seeds of the same "
                          "configurations", file=table, key="--add",
                          fix=f"use the table's settings (its command: {card.get('command')}) "
                          "with the new --seeds, or record a new table (another --out)")
    have = _seeds_of(kept)
    new = [s for s in seeds if s not in have]
    if not new:
        raise ConfigError(f"seed(s) {', '.join(map(str, seeds))} are in the table already",
                          file=table, key="--seeds", fix=f"give seeds it lacks (it holds {have})")
    return new, have


def add_seeds(table: Path, header: list[str], rows: list[dict[str, Any]], seeds: list[int],
              command: str, wall_s: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write ``table`` with ``rows`` (the added seeds' runs) beside the rows it holds now, and
    its card with the seeds, the cost and the command added; returns (card, all rows). The
    table is read again here, so that an addition finished meanwhile is kept, not lost."""
    current = _read_rows(table)[1]
    clash = sorted(set(_seeds_of(current)) & set(seeds))
    if clash:
        raise ConfigError(f"seed(s) {clash} were added to the table while this ran (another "
                          "--add?); the table is left as it was", file=table, key="--seeds",
                          fix="add only the seeds it lacks")
    merged = _in_table_order([*current, *rows])
    card = _read_card(table)
    card["seeds"] = _seeds_of(merged)
    seconds = [r["seconds"] for r in rows if not math.isnan(r["seconds"])]
    card.setdefault("added", []).append({
        "seeds": seeds, "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cost": {"wall_s": round(wall_s), "training_s": round(sum(seconds))}})
    write_table(table, header, merged)  # the rows decide the seeds: a card left behind by a
    write_text_atomic(table.with_suffix(".card.json"), json.dumps(card, indent=2))  # crash
    return card, merged


def seed_noise_text(config: ExperimentConfig, table: Path, seeds: int, left_out: int = 0
                    ) -> str:
    """What a rank on the recorded table is worth: its seeds' noise under ``config``'s early
    stopping (as a rehearsal judges), or why it cannot be told yet. ``left_out``: failed
    trials missing from the table."""
    from raygym.search.noise import noise_line, table_noise
    from raygym.search.replay import CurveTable, config_truth

    if seeds < 2:
        return ("one training seed: nothing on this table tells a better configuration from "
                "a luckier run; record 3 or more (--seeds 0 1 2) before trusting its ranks")
    if left_out:  # a configuration may have no run at all: the table cannot be judged yet
        return ("the table's noise is told once its failed trials are recorded (above: how to "
                "run them again)")
    if config.search.mode != "max":
        return (f"the table's noise is measured for a metric to maximise (search.metric "
                f"{config.search.metric} is minimised)")
    noise = table_noise(config_truth(config, CurveTable.load(table)))
    return noise_line(noise) if noise else (
        "the table's noise: no configuration has a score at every seed (runs that diverged)")


def rehearse_command(command: str | None, space_file: Path, table: Path) -> str:
    """The ``raygym search SPACE --replay TABLE`` line to copy after a recording, with the
    recording's ``--set`` values (``command``: its command line): without them the space
    would search keys or epochs the table never recorded."""
    words = shlex.split(command) if command else []
    sets = [w for i, w in enumerate(words)
            if w.startswith("--set=") or (w == "--set" and i + 1 < len(words))
            or (i and words[i - 1] == "--set")]
    return shlex.join(["raygym", "search", str(space_file), *sets, "--replay", str(table)])


def _card(config: ExperimentConfig, space: SearchSpace, table: Path,
          rows: list[dict[str, Any]], command: str, wall_s: float) -> dict[str, Any]:
    """What the table is: data, sizes, grid, seeds, the training settings, command, cost."""
    from raygym import __version__
    from raygym.data.dataset import read_card

    data = read_card(config.data.prepared)
    seconds = [r["seconds"] for r in rows if not math.isnan(r["seconds"])]
    return {
        "table": table.name, "raygym": __version__,
        "data": config.to_yaml_dict()["data"],
        "rows_per_split": {k: v.get("rows") for k, v in data.splits.items()},
        "grid": {d.path: list(d.values) for d in space if d.path != SEED_KEY},
        "seeds": list(space.dists[-1].values), "epochs": config.train.max_epochs,
        "configurations": len({r["config_id"] for r in rows}),
        "train": config.to_yaml_dict()["train"], "model": config.to_yaml_dict()["model"],
        "loss": config.to_yaml_dict()["loss"],
        "command": command,  # --set overrides show in train / model / loss
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": platform.node(),
        "cost": {"wall_s_this_run": round(wall_s), "training_s": round(sum(seconds))},
    }
