"""``raygym report RESULTS``: one self-contained HTML report of a search (plus Markdown + PNGs).

The report reads only what a search left in its results folder (``search.json``,
``leaderboard.csv``, Tune's trial folders, ``optuna.db``, ``best/rank1_*``) and the prepared
dataset the best model was trained on; it starts no Ray. Sections:

1. summary (trials by status, best trial, wall time);
2. the leaderboard;
3. hyperparameter effects, Segmentation Gym's paper view: the metric by each searched
   categorical key (filters, loss, residual/plain architecture, ...) and by each numeric key;
4. learning curves of the top trials (val mean IoU and val loss per epoch);
5. the scheduler's pruning picture (the metric of every trial per epoch, pruned ones dashed);
6. the anytime curve of the search: the best score reported so far against the epochs all
   trials have spent, in the order Tune reported them (its ``timestamp``), with where trials
   were pruned or finished; a replayed search (``search.json`` key ``replay``) adds the
   recorded grid's best score and cost and the rank of the search's best configuration;
7. the Optuna study: parameter importances and parallel coordinates;
8. the best model: its card, per-class scores, a confusion matrix and sample predictions,
   recomputed on the dataset's test split (or val);
9. the environment the report was built in, and the search's wall time.

Output: ``RESULTS/report.html`` (every figure a ``data:`` URI, CSS inline: one file to mail or
archive, no external requests) and ``RESULTS/report/`` (``report.md`` + the PNGs it links,
relative). Every file is written atomically. A section whose inputs are missing (no
``optuna.db`` for a random/grid search, a deleted dataset, failed trials, a search that is still
running) becomes a short note instead of failing the report.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raygym.atomic import replace_dir, write_text_atomic
from raygym.errors import DataError

SECTION_TITLES: dict[str, str] = {
    "summary": "Summary",
    "leaderboard": "Leaderboard",
    "effects": "Hyperparameter effects",
    "curves": "Learning curves of the top trials",
    "pruning": "Pruning: every trial per epoch",
    "anytime": "Anytime curve of the search",
    "optuna": "Optuna study",
    "best": "Best model",
    "environment": "Environment",
}
"""Section id -> heading, in report order (tests and links rely on these)."""

TOP_CURVES = 5
N_SAMPLES = 3
_CATEGORICAL = ("choice", "grid")
_TEXT_COLUMNS = ("trial_id", "status", "node_id", "error")  # never read as numbers
_NOT_PRUNED = ("completed", "early-stopped", "failed", "running", "unknown")


# =============================================================================== document
@dataclass
class _Block:
    kind: str
    data: Any


@dataclass
class _Section:
    id: str
    title: str
    blocks: list[_Block] = field(default_factory=list)


class _Doc:
    """A tiny document model rendered twice: HTML (figures inlined) and Markdown (linked)."""

    def __init__(self, fig_dir: Path) -> None:
        self.fig_dir = fig_dir
        self.sections: list[_Section] = []

    def section(self, sid: str) -> _Section:
        sec = _Section(sid, SECTION_TITLES[sid])
        self.sections.append(sec)
        return sec

    def _add(self, kind: str, data: Any) -> None:
        self.sections[-1].blocks.append(_Block(kind, data))

    def text(self, text: str) -> None:
        self._add("p", text)

    def note(self, text: str) -> None:
        self._add("note", text)

    def heading(self, text: str) -> None:
        self._add("h3", text)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              classes: Sequence[str] | None = None) -> None:
        """``classes``: an optional CSS class per row (``failed``, ``pruned``, ``best``)."""
        self._add("table", (list(columns), [[_cell(v) for v in r] for r in rows],
                            list(classes) if classes else [""] * len(rows)))

    def kv(self, rows: Sequence[tuple[str, Any]]) -> None:
        """A two-column key / value table without a header."""
        self._add("kv", [(str(k), _cell(v)) for k, v in rows])

    def figure(self, fig: Any, name: str, caption: str) -> Path:
        from raygym.plots import save_atomic

        path = save_atomic(fig, self.fig_dir / f"{name}.png", dpi=90)
        self._add("figure", (path, caption))
        return path

    # ------------------------------------------------------------------ renderers
    def to_html(self, title: str, subtitle: str) -> str:
        esc = html.escape
        nav = " ".join(f'<a href="#{s.id}">{esc(s.title)}</a>' for s in self.sections)
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 '<meta name="viewport" content="width=device-width, initial-scale=1">',
                 f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
                 f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
                 f"<nav>{nav}</nav></header><main>"]
        for sec in self.sections:
            parts.append(f'<section id="{sec.id}"><h2>{esc(sec.title)}</h2>')
            for b in sec.blocks:
                if b.kind == "p":
                    parts.append(f"<p>{esc(b.data)}</p>")
                elif b.kind == "note":
                    parts.append(f'<p class="note">{esc(b.data)}</p>')
                elif b.kind == "h3":
                    parts.append(f"<h3>{esc(b.data)}</h3>")
                elif b.kind == "table":
                    cols, rows, classes = b.data
                    parts.append('<div class="scroll"><table><thead><tr>'
                                 + "".join(f"<th>{esc(c)}</th>" for c in cols)
                                 + "</tr></thead><tbody>")
                    for row, cls in zip(rows, classes, strict=True):
                        attr = f' class="{esc(cls)}"' if cls else ""
                        parts.append(f"<tr{attr}>" + "".join(
                            f"<td>{esc(v)}</td>" for v in row) + "</tr>")
                    parts.append("</tbody></table></div>")
                elif b.kind == "kv":
                    parts.append('<table class="kv"><tbody>' + "".join(
                        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in b.data)
                        + "</tbody></table>")
                elif b.kind == "figure":
                    path, caption = b.data
                    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                    parts.append(f'<figure><img src="data:image/png;base64,{data}" '
                                 f'alt="{esc(caption)}"><figcaption>{esc(caption)}'
                                 "</figcaption></figure>")
            parts.append("</section>")
        parts.append(f"</main><footer>raygym report, built {esc(time.strftime('%Y-%m-%d %H:%M'))}"
                     "</footer></body></html>")
        return "\n".join(parts) + "\n"

    def to_markdown(self, title: str, subtitle: str) -> str:
        lines = [f"# {title}", "", subtitle, ""]
        for sec in self.sections:
            lines += [f"## {sec.title}", ""]
            for b in sec.blocks:
                if b.kind == "p":
                    lines += [b.data, ""]
                elif b.kind == "note":
                    lines += [f"> {b.data}", ""]
                elif b.kind == "h3":
                    lines += [f"### {b.data}", ""]
                elif b.kind == "table":
                    cols, rows, _ = b.data
                    lines.append("| " + " | ".join(_md(c) for c in cols) + " |")
                    lines.append("|" + "---|" * len(cols))
                    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
                    lines.append("")
                elif b.kind == "kv":
                    lines += ["| | |", "|---|---|"]
                    lines += [f"| **{_md(k)}** | {_md(v)} |" for k, v in b.data]
                    lines.append("")
                elif b.kind == "figure":
                    path, caption = b.data
                    lines += [f"![{Path(path).stem}]({Path(path).name})", "",
                              f"*{_md(caption)}*", ""]
        return "\n".join(lines) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
margin:0;color:#1d2733;background:#f4f6f8;line-height:1.45}
header{background:#17324d;color:#fff;padding:18px 32px 10px}
header h1{margin:0 0 4px;font-size:1.6em}
header .sub{margin:0 0 10px;color:#c9d6e3}
nav a{color:#9fd0ff;margin-right:14px;text-decoration:none;font-size:.92em;white-space:nowrap}
nav a:hover{text-decoration:underline}
main{max-width:1180px;margin:0 auto;padding:8px 24px 32px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);
padding:6px 22px 16px;margin:18px 0}
h2{border-bottom:2px solid #e3e8ee;padding-bottom:6px;color:#17324d}
h3{color:#2c4a66;margin-bottom:6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.86em;margin:8px 0}
th,td{border:1px solid #dde3ea;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef2f6;text-align:center}
td:first-child,th:first-child{text-align:left}
table.kv th{background:#eef2f6;text-align:left;font-weight:600}
table.kv td{text-align:left;white-space:normal}
tbody tr:nth-child(even){background:#f8fafc}
tr.best{background:#e5f5e0 !important;font-weight:600}
tr.pruned{color:#6b7785}
tr.failed{background:#fdecea !important;color:#8a1c12}
figure{margin:12px 0;text-align:center}
figure img{max-width:100%;height:auto;border:1px solid #e3e8ee;border-radius:4px}
figcaption{font-size:.85em;color:#5b6875;margin-top:4px}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;font-size:.92em}
footer{text-align:center;color:#7a8794;font-size:.8em;padding:12px}
"""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    return str(value)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


