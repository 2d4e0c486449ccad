"""The ``raygym predict`` entry points: :func:`predict_files` (inputs checked, every image
predicted on the plain or the Ray path, ``summary.csv`` written), the command with its
progress bar, and the printed summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygym.atomic import created_on_success, remove_if_empty, sweep_temp_files
from raygym.errors import DataError
from raygym.predict.ensemble import EnsemblePlan
from raygym.predict.guards import (
    check_memory,
    check_out_is_a_folder,
    check_overwrites,
    check_vector_writer,
)
from raygym.predict.inputs import check_band_counts, check_output_folder, collect_inputs
from raygym.predict.options import PredictOptions
from raygym.predict.outputs import predict_one, write_summary
from raygym.predict.predictor import Predictor, resolve_models
from raygym.predict.ray_path import predict_with_ray

EXIT_ALL_FAILED = 1

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, file name)``, called after each image (and once with 0 before)."""


@dataclass
class PredictResult:
    """What a prediction run produced. ``rows``: one summary dict per predicted image;
    ``ensemble``: the models used, their scores and weights (also in the GeoTIFFs' ``models``
    tag); ``scale_line``: the resample factor used, and why; ``bands_line``: which bands of
    each image file were read, where not all (``data.image_bands`` or ``--image-bands``)."""

    out: Path
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    warnings: list[str]
    classes: list[str]
    seconds: float
    megapixels: float
    summary_csv: Path | None = None
    files: list[Path] = field(default_factory=list)
    ensemble: EnsemblePlan | None = None
    scale_line: str = ""
    bands_line: str = ""

    @property
    def exit_code(self) -> int:
        return EXIT_ALL_FAILED if self.skipped and not self.rows else 0


def predict_files(model: Path | Sequence[Path], images: Sequence[Path], options: PredictOptions,
                  *, progress: ProgressCallback | None = None) -> PredictResult:
    """Predict every image; write rasters, overlays and ``summary.csv`` into ``options.out``.

    Args:
        model: an artifact / results folder (see :func:`resolve_models`, which takes
            ``options.top_k`` of it) or a list of artifacts.
        images: files and / or folders.
        options: the run's settings (see :class:`PredictOptions`).
        progress: called after each image (plain path only).

    Returns:
        A :class:`PredictResult`; its ``exit_code`` is 1 when every image failed.

    Raises:
        RaygymError: bad options, a tampered or incomplete artifact, a wrong band count or an
            output folder inside an input folder (before any image is written).
    """
    started = time.perf_counter()
    model_dirs = (list(model) if isinstance(model, list | tuple)
                  else resolve_models(Path(model), options.top_k))
    out = options.out
    check_out_is_a_folder(out)
    check_output_folder(out, images, options.extra_bands)
    options.check_ranges()
    check_vector_writer(options)
    predictor = Predictor(model_dirs, device="cpu" if options.use_ray else options.device,
                          precision=options.precision, ensemble_margin=options.ensemble_margin,
                          ensemble_weights=options.ensemble_weights)
    plan = predictor.plan
    predictor.tile_hw(options.tile)  # validate before any work
    scale_line = predictor.scale_line(options.scale)  # also refuses models that disagree
    picked = options.image_bands or predictor.image_bands
    items, skipped = collect_inputs(images, options.extra_bands, predictor.band_rules(),
                                    picked)
    bands_line = "" if not picked else (
        f"bands {', '.join(map(str, picked))} of each image file ("
        + ("--image-bands" if options.image_bands else
           "the model's data.image_bands; --image-bands reads others") + ")")
    items, unreadable = check_band_counts(items, predictor.in_channels,
                                          predictor.extra_bands_missing)
    skipped += unreadable
    if out.is_dir():
        sweep_temp_files(out)  # half-written outputs of a killed run, before they are judged
    check_overwrites(items, options)
    check_memory(items, predictor.num_classes, options,
                 scale_for=lambda pixel_m: predictor.scale_for(options.scale, pixel_m),
                 window_for=lambda hw: predictor.window_hw(options.tile, hw))
    rows: list[dict[str, Any]] = []
    # a stopped run, or one where every image failed, leaves no empty --out it created
    with created_on_success(out) as created:
        out.mkdir(parents=True, exist_ok=True)
        if options.use_ray and items:
            del predictor  # the actors load their own copies
            for i, row, error in predict_with_ray(model_dirs, items, options):
                if row is None:
                    skipped.append((str(items[i].path), error))
                else:
                    rows.append(row)
        else:
            if progress is not None:
                progress(0, len(items), "")
            for n, item in enumerate(items, start=1):
                try:
                    rows.append(predict_one(predictor, item, options))
                except DataError as err:
                    skipped.append((str(item.path), err.message))
                if progress is not None:
                    progress(n, len(items), item.path.name)
        if not rows:
            remove_if_empty(created)
    from raygym.inference.artifact import read_model_card

    classes = list(read_model_card(model_dirs[0]).classes)
    files = [out / f for r in rows for f in r.pop("_files", [])]
    warnings = [f"{r['image']}: {r['warning']}" for r in rows if r.get("warning")]
    summary = write_summary(out / "summary.csv", rows, classes) if rows else None
    mpx = sum(int(r["height"]) * int(r["width"]) for r in rows) / 1e6
    return PredictResult(out=out, rows=rows, skipped=skipped, warnings=warnings,
                         classes=classes, seconds=time.perf_counter() - started,
                         megapixels=mpx, summary_csv=summary, files=files, ensemble=plan,
                         scale_line=scale_line, bands_line=bands_line)


