"""The hyperparameter-effects section, Segmentation Gym's paper view: the metric of every trial
by each searched key (bars of the mean for categorical keys, a scatter for numeric ones), and
the metric by filters grouped by the other categorical keys."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raygym.report.document import ReportDocument
from raygym.report.figures import legend_outside, pyplot, shorten
from raygym.report.results import (
    CATEGORICAL_KINDS,
    FINISHED,
    SearchResults,
    category_order,
    category_text,
    parse_cell,
)
from raygym.search.space import short_key


def effects_section(doc: ReportDocument, res: SearchResults) -> None:
    """One panel per searched key, then the grouped view when two keys are categorical."""
    doc.section("effects")
    ok = res.scored_rows()
    space = res.space
    if len(ok) < 2 or not space:
        doc.note("needs at least two successful trials and a searched key.")
        return
    plt = pyplot()
    metric = res.metric
    n = len(space)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    statuses = {r["trial_id"]: r.get("status", "") for r in ok}
    for ax, d in zip(axes.flat, space, strict=False):
        key = d["path"]
        pts = [(parse_cell(r.get(key, "")), res.value(r), r["trial_id"]) for r in ok
               if r.get(key, "") != ""]
        if not pts:  # a conditional key whose branch no trial took
            ax.text(0.5, 0.5, "no trial set this key", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="#555555")
            ax.set_xticks([])
        elif d.get("kind") in CATEGORICAL_KINDS:
            labels = category_order(d, [p[0] for p in pts])
            xs = {lab: i for i, lab in enumerate(labels)}
            rng = np.random.default_rng(0)  # the same jitter on every rebuild
            means = []
            for lab, i in xs.items():
                vals = [v for (x, v, _) in pts if category_text(x) == lab]
                if vals:
                    means.append((i, float(np.mean(vals)), len(vals)))
            ax.bar([m[0] for m in means], [m[1] for m in means], width=0.6, color="#9ecae1",
                   edgecolor="#3182bd", label="mean")
            jitter = rng.uniform(-0.15, 0.15, size=len(pts))
            _scatter_trials(ax, [(xs[category_text(x)] + j, v, tid)
                                 for (x, v, tid), j in zip(pts, jitter, strict=True)], statuses)
            for i, m, cnt in means:
                ax.annotate(f"{m:.3f}\n(n={cnt})", (i, m), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
            ax.set_xticks(range(len(labels)), [shorten(lab) for lab in labels],
                          rotation=20 if max(len(lab) for lab in labels) > 8 else 0)
        else:
            _scatter_trials(ax, pts, statuses)
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


def _scatter_trials(ax: Any, pts: list[tuple[float, float, str]],
                    statuses: dict[str, str]) -> None:
    """Trials as (x, value, trial id): blue dots where they ran to their end, grey triangles
    where pruned (drawn first, under the dots). One scatter call per kind: one per trial made a
    1,000-trial report spend 18 s in matplotlib."""
    pruned = [(x, v) for x, v, tid in pts if statuses.get(tid) not in FINISHED]
    ran = [(x, v) for x, v, tid in pts if statuses.get(tid) in FINISHED]
    for group, style in ((pruned, {"color": "#7f7f7f", "marker": "v"}),
                         (ran, {"color": "#08519c", "marker": "o"})):
        if group:
            ax.scatter([x for x, _ in group], [v for _, v in group], s=26, zorder=3, **style)


def _grouped_view(doc: ReportDocument, res: SearchResults, ok: list[dict[str, str]]) -> None:
    """Gym's figure: the metric by filters (x), one line per architecture x loss."""
    cat = [d["path"] for d in res.space if d.get("kind") in CATEGORICAL_KINDS]
    # x: a key the trials took two values of (a conditional key may never have been active)
    varied = [k for k in cat if len({r.get(k, "") for r in ok} - {""}) >= 2]
    x_key = next((k for k in varied if k.endswith("filters")), varied[0] if varied else None)
    if x_key is None:
        return
    ok = [r for r in ok if r.get(x_key, "") != ""]  # the trials whose branch sets x
    groups = [k for k in cat if k != x_key and any(r.get(k, "") != "" for r in ok)]
    if not groups:
        return
    plt = pyplot()
    spec = next(d for d in res.space if d["path"] == x_key)
    seen = [parse_cell(r.get(x_key, "")) for r in ok]
    seen_text = {category_text(v) for v in seen}
    x_vals = [v for v in category_order(spec, seen) if v in seen_text]
    by_group: dict[str, dict[str, list[float]]] = {}
    for r in ok:
        g = ", ".join(f"{short_key(k, cat)}={parse_cell(r.get(k, ''))}" for k in groups
                      if r.get(k, "") != "")
        by_group.setdefault(g, {}).setdefault(category_text(parse_cell(r.get(x_key, ""))),
                                              []).append(res.value(r))
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(1, len(by_group))
    cmap = plt.get_cmap("tab10")
    for gi, (g, vals) in enumerate(sorted(by_group.items())):
        xs = [i + (gi - (len(by_group) - 1) / 2) * width for i, x in enumerate(x_vals)
              if x in vals]
        ys = [float(np.mean(vals[x])) for x in x_vals if x in vals]
        ax.bar(xs, ys, width=width * 0.95, color=cmap(gi % 10), label=g)
        dots = [(xx, v) for xx, x in zip(xs, [x for x in x_vals if x in vals], strict=True)
                for v in vals[x]]
        ax.scatter([d[0] for d in dots], [d[1] for d in dots], s=10, color="black", zorder=3)
    ax.set_xticks(range(len(x_vals)), x_vals)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"mean {res.metric}")
    ax.grid(alpha=0.3, axis="y")
    legend_outside(ax)
    ax.set_title(f"{res.metric} by {short_key(x_key, cat)}, grouped by "
                 + ", ".join(short_key(k, cat) for k in groups), fontsize=10)
    doc.figure(fig, "effects_grouped", f"Gym's paper view: mean {res.metric} by {x_key} for "
               "each combination of the other categorical keys (dots: single trials).")
