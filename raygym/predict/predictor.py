"""Which models to predict with (:func:`resolve_models`) and the :class:`Predictor` that runs
them over images of any size, strip by strip. Loading and the forward pass go through :mod:`raygym.inference`."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from raygym.errors import DataError, RaygymError
from raygym.predict.ensemble import DEFAULT_MARGIN, EnsembleWeights, plan_ensemble
from raygym.predict.inputs import BandRule
from raygym.predict.options import AUTO_SCALE
from raygym.predict.rescale import rescaled_strips, scaled_size
from raygym.predict.sources import ArraySource, RasterSource, band_stats
from raygym.predict.tiling import Strip, blend_strips, join_strips


def _rank_number(path: Path) -> int:
    """``N`` of a ``rank<N>_<trial>`` folder; -1 for any other folder."""
    m = re.match(r"^rank(\d+)(?:_|$)", path.name)
    return int(m.group(1)) if m else -1


def resolve_models(path: Path, top_k: int = 1) -> list[Path]:
    """The artifact folders that ``path`` stands for, best first.

    Args:
        path: a model artifact folder (holds ``model_card.json``), or a search results folder
            holding ``best/rank<N>_<trial>/`` artifacts (or that ``best`` folder itself).
        top_k: how many of the best models to return (>= 1).

    Returns:
        ``top_k`` artifact folders, sorted by rank number (rank1 first).

    Raises:
        RaygymError: no artifact found, ``top_k < 1``, or fewer than ``top_k`` models available.
    """
    path = Path(path)
    if top_k < 1:
        raise RaygymError(f"--top-k must be at least 1 (got {top_k})", key="--top-k")
    if not path.exists():
        raise DataError("model folder not found", file=path,
                        fix="give a model artifact (runs/<name>/best) or a search results folder")
    if (path / "model_card.json").is_file():
        if top_k > 1:
            raise RaygymError(f"--top-k {top_k} needs a search results folder, but this is a "
                              "single model artifact", file=path, key="--top-k",
                              fix="use --top-k 1, or give results/<experiment>")
        return [path]
    for folder in (path / "best", path):
        if not folder.is_dir():
            continue
        ranked = sorted((p for p in folder.iterdir() if p.is_dir() and _rank_number(p) >= 0),
                        key=lambda p: (_rank_number(p), p.name))
        if ranked:
            if top_k > len(ranked):
                raise RaygymError(f"--top-k {top_k} but the search exported only "
                                  f"{len(ranked)} models", file=folder, key="--top-k",
                                  fix=f"use --top-k {len(ranked)} or less")
            return ranked[:top_k]
    raise DataError("neither a model artifact (no model_card.json) nor a search results folder "
                    "(no best/rank*_*/)", file=path,
                    fix="give runs/<name>/best or results/<experiment>")


class Predictor:
    """One model or an ensemble, ready to predict images of any size.

    All models must share bands, classes and input size (true for the top-k of one search).
    Of several models, those more than ``ensemble_margin`` validation mean IoU below the best
    are left out (never loaded) and the rest weighted (``ensemble_weights``): the rule of
    :mod:`raygym.predict.ensemble`, recorded in :attr:`plan`. ``forward`` maps standardized
    ``(B, C, H, W)`` tiles to their weighted mean softmax ``(B, K, H, W)``.
    """

    def __init__(self, model_dirs: Sequence[Path], *, device: str | torch.device = "auto",
                 precision: str = "fp32", ensemble_margin: float = DEFAULT_MARGIN,
                 ensemble_weights: EnsembleWeights = "score") -> None:
        from raygym.inference.artifact import read_model_card
        from raygym.inference.scoring import load_model
        from raygym.models import min_input_size, requires_multiple_of

        if not model_dirs:
            raise RaygymError("no model to predict with")
        candidates = [Path(p) for p in model_dirs]
        # one model: its score (for the outputs' ``models`` tag) from the card it was loaded
        # with; an ensemble reads every card first, to load only the members it keeps
        alone = (load_model(candidates[0], device=device, precision=precision)
                 if len(candidates) == 1 else None)
        metrics = ([alone.card.metrics] if alone is not None
                   else [read_model_card(p).metrics for p in candidates])
        self.plan = plan_ensemble(candidates, metrics, margin=ensemble_margin,
                                  weights=ensemble_weights)
        self.model_dirs = self.plan.kept
        self.weights = self.plan.kept_weights
        self.models = [alone] if alone is not None else [
            load_model(p, device=device, precision=precision) for p in self.model_dirs]
        self.device = self.models[0].device
        self.precision = precision
        self.card = self.models[0].card
        self.config = self.models[0].config
        for path, loaded in zip(self.model_dirs[1:], self.models[1:], strict=True):
            card = loaded.card
            if (card.classes, card.in_channels) != (self.card.classes, self.card.in_channels):
                raise DataError(
                    f"cannot ensemble: classes {card.classes} / {card.in_channels} bands differ "
                    f"from {self.model_dirs[0].name} ({self.card.classes} / "
                    f"{self.card.in_channels} bands)", file=path)
            if card.dataset.get("image_bands") != self.card.dataset.get("image_bands"):
                raise DataError(
                    f"cannot ensemble: it reads image bands {card.dataset.get('image_bands')}, "
                    f"{self.model_dirs[0].name} reads {self.card.dataset.get('image_bands')} "
                    "(data.image_bands; null: every band)", file=path)
        cards = [m.card for m in self.models]
        self.multiple = max(requires_multiple_of(c.arch, **c.model_params) for c in cards)
        self.min_size = max(min_input_size(c.arch, **c.model_params) for c in cards)

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def in_channels(self) -> int:
        return self.card.in_channels

    @property
    def image_bands(self) -> tuple[int, ...] | None:
        """The image files' bands the models read (their ``data.image_bands``, numbered from
        1), None for every band. Arrays given to :meth:`predict` hold only those already."""
        picked = self.card.dataset.get("image_bands")
        return tuple(int(b) for b in picked) if picked else None

    @property
    def input_hw(self) -> tuple[int, int]:
        """The model's training input size ``(H, W)`` in pixels."""
        h, w = self.card.target_size
        return int(h), int(w)

    def resolve_scale(self, scale: float | str) -> float:
        """``scale`` as a factor: a number as given; ``"auto"``: the kept models' training
        scale (:attr:`ModelCard.training_scale`), i.e. new images are resampled as training
        resized its scenes; 1 (native resolution) where no card says.

        Raises:
            RaygymError: ``"auto"`` for models trained at different scales.
        """
        if scale != AUTO_SCALE:
            try:
                factor = float(scale)
            except (TypeError, ValueError):
                factor = math.nan
            if not (math.isfinite(factor) and factor > 0):
                raise RaygymError(f"scale must be 'auto' or a number > 0 (got {scale!r})",
                                  key="--scale")
            return factor
        known = self._card_values("training_scale")
        values = [v for v in known.values() if v is not None]
        if len({round(v, 4) for v in values}) > 1:
            listed = ", ".join(f"{name} {v:.3g}" for name, v in known.items() if v is not None)
            raise RaygymError(f"the models were trained on scenes resized by different "
                              f"factors ({listed}): no one scale suits them all",
                              key="--scale", fix="pass --scale with the factor to use")
        return values[0] if values else 1.0

    def training_gsd_m(self) -> float | None:
        """The ground sample distance (m / px) the kept models learnt, where every card
        says and they agree (to 6 decimals); else None."""
        values = list(self._card_values("training_gsd_m").values())
        if None in values or len({round(v, 6) for v in values}) != 1:
            return None
        return values[0]

    def _card_values(self, attr: str) -> dict[str, float | None]:
        """``{model folder name: its card's attr}`` over the kept models."""
        return {p.name: getattr(m.card, attr)
                for p, m in zip(self.model_dirs, self.models, strict=True)}

    def scale_for(self, scale: float | str, pixel_m: float | None) -> float:
        """The factor for one image whose pixels are ``pixel_m`` metres (None: not a
        georeferenced raster in a projected CRS): a number as given; ``"auto"``: the pixel
        size over the ground sample distance the models learnt, where both are known (so
        imagery of another resolution is brought to the model's), else
        :meth:`resolve_scale`."""
        gsd = self.training_gsd_m() if scale == AUTO_SCALE else None
        if gsd and pixel_m:
            return pixel_m / gsd
        return self.resolve_scale(scale)

    def scale_line(self, scale: float | str) -> str:
        """One line on the scale ``resolve_scale(scale)`` predicts at, and why."""
        factor = self.resolve_scale(scale)
        if scale != AUTO_SCALE:
            return f"scale {factor:.4g} (--scale)"
        gsd = self.training_gsd_m()
        if gsd:
            return (f"scale auto: each GeoTIFF is resampled to the {gsd:.3g} m pixels the "
                    f"model learnt (its own pixel size / {gsd:.3g}), other images by "
                    f"{factor:.4g} as training resized its scenes; --scale 1 predicts at "
                    f"native resolution")
        if self.card.training_scale is None:
            return ("scale 1: native resolution (the model card does not say how training "
                    "resized its scenes; --scale sets the factor)")
        if factor == 1.0:
            return "scale 1: training kept its scenes' resolution"
        span = self.card.dataset.get("train_scale") or {}
        spread = (f", {span['min']:.3g}-{span['max']:.3g} over the training scenes"
                  if span.get("min") != span.get("max") else "")
        return (f"scale {factor:.4g} (auto): training resized its scenes by {factor:.4g} "
                f"(median{spread}), so new images are too; --scale 1 predicts at native "
                f"resolution")

    def band_rules(self) -> list[BandRule]:
        """Per extra band, how its files pair with the images: the training config's
        ``data.extra_bands[i].key`` (with ``data.images.key``), else the naming rule prepare
        learnt from the training pairs (a manifest's too), else by stem."""
        data = self.config.data
        image_key = data.images.key if data.images is not None else None
        learnt = self.card.dataset.get("band_names") or []
        bands = max(len(data.extra_bands), len(learnt))  # a manifest's bands: no extra_bands
        rules: list[BandRule] = []
        for i in range(bands):
            key = data.extra_bands[i].key if i < len(data.extra_bands) else None
            rule = learnt[i] if i < len(learnt) else None
            if key is None and rule:
                rules.append(BandRule(rule["image"], rule["band"], learnt=True))
            else:
                rules.append(BandRule(image_key, key))
        return rules

    def tile_hw(self, tile: int | None) -> tuple[int, int]:
        """Validated sliding-window size ``(H, W)``: ``tile`` square, or the model input size."""
        if tile is None:
            return self.input_hw
        if tile < self.min_size or tile % self.multiple:
            ok = max(self.min_size, math.ceil(tile / self.multiple) * self.multiple)
            raise RaygymError(f"tile {tile} must be a multiple of {self.multiple} and at least "
                              f"{self.min_size} for model '{self.card.arch}'", key="--tile",
                              fix=f"use --tile {ok}")
        return tile, tile

    def window_hw(self, tile: int | None, hw: tuple[int, int]) -> tuple[int, int]:
        """The sliding window for an image of ``hw`` pixels at the predicted scale: ``tile``
        (:meth:`tile_hw`), cut where it reaches past the image (rounded up to the models'
        multiple) but never below the models' input size, which a smaller image is padded to
        as training padded its scenes. A window beyond that would predict padding only."""
        th, tw = (min(t, max(i, math.ceil(n / self.multiple) * self.multiple))
                  for t, i, n in zip(self.tile_hw(tile), self.input_hw, hw, strict=True))
        return th, tw

    @torch.no_grad()
    def forward(self, x: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Softmax averaged over flips (with ``tta``), then over models with :attr:`weights`.

        Args:
            x: ``(B, C, H, W)`` float32 standardized tiles (any device).
            tta: also average horizontal, vertical and both flips.

        Returns:
            ``(B, K, H, W)`` float32 probabilities on the CPU (sum 1 over K).
        """
        from raygym.inference.scoring import ensemble_softmax

        return ensemble_softmax(self.models, x, tta=tta, weights=self.weights)

    def extra_bands_missing(self, bands: int) -> str:
        """What an input of ``bands`` bands lacks when the missing ones can be the extra
        bands the models were trained with: their folders' names (``nir``), or (a manifest)
        "its manifest's band columns"; "" when they cannot be."""
        data = self.config.data
        # extra band files: the folders, or (a manifest) the naming rules prepare learnt
        n_extra = len(data.extra_bands) or len(self.card.dataset.get("band_names") or [])
        if not 0 < self.in_channels - bands <= n_extra:
            return ""
        return (", ".join(Path(b.folder).name for b in data.extra_bands)
                or "its manifest's band columns")

    def predict_strips(self, source: RasterSource, *, tile: int | None = None,
                       overlap: float = 0.25, tta: bool = False,
                       scale: float | str = AUTO_SCALE, batch_size: int = 8) -> Iterator[Strip]:
        """Predict a source top to bottom: the one prediction path of ``raygym predict``.

        At ``scale == 1`` the standardisation statistics are streamed (:func:`band_stats`)
        and the rows blended strip by strip (:func:`blend_strips`): memory bounded by a band of
        rows, whatever the image height. Any other ``scale`` does the same on the image
        resampled a band of rows at a time, and maps the rows back to the input grid
        (:func:`~raygym.predict.rescale.rescaled_strips`).

        Args:
            source: ``C == in_channels`` bands (see :mod:`raygym.predict.sources`).
            tile: sliding-window size in pixels (default: the model's input size).
            overlap: fraction of a tile shared by neighbouring windows, ``0 <= overlap < 1``.
            tta: flip test-time augmentation.
            scale: resample factor applied before prediction (0.5 = half the pixels per
                side); ``"auto"``: the models' training scale (:meth:`resolve_scale`).
            batch_size: tiles per forward pass.

        Yields:
            :class:`Strip` s of the input grid, in row order.

        Raises:
            DataError: a wrong band count, or every pixel nodata.
        """
        if source.bands != self.in_channels:
            extra = self.extra_bands_missing(source.bands)
            hint = (f": the images' bands followed by {extra}, stacked last in that order "
                    "(raygym predict: --band)" if extra else "")
            if source.height == self.in_channels and source.bands > self.in_channels:
                hint = (f" (it looks channels-first, ({source.height}, {source.width}, "
                        f"{source.bands}) read as (H, W, C): pass image.transpose(1, 2, 0))")
            raise DataError(f"image has {source.bands} bands but the model expects "
                            f"{self.in_channels}{hint}")
        scale = self.resolve_scale(scale)
        scaled_hw = (scaled_size(source.height, scale), scaled_size(source.width, scale))
        kwargs = {"tile_hw": self.window_hw(tile, scaled_hw), "overlap": overlap,
                  "num_classes": self.num_classes, "batch_size": batch_size}

        def forward(x: torch.Tensor) -> torch.Tensor:
            return self.forward(x, tta)

        if scale == 1.0:
            yield from blend_strips(forward, source, band_stats(source), **kwargs)
        else:
            yield from rescaled_strips(forward, source, scale, **kwargs)

    def predict(self, image: np.ndarray, *, valid: np.ndarray | None = None,
                tile: int | None = None, overlap: float = 0.25, tta: bool = False,
                scale: float | str = AUTO_SCALE, batch_size: int = 8
                ) -> tuple[np.ndarray, np.ndarray]:
        """Predict one image held in memory (through :meth:`predict_strips`).

        Args:
            image: ``(H, W, C)`` raw image (uint8 / uint16 / float), ``C == in_channels``.
            valid: ``(H, W)`` bool, False where the image is nodata (None: all valid).
            tile, overlap, tta, scale, batch_size: as :meth:`predict_strips`.

        Returns:
            ``(labels (H, W) uint8 class ids (NODATA 255 where not valid), probs (K, H, W)
            float32)`` on the input grid.
        """
        if image.ndim != 3:
            raise DataError(f"image must be (H, W, C), got shape {image.shape}")
        whole = join_strips(self.predict_strips(
            ArraySource(image, valid), tile=tile, overlap=overlap, tta=tta, scale=scale,
            batch_size=batch_size))
        return whole.labels, whole.probs