# ================================================================================ inputs
@dataclass
class SearchResults:
    """What a search left behind, read leniently (any piece may be missing)."""

    path: Path
    info: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, str]]
    histories: dict[str, list[dict[str, Any]]]
    trial_params: dict[str, dict[str, Any]]
    trials_note: str = ""

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.info.get("config") or {})

    @property
    def search_cfg(self) -> dict[str, Any]:
        return dict(self.config.get("search") or {})

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.config.get("name") or self.path.name)

    @property
    def metric(self) -> str:
        if self.search_cfg.get("metric"):
            return str(self.search_cfg["metric"])
        best = [c for c in self.columns if c.startswith("best_")]
        return best[0][len("best_"):] if best else "val_mean_iou"

    @property
    def mode(self) -> str:
        return str(self.search_cfg.get("mode") or ("min" if "loss" in self.metric else "max"))

    @property
    def classes(self) -> list[str]:
        data = self.config.get("data") or {}
        if data.get("classes"):
            return list(data["classes"])
        return [c[len("iou/"):] for c in self.columns if c.startswith("iou/")]

    @property
    def space(self) -> list[dict[str, Any]]:
        """The searched keys (``path``, ``kind``, ``values``/``low``/``high``)."""
        if self.info.get("space"):
            return list(self.info["space"])
        keys = self.param_keys
        out = []
        for k in keys:
            values = [_parse(r.get(k, "")) for r in self.rows if r.get(k, "") != ""]
            numeric = all(isinstance(v, int | float) for v in values)
            distinct = list(dict.fromkeys(values))
            kind = "choice" if not numeric or len(distinct) <= 6 else "uniform"
            out.append({"path": k, "kind": kind, "values": distinct if kind == "choice" else []})
        return out

    @property
    def param_keys(self) -> list[str]:
        if self.info.get("space"):
            return [d["path"] for d in self.info["space"]]
        if "node_id" in self.columns and "error" in self.columns:
            return self.columns[self.columns.index("node_id") + 1: self.columns.index("error")]
        return []

    def status(self, trial_id: str) -> str:
        for r in self.rows:
            if r.get("trial_id") == trial_id:
                return r.get("status") or "unknown"
        hist = self.histories.get(trial_id) or []
        if hist and hist[-1].get("stop_reason"):
            return str(hist[-1]["stop_reason"])
        return "running" if self.info.get("status") == "running" else "unknown"

    def trial_ids(self) -> list[str]:
        """Leaderboard order first, then trials only found on disk."""
        ids = [r["trial_id"] for r in self.rows if r.get("trial_id")]
        return ids + [t for t in self.histories if t not in ids]

    def value(self, row: dict[str, str]) -> float:
        return _float(row.get(f"best_{self.metric}"))


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _parse(text: Any) -> Any:
    """A CSV cell back to int / float / JSON value / string."""
    if not isinstance(text, str):
        return text
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return text


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def trial_root(results: Path, info: dict[str, Any]) -> Path | None:
    """Tune's experiment folder (``search.storage_path`` or ``RESULTS/ray``, then the name);
    ``None`` when it lives in remote storage."""
    config = info.get("config") or {}
    storage = (config.get("search") or {}).get("storage_path") or str(results / "ray")
    if _is_remote(storage):
        return None
    storage = storage.removeprefix("file://")
    name = info.get("name") or config.get("name")
    base = Path(storage)
    if name and (base / name).is_dir():
        return base / name
    candidates = [p for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
    return candidates[0] if len(candidates) == 1 else (base / name if name else base)


def read_history(trial_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch results of one Tune trial: ``result.json`` lines, else ``progress.csv``.

    Every key of a line is kept, Tune's ``timestamp`` (Unix seconds of the report) included.
    Unreadable lines (a trial killed mid-write) are skipped; a restored trial that repeated an
    epoch keeps its last report of that epoch. Sorted by epoch.
    """
    rows: list[dict[str, Any]] = []
    rj = trial_dir / "result.json"
    if rj.is_file():
        for line in rj.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(item, dict):
                rows.append(item)
    if not rows and (trial_dir / "progress.csv").is_file():
        with (trial_dir / "progress.csv").open(newline="") as fh:
            rows = [{k: v if k in _TEXT_COLUMNS else _parse(v) for k, v in r.items()}
                    for r in csv.DictReader(fh)]
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in rows:
        epoch = r.get("epoch", r.get("training_iteration"))
        try:
            by_epoch[int(epoch)] = r
        except (TypeError, ValueError):
            continue
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_results(results: Path) -> SearchResults:
    """Read ``search.json``, ``leaderboard.csv`` and the Tune trial folders of a search."""
    results = Path(results)
    if not results.is_dir():
        raise DataError("results folder not found", file=results,
                        fix="give the folder `raygym search` printed (results/<name>)")
    info: dict[str, Any] = {}
    if (results / "search.json").is_file():
        try:
            info = json.loads((results / "search.json").read_text())
        except json.JSONDecodeError:
            raise DataError("search.json is damaged", file=results / "search.json") from None
    columns: list[str] = []
    rows: list[dict[str, str]] = []
    if (results / "leaderboard.csv").is_file():
        with (results / "leaderboard.csv").open(newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    if not info and not rows:
        raise DataError("not a raygym search results folder (no search.json or leaderboard.csv)",
                        file=results, fix="give the folder `raygym search` printed")
    histories: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, dict[str, Any]] = {}
    note = ""
    root = trial_root(results, info)
    if root is None:
        note = "Tune's trial folders are in remote storage; per-epoch curves are not shown."
    elif root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if not ((d / "result.json").is_file() or (d / "progress.csv").is_file()):
                continue
            hist = read_history(d)
            tid = str(hist[-1].get("trial_id") or d.name) if hist else d.name
            histories[tid] = hist
            if (d / "params.json").is_file():
                try:
                    params[tid] = json.loads((d / "params.json").read_text())
                except json.JSONDecodeError:
                    pass
    else:
        note = f"no Tune trial folders at {root}; per-epoch curves are not shown."
    return SearchResults(results, info, columns, rows, histories, params, note)


# ============================================================================== sections
def _summary(doc: _Doc, res: SearchResults) -> None:
    doc.section("summary")
    s = res.search_cfg
    summary = res.info.get("summary") or {}
    counts: dict[str, int] = {}
    for tid in res.trial_ids():
        st = res.status(tid)
        counts[st] = counts.get(st, 0) + 1
    ok = [r for r in res.rows if r.get("status") != "failed" and not math.isnan(res.value(r))]
    rows: list[tuple[str, Any]] = [
        ("experiment", res.name),
        ("search status", res.info.get("status", "unknown")),
        ("algorithm / scheduler", f"{s.get('algorithm', '?')} / {s.get('scheduler', '?')}"
         + (f" (grace {s.get('grace_period')}, reduction {s.get('reduction_factor')})"
            if s.get("scheduler") == "asha" else "")),
        ("metric", f"{res.metric} ({res.mode})"),
        ("trials", f"{sum(counts.values())}: "
         + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))),
    ]
    if ok:
        best = ok[0]
        rows.append(("best trial", f"{best['trial_id']}: {res.metric} "
                     f"{res.value(best):.4f} at epoch {best.get('best_epoch', '?')}"))
        rows.append(("best parameters", ", ".join(
            f"{k}={_cell(_parse(best.get(k, '')))}" for k in res.param_keys)))
    if summary:
        rows.append(("epochs trained (all trials)", summary.get("total_epochs")))
        wall = summary.get("wall_s")
        if wall:
            rows.append(("search wall time", f"{wall:.0f} s ({wall / 60:.1f} min); sum over "
                         f"trials {summary.get('sum_trial_s') or 0:.0f} s"))
    doc.kv(rows)
    if res.info.get("status") == "running":
        doc.note("search.json says the search is still running (or was interrupted): this "
                 "report shows what is on disk now.")


def _leaderboard(doc: _Doc, res: SearchResults) -> None:
    doc.section("leaderboard")
    if not res.rows:
        doc.note("no leaderboard.csv yet (the search is running or was interrupted); trials "
                 "found on disk: " + (", ".join(res.histories) or "none"))
        return
    metric_col = f"best_{res.metric}"
    wanted = (["rank", "trial_id", "status", metric_col] + res.param_keys
              + [c for c in res.columns if c.startswith("iou/")]
              + ["best_epoch", "epochs", "val_loss", "wall_s"])
    cols = [c for c in wanted if c in res.columns]
    short = [c.split(".")[-1] for c in res.param_keys]
    heads = [c.split(".")[-1] if c in res.param_keys and short.count(c.split(".")[-1]) == 1
             and c.split(".")[-1] not in ("name", "type", "kind") else c for c in cols]
    table_rows, classes = [], []
    for i, r in enumerate(res.rows):
        table_rows.append([r.get(c, "") if c in _TEXT_COLUMNS else _parse(r.get(c, ""))
                           for c in cols])
        st = r.get("status", "")
        classes.append("failed" if st == "failed" else "best" if i == 0 else
                       "pruned" if st not in _NOT_PRUNED else "")
    doc.table(heads, table_rows, classes)
    doc.text(f"{metric_col}: the trial's {res.metric} at its best epoch (lowest validation "
             "loss, whose weights are kept); iou/<class> at that epoch. Green: the best "
             "trial; grey: stopped early by the scheduler; red: failed."
             + (f" Searched keys: {', '.join(res.param_keys)}." if res.param_keys else ""))
    failed = [r for r in res.rows if r.get("status") == "failed" or r.get("error")]
    if failed:
        doc.heading("Failed trials")
        doc.table(["trial_id", "error"], [[r["trial_id"], r.get("error", "")] for r in failed],
                  ["failed"] * len(failed))


def _effects(doc: _Doc, res: SearchResults) -> None:
    doc.section("effects")
    ok = [r for r in res.rows if r.get("status") != "failed" and not math.isnan(res.value(r))]
    space = res.space
    if len(ok) < 2 or not space:
        doc.note("needs at least two successful trials and a searched key.")
        return
    from raygym.plots import _plt

    plt = _plt()
    metric = res.metric
    n = len(space)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    statuses = {r["trial_id"]: r.get("status", "") for r in ok}
    for ax, d in zip(axes.flat, space, strict=False):
        key = d["path"]
        pts = [(_parse(r.get(key, "")), res.value(r), r["trial_id"]) for r in ok
               if r.get(key, "") != ""]
        if d.get("kind") in _CATEGORICAL:
            labels = [_vstr(v) for v in (d.get("values") or [])]
            seen = [_vstr(p[0]) for p in pts]
            labels += [s for s in dict.fromkeys(seen) if s not in labels]
            xs = {lab: i for i, lab in enumerate(labels)}
            rng = np.random.default_rng(0)
            means = []
            for lab, i in xs.items():
                vals = [v for (x, v, _) in pts if _vstr(x) == lab]
                if vals:
                    means.append((i, float(np.mean(vals)), len(vals)))
            ax.bar([m[0] for m in means], [m[1] for m in means], width=0.6, color="#9ecae1",
                   edgecolor="#3182bd", label="mean")
            for x, v, tid in pts:
                pruned = statuses.get(tid) not in ("completed", "early-stopped")
                ax.scatter(xs[_vstr(x)] + rng.uniform(-0.15, 0.15), v, s=26, zorder=3,
                           color="#7f7f7f" if pruned else "#08519c",
                           marker="v" if pruned else "o")
            for i, m, cnt in means:
                ax.annotate(f"{m:.3f}\n(n={cnt})", (i, m), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(range(len(labels)), [_short(lab) for lab in labels],
                          rotation=20 if max(len(lab) for lab in labels) > 8 else 0)
        else:
            for x, v, tid in pts:
                pruned = statuses.get(tid) not in ("completed", "early-stopped")
                ax.scatter(x, v, s=26, color="#7f7f7f" if pruned else "#08519c",
                           marker="v" if pruned else "o")
            if d.get("kind") == "loguniform":
                ax.set_xscale("log")
        ax.set_title(key, fontsize=10)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3, axis="y")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{metric} per trial by searched key (blue: ran to the end; grey triangles: "
                 "pruned, best value before pruning)", fontsize=9)
    fig.tight_layout()
    doc.figure(fig, "effects", f"{metric} of each trial by the value of each searched key; bars "
               "are the mean over trials with that value.")
    _grouped_view(doc, res, ok)
    doc.text("Segmentation Gym's paper compared mean IoU by filters, loss and plain vs residual "
             "UNet on a full factorial grid; a sampled search with early stopping visits the "
             "combinations unevenly, so read the means together with their n.")


def _vstr(value: Any) -> str:
    """One spelling per categorical value (dict / list choices as sorted JSON)."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _grouped_view(doc: _Doc, res: SearchResults, ok: list[dict[str, str]]) -> None:
    """Gym's figure: the metric by filters (x), one line per architecture x loss."""
    cat = [d["path"] for d in res.space if d.get("kind") in _CATEGORICAL]
    if len(cat) < 2:
        return
    x_key = next((k for k in cat if k.endswith("filters")), cat[0])
    groups = [k for k in cat if k != x_key]
    from raygym.plots import _plt

    plt = _plt()
    x_vals = list(dict.fromkeys(_vstr(_parse(r.get(x_key, ""))) for r in ok))
    spec = next(d for d in res.space if d["path"] == x_key)
    order = [_vstr(v) for v in spec.get("values") or []]
    x_vals = [v for v in order if v in x_vals] + [v for v in x_vals if v not in order]
    by_group: dict[str, dict[str, list[float]]] = {}
    for r in ok:
        g = ", ".join(f"{k.split('.')[-1]}={_parse(r.get(k, ''))}" for k in groups)
        by_group.setdefault(g, {}).setdefault(_vstr(_parse(r.get(x_key, ""))), []).append(
            res.value(r))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(1, len(by_group))
    cmap = plt.get_cmap("tab10")
    for gi, (g, vals) in enumerate(sorted(by_group.items())):
        xs = [i + (gi - (len(by_group) - 1) / 2) * width for i, x in enumerate(x_vals)
              if x in vals]
        ys = [float(np.mean(vals[x])) for x in x_vals if x in vals]
        ax.bar(xs, ys, width=width * 0.95, color=cmap(gi % 10), label=g)
        for xx, x in zip(xs, [x for x in x_vals if x in vals], strict=True):
            for v in vals[x]:
                ax.scatter(xx, v, s=10, color="black", zorder=3)
    ax.set_xticks(range(len(x_vals)), x_vals)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"mean {res.metric}")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(f"{res.metric} by {x_key.split('.')[-1]}, grouped by "
                 + ", ".join(k.split(".")[-1] for k in groups), fontsize=10)
    doc.figure(fig, "effects_grouped", f"Gym's paper view: mean {res.metric} by {x_key} for "
               "each combination of the other categorical keys (dots: single trials).")


def _epoch_series(hist: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in hist:
        v = _float(r.get(key))
        if not math.isnan(v):
            xs.append(int(r.get("epoch", r.get("training_iteration", len(xs) + 1))))
            ys.append(v)
    return xs, ys


def _label(res: SearchResults, tid: str) -> str:
    params = res.trial_params.get(tid) or next(
        ({k: _parse(r.get(k, "")) for k in res.param_keys} for r in res.rows
         if r.get("trial_id") == tid), {})
    short = ", ".join(f"{k.split('.')[-1]}={_cell(v)}" for k, v in params.items())
    return f"{tid} ({_short(short, 60)})" if short else tid


def _curves(doc: _Doc, res: SearchResults) -> None:
    doc.section("curves")
    if res.trials_note:
        doc.note(res.trials_note)
    ranked = [tid for tid in res.trial_ids()
              if res.status(tid) != "failed" and res.histories.get(tid)]
    top = ranked[:TOP_CURVES]
    if not top:
        if not res.trials_note:
            doc.note("no per-epoch results of a successful trial were found.")
        return
    from raygym.plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.9))
    cmap = plt.get_cmap("tab10")
    for i, tid in enumerate(top):
        hist = res.histories[tid]
        for ax, key in zip(axes, ("val_mean_iou", "val_loss"), strict=True):
            xs, ys = _epoch_series(hist, key)
            ax.plot(xs, ys, marker="o", ms=3, color=cmap(i), label=_label(res, tid),
                    linestyle="-" if res.status(tid) in ("completed", "early-stopped") else "--")
    axes[0].set_title("validation mean IoU")
    axes[0].set_ylim(0, 1)
    axes[1].set_title("validation loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02 - 0.045 * math.ceil(len(top) / 2)))
    fig.tight_layout()
    doc.figure(fig, "curves", f"val mean IoU and val loss per epoch of the top {len(top)} "
               "trials (dashed: stopped early by the scheduler).")


def _pruning(doc: _Doc, res: SearchResults) -> None:
    doc.section("pruning")
    s = res.search_cfg
    scheduler = s.get("scheduler", "asha")
    metric = res.metric
    tids = [t for t in res.trial_ids() if res.histories.get(t)]
    if not tids:
        doc.note(res.trials_note or "no per-epoch results were found.")
        return
    from raygym.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.4))
    max_epoch = 1
    n_pruned = n_failed = 0
    cmap = plt.get_cmap("tab10")
    colour_i = 0
    for tid in tids:
        xs, ys = _epoch_series(res.histories[tid], metric)
        if not xs:
            continue
        max_epoch = max(max_epoch, xs[-1])
        st = res.status(tid)
        if st == "failed":
            n_failed += 1
            ax.plot(xs, ys, color="#d62728", linestyle=":", linewidth=1.2)
            ax.scatter(xs[-1:], ys[-1:], marker="x", color="#d62728", s=40, zorder=3)
        elif st in _NOT_PRUNED:
            ax.plot(xs, ys, color=cmap(colour_i % 10), linewidth=1.8, marker="o", ms=3,
                    label=f"{tid} ({st})")
            colour_i += 1
        else:
            n_pruned += 1
            ax.plot(xs, ys, color="#9a9a9a", linestyle="--", linewidth=1.1, marker=".")
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="#9a9a9a", linestyle="--", label=f"pruned ({n_pruned})")]
    if n_failed:
        extra.append(Line2D([], [], color="#d62728", linestyle=":", marker="x",
                            label=f"failed ({n_failed})"))
    if scheduler == "asha":
        grace = int(s.get("grace_period") or 1)
        rf = float(s.get("reduction_factor") or 2)
        max_t = int((res.config.get("train") or {}).get("max_epochs") or max_epoch)
        rung = float(grace)
        while rung < max_t:
            ax.axvline(rung, color="#555", linestyle=":", linewidth=0.8)
            ax.text(rung, 1.0, f" rung {rung:g}", transform=ax.get_xaxis_transform(),
                    fontsize=7, va="top", color="#555")
            rung *= rf
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{scheduler}: {len(tids)} trials, {n_pruned} stopped early", fontsize=10)
    doc.figure(fig, "pruning", f"{metric} per epoch of every trial; grey dashed: stopped by the "
               f"{scheduler} scheduler"
               + (", dotted verticals: ASHA's rungs (where it compares trials)"
                  if scheduler == "asha" else "") + ".")
    epochs = sum(len(res.histories[t]) for t in tids)
    budget = len(tids) * int((res.config.get("train") or {}).get("max_epochs") or max_epoch)
    if budget:
        doc.text(f"{epochs} epochs trained out of {budget} without early stopping "
                 f"({100 * epochs / budget:.0f} %).")


