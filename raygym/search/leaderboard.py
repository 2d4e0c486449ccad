"""Leaderboard of a search: one row per trial, best first (export: :mod:`raygym.inference.export`)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from raygym.config import ExperimentConfig
from raygym.search.space import REPEAT_KEY, SEED_KEY, active_params, runs_key, short_key
from raygym.search.space_config import SearchSpace
from raygym.search.study_storage import STUDY_FILE
from raygym.train.contract import finished

STOP_PRUNED = {"asha": "asha-pruned", "median": "median-stopped", "pbt": "pbt-stopped",
               "none": "stopped"}
INTERRUPTED = "interrupted"  # cut short by Ctrl-C or the time budget; goes on at --resume


@dataclass
class Leaderboard:
    """One row per trial, best first."""

    rows: list[dict[str, Any]]
    classes: list[str]
    param_keys: list[str]
    metric: str
    mode: str

    def columns(self) -> list[str]:
        repeats = any(r.get("run") for r in self.rows)
        return (["rank", "trial_id", "status", f"best_{self.metric}"]
                + ([f"mean_best_{self.metric}", "run"] if repeats else [])
                + [f"iou/{c}" for c in self.classes]
                + ["best_epoch", "epochs", "val_loss", "wall_s", "node_id"]
                + self.param_keys + ["error"])

    def write(self, out: Path) -> None:
        cols = self.columns()
        tmp = out / ".leaderboard.csv.tmp"
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: _fmt(row.get(k)) for k in cols})
        tmp.replace(out / "leaderboard.csv")
        md_cols = [c for c in cols if c not in ("node_id", "error")]
        lines = ["| " + " | ".join(md_cols) + " |", "|" + "---|" * len(md_cols)]
        for row in self.rows:
            lines.append("| " + " | ".join(_fmt(row.get(c), 4) for c in md_cols) + " |")
        noise = self.seed_noise()
        if noise:
            lines += ["", noise_line(noise, self.metric, self.param_keys)]
        failed = [r for r in self.rows if r.get("error")]
        if failed:
            lines += ["", "## Failed trials", ""]
            lines += [f"- `{r['trial_id']}`: {r['error']}" for r in failed]
        tmp = out / ".leaderboard.md.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(out / "leaderboard.md")

    def seed_noise(self) -> dict[str, Any] | None:
        """How far apart two training runs of one configuration land, from the configurations
        trained more than once (``search.repeat_top``, or the seeds of ``raygym record``), and
        what that means for the ranking.

        ``run_sd``: the pooled standard deviation of a run's best score around its
        configuration's mean (sqrt(sum of squared deviations / sum of (runs - 1))), over
        configurations whose runs all finished; ``repeated``: how many there were; ``tied``:
        finished configurations whose mean is within ``run_sd`` of rank 1's, rank 1 included
        (this search cannot tell them apart). None without a repeated configuration.
        """
        stopped = {*STOP_PRUNED.values(), "failed", INTERRUPTED}
        runs: dict[str, list[float]] = {}
        for r in self.rows:
            v = r[f"best_{self.metric}"]
            if r["status"] not in stopped and not math.isnan(v):
                runs.setdefault(runs_key(r["params"]), []).append(v)
        repeated = [v for v in runs.values() if len(v) > 1]
        if not repeated or not self.rows or self.rows[0]["status"] in stopped:
            return None
        squares = sum((x - sum(v) / len(v)) ** 2 for v in repeated for x in v)
        run_sd = math.sqrt(squares / sum(len(v) - 1 for v in repeated))
        best = self.rows[0][f"mean_best_{self.metric}"]
        tied = sum(1 for v in runs.values() if abs(sum(v) / len(v) - best) <= run_sd)
        return {"run_sd": run_sd, "repeated": len(repeated), "tied": tied}

    def summary(self, wall_s: float) -> dict[str, Any]:
        trial_s = sum(r.get("wall_s") or 0.0 for r in self.rows)
        epochs = sum(int(r.get("epochs") or 0) for r in self.rows)
        status: dict[str, int] = {}
        for r in self.rows:
            status[r["status"]] = status.get(r["status"], 0) + 1
        best = self.rows[0] if self.rows and not self.rows[0].get("error") else None
        return {"trials": len(self.rows), "status": status, "total_epochs": epochs,
                "wall_s": wall_s, "sum_trial_s": trial_s,
                "best_trial": best["trial_id"] if best else None,
                f"best_{self.metric}": best.get(f"best_{self.metric}") if best else None,
                "seed_noise": self.seed_noise()}


def _fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _short_value(value: Any) -> str:
    """A value without spaces, so a narrow terminal wraps between values, never inside one:
    a weighted loss ``{"cce": 0.5, "dice": 0.5}`` -> ``0.5cce+0.5dice``."""
    if isinstance(value, dict):
        return "+".join(f"{_fmt(w, 3)}{k}" for k, w in value.items())
    return _fmt(value, 3).replace(" ", "")


def params_text(params: dict[str, Any], keys: list[str] | tuple[str, ...] = ()) -> str:
    """Sampled values in one line for tables: ``arch=gym_unet, loss=0.5cce+0.5dice``
    (``keys``: all searched keys, so that two that share a last part keep their section)."""
    keys = keys or tuple(params)
    return ", ".join(f"{short_key(k, keys)}={_short_value(v)}" for k, v in params.items())


def _num(value: Any) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f


def build_leaderboard(grid: Any, config: ExperimentConfig, space: SearchSpace,
                      interrupted: frozenset[str] | set[str] = frozenset()) -> Leaderboard:
    """Rows from Tune's ``ResultGrid`` (every trial, with its stop reason); ``interrupted``:
    ids of trials a Ctrl-C or the time budget cut short (status ``interrupted``, not the
    scheduler's)."""
    metric, mode = config.search.metric, config.search.mode
    classes = list(config.data.classes)
    pruned_name = STOP_PRUNED[config.search.scheduler]
    rows = []
    for result in grid:
        m = dict(result.metrics or {})
        # the trial folder is named after the trial id; the last result's trial_id is not
        # reliable: PBT copies the donor's last result into the trial that exploits it
        trial_id = Path(result.path).name or m.get("trial_id")
        params = active_params(space, dict(result.config or {}))
        run = int((result.config or {}).get(REPEAT_KEY, 0))
        history = result.metrics_dataframe
        best_epoch = m.get("best_epoch")
        best_row: dict[str, Any] = {}
        if history is not None and len(history) and best_epoch and "epoch" in history:
            match = history[history["epoch"] == best_epoch]
            if len(match):
                best_row = match.iloc[-1].to_dict()
        if result.error is not None:
            status = "failed"
        elif trial_id in interrupted:
            status = INTERRUPTED
        elif finished(m):
            status = str(m["stop_reason"])
        else:
            status = pruned_name
        error = _one_line(result.error) if result.error is not None else ""
        best_value = _num(m.get(f"best_{metric}", m.get(metric)))
        row = {
            "trial_id": trial_id, "status": status, f"best_{metric}": best_value, "run": run,
            "repeat": run,  # the searcher's repeat index (run: the place among the runs)
            "best_epoch": best_epoch, "epochs": m.get("epoch"),
            "val_loss": _num(m.get("best_val_loss")), "wall_s": _num(m.get("time_total_s")),
            "node_id": m.get("node_id", ""), "error": error, "params": params,
            # multi-worker trials: Train's checkpoint, reported by TuneReportCallback
            "checkpoint": (result.checkpoint.path if result.checkpoint
                           else m.get("checkpoint_path")),
            "trial_path": result.path,
            **{f"iou/{c}": _num(best_row.get(f"val_iou/{c}")) for c in classes},
            **params,
        }
        rows.append(row)
    sign = -1.0 if mode == "max" else 1.0
    # runs of one configuration (search.repeat_top; a recording's seeds) rank by their mean
    by_config: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(runs_key(r["params"]), []).append(r)
    for runs in by_config.values():
        scores = [v for r in runs if r["status"] != "failed"
                  and not math.isnan(v := r[f"best_{metric}"])]
        for r in runs:
            r[f"mean_best_{metric}"] = sum(scores) / len(scores) if scores else math.nan
        if any(SEED_KEY in r["params"] for r in runs):  # runs told apart by their seed
            runs.sort(key=lambda r: (_num(r["params"].get(SEED_KEY)), r["run"]))
            for i, r in enumerate(runs):
                r["run"] = i

    def key(r: dict[str, Any]) -> tuple[int, float, float]:
        v, mean = r[f"best_{metric}"], r[f"mean_best_{metric}"]
        bad = math.isnan(v) or r["status"] == "failed"
        return (1 if bad else 0, sign * (0.0 if bad else mean),
                sign * (0.0 if math.isnan(v) else v))

    rows.sort(key=key)
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return Leaderboard(rows=rows, classes=classes, param_keys=space.paths(), metric=metric,
                       mode=mode)


def noise_line(noise: dict[str, Any], metric: str, param_keys: list[str] | tuple[str, ...] = ()
               ) -> str:
    """One sentence on :meth:`Leaderboard.seed_noise` for the leaderboard and the terminal;
    ``param_keys``: the searched keys (with ``train.seed``, runs are a recording's seeds)."""
    tied = noise["tied"]
    more = ("more --seeds when recording, search.repeat_top and repeat_runs when searching"
            if SEED_KEY in param_keys else "search.repeat_top and repeat_runs")
    return (f"Seed noise: {noise['repeated']} configuration(s) trained more than once; runs "
            f"of one configuration differ by {noise['run_sd']:.4f} {metric} (pooled SD). "
            + (f"{tied} finished configurations are within that of rank 1: this search "
               f"cannot tell them apart (more runs each: {more}, a larger validation split, "
               "or longer training)." if tied > 1 else
               "No other finished configuration is within that of rank 1."))


def _one_line(err: Any) -> str:
    text = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in reversed(text):  # the innermost "SomeError: message" line names the cause
        if "Error" in ln.split(":")[0] or "Exception" in ln.split(":")[0]:
            return ln[:300]
    return (text[-1] if text else type(err).__name__)[:300]


def print_summary(board: Leaderboard, exported: list[Path], out: Path, summary: dict[str, Any],
                  console: Console) -> None:
    metric = board.metric
    table = Table(title=f"leaderboard (top {min(10, len(board.rows))} of {len(board.rows)})",
                  pad_edge=False)  # two more columns for the params in an 80-column terminal
    cells = []
    for r in board.rows[:10]:
        v, mean = r[f"best_{metric}"], r.get(f"mean_best_{metric}", math.nan)
        score = "" if math.isnan(v) else f"{v:.4f}"
        if not math.isnan(mean) and abs(mean - v) > 5e-5:  # a configuration with 2 runs
            score += f"\n(mean {mean:.4f})"
        cells.append((str(r["rank"]), r["trial_id"], r["status"], score,
                      str(r.get("epochs") or ""),
                      params_text(r["params"], board.param_keys)
                      # a recording's seed names its run itself; a repeat says so
                      + (f", run {r['run'] + 1}" if r.get("repeat") or (
                          r.get("run") and SEED_KEY not in r["params"]) else "")))
    # a narrow terminal wraps the params between values, never inside one (gym_resunet)
    longest = max((len(word) for c in cells for word in c[-1].split()), default=6)
    for col in ("rank", "trial", "status"):
        table.add_column(col, overflow="fold")
    table.add_column(f"best {metric}", overflow="fold", max_width=13)  # "(mean 0.5079)"
    table.add_column("epochs", overflow="fold")
    table.add_column("params", overflow="fold", min_width=min(longest, 40))
    for row in cells:
        table.add_row(*row)
    console.print(table)
    status = ", ".join(f"{k} {n}" for k, n in summary["status"].items())
    console.print(f"{summary['trials']} trials ({status}), {summary['total_epochs']} epochs, "
                  f"{summary['wall_s']:.0f} s wall")
    # (a search stopped before any trial reported has no best yet)
    if (board.rows and board.rows[0]["status"] != "failed"
            and not math.isnan(board.rows[0][f"best_{metric}"])):
        best = board.rows[0]
        per_class = ", ".join(f"{c} {v:.3f}" for c in board.classes
                              if not math.isnan(v := best.get(f"iou/{c}", math.nan)))
        console.print(f"[bold green]best[/] {best['trial_id']}: {metric} "
                      f"{best[f'best_{metric}']:.4f}" + (f" ({per_class})" if per_class else ""))
    if summary.get("seed_noise"):
        console.print(noise_line(summary["seed_noise"], metric, board.param_keys))
    if exported:
        console.print(f"best models: [bold]{exported[0].parent}[/] "
                      f"({', '.join(p.name for p in exported)})")
    # random / grid searches keep no Optuna study
    study = (f"study: optuna-dashboard {out / STUDY_FILE}   " if (out / STUDY_FILE).exists()
             else "")
    console.print(f"leaderboard: {out / 'leaderboard.md'}   {study}"
                  f"dashboards: raygym dashboard {out}")
