"""``raygym predict``: map new imagery with an exported model (or a search's top-k ensemble).

Works from the artifact folder alone (``model.safetensors`` + ``config.yaml`` +
``model_card.json``, loaded through :func:`raygym.inference.scoring.load_model`: checksums
verified, no pickle) with plain PyTorch; Ray is only imported for ``--ray``.

Per input image ``<stem>`` (files, or folders of PNG / JPEG / TIFF / GeoTIFF, any size) the
output folder receives

- ``<stem>_label.tif`` (TIFF input: class ids 0..K-1, uint8, the input's CRS and transform kept,
  deflate-compressed cloud-optimised GeoTIFF with nearest-neighbour overviews and a colour table)
  or ``<stem>_label.png`` (PNG / JPEG input);
- ``<stem>_probs.tif`` with ``probabilities=True``: one uint8 band per class,
  ``round(255 * softmax)`` (divide by 255 for probabilities), georeferenced like the label;
- ``<stem>_overlay.png``: class colours blended over the image;

and one ``summary.csv`` row per image with the pixel count, fraction and (for projected CRSs)
area in m2 of each class (``pixels * |det(transform)| * metres_per_unit**2``).

Rules, chosen to match training:

- **Bands.** The first file gives the RGB (or 1-band) layers, each ``extra_bands`` folder one more
  band, in training order (``card.in_channels`` in total). A band file is matched to an image by
  (1) the pairing regexes of the model's ``config.yaml`` (``data.images.key`` and
  ``data.extra_bands[i].key``: equal keys pair), else (2) the same file stem, else (3) the first
  file (sorted by name) whose stem starts with the image stem. An image with no match is skipped.
- **Standardisation** is :func:`raygym.data.transforms.standardize` over the *whole* image once,
  before tiling (training standardised each whole scene), so tiles share one mean / std.
- **Size.** Images larger than the model input are predicted with a sliding window at native
  resolution (``tile`` pixels, default the model's input size; ``overlap`` fraction between
  neighbours); softmax probabilities are blended with a weight that ramps linearly from the tile
  edge over the overlap width, then normalised by the summed weights. Images smaller than a tile
  are zero-padded bottom / right (as training's ``resize_pad``) and cropped back.
- **Resolution.** Training scenes were shrunk (aspect kept) to ``data.target_size``, so a model
  trained on downscaled scenes has learnt a coarser ground-sample distance than the native one.
  ``scale`` resamples the image by that factor before prediction (``cv2`` area / linear) and the
  label back to the input size (nearest; probabilities linear), so the output always matches the
  input grid.
- **Ensembles / TTA.** ``top_k`` averages the softmax of the best k models of a search; ``tta``
  averages the identity and horizontal, vertical and both flips (each un-flipped).

Bad input: a tampered or incomplete artifact, a wrong band count or an output folder inside an
input folder raise :class:`~raygym.errors.RaygymError` (exit 2). An unreadable image (or one
without its band files) is skipped and listed at the end; the command fails (exit 1) only if
every image failed. A GeoTIFF without a CRS is written without one, with a warning.

Modules, in the order a run uses them: :mod:`.options` (:class:`PredictOptions`, every setting
of a run), :mod:`.predictor` (which models, and the :class:`Predictor` running them),
:mod:`.inputs` (files, band matching, band counts, pixels and georeferencing), :mod:`.tiling`
(sliding windows, blending, resampling), :mod:`.outputs` (one image's files and summary row),
:mod:`.rasters` (PNG / GeoTIFF writers), :mod:`.ray_path` (the Ray Data batch job) and
:mod:`.command` (the entry points and the printed summary).
"""

from raygym.predict.command import (
    PredictResult,
    predict_and_print,
    predict_files,
    print_predict_summary,
)
from raygym.predict.inputs import (
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
from raygym.predict.rasters import write_geotiff, write_png
from raygym.predict.ray_path import PredictActor
from raygym.predict.tiling import (
    blend_weights,
    predict_image,
    sliding_window_probs,
    window_starts,
)

__all__ = [
    "PROB_SCALE",
    "GeoInfo",
    "InputItem",
    "PredictActor",
    "PredictOptions",
    "PredictResult",
    "Predictor",
    "blend_weights",
    "check_band_counts",
    "check_output_folder",
    "collect_inputs",
    "match_band",
    "predict_and_print",
    "predict_files",
    "predict_image",
    "predict_one",
    "print_predict_summary",
    "read_geo",
    "read_input",
    "resolve_models",
    "sliding_window_probs",
    "window_starts",
    "write_geotiff",
    "write_png",
    "write_summary",
]