# ---------------------------------------------------------------------------- anytime curve
AnytimeRecord = tuple[float, str, int, float]
"""One reported epoch: (Tune ``timestamp`` in s, trial id, epoch, score)."""


@dataclass(frozen=True)
class AnytimeSeries:
    """The anytime curve of a search, one point per reported epoch (see :func:`anytime_series`).

    ``epochs[i]`` is ``i + 1``: epochs spent by the whole search after the (i+1)-th report;
    ``best[i]`` the best score reported up to then (NaN before the first finite score);
    ``last_epoch_at[trial]`` the epoch count at which that trial's last epoch was reported;
    ``best_trial`` the trial whose report first reached the final best (None: no score).
    """

    epochs: list[int]
    best: list[float]
    last_epoch_at: dict[str, int]
    best_trial: str | None

    @property
    def total_epochs(self) -> int:
        return len(self.epochs)

    @property
    def final_best(self) -> float:
        return self.best[-1] if self.best else math.nan

    @property
    def first_best_at(self) -> int | None:
        """Epoch count at which the final best was first reached (None without a score)."""
        final = self.final_best
        if math.isnan(final):
            return None
        return next(x for x, y in zip(self.epochs, self.best, strict=True) if y == final)

    def best_at(self, x: int) -> float:
        """The best-so-far score after ``x`` epochs (1-based, as in ``epochs``)."""
        return self.best[x - 1] if 1 <= x <= len(self.best) else math.nan


