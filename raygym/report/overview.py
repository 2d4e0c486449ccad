"""The search at a glance: the summary (trials by status, best trial, wall time) and the
leaderboard (every trial, its score, sampled values and per-class IoU; failures listed)."""

from __future__ import annotations

import math
import statistics
from typing import Any

from raygym.report.document import ReportDocument, cell_text
from raygym.report.results import NOT_PRUNED, TEXT_COLUMNS, SearchResults, as_float, parse_cell
from raygym.search.leaderboard import noise_line
from raygym.search.space import short_key

SPEED_HEAD = "GFLOP/s (peak)"
"""The leaderboard's throughput column: training GFLOP/s and the share of the device's peak."""


def throughput_text(history: list[dict[str, Any]]) -> str:
    """A trial's median training GFLOP/s over its epochs and its share of the peak, e.g.
    ``"41.2 (23 %)"``; empty when its epochs reported none (older runs)."""
    rates = [(as_float(h.get("gflop_per_s")), as_float(h.get("peak_share"))) for h in history]
    rates = [(g, p) for g, p in rates if math.isfinite(g)]
    if not rates:
        return ""
    gflops = statistics.median(g for g, _ in rates)
    shares = [p for _, p in rates if math.isfinite(p)]
    return f"{gflops:.1f}" + (f" ({100 * statistics.median(shares):.0f} %)" if shares else "")


def _grace(search: dict[str, Any], info: dict[str, Any]) -> str:
    """The scheduler's grace period as configured, and the epoch learnt for ``auto``."""
    grace = search.get("grace_period")
    if grace != "auto":
        return str(grace)
    learnt = info.get("learnt_grace")
    return (f"auto: learnt epoch {learnt}" if learnt is not None else
            "auto: not learnt, fewer trials finished than grace_trials")


def growth_text(info: dict[str, Any]) -> str:
    """search.json's ``grown`` record as text: ``3 -> 5 trials (2026-12-07 22:35)``; ""
    when the search never grew (``--resume`` with a larger search.num_samples)."""
    grown = [g for g in info.get("grown") or [] if isinstance(g, dict)]
    return "; ".join(f"{g.get('from', '?')} -> {g.get('to', '?')} trials"
                     + (f" ({str(g['at'])[:16].replace('T', ' ')})" if g.get("at") else "")
                     for g in grown)


def summary_section(doc: ReportDocument, res: SearchResults) -> None:
    """Search status, algorithm, metric, trials by status, the best trial, epochs, time."""
    doc.section("summary")
    s = res.search_cfg
    summary = res.info.get("summary") or {}
    counts: dict[str, int] = {}
    for tid in res.trial_ids():
        st = res.status(tid)
        counts[st] = counts.get(st, 0) + 1
    ok = res.scored_rows()
    rows: list[tuple[str, Any]] = [
        ("experiment", res.name),
        ("search status", res.info.get("status", "unknown")),
        ("algorithm / scheduler", f"{s.get('algorithm', '?')} / {s.get('scheduler', '?')}"
         + (f" (grace {_grace(s, res.info)}"
            + (f", reduction {s.get('reduction_factor')}" if s.get("scheduler") == "asha"
               else "") + ")" if s.get("scheduler") in ("asha", "median", "patient") else "")),
        ("metric", f"{res.metric} ({res.mode})"),
        ("trials", f"{sum(counts.values())}: "
         + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))),
    ]
    if grown := growth_text(res.info):
        rows.append(("grown", grown))
    if ok:
        best = ok[0]
        rows.append(("best trial", f"{best['trial_id']}: {res.metric} "
                     f"{res.value(best):.4f} at epoch {best.get('best_epoch', '?')}"))
        rows.append(("best parameters", ", ".join(  # not the keys its branch leaves unset
            f"{k}={cell_text(parse_cell(best.get(k, '')))}" for k in res.param_keys
            if best.get(k, "") != "")))
    if summary:
        rows.append(("epochs trained (all trials)", summary.get("total_epochs")))
        wall = summary.get("wall_s")
        if wall:
            rows.append(("search wall time", f"{wall:.0f} s ({wall / 60:.1f} min); sum over "
                         f"trials {summary.get('sum_trial_s') or 0:.0f} s"))
    doc.kv(rows)
    if summary.get("seed_noise"):
        doc.note(noise_line(summary["seed_noise"], str(s.get("metric", "val_mean_iou")),
                            res.param_keys))
    if res.info.get("status") == "running":
        doc.note("search.json says the search is still running (or was interrupted): this "
                 "report shows what is on disk now.")
    elif res.info.get("status") == "interrupted":
        doc.note("the search was interrupted (Ctrl-C) before its end: this report shows the "
                 "trials run so far; `raygym search SPACE --resume` goes on with it.")
    elif res.info.get("status") == "stopped":
        doc.note(f"the search stopped at its time budget ({res.info.get('stopped_by', '')}) "
                 "before its end: this report shows the trials run so far; `raygym search "
                 "SPACE --resume` goes on with it.")