def predict_and_print(model: Path, images: Sequence[Path], options: PredictOptions, *,
                      console: Any) -> int:
    """Run :func:`predict_files` with a progress bar (plain path) and print a summary.

    Returns the exit code: 0, or 1 when every image failed (skipped files are listed).
    """
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    if options.use_ray:
        result = predict_files(model, images, options)
    else:
        # started by the first callback, i.e. only once the inputs have passed every check
        bar = Progress(TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[file]}"), TimeElapsedColumn(),
                       console=console, transient=False)
        task = bar.add_task("images", total=None, file="", start=False)

        def tick(done: int, total: int, name: str) -> None:
            if not bar.live.is_started:
                bar.start()
                bar.start_task(task)
            bar.update(task, completed=done, total=total, file=escape(name))

        try:
            result = predict_files(model, images, options, progress=tick)
        finally:
            if bar.live.is_started:
                bar.stop()
    print_predict_summary(result, console)
    return result.exit_code


def print_predict_summary(result: PredictResult, console: Any) -> None:
    """A rich table of class fractions (all images together) plus warnings and skipped files."""
    from rich.markup import escape
    from rich.table import Table

    if result.ensemble is not None:
        for line in result.ensemble.lines():
            console.print(escape(line))
    if result.scale_line:
        console.print(escape(result.scale_line))
    if result.bands_line:
        console.print(escape(result.bands_line))
    if result.rows:
        n = len(result.rows)
        table = Table(title=f"{n} image{'s' * (n != 1)}, {result.megapixels:.2f} Mpx in "
                            f"{result.seconds:.1f} s")
        table.add_column("class")
        table.add_column("pixels", justify="right")
        table.add_column("fraction", justify="right")
        table.add_column("area m2", justify="right")
        total = sum(int(r[f"{c}_pixels"]) for r in result.rows for c in result.classes) or 1
        for c in result.classes:
            px = sum(int(r[f"{c}_pixels"]) for r in result.rows)
            areas = [r[f"{c}_m2"] for r in result.rows if r[f"{c}_m2"] != ""]
            table.add_row(c, f"{px:,}", f"{px / total:.3f}",
                          f"{sum(areas):,.0f}" if areas else "-")
        console.print(table)
        console.print(f"outputs: [bold]{escape(str(result.out))}[/]   summary: "
                      f"{escape(str(result.summary_csv))}")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if result.skipped:
        what = "all images failed" if not result.rows else f"skipped {len(result.skipped)} files"
        console.print(f"[yellow]warning:[/] {what}:")
        for path, reason in result.skipped:
            console.print(f"  {escape(path)}: {escape(reason)}")