def anytime_series(records: Iterable[AnytimeRecord], mode: str = "max") -> AnytimeSeries:
    """Best-so-far score of a search against the epochs it has spent (an anytime curve).

    ``records``: one ``(timestamp_s, trial_id, epoch, value)`` per reported epoch of every
    trial (timestamp: Tune's ``timestamp``, Unix seconds; epoch: 1-based; value: the score,
    NaN when the epoch has none). They are ordered by timestamp, ties broken by trial id and
    then epoch; the i-th record (1-based) puts the search at ``i`` epochs spent. ``mode``:
    ``"max"`` or ``"min"``, which way the score improves. A NaN value spends an epoch without
    changing the best.
    """
    ordered = sorted(records, key=lambda r: (float(r[0]), str(r[1]), int(r[2])))
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    epochs: list[int] = []
    best: list[float] = []
    last: dict[str, int] = {}
    current = math.nan
    best_trial: str | None = None
    for x, (_ts, trial, _epoch, value) in enumerate(ordered, start=1):
        v = float(value)
        if not math.isnan(v) and (math.isnan(current) or better(v, current)):
            current, best_trial = v, str(trial)
        epochs.append(x)
        best.append(current)
        last[str(trial)] = x
    return AnytimeSeries(epochs, best, last, best_trial)


