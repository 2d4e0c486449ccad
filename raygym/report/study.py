"""The Optuna study section: the study's trials by state, fANOVA parameter importances, and
parallel coordinates of every successful trial (from the leaderboard, so a random or grid
search without a study file still gets them)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from raygym.report.document import ReportDocument, one_line
from raygym.report.figures import pyplot, shorten
from raygym.report.results import (
    CATEGORICAL_KINDS,
    FINISHED,
    SearchResults,
    category_order,
    category_text,
    parse_cell,
)
from raygym.search.study_storage import STUDY_FILE, open_study_storage, study_file


def optuna_section(doc: ReportDocument, res: SearchResults) -> None:
    """Importances when the search's study file exists, parallel coordinates always."""
    doc.section("optuna")
    db = study_file(res.path)
    study = None
    if db is None:
        algorithm = res.search_cfg.get("algorithm", "random/grid")
        doc.note(f"no Optuna study ({STUDY_FILE}; algorithm {algorithm}): parallel "
                 "coordinates from the leaderboard below.")
    else:
        try:
            study = _load_study(db, res.name)
        except Exception as err:  # a damaged or foreign database should not sink the report
            doc.note(f"could not open the Optuna study in {db.name}: {one_line(err)}")
    if study is not None:
        _importances(doc, study)
    _parallel(doc, res)


def _load_study(db: Path, name: str) -> Any:
    """The study ``name`` in the study file ``db``, else the only study there (a search
    renamed since)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = open_study_storage(db)
    names = optuna.get_all_study_names(storage=url)
    if name not in names:
        if len(names) != 1:
            raise ValueError(f"no study named {name!r} (found {names})")
        name = names[0]
    return optuna.load_study(study_name=name, storage=url)


def _importances(doc: ReportDocument, study: Any) -> None:
    """The study's trials by state, then a bar chart of fANOVA parameter importances."""
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
        doc.note(f"parameter importances could not be computed: {one_line(err)}")
        return
    if not imp:
        doc.note("no parameter varied across the complete trials.")
        return
    plt = pyplot()
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


class _Axis(NamedTuple):
    """One vertical axis of the parallel-coordinates plot."""

    key: str
    to_unit: Callable[[Any], float]  # a value -> its height in [0, 1] (NaN: not on the axis)
    ticks: list[tuple[float, str]]  # (height in [0, 1], label)


def _parameter_axis(d: dict[str, Any], vals: list[Any]) -> _Axis:
    """The axis of searched key ``d`` (a space entry) over the trials' values ``vals``:
    categories evenly spaced, numbers over the searched range (log10 for log-uniform)."""
    key = d["path"]
    if d.get("kind") in CATEGORICAL_KINDS:
        cats = category_order(d, vals)
        span = max(1, len(cats) - 1)

        def norm_cat(v: Any) -> float:
            return cats.index(category_text(v)) / span if category_text(v) in cats else math.nan

        return _Axis(key, norm_cat, [(i / span, shorten(c, 14)) for i, c in enumerate(cats)])
    nums = [float(v) for v in vals if isinstance(v, int | float)]
    lo = float(d["low"]) if d.get("low") is not None else min(nums, default=0.0)
    hi = float(d["high"]) if d.get("high") is not None else max(nums, default=1.0)
    log = d.get("kind") == "loguniform" and lo > 0
    f: Callable[[float], float] = (lambda x: math.log10(x)) if log else (lambda x: x)
    a, b = f(lo), f(hi)
    span_f = (b - a) or 1.0

    def norm_num(v: Any) -> float:
        return (f(float(v)) - a) / span_f if isinstance(v, int | float) else math.nan

    return _Axis(key, norm_num, [(0.0, f"{lo:.3g}"), (1.0, f"{hi:.3g}")])


def _parallel(doc: ReportDocument, res: SearchResults) -> None:
    """One line per trial across normalised parameter axes, coloured by the metric."""
    doc.heading("Parallel coordinates")
    ok = res.scored_rows()
    space = [d for d in res.space if d.get("path") in res.param_keys]
    if len(ok) < 2 or not space:
        doc.note("needs at least two successful trials.")
        return
    from matplotlib import cm, colors

    plt = pyplot()
    axes_spec = [_parameter_axis(d, [parse_cell(r.get(d["path"], "")) for r in ok])
                 for d in space]
    metric_vals = [res.value(r) for r in ok]
    lo_m, hi_m = min(metric_vals), max(metric_vals)
    axes_spec.append(_Axis(res.metric, lambda v: (v - lo_m) / ((hi_m - lo_m) or 1.0),
                           [(0.0, f"{lo_m:.3f}"), (1.0, f"{hi_m:.3f}")]))
    n = len(axes_spec)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * n), 4.2))
    norm = colors.Normalize(vmin=lo_m, vmax=hi_m if hi_m > lo_m else lo_m + 1e-9)
    cmap = plt.get_cmap("viridis")
    order = sorted(ok, key=lambda r: res.value(r) * (1 if res.mode == "max" else -1))
    for r in order:  # best drawn last, on top
        ys = [fn(parse_cell(r.get(key, ""))) if key != res.metric else fn(res.value(r))
              for key, fn, _ in axes_spec]
        pruned = r.get("status") not in FINISHED
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
