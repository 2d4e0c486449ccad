"""``raygym predict``: map new imagery with an exported model (or a search's top-k ensemble).

Works from the artifact folder alone (``model.safetensors`` + ``config.yaml`` +
``model_card.json``, loaded through :func:`raygym.inference.scoring.load_model`: checksums
verified, no pickle) with plain PyTorch; Ray is only imported for ``--ray``.

Per input image ``<stem>`` (files, or folders of PNG / JPEG / TIFF / GeoTIFF, any size) the
output folder receives

- ``<stem>_label.tif`` (TIFF input: class ids 0..K-1, uint8, nodata 255 (tagged as the band's
  nodata) where the input is nodata, the input's CRS and transform kept, deflate-compressed
  cloud-optimised GeoTIFF with nearest-neighbour overviews, a colour table and the class names
  in the ``classes`` tag, the models used with their scores and weights in the ``models`` tag)
  or ``<stem>_label.png`` (PNG / JPEG input; 255 where nodata);
- ``<stem>_label.qml`` beside it: a QGIS style (paletted renderer, each class's colour and
  name), which QGIS applies by itself when it opens the label;
- ``<stem>_probs.tif`` with ``probabilities``: one uint8 band per class (described by its
  name), ``round(255 * softmax)`` with GDAL scale 1/255 and offset 0 on every band (rasterio's
  ``scales`` / ``offsets``; GDAL and QGIS unscale to probabilities), georeferenced like the
  label, and a dataset mask (0 = nodata) when the input can hold nodata;
- ``<stem>_overlay.png``: class colours blended over the image (first three bands; nodata
  unblended), with a legend (colour + class name) below it; images longer than 2048 px are
  shown shrunk to that long side;
- ``<stem>_polygons.gpkg`` with ``polygons``: the class regions as a GeoPackage layer
  (``class_id``, ``class_name``, ``pixels``, ``area_m2`` for projected CRSs), regions smaller
  than ``min_area`` (m2, or pixels when not projected) dropped; see :mod:`.polygons`;

and one ``summary.csv`` row per image with the nodata pixel count and, per class, the pixel
count, the fraction of the predicted (non-nodata) pixels and, for projected CRSs, the area in
m2 (``pixels * |det(transform)| * metres_per_unit**2``).

Rules, chosen to match training:

- **Bands.** The first file gives the RGB (or 1-band) layers, each ``extra_bands`` folder one more
  band, in training order (``card.in_channels`` in total). A band file is matched to an image by
  (1) the pairing regexes of the model's ``config.yaml`` (``data.images.key`` and
  ``data.extra_bands[i].key``: equal keys pair), else (2) the same file stem, else (3) the
  naming rule prepare learnt from the training pairs (the model card's ``dataset.band_names``:
  S2's ``X-0`` / ``X_ir-0``, also from a manifest), else (4) the first file (sorted by name)
  whose stem starts with the image stem. An image with no match is skipped; a band folder
  where no image finds its file is refused (the folders swapped, or another band's).
- **Nodata.** A pixel is nodata when GDAL's dataset mask says so (a TIFF's internal mask or
  alpha band, else every band equal to its nodata value), when any band is NaN, or when a
  PNG's alpha is 0. An alpha band (TIFF colour interpretation, PNG RGBA) is a mask only when
  the model wants that many bands fewer; otherwise it is data (GDAL marks the 4th band of a
  4-band uint8 GTiff as alpha by default, so RGB + NIR scenes keep their NIR).
  Nodata pixels get no prediction (label 255), are left out of the statistics below, and enter
  the model as 0 (the mean). An input that is nodata everywhere is refused (skipped, one line).
- **Standardisation** is :func:`raygym.data.transforms.standardize`'s rule over the *whole*
  image's valid pixels (training standardised each whole scene), so tiles share one mean / std:
  a first pass streams the image by bands of rows (:func:`~.sources.band_stats`, exact up to
  float64 rounding; an overview read would be approximate and most inputs have none).
- **Size.** Images larger than the model input are predicted with a sliding window at native
  resolution (``tile`` pixels, default the model's input size; ``overlap`` fraction between
  neighbours); softmax probabilities are blended with a weight that ramps linearly from the tile
  edge over the overlap width, then normalised by the summed weights. Images smaller than a tile
  are zero-padded bottom / right (as training's ``resize_pad``) and cropped back.
- **Large rasters.** One path for all (:func:`~.tiling.blend_strips`): the image is read one row
  of windows at a time and finished rows are written in bands of 256 (the output tile height),
  so a GeoTIFF at ``scale == 1`` is read by rasterio windows and its outputs written block by
  block into tiled temp files, then turned into COGs by GDAL and renamed: peak memory is about
  ``(tile + 256) x width`` pixels, whatever the height. At ``scale != 1`` the same holds at
  both resolutions: the rows a window needs are resampled as they are read and finished rows
  mapped back a band at a time (:mod:`.rescale`). PNG / JPEG inputs (and non-TIFF band files)
  are decoded whole; :func:`~.guards.check_memory` refuses those that cannot fit.
- **Resolution.** Training scenes were shrunk (aspect kept) to ``data.target_size``, so a model
  trained on downscaled scenes has learnt a coarser ground-sample distance than the native one.
  ``scale`` resamples the image by a factor before prediction (``cv2`` area / linear) and the
  label back to the input size (nearest; probabilities linear), so the output always matches the
  input grid. The default, ``"auto"``, is the factor prepare resized the training scenes by
  (the median over the training split, recorded in the dataset card and the model card): new
  imagery of the same sensor is then seen at the sample distance the model learnt (measured on
  test scenes at full size: aerial models trained at factor 0.139, mean IoU 0.505 / 0.424 at
  native resolution against 0.618 / 0.574; an S2 model at 0.209, 0.337 against 0.641).
  Where the training scenes were GeoTIFFs in a projected CRS, the model card also holds the
  ground sample distance the model saw (``train_gsd_m``), and a georeferenced input is
  resampled by its own pixel size over it instead (:meth:`Predictor.scale_for`). Models whose card does not say
  (made before it was recorded) predict at 1. The factor used is printed and written in the
  GeoTIFFs' ``resample_factor`` tag.
- **Ensembles / TTA.** ``top_k`` takes the best k models of a search; of those, a model whose
  validation mean IoU (its model card's) is more than ``ensemble_margin`` (0.05) below the best
  one's is left out, and the rest's softmax is averaged with weights in proportion to their
  validation mean IoU (``ensemble_weights="score"``) or equal (``"equal"``); see
  :mod:`.ensemble`. The rule, the models kept and their weights are printed and written in the
  GeoTIFFs' ``models`` tag. ``tta`` averages the identity and horizontal, vertical and both
  flips (each un-flipped).

Bad input: a tampered or incomplete artifact, a wrong band count, an output folder inside an
input folder, a band folder that holds no image's band file or ``polygons`` without pyogrio
raise :class:`~raygym.errors.RaygymError` (exit 2). An unreadable image (or one without its
band files, or nodata everywhere) is skipped and listed at the end; the command fails (exit 1)
only if every image failed, and then leaves no empty ``--out`` that it created. A GeoTIFF
without a CRS is written without one, with a warning.

Modules, in the order a run uses them: :mod:`.options` (:class:`PredictOptions`, every setting
of a run), :mod:`.guards` (checks before any work), :mod:`.predictor` (which models, and the
:class:`Predictor` running them), :mod:`.ensemble` (which of the top-k, with what weight), :mod:`.inputs` (files, band matching, band counts, alpha
bands and georeferencing), :mod:`.sources` (pixels by bands of rows, nodata masks, streamed
statistics), :mod:`.tiling` (sliding windows, blending, resampling), :mod:`.outputs` (one
image's files and summary row), :mod:`.rasters` (PNG / block-wise COG writers), :mod:`.styles`
(QGIS style, overlay legend), :mod:`.polygons` (GeoPackage), :mod:`.ray_path` (the Ray Data
batch job) and :mod:`.command` (the entry points and the printed summary).
"""