def anytime_records(res: SearchResults) -> tuple[list[AnytimeRecord], int]:
    """Every reported epoch of every trial as an :data:`AnytimeRecord`, scored by
    ``best_<metric>`` (the score of the epoch whose weights are kept), else ``<metric>``.
    Returns the records and the number of epochs skipped for want of a ``timestamp``."""
    records: list[AnytimeRecord] = []
    skipped = 0
    metric = res.metric
    for tid, hist in res.histories.items():
        for i, row in enumerate(hist, start=1):
            # a replayed search reports many epochs a second: its own clock orders them
            ts = _float(row.get("replay_wall", row.get("timestamp")))
            if math.isnan(ts):
                skipped += 1
                continue
            value = _float(row.get(f"best_{metric}"))
            if math.isnan(value):
                value = _float(row.get(metric))
            epoch = row.get("epoch", row.get("training_iteration", i))
            try:
                epoch = int(epoch)
            except (TypeError, ValueError):
                epoch = i
            records.append((ts, tid, epoch, value))
    return records, skipped


def _replay_line(res: SearchResults, series: AnytimeSeries,
                 replay: dict[str, Any]) -> str | None:
    """Where the search's best configuration sits in a replayed (recorded) table, or None."""
    ranks = [r for r in replay.get("ranks") or [] if isinstance(r, dict)]
    ok = [r for r in res.rows if r.get("status") != "failed" and not math.isnan(res.value(r))]
    tid = ok[0]["trial_id"] if ok else series.best_trial
    if tid is None or not ranks:
        return None
    spellings: dict[str, set[str]] = {}
    row = next((r for r in res.rows if r.get("trial_id") == tid), None)
    for key in res.param_keys:
        if row is not None and row.get(key, "") != "":
            raw = row[key]
            spellings.setdefault(key, set()).update({raw, str(_parse(raw)),
                                                     _vstr(_parse(raw))})
    for key, value in (res.trial_params.get(tid) or {}).items():
        spellings.setdefault(key, set()).update({str(value), _vstr(value)})

    def matches(entry: dict[str, Any]) -> bool:
        params = entry.get("params") or {}
        return bool(params) and all(str(v) in spellings.get(k, set()) or
                                    _vstr(v) in spellings.get(k, set())
                                    for k, v in params.items())

    hit = next((r for r in ranks if matches(r)), None)
    grid_best = _float(replay.get("grid_best"))
    if hit is None:
        return (f"Replay: the best trial {tid}'s configuration was not found among the "
                f"{len(ranks)} configurations of the recorded table.")
    score = _float(hit.get("score"))
    gap = abs(grid_best - score)
    return (f"Replay: the search's best configuration (trial {tid}) ranks {hit.get('rank')} "
            f"of {len(ranks)} configurations of the recorded table; its ground-truth "
            f"{res.metric} is {score:.4f} vs the grid's best {grid_best:.4f} "
            f"(gap {gap:.4f}).")


