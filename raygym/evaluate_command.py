"""``raygym evaluate``'s terminal side: the per-class table of one evaluation (IoU with its
bootstrap interval), and the comparison of a search's top-k models with the paired interval of
each one's difference to the first (:mod:`raygym.evaluate_intervals`)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raygym.atomic import write_text_atomic
from raygym.errors import RaygymError
from raygym.evaluate import (
    EvaluationResult,
    evaluate_model_on_split,
    evaluation_name,
    other_dataset,
    searched_params,
)
from raygym.predict.ensemble import DEFAULT_MARGIN, EnsembleWeights


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def print_evaluation(result: EvaluationResult, console: Any) -> None:
    """Per-class table (IoU, Dice, precision, recall, true pixels) and the overall scores."""
    from rich.markup import escape
    from rich.table import Table

    m = result.metrics
    truth = result.confusion.sum(axis=1)
    what = ("scene" if result.subject.endswith("(full size)") else "image") + (
        "" if result.num_images == 1 else "s")
    table = Table(title=f"{escape(result.label)}: {escape(result.subject)}, "
                        f"{result.num_images} {what} ({result.engine}, {result.seconds:.1f} s)")
    ci = result.intervals
    for col in ("class", "IoU", *(["IoU 95 %"] if ci else []), "Dice", "precision", "recall",
                "true pixels"):
        table.add_column(col, justify="left" if col == "class" else "right")

    def span(i: Any) -> list[str]:
        return [] if ci is None else ["-" if i is None else i.text()]

    for j, (c, n) in enumerate(zip(result.classes, truth, strict=True)):
        table.add_row(escape(c), _fmt(m[f"iou/{c}"]), *span(ci["iou"][j] if ci else None),
                      _fmt(m[f"f1/{c}"]), _fmt(m[f"precision/{c}"]), _fmt(m[f"recall/{c}"]),
                      f"{int(n):,}")
    table.add_row("[bold]mean", f"[bold]{_fmt(m['mean_iou'])}",
                  *span(ci["mean_iou"] if ci else None), _fmt(m["mean_dice"]),
                  _fmt(m["mean_precision"]), _fmt(m["mean_recall"]), f"{int(truth.sum()):,}")
    console.print(table)
    if ci:
        from raygym.evaluate_intervals import method_text

        console.print(f"IoU 95 %: {method_text(len(result.units), result.unit_name)}: how far "
                      "the score could move on another test set like this one")
    console.print(f"accuracy {_fmt(m['accuracy'])}   frequency-weighted IoU {_fmt(m['fw_iou'])}"
                  f"   MCC {_fmt(m['mcc'])}   KLD {_fmt(m.get('kld'))}")
    if m.get("absent_classes"):
        console.print(f"[yellow]absent from truth and prediction:[/] "
                      f"{escape(', '.join(m['absent_classes']))}")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(f"report: [bold]{escape(str(result.out_dir))}[/]")


def _differences_to_first(results: list[EvaluationResult]) -> list[Any] | None:
    """Per result, the paired bootstrap interval of its mean IoU minus the first result's
    (None for the first); None when the results did not score the same units (images, scenes
    or groups) in the same order."""
    from raygym.evaluate_intervals import difference_interval

    first = results[0]
    if first.unit_confusions is None or any(
            r.unit_confusions is None or r.units != first.units for r in results[1:]):
        return None
    return [None] + [difference_interval(r.unit_confusions, first.unit_confusions)
                     for r in results[1:]]


def _diff_text(result: EvaluationResult, first: EvaluationResult, diff: Any) -> str:
    delta = result.mean_iou - first.mean_iou
    return f"{delta:+.3f}" + ("" if diff is None else f" ({diff.low:+.3f} to {diff.high:+.3f})")


def _kept_weights(result: EvaluationResult) -> dict[str, float]:
    """An ensemble's kept members and their weights (empty for one model): the params column
    of the comparison shows them."""
    members = (result.ensemble or {}).get("members") or []
    return {m["model"]: float(m["weight"]) for m in members if m["kept"]}


def ensemble_line(plan: dict[str, Any]) -> str:
    """What an ensemble's evaluation scored (its plan's JSON): ``ensemble of 2 of 3 models
    (rank3_c left out): <rule>``."""
    members = plan.get("members") or []
    left = [m["model"] for m in members if not m["kept"]]
    return (f"ensemble of {len(members) - len(left)} of {len(members)} models"
            + (f" ({', '.join(left)} left out)" if left else "") + f": {plan.get('rule', '')}")


def evaluate_command(model: Path | Sequence[Path], *, split: str, top_k: int,
                     dataset: Path | None, use_ray: bool, console: Any, out: Path | None = None,
                     data_file: Path | None = None, scenes: dict[str, Any] | None = None,
                     ray_address: str | None = None, ensemble: bool = False,
                     ensemble_margin: float = DEFAULT_MARGIN,
                     ensemble_weights: EnsembleWeights = "score") -> int:
    """``raygym evaluate``: each of the ``top_k`` models of one folder (see
    :func:`raygym.predict.resolve_models`), or each of several model folders, on ``split`` of
    a prepared dataset, or with ``data_file`` on the labelled scenes it names at full size
    (``scenes``: the :func:`~raygym.evaluate_scenes.evaluate_model_on_scenes` options); a
    comparison table (and ``evaluation_<split or data file>.csv``) when there are several.
    ``ensemble``: the top-k's ensemble too, as ``raygym predict --top-k`` maps with it
    (``ensemble_margin`` / ``ensemble_weights``), last in the table.
    Reports go inside each model folder (an ensemble's beside ``best/``), or to
    ``out/<model>/evaluation_<...>/`` (the table to ``out``; several folders without ``out``:
    the table is printed only). Returns 0."""
    from rich.markup import escape
    from rich.table import Table

    from raygym.predict import resolve_models
    from raygym.search.leaderboard import params_text

    models = [Path(model)] if isinstance(model, str | Path) else [Path(m) for m in model]
    if len(models) > 1 and top_k > 1:
        raise RaygymError("--top-k ranks one search's models; several folders are compared "
                          "as given", key="--top-k", fix="give one search's results folder "
                          "with --top-k, or several model folders without it")
    if ensemble and (len(models) > 1 or top_k < 2):
        raise RaygymError("--ensemble scores the ensemble of one search's top-k models, as "
                          "`raygym predict --top-k` maps with it", key="--ensemble",
                          fix="give one search's results folder with --top-k 2 or more")
    model_dirs = [d for m in models for d in resolve_models(m, top_k)]
    if len(models) > 1 and dataset is None and data_file is None:
        from raygym.evaluate import default_dataset

        own = {default_dataset(d).resolve() for d in model_dirs}
        if len(own) > 1:  # each on its own data: nothing to compare
            raise RaygymError(f"the models were trained on {len(own)} datasets ("
                              + ", ".join(sorted(str(p) for p in own)) + ")", key="--dataset",
                              fix="give --dataset PREPARED (or --data SITE.yaml) to score them "
                              "all on one")
    name = evaluation_name(split, data_file, other_dataset(model_dirs[0], dataset))
    # under --out each model's report folder is named by its folder (runs/a/best and
    # runs/b/best: a_best, b_best)
    labels = [d.name for d in model_dirs]
    if len(set(labels)) < len(labels):
        labels = [f"{d.parent.name}_{d.name}" for d in model_dirs]
    rule = {"ensemble_margin": ensemble_margin, "ensemble_weights": ensemble_weights}
    scored: list[Path | list[Path]] = [*model_dirs, *([model_dirs] if ensemble else [])]
    if ensemble:
        labels.append(f"top{len(model_dirs)}_ensemble")
    results = []
    for what, label in zip(scored, labels, strict=True):
        report_dir = None if out is None else Path(out) / label / name
        if data_file is not None:
            from raygym.evaluate_scenes import evaluate_model_on_scenes

            result = evaluate_model_on_scenes(what, data_file, out_dir=report_dir,
                                              **(scenes or {}), **rule)
        else:
            result = evaluate_model_on_split(what, dataset, split, use_ray=use_ray,
                                             out_dir=report_dir, ray_address=ray_address,
                                             **rule)
        if result.is_ensemble and result.ensemble is not None:
            console.print(escape(ensemble_line(result.ensemble)))
        print_evaluation(result, console)
        results.append(result)
    if len(results) > 1:
        what = f"top {len(results)}" if len(models) == 1 else f"{len(results)} models"
        table = Table(title=f"{what} on {escape(results[0].subject)}")
        diffs = _differences_to_first(results)
        cols = ("model", "mean IoU", *(["vs 1st, 95 %"] if diffs else []), "fw IoU",
                "accuracy", "MCC", "KLD", "params")
        sampled = [{} if r.is_ensemble else searched_params(r.model_dir) for r in results]
        texts = [", ".join(f"{m} {w:.2f}" for m, w in _kept_weights(r).items())
                 if r.is_ensemble else params_text(params)
                 for r, params in zip(results, sampled, strict=True)]
        # a narrow terminal wraps the params between values, never inside one
        longest = max((len(word) for t in texts for word in t.split()), default=6)
        for col in cols:
            table.add_column(col, justify="left" if col in ("model", "params") else "right",
                             overflow="fold", min_width=min(longest, 40) if col == "params"
                             else None)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["model", "mean_iou", "fw_iou", "accuracy", "mcc", "kld", "report",
                    "params", "diff_vs_first_low", "diff_vs_first_high"])
        for i, (r, params, text) in enumerate(zip(results, sampled, texts, strict=True)):
            m = r.metrics
            diff = diffs[i] if diffs else None
            table.add_row(escape(r.label), _fmt(m["mean_iou"]),
                          *([_diff_text(r, results[0], diff) if i else ""] if diffs else []),
                          _fmt(m["fw_iou"]), _fmt(m["accuracy"]), _fmt(m["mcc"]),
                          _fmt(m.get("kld")), escape(text))
            w.writerow([labels[i], *(m.get(c) for c in ("mean_iou", "fw_iou",
                                                                 "accuracy", "mcc", "kld")),
                        str(r.out_dir), json.dumps(params or _kept_weights(r)) if (
                            params or r.is_ensemble) else "",
                        *(["", ""] if diff is None else [diff.low, diff.high])])
        console.print(table)
        if diffs:
            console.print("vs 1st: this model's mean IoU minus the first's, with the 95 % "
                          "interval of a paired bootstrap over the same images; an interval "
                          "across 0 means this test set cannot tell the two apart")
        if out is None and len(models) > 1:
            console.print("(--out DIR also writes this comparison as CSV)")
            return 0
        target = Path(out if out is not None else models[0]) / f"{name}.csv"
        try:
            write_text_atomic(target, buf.getvalue())
            console.print(f"comparison: [bold]{escape(str(target))}[/]")
        except OSError as err:
            raise RaygymError(f"cannot write the comparison table: {err}", file=target) from None
    return 0