from raygym.predict.command import (
    PredictResult,
    predict_and_print,
    predict_files,
    print_predict_summary,
)
from raygym.predict.ensemble import EnsemblePlan, ensemble_weights, plan_ensemble
from raygym.predict.inputs import (
    BandRule,
    GeoInfo,
    InputItem,
    check_band_counts,
    check_output_folder,
    collect_inputs,
    match_band,
    read_geo,
    read_input,
)
from raygym.predict.options import PredictOptions
from raygym.predict.outputs import PROB_SCALE, predict_one, write_summary
from raygym.predict.predictor import Predictor, resolve_models
from raygym.predict.rasters import GeoTiffWriter, write_geotiff, write_png
from raygym.predict.ray_path import PredictActor
from raygym.predict.sources import (
    ArraySource,
    BandStats,
    RasterSource,
    TiffSource,
    band_stats,
    open_source,
)
from raygym.predict.styles import add_legend, label_qml
from raygym.predict.tiling import (
    NODATA,
    Strip,
    blend_strips,
    blend_weights,
    window_starts,
)

__all__ = [
    "NODATA",
    "PROB_SCALE",
    "ArraySource",
    "BandStats",
    "EnsemblePlan",
    "GeoInfo",
    "GeoTiffWriter",
    "InputItem",
    "PredictActor",
    "PredictOptions",
    "PredictResult",
    "Predictor",
    "RasterSource",
    "Strip",
    "TiffSource",
    "add_legend",
    "band_stats",
    "blend_strips",
    "blend_weights",
    "check_band_counts",
    "check_output_folder",
    "BandRule",
    "collect_inputs",
    "ensemble_weights",
    "match_band",
    "predict_and_print",
    "predict_files",
    "label_qml",
    "open_source",
    "plan_ensemble",
    "predict_one",
    "print_predict_summary",
    "read_geo",
    "read_input",
    "resolve_models",
    "window_starts",
    "write_geotiff",
    "write_png",
    "write_summary",
]