def _anytime(doc: _Doc, res: SearchResults) -> None:
    doc.section("anytime")
    records, skipped = anytime_records(res)
    if not records:
        doc.note(res.trials_note or ("the per-epoch results have no timestamp: no anytime "
                                     "curve." if skipped else
                                     "no per-epoch results were found."))
        return
    series = anytime_series(records, res.mode)
    metric = res.metric
    replay = res.info.get("replay")
    replay = replay if isinstance(replay, dict) else None
    from matplotlib.lines import Line2D

    from raygym.plots import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    ax.step(series.epochs, series.best, where="post", color="#08519c", linewidth=2.0,
            label=f"best {metric} so far")
    groups: dict[str, list[int]] = {"finished": [], "pruned": [], "failed": []}
    for tid, x in series.last_epoch_at.items():
        st = res.status(tid)
        if st in ("completed", "early-stopped"):
            groups["finished"].append(x)
        elif st == "failed":
            groups["failed"].append(x)
        elif st not in _NOT_PRUNED:
            groups["pruned"].append(x)
    style = {"finished": ("o", "#2ca02c", "finished (completed / early-stopped)"),
             "pruned": ("v", "#7f7f7f", "stopped by the scheduler"),
             "failed": ("x", "#d62728", "failed")}
    for name, xs in groups.items():
        if not xs:
            continue
        marker, colour, label = style[name]
        xs = sorted(xs)
        ax.scatter(xs, [series.best_at(x) for x in xs], marker=marker, color=colour, s=34,
                   zorder=3, label=f"{label} ({len(xs)})")
        ax.scatter(xs, [0.0] * len(xs), marker=marker, color=colour, s=22, zorder=3,
                   transform=ax.get_xaxis_transform(), clip_on=False)
    extra: list[Any] = []
    if replay is not None:
        grid_best = _float(replay.get("grid_best"))
        grid_epochs = _float(replay.get("grid_epochs"))
        if not math.isnan(grid_best):
            ax.axhline(grid_best, color="#d62728", linestyle="--", linewidth=1.0)
            extra.append(Line2D([], [], color="#d62728", linestyle="--",
                                label=f"grid best ({grid_best:.4f})"))
        if not math.isnan(grid_epochs):
            ax.axvline(grid_epochs, color="#9467bd", linestyle=":", linewidth=1.2)
            extra.append(Line2D([], [], color="#9467bd", linestyle=":",
                                label=f"whole grid ({grid_epochs:g} epochs)"))
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra, fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel("epochs spent by the search (all trials, in the order reported)")
    ax.set_ylabel(f"best {metric} so far ({res.mode})")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"anytime curve: {len(series.last_epoch_at)} trials, "
                 f"{series.total_epochs} epochs", fontsize=10)
    fig.tight_layout()
    doc.figure(fig, "anytime", f"Best {metric} reported so far (best_{metric}: the score of the "
               "epoch whose weights are kept) against the epochs the whole search has spent; "
               "markers: where each trial reported its last epoch.")
    n_pruned = len(groups["pruned"])
    first = series.first_best_at
    text = f"The search spent {series.total_epochs} epochs (all trials together). "
    if first is None:
        text += f"No trial reported a {metric}. "
    else:
        text += (f"The final best {metric} {series.final_best:.4f} was first reached after "
                 f"{first} epochs ({100 * first / series.total_epochs:.0f} % of the total), "
                 f"by trial {series.best_trial}. ")
    text += (f"{n_pruned} of {len(series.last_epoch_at)} trials were pruned (stopped by the "
             f"{res.search_cfg.get('scheduler', 'asha')} scheduler).")
    if skipped:
        text += f" {skipped} epochs without a timestamp are not shown."
    doc.text(text)
    if replay is not None:
        line = _replay_line(res, series, replay)
        grid_epochs = _float(replay.get("grid_epochs"))
        if not math.isnan(grid_epochs) and grid_epochs > 0:
            cost = (f"Running the whole grid costs {grid_epochs:g} epochs; this search spent "
                    f"{series.total_epochs} ({100 * series.total_epochs / grid_epochs:.0f} %).")
            line = f"{line} {cost}" if line else cost
        if line:
            doc.text(line)


def _optuna(doc: _Doc, res: SearchResults) -> None:
    doc.section("optuna")
    db = res.path / "optuna.db"
    study = None
    if not db.is_file():
        doc.note(f"no optuna.db (algorithm {res.search_cfg.get('algorithm', 'random/grid')}): "
                 "no Optuna study to analyse; parallel coordinates from the leaderboard below.")
    else:
        try:
            study = _load_study(db, res.name)
        except Exception as err:  # a damaged or foreign database should not sink the report
            doc.note(f"could not open the Optuna study in {db.name}: {_one_line(err)}")
    if study is not None:
        _importances(doc, res, study)
    _parallel(doc, res)


def _load_study(db: Path, name: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{db}"
    names = optuna.get_all_study_names(storage=url)
    if name not in names:
        if len(names) != 1:
            raise ValueError(f"no study named {name!r} (found {names})")
        name = names[0]
    return optuna.load_study(study_name=name, storage=url)


def _importances(doc: _Doc, res: SearchResults, study: Any) -> None:
    import optuna

    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    doc.text(f"Study '{study.study_name}' ({study.direction.name.lower()}): "
             + ", ".join(f"{v} {k}" for k, v in sorted(states.items())) + " trials. "
             "Pruned trials report their value at the epoch they were stopped.")
    doc.heading("Parameter importances")
    if len(complete) < 2:
        doc.note(f"parameter importances need at least 2 complete trials; the study has "
                 f"{len(complete)}.")
        return
    try:
        imp = optuna.importance.get_param_importances(study)
    except Exception as err:  # e.g. every complete trial has the same parameters
        doc.note(f"parameter importances could not be computed: {_one_line(err)}")
        return
    if not imp:
        doc.note("no parameter varied across the complete trials.")
        return
    from raygym.plots import _plt

    plt = _plt()
    names = list(imp)[::-1]
    vals = [imp[k] for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, vals, color="#3182bd")
    for y, v in enumerate(vals):
        ax.text(v, y, f" {v:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, max(1.0, max(vals) * 1.15))
    ax.set_xlabel("importance (fANOVA, share of the variance of the objective)")
    ax.set_title(f"{len(complete)} complete trials", fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    doc.figure(fig, "importances", "Optuna parameter importances (fANOVA over complete trials; "
               "with few trials treat them as a hint, not a ranking).")
    if len(complete) < 10:
        doc.note(f"only {len(complete)} complete trials: importances are unstable.")


def _parallel(doc: _Doc, res: SearchResults) -> None:
    """One line per trial across normalised parameter axes, coloured by the metric."""
    doc.heading("Parallel coordinates")
    ok = [r for r in res.rows if r.get("status") != "failed" and not math.isnan(res.value(r))]
    space = [d for d in res.space if d.get("path") in res.param_keys]
    if len(ok) < 2 or not space:
        doc.note("needs at least two successful trials.")
        return
    from matplotlib import cm, colors

    from raygym.plots import _plt

    plt = _plt()
    axes_spec: list[tuple[str, Callable[[Any], float], list[tuple[float, str]]]] = []
    for d in space:
        key = d["path"]
        vals = [_parse(r.get(key, "")) for r in ok]
        if d.get("kind") in _CATEGORICAL:
            cats = [_vstr(v) for v in d.get("values") or []]
            cats += [c for c in dict.fromkeys(_vstr(v) for v in vals) if c not in cats]
            span = max(1, len(cats) - 1)

            def norm_cat(v: Any, cats: list[str] = cats, span: int = span) -> float:
                return cats.index(_vstr(v)) / span if _vstr(v) in cats else math.nan

            ticks = [(i / span, _short(c, 14)) for i, c in enumerate(cats)]
            axes_spec.append((key, norm_cat, ticks))
        else:
            nums = [float(v) for v in vals if isinstance(v, int | float)]
            lo = float(d["low"]) if d.get("low") is not None else min(nums, default=0.0)
            hi = float(d["high"]) if d.get("high") is not None else max(nums, default=1.0)
            log = d.get("kind") == "loguniform" and lo > 0
            f = (lambda x: math.log10(x)) if log else (lambda x: x)
            a, b = f(lo), f(hi)
            span_f = (b - a) or 1.0

            def norm_num(v: Any, a: float = a, s: float = span_f,
                         f: Callable[[float], float] = f) -> float:
                return (f(float(v)) - a) / s if isinstance(v, int | float) else math.nan

            ticks = [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")]
            axes_spec.append((key, norm_num, ticks))
    metric_vals = [res.value(r) for r in ok]
    lo_m, hi_m = min(metric_vals), max(metric_vals)
    axes_spec.append((res.metric, lambda v: (v - lo_m) / ((hi_m - lo_m) or 1.0),
                      [(0.0, f"{lo_m:.3f}"), (1.0, f"{hi_m:.3f}")]))
    n = len(axes_spec)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * n), 4.2))
    norm = colors.Normalize(vmin=lo_m, vmax=hi_m if hi_m > lo_m else lo_m + 1e-9)
    cmap = plt.get_cmap("viridis")
    order = sorted(ok, key=lambda r: res.value(r) * (1 if res.mode == "max" else -1))
    for r in order:  # best drawn last, on top
        ys = [fn(_parse(r.get(key, ""))) if key != res.metric else fn(res.value(r))
              for key, fn, _ in axes_spec]
        pruned = r.get("status") not in ("completed", "early-stopped")
        ax.plot(range(n), ys, color=cmap(norm(res.value(r))), linewidth=2.0,
                alpha=0.9, linestyle="--" if pruned else "-", marker="o", ms=3)
    for i, (_key, _, ticks) in enumerate(axes_spec):
        ax.axvline(i, color="#444", linewidth=0.8)
        for y, lab in ticks:
            ax.text(i + 0.03, y, lab, fontsize=7, va="center", ha="left",
                    bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5})
    ax.set_xticks(range(n), [k if len(k) < 16 else k.split(".")[-1] for k, _, _ in axes_spec],
                  fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.1, n - 0.6)
    ax.set_ylim(-0.06, 1.06)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.03,
                 label=res.metric)
    ax.set_title(f"{len(ok)} trials (dashed: pruned; log axis for log-uniform keys)",
                 fontsize=9)
    doc.figure(fig, "parallel", "Parallel coordinates: each line is one trial across its "
               f"sampled values (axes normalised to the searched range), coloured by {res.metric}.")


