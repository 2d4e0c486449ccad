"""``raygym evaluate MODEL --data SITE.yaml``: score a model on labelled scenes at full size, as
``raygym predict`` maps them, e.g. a site it was never trained on.

``SITE.yaml`` is an experiment file whose ``data:`` section says where the scenes and labels
are and how to read them, exactly as for ``raygym prepare`` (folders with ``key`` regexes or a
manifest, ``remap``, ``unknown_labels``, ``palette``; its ``classes`` must be the model's).
Every scene it pairs is scored (``data.split`` does not apply: nothing is trained on them;
only a ``data.split.group`` rule is read: its groups are what the intervals resample).
Each scene is predicted through :class:`~raygym.predict.Predictor` exactly as ``raygym
predict`` maps it (its reader: a GeoTIFF by windows, nodata by its rules; sliding windows,
resampled to the training scale by default: ``scale="auto"``), then compared with its label at
the scene's own size; nodata and the ignore index are not scored. The report files are
:func:`raygym.evaluate.write_evaluation`'s, in ``<model>/evaluation_scenes_<SITE>/``.

The prediction is scored a band of rows at a time as predict yields it; only the label (a byte
a pixel) is held for the whole scene, beside what predict holds (a PNG / JPEG is decoded whole,
as predict decodes it). The overlays' panels are shrunk as the rows come: kept for every scene
when there are at most twice as many scenes as overlays, else taken again from the few scenes
drawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raygym.errors import DataError
from raygym.predict.ensemble import DEFAULT_MARGIN, EnsembleWeights

DISPLAY_MAX_PX = 512  # the longest side of an overlay panel; full-size scenes can be large


def evaluate_model_on_scenes(model_dir: Path | Sequence[Path], data_file: Path, *,
                             out_dir: Path | None = None, scale: float | str = "auto",
                             tile: int | None = None, overlap: float = 0.25, tta: bool = False,
                             overlays: int = 4, device: str = "auto",
                             ensemble_margin: float = DEFAULT_MARGIN,
                             ensemble_weights: EnsembleWeights = "score") -> Any:
    """Score ``model_dir`` on every scene ``data_file``'s ``data:`` section pairs.

    Args:
        model_dir: a model artifact folder; or several, best first: their ensemble, as
            ``raygym predict --top-k`` maps with it (``ensemble_margin``,
            ``ensemble_weights``: :mod:`raygym.predict.ensemble`).
        data_file: an experiment YAML (only ``data`` is read).
        out_dir: where to write (default ``<model_dir>/evaluation_scenes_<file stem>/``; an
            ensemble's ``evaluation_scenes_<stem>_top<k>_ensemble/`` in the search results
            folder).
        scale, tile, overlap, tta: as :meth:`raygym.predict.Predictor.predict`.
        overlays: k of the worst-k / best-k figures (0 = none).

    Returns:
        A :class:`raygym.evaluate.EvaluationResult` (its ``split``: ``data_file``'s name).

    Raises:
        ConfigError / DataError: a bad file, classes or bands other than the model's, or a
            scene that cannot be read.
    """
    from raygym.data.pairing import find_pairs
    from raygym.data.prepare import check_headers, check_site_labels, site_key
    from raygym.evaluate import evaluation_name, output_dir, write_evaluation
    from raygym.evaluate_members import ScoredModels
    from raygym.predict import Predictor
    from raygym.predict.inputs import image_alpha
    from raygym.search.space_config import load_experiment

    started = time.perf_counter()
    data_file = Path(data_file)
    models = ScoredModels.of(model_dir, margin=ensemble_margin, weights=ensemble_weights)
    config, _ = load_experiment(data_file)
    data = config.data
    # (Predictor plans the ensemble by the same rule: the same members and weights)
    predictor = Predictor(models.candidates, device=device, ensemble_margin=ensemble_margin,
                          ensemble_weights=ensemble_weights)
    card = predictor.card
    if list(data.classes) != list(card.classes):
        raise DataError(f"classes {list(data.classes)} differ from the model's "
                        f"{list(card.classes)}", file=data_file, key="data.classes",
                        fix="list the model's classes, in its order, and map the labels to "
                        "them with data.remap")
    pairs = find_pairs(data)
    from raygym.data.split import scene_groups

    # the site's data.split.group (no split is made here): what the intervals resample
    groups = scene_groups(pairs, data.split, data.manifest)
    image_bands = _image_bands(data, predictor)
    check_site_labels(data)
    stack, _, heads = check_headers(pairs, site_labels=site_key(data), image_bands=image_bands)
    for pair in pairs:
        # as predict counts them: an alpha that masks a band too many is not data
        bands = stack - len(image_alpha(pair.images[0], stack, card.in_channels, image_bands))
        if bands != card.in_channels:
            with_files = " with its band files" if len(pair.images) > 1 else ""
            missing = predictor.extra_bands_missing(bands)
            raise DataError(f"has {bands} band{'s' * (bands != 1)}{with_files} but the model "
                            f"expects {card.in_channels}", file=pair.images[0],
                            fix=f"give {data_file.name}'s data the extra bands the model was "
                            f"trained with ({missing}: data.extra_bands or the manifest's band "
                            "columns)" if missing else
                            f"the model was trained on {card.in_channels}-band images")
    # each scene's factor as predict picks it: under auto a projected GeoTIFF's own pixel
    # size over the ground distance the model learnt, else the training factor
    factors = {p.key: predictor.scale_for(scale, heads[p.key].pixel_m) for p in pairs}
    out = Path(out_dir) if out_dir is not None else models.home / models.folder_name(
        evaluation_name(data_file=data_file))
    with output_dir(out):  # before minutes of scoring, not after
        k = card.num_classes
        options = {"tile": tile, "overlap": overlap, "tta": tta}

        keys: list[str] = []
        cms = np.zeros((len(pairs), k, k), np.int64)
        kld = np.zeros(len(pairs), np.float64)
        n_valid = np.zeros(len(pairs), np.int64)
        unmapped = 0  # labelled pixels predict leaves as nodata
        # a few scenes keep their shrunk overlay panels from the scoring pass; with many, only
        # the best / worst drawn are predicted again (never all held at once)
        keep_panels = 0 < len(pairs) <= 2 * overlays
        panels: dict[str, Panels] = {}
        for i, pair in enumerate(pairs):
            scored = _predict_scene(predictor, pair, data, {**options, "scale": factors[pair.key]},
                                    panels=keep_panels)
            cms[i], kld[i], n_valid[i] = scored.confusion, scored.kld_sum, scored.n_valid
            unmapped += scored.unmapped
            if scored.panels is not None:
                panels[pair.key] = scored.panels
            keys.append(pair.key)
        warnings = [f"{unmapped} labelled pixels lie where predict writes nodata (the edge of a "
                    "nodata area, resampled): not scored"] if unmapped else []
        by_key = {p.key: p for p in pairs}

        def overlay_rows(picks: list[tuple[str, float]]) -> list[tuple[str, Any, Any, Any]]:
            rows = []
            for key, iou in picks:
                shown = panels.get(key) or _predict_scene(
                    predictor, by_key[key], data, {**options, "scale": factors[key]},
                    panels=True).panels
                assert shown is not None
                rows.append(_overlay_row(key, iou, shown, k, card.ignore_index))
            return rows

        low, high = min(factors.values()), max(factors.values())
        where = (f"scale {low:.4g}" if high - low < 5e-5 else f"scale {low:.4g}-{high:.4g}") + (
            ", tta" if tta else "")
        title = (f"{models.label} on {data_file.name} ({len(keys)} "
                 f"scene{'' if len(keys) == 1 else 's'} at full size, {where})")
        return write_evaluation(
            models.home, card, out, keys, cms, kld, n_valid, title=title,
            overlay_rows=overlay_rows,
            overlays=overlays, started=started, engine=f"predict, {where}", dataset_dir=data_file,
            split=data_file.name, warnings=warnings,
            report={"data_file": str(data_file), "full_size": True,
                    "scale": low if high - low < 5e-5 else factors,
                    "tile": tile, "overlap": overlap, "tta": tta, **models.to_json()},
            units=((list(keys), "scenes") if groups is None else
                   ([groups[k] for k in keys], "groups of data.split.group (their scenes "
                    "summed)")), members=models.members)


@dataclass
class Panels:
    """A scene shrunk for an overlay row, every :func:`_display_step` th pixel: ``image``
    ``(h, w, C)`` (the source's preview), ``truth`` and ``pred`` ``(h, w)`` uint8 (the ignore
    index / :data:`~raygym.predict.NODATA` where not scored / not predicted)."""

    image: np.ndarray
    truth: np.ndarray
    pred: np.ndarray


@dataclass
class SceneScore:
    """One labelled scene, predicted and scored.

    Attributes:
        confusion: ``(K, K)`` int64 counts, truth rows by prediction columns, over the pixels
            with both a label and a prediction.
        kld_sum, n_valid: the summed KLD of the probabilities and the pixels it covers.
        unmapped: labelled pixels of valid input without a prediction (the resampled edge of
            a nodata area), not scored.
        panels: the scene shrunk for an overlay (None unless asked for).
    """

    confusion: np.ndarray
    kld_sum: float
    n_valid: int
    unmapped: int
    panels: Panels | None = None


def _predict_scene(predictor: Any, pair: Any, data: Any, options: dict[str, Any],
                   panels: bool = False) -> SceneScore:
    """Predict one scene exactly as ``raygym predict`` does (its reader: a GeoTIFF by
    windows, nodata by its rules) and score each band of rows as it comes against the label
    read by prepare's rules (remap or palette, unknown labels), by the metric code training
    validates with (:class:`~raygym.train.metrics.ConfusionMatrix`). Only the label is held
    whole (a byte a pixel); ``panels`` keeps every :func:`_display_step` th pixel of the
    image, label and prediction for an overlay. The confusion counts the labels predict
    writes (at a scale other than 1 they are mapped back nearest, the probabilities
    linearly, so their argmax can differ at class edges); the KLD is the probabilities'."""
    from raygym.data.scenes import read_scene_label
    from raygym.predict import NODATA
    from raygym.predict.inputs import InputItem
    from raygym.predict.sources import open_source
    from raygym.train.metrics import ConfusionMatrix

    paths = [Path(p) for p in pair.images]
    label_path = Path(pair.label)
    truth, _ = read_scene_label(label_path, data, image=paths[0])
    truth = truth if truth.flags.writeable else truth.copy()  # its nodata is marked below
    k, ignore = predictor.num_classes, predictor.card.ignore_index
    counts = ConfusionMatrix(k, ignore_index=ignore)
    spread = ConfusionMatrix(k, ignore_index=ignore)
    step = _display_step(truth.shape)
    shrunk = np.full(truth[::step, ::step].shape, NODATA, np.uint8) if panels else None
    unmapped = 0
    shown = None
    try:
        item = InputItem(paths[0], paths[1:], pair.key, _image_bands(data, predictor))
        with open_source(item, predictor.in_channels) as source:
            if (source.height, source.width) != truth.shape:
                raise DataError(f"label size {truth.shape} differs from image "
                                f"{(source.height, source.width)}", file=label_path)
            for strip in predictor.predict_strips(source, **options):
                rows = slice(strip.row, strip.row + strip.labels.shape[0])
                target = truth[rows].astype(np.int64)
                if source.masked:
                    # the input's own nodata is not scored: its mask read again, cheap
                    # beside the model
                    _, valid = source.read_rows(rows.start, rows.stop)
                    if valid is not None:
                        target[~valid] = ignore
                        truth[rows][~valid] = ignore
                gap = strip.labels == NODATA  # predict wrote no class there
                unmapped += int((gap & (target != ignore)).sum())
                target[gap] = ignore
                target_t = torch.from_numpy(target)[None]
                counts.update(torch.from_numpy(np.where(gap, 0, strip.labels)
                                               .astype(np.int64))[None], target_t)
                # log-probabilities are logits whose softmax is the predicted distribution
                spread.update(torch.from_numpy(np.log(np.clip(strip.probs, 1e-12, 1.0)))[None],
                              target_t)
                if shrunk is not None:  # the strip's rows that fall on the display stride
                    first = -(-rows.start // step) * step
                    picked = strip.labels[first - rows.start::step, ::step]
                    shrunk[first // step:first // step + len(picked)] = picked
            if shrunk is not None:
                small = truth[::step, ::step].copy()
                shown = Panels(source.preview(small.shape), small, shrunk)
    except DataError as err:
        raise DataError(err.message, file=err.file or paths[0], fix=err.fix) from None
    kld_sum, n = (float(v) for v in spread.kld_state)
    return SceneScore(counts.matrix.numpy(), kld_sum, int(n), unmapped, shown)


def _image_bands(data: Any, predictor: Any) -> tuple[int, ...] | None:
    """The site's ``data.image_bands`` where its stacks differ from the training imagery's,
    else the model's."""
    return tuple(data.image_bands) if data.image_bands else predictor.image_bands


def _display_step(hw: tuple[int, int]) -> int:
    """The stride that shrinks a scene to at most :data:`DISPLAY_MAX_PX` a side."""
    return max(1, int(np.ceil(max(hw) / DISPLAY_MAX_PX)))


def _overlay_row(key: str, iou: float, shown: Panels, k: int, ignore_index: int
                 ) -> tuple[str, Any, Any, Any]:
    """An image | truth | prediction row, at most :data:`DISPLAY_MAX_PX` a side."""
    from raygym.data.preview import colourize, display_rgb

    pred = shown.pred.copy()
    pred[shown.truth == ignore_index] = ignore_index  # what was not scored stays black
    image = shown.image
    image = np.nan_to_num(image.astype(np.float32)) if image.dtype.kind == "f" else image
    return (f"{key}  (IoU {iou:.3f})", display_rgb(image), colourize(shown.truth, k, ignore_index),
            colourize(pred, k, ignore_index))
