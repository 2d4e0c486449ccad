""":class:`PredictOptions`: every setting of one ``raygym predict`` run, in one object."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from raygym.errors import RaygymError
from raygym.predict.ensemble import DEFAULT_MARGIN, EnsembleWeights, check_rule

AUTO_SCALE = "auto"
"""``scale``: resample new images as training resized its scenes (the models' cards say)."""


@dataclass(frozen=True)
class PredictOptions:
    """Everything that decides a run's outputs (shipped to Ray actors as is).

    The rules behind ``extra_bands``, ``tile``, ``overlap``, ``scale``, ``top_k`` and ``tta``
    are in the :mod:`raygym.predict` docstring.

    Attributes:
        out: output folder (created; must not lie inside an input folder).
        top_k: how many of a search's best models to ensemble (1 for a single artifact).
        ensemble_margin: of those, leave out models more than this validation mean IoU below
            the best one (see :mod:`raygym.predict.ensemble`).
        ensemble_weights: ``score`` (in proportion to validation mean IoU) or ``equal``.
        extra_bands: one folder per extra band, in training order.
        image_bands: the image files' bands to read, numbered from 1 (None: the models'
            ``data.image_bands``, else every band), for stacks ordered otherwise than the
            training imagery.
        tile: sliding-window size in pixels (None: the model's input size).
        overlap: fraction of a window shared with its neighbour, ``0 <= overlap < 1``.
        tta: average the identity and the horizontal, vertical and both flips.
        scale: resample factor before prediction (0.5 = half the pixels per side), > 0;
            ``"auto"``: the models' training scale (:meth:`Predictor.resolve_scale`).
        probabilities: also write ``<stem>_probs.tif``.
        overlay: also write ``<stem>_overlay.png``.
        batch_size: sliding windows per forward pass.
        device: ``auto`` | ``cpu`` | ``cuda[:n]`` for the plain path (Ray actors use the CPU).
        precision: ``fp32`` (default, deterministic) or ``bf16-mixed`` / ``fp16-mixed``.
        use_ray: run as a Ray Data batch job (one CPU actor per core, models loaded once each).
        ray_actors: actors for ``use_ray`` (None: one per cluster CPU).
        ray_address: with ``use_ray``, the Ray cluster to join (None: ``RAY_ADDRESS``, else a
            local Ray); its nodes must see the input and output paths.
        overwrite: replace output files that already exist (never an input).
        polygons: also write ``<stem>_polygons.gpkg`` (needs the ``vector`` extra: pyogrio).
        min_area: with ``polygons``, drop polygons smaller than this: m2 for a projected CRS,
            pixels otherwise (0 keeps every polygon).
    """

    out: Path
    top_k: int = 1
    ensemble_margin: float = DEFAULT_MARGIN
    ensemble_weights: EnsembleWeights = "score"
    extra_bands: Sequence[Path] = ()
    image_bands: Sequence[int] | None = None
    tile: int | None = None
    overlap: float = 0.25
    tta: bool = False
    scale: float | str = AUTO_SCALE
    probabilities: bool = False
    overlay: bool = True
    batch_size: int = 8
    device: str = "auto"
    precision: str = "fp32"
    use_ray: bool = False
    ray_actors: int | None = None
    ray_address: str | None = None
    overwrite: bool = False
    polygons: bool = False
    min_area: float = 0.0

    def __post_init__(self) -> None:
        # callers pass str / list (argparse, scripts); one normalised form from here on
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "extra_bands", tuple(Path(p) for p in self.extra_bands))
        if self.image_bands is not None:
            object.__setattr__(self, "image_bands", tuple(int(b) for b in self.image_bands))

    def check_ranges(self) -> None:
        """Refuse an ``overlap`` outside ``[0, 1)``, a ``scale`` that is not positive, a
        negative ``min_area`` (or one given without ``polygons``), a negative ensemble margin
        or an unknown ensemble weighting.

        Raises:
            RaygymError: naming the ``--overlap``, ``--scale``, ``--min-area``,
                ``--ensemble-margin`` or ``--ensemble-weights`` option.
        """
        check_rule(self.ensemble_margin, self.ensemble_weights)
        picked = list(self.image_bands or ())
        if picked and (min(picked) < 1 or len(set(picked)) < len(picked)):
            raise RaygymError(f"image bands {picked}: each band once, numbered from 1",
                              key="--image-bands", fix="e.g. --image-bands 4 3 2 8")
        if not 0.0 <= self.overlap < 1.0:
            raise RaygymError(f"overlap must be in [0, 1) (got {self.overlap})", key="--overlap",
                              fix="e.g. --overlap 0.25")
        if self.scale != AUTO_SCALE and not (isinstance(self.scale, int | float)
                                             and 0 < self.scale < math.inf):
            raise RaygymError(f"scale must be > 0 or 'auto' (got {self.scale!r})",
                              key="--scale", fix="e.g. --scale 0.5, or --scale auto")
        if not self.min_area >= 0:
            raise RaygymError(f"min-area must be >= 0 (got {self.min_area})", key="--min-area",
                              fix="give an area (m2 in a projected CRS, else pixels; 0 keeps "
                              "every polygon)")
        if self.min_area > 0 and not self.polygons:
            raise RaygymError("--min-area applies to --polygons only", key="--min-area",
                              fix="add --polygons, or drop --min-area")