# ---------------------------------------------------------------------------- best model
@dataclass
class _Evaluation:
    split: str
    metrics: dict[str, Any]
    matrix: np.ndarray
    samples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]]


def evaluate_best(artifact: Path, batch_size: int = 16) -> _Evaluation | str:
    """Score an artifact on its dataset's test split (or val); a note string when impossible."""

    from raygym.data.dataset import PreparedDataset
    from raygym.inference.scoring import load_model, score_batch
    from raygym.train.metrics import metrics_from_confusion

    loaded = load_model(artifact, device="cpu")
    card = loaded.card
    ds_path = Path(str(card.dataset.get("path", "")))
    if not ds_path or not (ds_path / "card.json").is_file():
        return (f"the dataset the model was trained on ({ds_path}) is gone: confusion matrix "
                "and sample predictions skipped.")
    ds = PreparedDataset(ds_path)
    want = card.dataset.get("config_hash")
    if want and ds.card.config_hash != want:
        return (f"the dataset at {ds_path} was prepared again with different settings since "
                "this model was trained: confusion matrix and samples skipped.")
    split = next((s for s in ("test", "val") if ds.has_split(s)), None)
    if split is None:
        return f"the dataset at {ds_path} has no test or val split."
    arrays = ds.load_numpy(split, originals_only=True)
    k = card.num_classes
    total = np.zeros((k, k), dtype=np.int64)
    per_image: list[tuple[float, int]] = []
    preds: list[np.ndarray] = []
    for start in range(0, len(arrays), batch_size):
        sl = slice(start, start + batch_size)
        cms, _, _, pred = score_batch(loaded, arrays.images[sl], arrays.labels[sl],
                                      arrays.valid_hw[sl])
        for i, cm in enumerate(cms):
            total += cm
            per_image.append((metrics_from_confusion(cm)["mean_iou"], start + i))
        preds.extend(pred)
    metrics = metrics_from_confusion(total, card.classes)
    scored = sorted((p for p in per_image if not math.isnan(p[0])), key=lambda p: -p[0])
    picks = [scored[0], scored[len(scored) // 2], scored[-1]] if len(scored) >= 3 else scored
    samples = []
    for miou, idx in picks[:N_SAMPLES]:
        h, w = (int(v) for v in arrays.valid_hw[idx])
        h, w = (h, w) if h > 0 else arrays.images[idx].shape[:2]
        label = arrays.labels[idx][:h, :w]
        pred = preds[idx][:h, :w].copy()
        samples.append((arrays.keys[idx], arrays.images[idx][:h, :w], label, pred, miou))
    return _Evaluation(split, metrics, total, samples)


def _best(doc: _Doc, res: SearchResults) -> None:
    doc.section("best")
    found = sorted((res.path / "best").glob("rank1_*")) if (res.path / "best").is_dir() else []
    if not found:
        doc.note("no exported model (best/rank1_*): the search is running, or every trial "
                 "failed.")
        return
    artifact = found[0]
    from raygym.inference.artifact import read_model_card

    try:
        card = read_model_card(artifact)
    except DataError as err:
        doc.note(str(err))
        return
    tr = card.training or {}
    rows: list[tuple[str, Any]] = [
        ("artifact", str(artifact)),
        ("trial", f"{tr.get('trial_id', '?')} ({tr.get('status', '?')}, best epoch "
                  f"{tr.get('best_epoch', '?')} of {tr.get('epochs_run', '?')})"),
        ("architecture", card.arch),
        ("model parameters", ", ".join(f"{k}={v}" for k, v in card.model_params.items())),
        ("trainable parameters", f"{card.trainable_params:,}"),
        ("input", f"{card.in_channels} bands, {card.target_size[0]} x {card.target_size[1]} px"),
        ("classes", ", ".join(card.classes)),
        ("searched parameters", ", ".join(f"{k}={_cell(v)}"
                                          for k, v in (tr.get("params") or {}).items())),
        ("dataset", f"{card.dataset.get('path', '?')} (splits "
                    f"{card.dataset.get('splits', {})})"),
    ]
    doc.kv(rows)
    m = card.metrics
    doc.heading("Validation scores at the best epoch (from training)")
    doc.table(["metric", "value"], [[k, _float(m.get(f"val_{k}"))] for k in
                                    ("mean_iou", "mean_dice", "accuracy", "fw_iou", "mcc",
                                     "loss") if f"val_{k}" in m])
    try:
        ev = evaluate_best(artifact)
    except Exception as err:  # any load / inference problem: say so, keep the report
        ev = f"evaluating the best model failed: {_one_line(err)}"
    per_class = []
    for c in card.classes:
        row: list[Any] = [c] + [_float(m.get(f"val_{k}/{c}"))
                                for k in ("iou", "f1", "precision", "recall")]
        if isinstance(ev, _Evaluation):
            row += [ev.metrics.get(f"{k}/{c}") for k in ("iou", "f1", "precision", "recall")]
            row.append(int(ev.matrix[card.classes.index(c)].sum()))
        per_class.append(row)
    cols = ["class", "val IoU", "val F1", "val precision", "val recall"]
    if isinstance(ev, _Evaluation):
        cols += [f"{ev.split} IoU", f"{ev.split} F1", f"{ev.split} precision",
                 f"{ev.split} recall", f"{ev.split} pixels"]
    doc.heading("Per-class scores")
    doc.table(cols, per_class)
    if not isinstance(ev, _Evaluation):
        doc.note(ev)
        return
    em = ev.metrics
    doc.text(f"Recomputed on the '{ev.split}' split (original images, no augmented copies, "
             f"{em['num_pixels']:,} labelled pixels): mean IoU {em['mean_iou']:.4f}, mean "
             f"Dice {em['mean_dice']:.4f}, accuracy {em['accuracy']:.4f}, frequency-weighted "
             f"IoU {em['fw_iou']:.4f}, MCC {em['mcc']:.4f}"
             + (f"; absent classes: {', '.join(em['absent_classes'])}"
                if em.get("absent_classes") else "") + ".")
    from raygym.plots import confusion_heatmap

    path = confusion_heatmap(ev.matrix, card.classes, doc.fig_dir / "confusion.png",
                             title=f"{ev.split} confusion matrix (row-normalised)")
    doc._add("figure", (path, f"Confusion matrix of the best model on the {ev.split} split "
                        "(rows: truth, columns: prediction; counts in brackets)."))
    if ev.samples:
        _samples_figure(doc, ev, card.classes)


def _samples_figure(doc: _Doc, ev: _Evaluation, classes: list[str]) -> None:
    from raygym.data.preview import class_colours, display_rgb, overlay
    from raygym.plots import _plt

    plt = _plt()
    k = len(classes)
    n = len(ev.samples)
    aspect = float(np.mean([s[1].shape[1] / s[1].shape[0] for s in ev.samples]))
    panel_h = 3.4
    panel_w = min(4.5, max(1.6, panel_h * aspect))
    fig, axes = plt.subplots(n, 3, figsize=(3 * panel_w + 0.6, (panel_h + 0.7) * n + 0.4),
                             squeeze=False)
    what = ["best", "median", "worst"] if n == 3 else [""] * n
    for i, (key, image, label, pred, miou) in enumerate(ev.samples):
        axes[i][0].imshow(display_rgb(image), interpolation="nearest")
        axes[i][0].set_title(f"{what[i]}: image mean IoU {miou:.3f}", fontsize=8)
        axes[i][1].text(0.5, -0.04, key, transform=axes[i][1].transAxes, ha="center",
                        va="top", fontsize=6, color="#555")
        axes[i][1].imshow(overlay(image, label, k), interpolation="nearest")
        axes[i][1].set_title("truth", fontsize=8)
        pred = np.where(label == 255, 255, pred).astype(np.uint8) if label.shape == pred.shape \
            else pred
        axes[i][2].imshow(overlay(image, pred, k), interpolation="nearest")
        axes[i][2].set_title("prediction", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c / 255) for c in class_colours(k)]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="black"))
    fig.legend(handles, [*classes, "ignored"], loc="lower center", ncol=min(k + 1, 6),
               fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    doc.figure(fig, "samples", f"{ev.split} images with the best, median and worst per-image "
               "mean IoU: image | truth | prediction (pixels the labels ignore are not "
               "coloured in the prediction either).")


# ---------------------------------------------------------------------------- environment
def environment_rows() -> list[tuple[str, str]]:
    """Versions and hardware of the machine building the report."""
    from importlib import metadata

    import raygym

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    rows = [("raygym", raygym.__version__), ("python", platform.python_version())]
    rows += [(d, version(d)) for d in ("torch", "ray", "optuna", "optuna-dashboard",
                                        "numpy", "matplotlib")]
    rows += [("platform", platform.platform()), ("CPUs", str(os.cpu_count()))]
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i)
                            for i in range(torch.cuda.device_count()))
    except Exception:  # a broken CUDA install must not sink the report
        gpu = "unknown"
    rows.append(("GPU", gpu))
    return rows