def leaderboard_section(doc: ReportDocument, res: SearchResults) -> None:
    """Every trial best first (rows classed best / pruned / failed), then the failures."""
    doc.section("leaderboard")
    if not res.rows:
        doc.note("no leaderboard.csv yet (the search is running or was interrupted); trials "
                 "found on disk: " + (", ".join(res.histories) or "none"))
        return
    metric_col = f"best_{res.metric}"
    # repeated configurations (search.repeat_top): the mean of the runs ranks them
    wanted = (["rank", "trial_id", "status", metric_col, f"mean_{metric_col}", "run"]
              + res.param_keys
              + [c for c in res.columns if c.startswith("iou/")]
              + ["best_epoch", "epochs", "val_loss", "wall_s"])
    cols = [c for c in wanted if c in res.columns]
    repeats = any(r.get("run", "") not in ("", "0") for r in res.rows)
    cols = [c for c in cols if repeats or c not in (f"mean_{metric_col}", "run")]
    heads = [short_key(c, res.param_keys) if c in res.param_keys
             else "mean of its runs" if c == f"mean_{metric_col}" else c for c in cols]
    speeds = {r.get("trial_id", ""): throughput_text(res.histories.get(r.get("trial_id", ""))
                                                     or []) for r in res.rows}
    show_speed = any(speeds.values())
    heads += [SPEED_HEAD] if show_speed else []
    table_rows, classes = [], []
    for i, r in enumerate(res.rows):
        table_rows.append([r.get(c, "") if c in TEXT_COLUMNS else parse_cell(r.get(c, ""))
                           for c in cols] + ([speeds[r.get("trial_id", "")]] if show_speed else []))
        st = r.get("status", "")
        classes.append("failed" if st == "failed" else "best" if i == 0 else
                       "pruned" if st not in NOT_PRUNED else "")
    doc.table(heads, table_rows, classes)
    monitor = str((res.config.get("train") or {}).get("monitor") or "val_loss")
    watched = "lowest validation loss" if monitor == "val_loss" else f"its {monitor}"
    doc.text(f"{metric_col}: the trial's {res.metric} at its best epoch ({watched}, whose "
             "weights are kept); iou/<class> at that epoch."
             + (" Runs of one configuration (run > 0: trained again at another seed) are "
                "ranked by the mean of their runs." if repeats else "")
             + " Green: the best trial; grey: stopped early by the scheduler; red: failed."
             + (f" {SPEED_HEAD}: the trial's median training GFLOP/s over its epochs and its "
                "share of the device's measured peak (low: a small batch, fp32 on a bf16 "
                "device, or a loop waiting for data)." if show_speed else "")
             + (f" Searched keys: {', '.join(res.param_keys)}." if res.param_keys else ""))
    failed = [r for r in res.rows if r.get("status") == "failed" or r.get("error")]
    if failed:
        doc.heading("Failed trials")
        doc.table(["trial_id", "error"], [[r["trial_id"], r.get("error", "")] for r in failed],
                  ["failed"] * len(failed))