def _environment(doc: _Doc, res: SearchResults) -> None:
    doc.section("environment")
    doc.heading("Report built with")
    doc.kv(environment_rows())
    info = res.info
    summary = info.get("summary") or {}
    rows: list[tuple[str, Any]] = [("started", info.get("started", "?")),
                                   ("finished", info.get("finished", "not finished"))]
    if summary.get("wall_s") is not None:
        rows.append(("search wall time", f"{summary['wall_s']:.1f} s"))
        rows.append(("sum of trial times", f"{summary.get('sum_trial_s') or 0:.1f} s"))
    r = res.config.get("resources") or {}
    if r:
        rows.append(("resources per trial", f"{r.get('workers_per_trial', 1)} worker(s) x "
                     f"{r.get('cpus_per_worker', '?')} CPU"
                     + (f" + {r.get('gpus_per_worker')} GPU" if r.get("gpus_per_worker")
                        else "")))
    s = res.search_cfg
    if s:
        rows.append(("trials / concurrent", f"{s.get('num_samples')} / "
                                            f"{s.get('max_concurrent')}"))
    nodes = {row.get("node_id") for row in res.rows if row.get("node_id")}
    if nodes:
        rows.append(("Ray nodes used", str(len(nodes))))
    train = res.config.get("train") or {}
    if train.get("precision"):
        rows.append(("precision", str(train["precision"])))
    doc.heading("Search")
    doc.kv(rows)
    doc.text("The versions above are those of the machine that built this report; the search "
             "may have run elsewhere (a Ray cluster).")


# ================================================================================= build
def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}"
    return " ".join(text.split())[:300]


def build_report(results: Path, out: Path | None = None) -> Path:
    """Write the HTML report of a search (default ``RESULTS/report.html``) and, beside it, the
    same content as ``<stem>/report.md`` + PNGs (``RESULTS/report/``). Returns the HTML path.

    Raises :class:`~raygym.errors.DataError` when ``results`` is not a search results folder.
    """
    results = Path(results).resolve()
    res = load_results(results)
    html_path = Path(out).resolve() if out is not None else results / "report.html"
    if html_path.suffix.lower() not in (".html", ".htm"):
        html_path = html_path / "report.html" if html_path.is_dir() else \
            html_path.with_suffix(".html")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    md_dir = html_path.with_suffix("")
    tmp_dir = md_dir.with_name(f".{md_dir.name}.tmp-{time.time_ns()}")
    tmp_dir.mkdir(parents=True)
    try:
        doc = _Doc(tmp_dir)
        builders: Iterable[tuple[str, Callable[[_Doc, SearchResults], None]]] = (
            ("summary", _summary), ("leaderboard", _leaderboard), ("effects", _effects),
            ("curves", _curves), ("pruning", _pruning), ("anytime", _anytime),
            ("optuna", _optuna), ("best", _best), ("environment", _environment))
        for sid, build in builders:
            n_before = len(doc.sections)
            try:
                build(doc, res)
            except Exception as err:  # one broken section must not lose the others
                del doc.sections[n_before:]
                doc.section(sid)
                doc.note(f"this section could not be built: {_one_line(err)}")
            finally:
                _close_figures()
        title = f"raygym search report: {res.name}"
        subtitle = (f"{results}  |  metric {res.metric} ({res.mode})  |  "
                    f"{len(res.trial_ids())} trials")
        (tmp_dir / "report.md").write_text(doc.to_markdown(title, subtitle), encoding="utf-8")
        page = doc.to_html(title, subtitle)
        replace_dir(tmp_dir, md_dir)
        write_text_atomic(html_path, page)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return html_path


def _close_figures() -> None:
    from raygym.plots import _plt

    _plt().close("all")
